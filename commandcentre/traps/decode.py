"""The one call from the receiver into the SNMP codec: datagram in, verdict out.

BER lives in ``commandcentre.snmp.codec`` and USM in ``commandcentre.snmp.usm``;
this module applies them to a notification receiver: community check (v1/v2c),
RFC 3414 checks against the accepted users (v3), the Response an inform wants,
the Report a v3 sender's discovery wants, and SNMPv1 Trap-PDUs turned into their
SNMPv2 form (RFC 3584). The result names the ``snmp.auths`` entry the sender
matched, never a community or a key.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass

from commandcentre.snmp import codec, usm
from commandcentre.snmp.codec import Pdu, PduType, TrapV1Pdu
from commandcentre.snmp.types import SnmpType, VarBind
from commandcentre.traps.credentials import Credentials, V3User
from commandcentre.traps.mapping import SNMP_TRAP_OID_0, SYS_UPTIME_0, v1_trap_oid, v1_varbinds
from commandcentre.traps.types import Notification, SnmpVersion, Varbind

_REASONS = {
    usm.UsmFailure.UNSUPPORTED_SEC_LEVEL: "unsupported_security_level",
    usm.UsmFailure.NOT_IN_TIME_WINDOW: "not_in_time_window",
    usm.UsmFailure.UNKNOWN_USER: "unknown_user",
    usm.UsmFailure.UNKNOWN_ENGINE_ID: "unknown_engine_id",
    usm.UsmFailure.WRONG_DIGEST: "wrong_digest",
    usm.UsmFailure.DECRYPTION_ERROR: "decryption",
}
_MAX_CLOCKS = 10_000  # remote engines whose boots/time we track


@dataclass(frozen=True, slots=True)
class Verdict:
    """A ``notification`` to process, or a ``drop`` reason.

    ``reply`` (an inform's Response) goes out only once the receiver accepted
    the sender's address; ``report`` (a USM Report: discovery, time-window
    resynchronisation) goes out at once. ``discovery`` marks a v3 engine-ID
    probe, which is part of every v3 inform and not a failure.
    """

    notification: Notification | None = None
    drop: str | None = None
    reply: bytes | None = None
    report: bytes | None = None
    discovery: bool = False


def plain_value(vb: VarBind) -> int | str | bytes | None:
    """A varbind's value as the trap path shows it."""
    v = vb.value
    if vb.type is SnmpType.OBJECT_IDENTIFIER and isinstance(v, tuple):
        return ".".join(map(str, v))
    if vb.type is SnmpType.IP_ADDRESS and isinstance(v, bytes) and len(v) == 4:
        return str(ipaddress.IPv4Address(v))
    if vb.type is SnmpType.OCTET_STRING and isinstance(v, bytes):
        try:
            text = v.decode("utf-8")
        except UnicodeDecodeError:
            return v
        return text if text.isprintable() else v
    if isinstance(v, int | bytes) or v is None:
        return v
    return str(v)


def _varbind(vb: VarBind) -> Varbind:
    return Varbind(vb.oid, plain_value(vb), vb.type.value)


def _v2_notification(pdu: Pdu, version: SnmpVersion, principal: str) -> Notification | None:
    """RFC 3416 4.2.6/4.2.7: sysUpTime.0 and snmpTrapOID.0 come first; None if not."""
    vbs = pdu.varbinds
    if (
        len(vbs) < 2
        or vbs[0].oid != SYS_UPTIME_0
        or vbs[1].oid != SNMP_TRAP_OID_0
        or vbs[1].type is not SnmpType.OBJECT_IDENTIFIER
        or not isinstance(vbs[1].value, tuple)
    ):
        return None
    uptime = vbs[0].value if isinstance(vbs[0].value, int) else None
    return Notification(
        version=version,
        principal=principal,
        trap_oid=vbs[1].value,
        varbinds=tuple(_varbind(vb) for vb in vbs[2:]),
        uptime=uptime,
        inform=pdu.type is PduType.INFORM,
        request_id=pdu.request_id if pdu.type is PduType.INFORM else None,
    )


def _v1_notification(pdu: TrapV1Pdu, principal: str) -> Notification:
    agent = (
        str(ipaddress.IPv4Address(pdu.agent_addr)) if len(pdu.agent_addr) == 4 else "0.0.0.0"  # noqa: S104
    )
    return Notification(
        version="v1",
        principal=principal,
        trap_oid=v1_trap_oid(pdu.enterprise, pdu.generic_trap, pdu.specific_trap),
        varbinds=v1_varbinds(tuple(_varbind(vb) for vb in pdu.varbinds), pdu.enterprise, agent),
        uptime=pdu.time_stamp,
    )


def _response(pdu: Pdu) -> Pdu:
    return Pdu(PduType.RESPONSE, pdu.request_id, 0, 0, pdu.varbinds)


