"""``SnmpClient`` on pysnmp 7: the only module that imports pysnmp.

How it uses pysnmp, and why:

* One ``SnmpEngine`` (one UDP socket per address family) serves every request;
  ``close()`` closes its dispatcher. The socket is created here, not by pysnmp,
  so that its receive buffer can be enlarged before the first reply arrives.
* Targets (address, credentials, timeout, retries) are registered once in the
  engine's local configuration through pysnmp's own LCD configurator and cached
  per (endpoint, auth, timeout, retries). Names are re-resolved every 5 minutes.
* Requests go through pysnmp's RFC 3413 command generators directly rather than
  ``get_cmd``/``bulk_cmd``: those wrap every request OID in an ``ObjectType``
  resolved against the MIB view (CPU, and pysmi warnings) even with
  ``lookupMib=False``. The walk loop is ours, so the subtree bound, the
  increasing-OID check, the varbind cap and endOfMibView are handled here.
* pysnmp drops an undecodable datagram silently (the request then times out);
  it counts it in ``snmpInASNParseErrs``. The engine's receive hook is wrapped to
  note which peer sent it, and a request to that peer that then times out is
  reported as ``DECODE`` rather than ``TIMEOUT``.
* pysnmp's USM keys users by user name: two ``Auth`` with the same v3 user name
  but different keys would overwrite each other in one engine, so such an
  ``Auth`` gets a further engine of its own (rare; each costs ~57 ms and a socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyasn1.error import PyAsn1Error  # type: ignore[import-untyped]

# With pysmi 2 installed (snmpsim needs it), importing pysnmp's hlapi emits
# DeprecationWarnings from pysnmp's own use of pysmi's old names; they are not ours.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from pysnmp.carrier.asyncio.dgram import udp, udp6
    from pysnmp.entity import config as pconfig
    from pysnmp.entity.engine import SnmpEngine
    from pysnmp.entity.rfc3413 import cmdgen
    from pysnmp.error import PySnmpError
    from pysnmp.hlapi.v3arch.asyncio.auth import CommunityData, UsmUserData
    from pysnmp.hlapi.v3arch.asyncio.lcd import CommandGeneratorLcdConfigurator
    from pysnmp.hlapi.v3arch.asyncio.transport import Udp6TransportTarget, UdpTransportTarget
    from pysnmp.proto import errind
    from pysnmp.proto import error as proto_error
    from pysnmp.proto.rfc1902 import Null, ObjectName

from commandcentre.config import Auth, Endpoint
from commandcentre.snmp.common import (
    MAX_OIDS_PER_GET,
    NAME_TTL_SECONDS,
    NO_SUCH_NAME,
    RECV_BUFFER_BYTES,
    dotted,
    enlarge_receive_buffer,
    is_literal,
    status_error,
)
from commandcentre.snmp.types import (
    EXCEPTION_TYPES,
    ErrorReason,
    Oid,
    RequestOptions,
    SnmpError,
    SnmpType,
    VarBind,
)

__all__ = ["PysnmpClient"]


_AUTH_PROTOCOLS = {
    "MD5": pconfig.USM_AUTH_HMAC96_MD5,
    "SHA": pconfig.USM_AUTH_HMAC96_SHA,
    "SHA224": pconfig.USM_AUTH_HMAC128_SHA224,
    "SHA256": pconfig.USM_AUTH_HMAC192_SHA256,
    "SHA384": pconfig.USM_AUTH_HMAC256_SHA384,
    "SHA512": pconfig.USM_AUTH_HMAC384_SHA512,
}
# snmp_exporter/gosnmp: AES192/AES256 are Blumenthal (draft-blumenthal-aes-usm,
# net-snmp's AES-192/AES-256); AES192C/AES256C are the Reeder ("Cisco") variant.
_PRIV_PROTOCOLS = {
    "DES": pconfig.USM_PRIV_CBC56_DES,
    "AES": pconfig.USM_PRIV_CFB128_AES,
    "AES192": pconfig.USM_PRIV_CFB192_AES_BLUMENTHAL,
    "AES256": pconfig.USM_PRIV_CFB256_AES_BLUMENTHAL,
    "AES192C": pconfig.USM_PRIV_CFB192_AES,
    "AES256C": pconfig.USM_PRIV_CFB256_AES,
}

# v3 reports and USM failures: the credentials (or the agent's view of them) are wrong.
_AUTH_INDICATIONS: tuple[type[Exception], ...] = (
    errind.UnknownUserName,
    errind.WrongDigest,
    errind.UnknownEngineID,
    errind.UnsupportedSecurityLevel,
    errind.NotInTimeWindow,
    errind.AuthenticationFailure,
    errind.AuthenticationError,
    errind.DecryptionError,
    errind.EncryptionError,
    errind.NoEncryption,
    errind.NoAuthentication,
    errind.UnsupportedAuthProtocol,
    errind.UnsupportedPrivProtocol,
    errind.UnknownSecurityName,
    errind.UnsupportedSecurityModel,
    errind.ReportPduReceived,
    errind.EngineIDMismatch,
    errind.UnknownCommunityName,
)
_DECODE_INDICATIONS: tuple[type[Exception], ...] = (
    errind.DeserializationError,
    errind.DataMismatch,
    errind.UnsupportedPDUtype,
)

# --------------------------------------------------------------------------- values


def _int(v: Any) -> int:
    return int(v)


def _octets(v: Any) -> bytes:
    return bytes(v.asOctets())


def _oid(v: Any) -> Oid:
    return tuple(v.asTuple())


def _none(v: Any) -> None:
    return None


# ASN.1 (class, tag) of the value -> (SnmpType, converter). Looked up once per
# Python class and cached in _BY_CLASS, so the hot path is one dict lookup.
_BY_TAG: dict[tuple[int, int], tuple[SnmpType, Callable[[Any], int | bytes | Oid | None]]] = {
    (0x00, 2): (SnmpType.INTEGER, _int),
    (0x00, 4): (SnmpType.OCTET_STRING, _octets),
    (0x00, 5): (SnmpType.NULL, _none),
    (0x00, 6): (SnmpType.OBJECT_IDENTIFIER, _oid),
    (0x40, 0): (SnmpType.IP_ADDRESS, _octets),
    (0x40, 1): (SnmpType.COUNTER32, _int),
    (0x40, 2): (SnmpType.GAUGE32, _int),
    (0x40, 3): (SnmpType.TIMETICKS, _int),
    (0x40, 4): (SnmpType.OPAQUE, _octets),
    (0x40, 6): (SnmpType.COUNTER64, _int),
    (0x80, 0): (SnmpType.NO_SUCH_OBJECT, _none),
    (0x80, 1): (SnmpType.NO_SUCH_INSTANCE, _none),
    (0x80, 2): (SnmpType.END_OF_MIB_VIEW, _none),
}
_BY_CLASS: dict[type, tuple[SnmpType, Callable[[Any], int | bytes | Oid | None]]] = {}


def _classify(value: Any) -> tuple[SnmpType, Callable[[Any], int | bytes | Oid | None]]:
    cls = type(value)
    hit = _BY_CLASS.get(cls)
    if hit is None:
        tag = value.tagSet[0]
        hit = _BY_TAG.get((int(tag.tagClass), int(tag.tagId)))
        if hit is None:
            raise SnmpError(ErrorReason.DECODE, f"value of unknown ASN.1 type {cls.__name__}")
        _BY_CLASS[cls] = hit
    return hit


def _to_varbind(name: Any, value: Any) -> VarBind:
    kind, conv = _classify(value)
    return VarBind(name.asTuple(), kind, conv(value))


# --------------------------------------------------------------------------- engine


@dataclass
class _Slot:
    """An engine, its sockets and the v3 users configured in it."""

    engine: Any
    users: dict[str, bytes] = field(default_factory=dict)  # user name -> key fingerprint
    families: set[int] = field(default_factory=set)
    # peer (host, port) -> monotonic time of the last undecodable datagram from it
    decode_errors: dict[tuple[str, int], float] = field(default_factory=dict)
    recv_buffer: int = 0


@dataclass
class _Target:
    slot: _Slot
    addr_name: str
    peer: tuple[str, int]
    context_name: bytes
    v1: bool
    expires: float


_LCD = CommandGeneratorLcdConfigurator()


def _fingerprint(auth: Auth) -> bytes:
    """A digest of what pysnmp's USM keys a user by; secrets are not kept in clear."""
    h = hashlib.sha256()
    for part in (
        auth.security_level,
        auth.auth_protocol,
        auth.password.reveal() if auth.password else "",
        auth.priv_protocol,
        auth.priv_password.reveal() if auth.priv_password else "",
    ):
        h.update(part.encode() + b"\0")
    return h.digest()