class Decoder:
    """Per-config decoding state: the user table (keys expanded once), our engine
    for informs, the clocks of the engines that sent us v3 traps."""

    def __init__(
        self,
        credentials: Credentials,
        clock: Callable[[], float] = time.monotonic,
        previous: Decoder | None = None,
    ) -> None:
        """``previous``: the decoder of the config before a reload; our engine's boots
        and time and the senders' clocks carry over when the engine ID is the same."""
        self._clock = clock
        self._communities = tuple((c.community, c.auth) for c in credentials.communities)
        self._users = usm.UserTable(
            usm.UsmUser.from_passwords(
                u.username,
                u.auth_protocol,
                u.auth_password or None,
                u.priv_protocol,
                u.priv_password or None,
            )
            for u in credentials.users
        )
        self._by_name: dict[bytes, V3User] = {u.username.encode(): u for u in credentials.users}
        # Boots from the wall clock: it must grow across restarts (RFC 3414 2.2.2),
        # and the daemon keeps no state on disk.
        boots = min(max(1, int(time.time())), 2**31 - 1)
        self.local = usm.LocalEngine(credentials.local_engine_id, boots, clock())
        self._clocks: dict[bytes, usm.EngineClock] = {}
        if previous is not None and previous.local.engine_id == credentials.local_engine_id:
            self.local = previous.local
            self._clocks = previous._clocks
        self._report_counts: dict[usm.UsmFailure, int] = {}

    def decode(self, data: bytes) -> Verdict:
        try:
            msg = codec.decode_message(data)
        except codec.DecodeError:
            return Verdict(drop="malformed")
        if isinstance(msg, codec.CommunityMessage):
            return self._community(msg)
        return self._v3(data, msg)

    def _community(self, msg: codec.CommunityMessage) -> Verdict:
        principal = None
        for community, auth in self._communities:
            if hmac.compare_digest(community, msg.community):
                principal = auth
                break
        if principal is None:
            return Verdict(drop="unknown_community")
        pdu = msg.pdu
        if isinstance(pdu, TrapV1Pdu):
            return Verdict(_v1_notification(pdu, principal))
        if pdu.type not in (PduType.TRAP_V2, PduType.INFORM) or msg.version == codec.VERSION_1:
            return Verdict(drop="unsupported")
        n = _v2_notification(pdu, "v2c", principal)
        if n is None:
            return Verdict(drop="malformed")
        reply = None
        if n.inform:
            reply = codec.encode_community_message(msg.version, msg.community, _response(pdu))
        return Verdict(n, reply=reply)

    def _v3(self, data: bytes, msg: codec.V3Message) -> Verdict:
        now = self._clock()
        try:
            v = usm.verify_incoming(
                data, msg, users=self._users, local=self.local, clocks=self._clocks, now=now
            )
        except usm.UsmError as e:
            discovery = e.failure is usm.UsmFailure.UNKNOWN_ENGINE_ID and not (
                msg.usm is not None and msg.usm.engine_id
            )
            return Verdict(
                drop=None if discovery else _REASONS[e.failure],
                report=self._report(msg, e.failure, now),
                discovery=discovery,
            )
        except codec.DecodeError:
            return Verdict(drop="malformed")
        if len(self._clocks) > _MAX_CLOCKS:
            self._clocks.clear()
        user = self._by_name[v.user_name]
        if not v.authoritative and user.engine_id is not None and user.engine_id != v.engine_id:
            return Verdict(drop="unknown_engine_id")
        pdu = v.scoped_pdu.pdu
        if pdu.type not in (PduType.TRAP_V2, PduType.INFORM):
            return Verdict(drop="unsupported")
        n = _v2_notification(pdu, "v3", user.auth)
        if n is None:
            return Verdict(drop="malformed")
        reply = None
        if n.inform:
            known = self._users.get(v.user_name)
            assert known is not None  # verify_incoming found it
            scoped = codec.encode_scoped_pdu(
                v.scoped_pdu.context_engine_id, v.scoped_pdu.context_name, _response(pdu)
            )
            reply = usm.encode_v3(
                msg_id=msg.msg_id,
                user=usm.localize(known, self.local.engine_id),
                level=v.level,
                engine_boots=self.local.boots,
                engine_time=self.local.time(now),
                scoped_pdu=scoped,
                reportable=False,
            )
        return Verdict(n, reply=reply)

    def _report(self, msg: codec.V3Message, failure: usm.UsmFailure, now: float) -> bytes | None:
        """A Report when the sender asked for one (informs and probes; never traps)."""
        count = self._report_counts.get(failure, 0) + 1
        self._report_counts[failure] = count
        if not msg.flags & codec.FLAG_REPORTABLE:
            return None
        request_id = msg.scoped_pdu.pdu.request_id if msg.scoped_pdu is not None else 0
        user = None
        level = 0
        if failure is usm.UsmFailure.NOT_IN_TIME_WINDOW and msg.usm is not None:
            # RFC 3414 3.2.7: authenticated, so the sender can trust our boots/time
            known = self._users.get(msg.usm.user_name)
            if known is not None and known.auth_protocol is not None:
                user = usm.localize(known, self.local.engine_id)
                level = codec.FLAG_AUTH
        return usm.encode_report(
            msg_id=msg.msg_id,
            local=self.local,
            now=now,
            failure=failure,
            count=count,
            request_id=request_id,
            user=user,
            level=level,
        )