def _auth_data(auth: Auth) -> Any:
    if auth.version in (1, 2):
        community = auth.community.reveal() if auth.community else "public"
        return CommunityData(community, mpModel=auth.version - 1)
    level = auth.security_level
    auth_key = auth.password.reveal() if level != "noAuthNoPriv" and auth.password else None
    priv_key = auth.priv_password.reveal() if level == "authPriv" and auth.priv_password else None
    return UsmUserData(
        auth.username,
        authKey=auth_key,
        privKey=priv_key,
        authProtocol=_AUTH_PROTOCOLS[auth.auth_protocol] if auth_key else None,
        privProtocol=_PRIV_PROTOCOLS[auth.priv_protocol] if priv_key else None,
    )


# --------------------------------------------------------------------------- client


class PysnmpClient:
    """``SnmpClient`` backed by pysnmp 7's asyncio engine. See the module docstring."""

    def __init__(self, recv_buffer_bytes: int = RECV_BUFFER_BYTES) -> None:
        self._recv_buffer_bytes = recv_buffer_bytes
        self._slots: list[_Slot] = []
        self._targets: dict[tuple[Endpoint, Auth, float, int], _Target] = {}
        self._closed = False
        self._lock = asyncio.Lock()

    @property
    def recv_buffer_bytes(self) -> int:
        """The receive buffer the kernel granted the first engine's socket (0 before use)."""
        return self._slots[0].recv_buffer if self._slots else 0

    # ---------------------------------------------------------------- public API

    async def get(
        self, endpoint: Endpoint, auth: Auth, oids: Sequence[Oid], options: RequestOptions
    ) -> list[VarBind]:
        target = await self._target(endpoint, auth, options)
        out: list[VarBind] = []
        for start in range(0, len(oids), MAX_OIDS_PER_GET):
            chunk = oids[start : start + MAX_OIDS_PER_GET]
            status, index, vbs = await self._request(
                target, cmdgen.GetCommandGenerator(), options, chunk
            )
            if status:
                raise status_error(status, index, chunk)
            out.extend(_to_varbind(n, v) for n, v in vbs)
        return out

    async def walk(
        self, endpoint: Endpoint, auth: Auth, root: Oid, options: RequestOptions
    ) -> list[VarBind]:
        target = await self._target(endpoint, auth, options)
        root = tuple(root)
        n = len(root)
        allow = options.allow_nonincreasing_oids
        cap = options.max_varbinds
        out: list[VarBind] = []
        last = root
        end = SnmpType.END_OF_MIB_VIEW
        while True:
            if target.v1:
                status, index, vbs = await self._request(
                    target, cmdgen.NextCommandGeneratorSingleRun(), options, (last,)
                )
                if status == NO_SUCH_NAME:  # v1's end of the MIB
                    break
            else:
                status, index, vbs = await self._request(
                    target,
                    cmdgen.BulkCommandGeneratorSingleRun(),
                    options,
                    (last,),
                    max_repetitions=options.max_repetitions,
                )
            if status:
                raise status_error(status, index, (last,))
            if not vbs:
                break
            done = False
            for name, value in vbs:
                vb = _to_varbind(name, value)
                oid = vb.oid
                if vb.type is end or oid[:n] != root or len(oid) == n:
                    done = True
                    break
                if oid <= last and not allow:
                    raise SnmpError(
                        ErrorReason.OID_NOT_INCREASING,
                        f"{endpoint}: walk of {dotted(root)} got {dotted(oid)} "
                        f"after {dotted(last)}",
                    )
                out.append(vb)
                last = oid
                if len(out) > cap:
                    raise SnmpError(
                        ErrorReason.WALK_TOO_LONG,
                        f"{endpoint}: walk of {dotted(root)} returned more than {cap} varbinds",
                    )
            if done:
                break
        if not out:
            # As net-snmp's snmpwalk and gosnmp do: walking an instance OID returns it.
            status, _, vbs = await self._request(
                target, cmdgen.GetCommandGenerator(), options, (root,)
            )
            if not status and vbs:
                vb = _to_varbind(*vbs[0])
                if vb.oid == root and vb.type not in EXCEPTION_TYPES:
                    out.append(vb)
        return out

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        slots, self._slots = self._slots, []
        self._targets.clear()
        for slot in slots:
            # best effort: there is nobody to report a failure to while closing
            with contextlib.suppress(Exception):
                slot.engine.close_dispatcher()
        # Let the cancelled timer task and the transports' connection_lost run,
        # so the sockets are really closed when close() returns.
        for _ in range(3):
            await asyncio.sleep(0)

    # ---------------------------------------------------------------- targets

    async def _target(self, endpoint: Endpoint, auth: Auth, options: RequestOptions) -> _Target:
        if self._closed:
            raise SnmpError(ErrorReason.TRANSPORT, "client is closed")
        key = (endpoint, auth, options.timeout, options.retries)
        target = self._targets.get(key)
        if target is not None and target.expires > time.monotonic():
            return target
        if endpoint.transport != "udp":
            raise SnmpError(
                ErrorReason.TRANSPORT, "tcp transport not supported by the pysnmp backend"
            )
        async with self._lock:  # serialises engine creation and LCD edits
            target = self._targets.get(key)
            if target is not None and target.expires > time.monotonic():
                return target
            target = await self._configure(endpoint, auth, options)
            if self._closed:
                raise SnmpError(ErrorReason.TRANSPORT, "client is closed")
            self._targets[key] = target
            return target

    async def _configure(self, endpoint: Endpoint, auth: Auth, options: RequestOptions) -> _Target:
        v6 = ":" in endpoint.host
        family = socket.AF_INET6 if v6 else socket.AF_INET
        target_cls = Udp6TransportTarget if v6 else UdpTransportTarget
        try:
            transport_target = await target_cls.create(
                (endpoint.host, endpoint.port), timeout=options.timeout, retries=options.retries
            )
        except PySnmpError:
            raise SnmpError(
                ErrorReason.TRANSPORT, f"{endpoint}: cannot resolve {endpoint.host}"
            ) from None
        except OSError as e:
            raise SnmpError(ErrorReason.TRANSPORT, f"{endpoint}: {e.strerror or e}") from None

        if auth.version == 3:
            fp = _fingerprint(auth)
            slot = next((s for s in self._slots if s.users.get(auth.username, fp) == fp), None)
            if slot is None:
                slot = self._new_slot()
            slot.users[auth.username] = fp
        else:
            slot = self._slots[0] if self._slots else self._new_slot()
        await self._ensure_socket(slot, family)
        try:
            addr_name, _ = _LCD.configure(
                slot.engine, _auth_data(auth), transport_target, auth.context_name
            )
        except (PySnmpError, PyAsn1Error, proto_error.StatusInformation) as e:
            raise SnmpError(
                ErrorReason.AUTH, f"{endpoint}: credentials rejected by pysnmp: {type(e).__name__}"
            ) from None
        peer = tuple(transport_target.transport_address[:2])
        ttl = float("inf") if is_literal(endpoint.host) else NAME_TTL_SECONDS
        return _Target(
            slot=slot,
            addr_name=addr_name,
            peer=(str(peer[0]), int(peer[1])),
            context_name=auth.context_name.encode(),
            v1=auth.version == 1,
            expires=time.monotonic() + ttl,
        )

    def _new_slot(self) -> _Slot:
        slot = _Slot(engine=SnmpEngine())
        md = slot.engine.message_dispatcher
        (parse_errs,) = slot.engine.get_mib_builder().import_symbols(
            "__SNMPv2-MIB", "snmpInASNParseErrs"
        )
        receive = md.receive_message
        decode_errors = slot.decode_errors

        def receive_message(engine: Any, domain: Any, address: Any, whole_msg: Any) -> Any:
            before = int(parse_errs.syntax)
            try:
                return receive(engine, domain, address, whole_msg)
            except Exception:  # noqa: BLE001 - a datagram pysnmp chokes on is the peer's fault
                decode_errors[(str(address[0]), int(address[1]))] = time.monotonic()
                return b""
            finally:
                if int(parse_errs.syntax) != before:
                    decode_errors[(str(address[0]), int(address[1]))] = time.monotonic()

        md.receive_message = receive_message
        self._slots.append(slot)
        return slot

    async def _ensure_socket(self, slot: _Slot, family: int) -> None:
        if family in slot.families:
            return
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            enlarge_receive_buffer(sock, self._recv_buffer_bytes)
            sock.bind(("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0))  # noqa: S104 - client socket, replies come from anywhere
            sock.setblocking(False)
            carrier = (
                udp6.Udp6AsyncioTransport()
                if family == socket.AF_INET6
                else udp.UdpAsyncioTransport()
            )
            await asyncio.get_running_loop().create_datagram_endpoint(lambda: carrier, sock=sock)
        except BaseException:
            sock.close()
            raise
        if family == socket.AF_INET:
            slot.recv_buffer = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        domain = udp6.DOMAIN_NAME if family == socket.AF_INET6 else udp.DOMAIN_NAME
        pconfig.add_transport(slot.engine, domain, carrier)
        slot.families.add(family)

    # ---------------------------------------------------------------- requests

    async def _request(
        self,
        target: _Target,
        generator: Any,
        options: RequestOptions,
        oids: Sequence[Oid],
        max_repetitions: int = 0,
    ) -> tuple[int, int, Sequence[tuple[Any, Any]]]:
        """Send one PDU; return (error-status, error-index, varbinds) or raise SnmpError."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[Any, int, int, Sequence[tuple[Any, Any]]]] = (
            loop.create_future()
        )

        def done(
            _engine: Any,
            _handle: Any,
            indication: Any,
            status: Any,
            index: Any,
            var_binds: Any,
            _ctx: Any,
        ) -> None:
            if not future.done():
                future.set_result((indication, int(status or 0), int(index or 0), var_binds))

        null = Null("")
        vbs = [(ObjectName(o), null) for o in oids]
        slot = target.slot
        started = time.monotonic()
        try:
            if max_repetitions:
                generator.send_varbinds(
                    slot.engine, target.addr_name, None, target.context_name,
                    0, max_repetitions, vbs, done,
                )  # fmt: skip
            else:
                generator.send_varbinds(
                    slot.engine, target.addr_name, None, target.context_name, vbs, done
                )
        except proto_error.StatusInformation as e:
            try:
                indication = e["errorIndication"]
            except KeyError:
                indication = errind.otherError
            raise self._indication_error(target, indication, started) from None
        except (PySnmpError, PyAsn1Error, OSError) as e:
            raise SnmpError(
                ErrorReason.TRANSPORT, f"{_peer(target)}: cannot send: {type(e).__name__}"
            ) from None
        # pysnmp times the request out itself (timer resolution 0.1 s); this is
        # a backstop should its callback never come (v3 discovery doubles the
        # exchanges, hence the factor 2).
        budget = options.timeout * (options.retries + 1) * 2 + 1.0
        try:
            async with asyncio.timeout(budget):
                indication, status, index, var_binds = await future
        except TimeoutError:
            raise self._timeout_error(target, started) from None
        if indication:
            raise self._indication_error(target, indication, started)
        return status, index, var_binds or ()

    # ---------------------------------------------------------------- errors

    def _timeout_error(self, target: _Target, started: float) -> SnmpError:
        last_bad = target.slot.decode_errors.get(target.peer)
        if last_bad is not None and last_bad >= started:
            return SnmpError(
                ErrorReason.DECODE,
                f"{_peer(target)}: no decodable answer (the agent sent undecodable datagrams)",
            )
        return SnmpError(ErrorReason.TIMEOUT, f"{_peer(target)}: no answer")

    def _indication_error(self, target: _Target, indication: Any, started: float) -> SnmpError:
        if isinstance(indication, errind.RequestTimedOut):
            return self._timeout_error(target, started)
        name = type(indication).__name__ if isinstance(indication, Exception) else str(indication)
        text = str(indication) if isinstance(indication, Exception) else name
        if isinstance(indication, _AUTH_INDICATIONS):
            if isinstance(indication, errind.EncryptionError | errind.DecryptionError):
                text += " (pysnmp needs the 'cryptography' package for DES/AES)"
            return SnmpError(ErrorReason.AUTH, f"{_peer(target)}: {text}")
        if isinstance(indication, _DECODE_INDICATIONS) or indication == "badResponse":
            return SnmpError(ErrorReason.DECODE, f"{_peer(target)}: {text}")
        if isinstance(indication, errind.TooBig):
            return SnmpError(ErrorReason.AGENT_ERROR, f"{_peer(target)}: tooBig (request)")
        return SnmpError(ErrorReason.TRANSPORT, f"{_peer(target)}: {text}")


def _peer(target: _Target) -> str:
    host, port = target.peer
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
