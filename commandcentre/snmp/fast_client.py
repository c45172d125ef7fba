"""``SnmpClient`` on our own codec (``codec``, ``usm``) and asyncio datagram endpoints.

Why it exists: pysnmp spends 65-200 µs of CPU per varbind, mostly building pyasn1
objects; this client decodes a response straight into ``VarBind``s, and drives a
whole walk from the socket's receive callback.

How it talks:

* One connected UDP socket per agent address (``_Channel``), created on first
  use with an enlarged receive buffer and kept until ``close()``. Connected, the
  kernel delivers only that agent's datagrams to it, so a burst from one agent
  cannot crowd out another's replies, and an undecodable datagram is known to come
  from that agent (reported as ``DECODE`` if the request then gets no answer).
* An operation (a GET PDU, a whole walk, an engine discovery) is an ``_Op``: the
  receive callback checks a reply and hands it to the operation, which either
  finishes or sends its next request at once. The awaiting task wakes once per
  operation, not once per PDU, and one timer per operation is re-armed only when it
  fires; per PDU that saves more CPU than the whole BER decode costs.
* Requests are matched to replies by request-id (v1/v2c) or msgID (v3); a retry
  resends the same request, so a late answer to the first try still counts. A
  reply with the wrong community, or that fails USM checks, is ignored as a spoof
  would be, and the request times out.
* SNMPv3: the agent's engine ID, boots and time are discovered once per agent
  (RFC 3414 §4) and kept; a notInTimeWindow or unknownEngineID report makes the
  client re-learn them and go on once more. Other reports fail the request with
  ``AUTH`` and the report's name (usmStatsWrongDigests, ...). Users' master keys
  (the 1 MiB password expansion) are computed once per ``Auth`` in a worker thread.
* Walks, GETs and error reasons follow ``PysnmpClient`` exactly (the same tests
  run against both): subtree bound, increasing-OID check, varbind cap,
  endOfMibView, GETs split into PDUs of at most 60 OIDs, the instance fallback.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import resource
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from commandcentre.config import Auth, Endpoint
from commandcentre.snmp.codec import (
    FLAG_AUTH,
    VERSION_1,
    VERSION_2C,
    CommunityMessage,
    DecodeError,
    Pdu,
    PduType,
    V3Message,
    decode_message,
    encode_community_message,
    encode_request_pdu,
    encode_scoped_pdu,
)
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
from commandcentre.snmp.usm import (
    LEVELS,
    EngineClock,
    UsmError,
    UsmFailure,
    UsmUser,
    encode_discovery,
    encode_v3,
    localize,
    report_failure,
    report_name,
    unprotect,
)

__all__ = ["FastSnmpClient"]

IDLE_CLOSE_SECONDS = 900.0  # longer than any sane poll interval
IDLE_SWEEP_SECONDS = 60.0

_END = SnmpType.END_OF_MIB_VIEW
_RESPONSE = PduType.RESPONSE
_REPORT = PduType.REPORT

Reply = tuple[CommunityMessage | V3Message, bytes]
# check a reply to the pending request: the Pdu, or raise _Drop / _ReportReceived
Accept = Callable[[CommunityMessage | V3Message, bytes], Any]
# one request: (request-id or msgID, wire bytes factory, acceptance check)
Request = tuple[int, Callable[[], bytes], Accept]
MakeRequest = Callable[[PduType, Sequence[Oid], int], Request]


class _Drop(Exception):
    """A reply that matched a pending request but is no acceptable answer to it.
    ``bad``: it was malformed (counts towards DECODE), rather than merely foreign."""

    def __init__(self, bad: bool) -> None:
        self.bad = bad


class _ReportReceived(Exception):
    """The agent answered a v3 request with a Report."""

    def __init__(self, pdu: Pdu, msg: V3Message) -> None:
        self.pdu = pdu
        self.msg = msg


# --------------------------------------------------------------------------- operations


class _Op:
    """One operation in flight on a channel, driven from its receive callback.

    ``send`` puts a request on the wire (and resends it on timeout, ``retries``
    times); a reply that ``accept`` takes goes to ``on_reply``, which calls ``send``
    for the next request or ``finish`` with the result. Exceptions from either end
    the operation and are raised in the awaiting task.
    """

    __slots__ = (
        "_accept",
        "_build",
        "_tries_left",
        "ch",
        "deadline",
        "future",
        "key",
        "loop",
        "on_reply",
        "retries",
        "started",
        "timeout",
        "timer",
    )

    def __init__(
        self,
        ch: _Channel,
        loop: asyncio.AbstractEventLoop,
        options: RequestOptions,
        on_reply: Callable[[_Op, Any], None],
    ) -> None:
        self.ch = ch
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.timeout = options.timeout
        self.retries = options.retries
        self.on_reply = on_reply
        self.key = -1
        self._build: Callable[[], bytes] = bytes
        self._accept: Accept = _reject
        self._tries_left = 0
        self.deadline = 0.0
        self.started = 0.0
        self.timer: asyncio.TimerHandle | None = None

    def send(self, request: Request) -> None:
        pending = self.ch.pending
        if pending.get(self.key) is self:
            del pending[self.key]
        self.key, self._build, self._accept = request
        pending[self.key] = self
        self._tries_left = self.retries
        self.started = time.monotonic()
        self._transmit()

    def _transmit(self) -> None:
        transport = self.ch.transport
        if transport is None or transport.is_closing():
            self.fail(SnmpError(ErrorReason.TRANSPORT, f"{self.ch.peer}: client is closed"))
            return
        transport.sendto(self._build())
        self.deadline = self.loop.time() + self.timeout
        if self.timer is None:
            self.timer = self.loop.call_at(self.deadline, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        if self.future.done():
            return
        if self.loop.time() < self.deadline:  # replies came and requests moved on
            self.timer = self.loop.call_at(self.deadline, self._on_timer)
        elif self._tries_left > 0:
            self._tries_left -= 1
            self._transmit()
        elif self.ch.last_bad >= self.started:
            self.fail(
                SnmpError(
                    ErrorReason.DECODE,
                    f"{self.ch.peer}: no decodable answer (the agent sent undecodable datagrams)",
                )
            )
        else:
            self.fail(SnmpError(ErrorReason.TIMEOUT, f"{self.ch.peer}: no answer"))

    def deliver(self, msg: CommunityMessage | V3Message, data: bytes) -> None:
        if self.future.done():
            return
        try:
            reply = self._accept(msg, data)
        except _Drop as d:
            if d.bad:
                self.ch.last_bad = time.monotonic()
            return
        except Exception as e:  # noqa: BLE001 - raised in the awaiting task instead
            self.fail(e)
            return
        try:
            self.on_reply(self, reply)
        except Exception as e:  # noqa: BLE001 - raised in the awaiting task instead
            self.fail(e)

    def finish(self, result: Any) -> None:
        if not self.future.done():
            self.future.set_result(result)
        self.close()

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)
        self.close()

    def close(self) -> None:
        pending = self.ch.pending
        if pending.get(self.key) is self:
            del pending[self.key]
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def _reject(msg: CommunityMessage | V3Message, data: bytes) -> Any:
    raise _Drop(bad=False)


# --------------------------------------------------------------------------- sockets


class _Channel(asyncio.DatagramProtocol):
    """One connected UDP socket to one agent address, and the operations waiting on it."""

    def __init__(self, peer: str) -> None:
        self.peer = peer  # for messages: host:port or [v6]:port
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[int, _Op] = {}  # by request-id / msgID
        self.last_bad = -1.0  # monotonic time of the last undecodable datagram
        self.clock: EngineClock | None = None  # v3: the agent's engine, once discovered
        self.discovery = asyncio.Lock()
        self.discovery_failed: tuple[float, SnmpError] | None = None
        self.recv_buffer = 0
        self.last_used = 0.0  # monotonic; idle sockets are closed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            msg = decode_message(data)
        except DecodeError:
            self.last_bad = time.monotonic()
            return
        if isinstance(msg, CommunityMessage):
            pdu = msg.pdu
            if not isinstance(pdu, Pdu):
                return  # a v1 trap sent to our port: not ours
            op = self.pending.get(pdu.request_id)
        else:
            op = self.pending.get(msg.msg_id)
        if op is not None:
            op.deliver(msg, data)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the request times out, as with pysnmp.
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        closed = SnmpError(ErrorReason.TRANSPORT, f"{self.peer}: client is closed")
        for op in list(self.pending.values()):
            op.fail(closed)
        self.pending.clear()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _raise_open_files_limit() -> bool:
    """With a socket per agent, a thousand agents pass the usual soft limit of 1024 open
    files; the hard limit (systemd's default: 524288) is ours to take. True if raised."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft >= hard:
        return False
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class _V3:
    """An ``Auth``'s USM user (master keys), level (msgFlags bits) and context."""

    user: UsmUser
    level: int
    context_name: bytes


@dataclass(slots=True)
class _Walk:
    """What a walk has collected so far (kept across a v3 re-discovery)."""

    root: Oid
    last: Oid
    out: list[VarBind]


# --------------------------------------------------------------------------- client


class FastSnmpClient:
    """``SnmpClient`` on ``codec``/``usm``. See the module docstring."""

    def __init__(self, recv_buffer_bytes: int = RECV_BUFFER_BYTES) -> None:
        self._recv_buffer_bytes = recv_buffer_bytes
        self._channels: dict[tuple[int, tuple[Any, ...]], _Channel] = {}
        self._names: dict[tuple[str, int], tuple[int, tuple[Any, ...], float]] = {}
        self._v3: dict[Auth, _V3] = {}
        self._community: dict[Auth, bytes] = {}
        self._lock = asyncio.Lock()
        self._ids = itertools.count(secrets.randbits(30) + 1)
        self._closed = False
        self._swept = time.monotonic()

    @property
    def recv_buffer_bytes(self) -> int:
        """The receive buffer the kernel granted the first socket (0 before use)."""
        first = next(iter(self._channels.values()), None)
        return first.recv_buffer if first is not None else 0

    def _next_id(self) -> int:
        return next(self._ids) & 0x7FFFFFFF or 1

    # ---------------------------------------------------------------- public API

    async def get(
        self, endpoint: Endpoint, auth: Auth, oids: Sequence[Oid], options: RequestOptions
    ) -> list[VarBind]:
        ch = await self._channel(endpoint)
        out: list[VarBind] = []
        for start in range(0, len(oids), MAX_OIDS_PER_GET):
            chunk = oids[start : start + MAX_OIDS_PER_GET]
            pdu = await self._single(ch, auth, PduType.GET, chunk, options)
            if pdu.error_status:
                raise status_error(pdu.error_status, pdu.error_index, chunk)
            out.extend(pdu.varbinds)
        return out

    async def walk(
        self, endpoint: Endpoint, auth: Auth, root: Oid, options: RequestOptions
    ) -> list[VarBind]:
        ch = await self._channel(endpoint)
        root = tuple(root)
        state = _Walk(root, root, [])
        v1 = auth.version == 1
        pdu_type = PduType.GET_NEXT if v1 else PduType.GET_BULK
        reps = 0 if v1 else options.max_repetitions
        n = len(root)
        allow = options.allow_nonincreasing_oids
        cap = options.max_varbinds
        out = state.out
        append = out.append

        def on_pdu(pdu: Pdu) -> bool:
            """Take a response's varbinds; True when the walk is complete."""
            if pdu.error_status:
                if v1 and pdu.error_status == NO_SUCH_NAME:  # v1's end of the MIB
                    return True
                raise status_error(pdu.error_status, pdu.error_index, (state.last,))
            if not pdu.varbinds:
                return True
            last = state.last
            near_cap = len(out) + len(pdu.varbinds) > cap  # else no need to count each
            for vb in pdu.varbinds:
                oid = vb.oid
                if vb.type is _END or oid[:n] != root or len(oid) == n:
                    state.last = last
                    return True
                if oid <= last and not allow:
                    raise SnmpError(
                        ErrorReason.OID_NOT_INCREASING,
                        f"{endpoint}: walk of {dotted(root)} got {dotted(oid)} "
                        f"after {dotted(last)}",
                    )
                append(vb)
                last = oid
                if near_cap and len(out) > cap:
                    raise SnmpError(
                        ErrorReason.WALK_TOO_LONG,
                        f"{endpoint}: walk of {dotted(root)} returned more than {cap} varbinds",
                    )
            state.last = last
            return False

        await self._operate(
            ch,
            auth,
            options,
            pdu_type=pdu_type,
            max_repetitions=reps,
            next_oids=lambda: (state.last,),
            on_pdu=on_pdu,
        )
        if not out:
            # As net-snmp's snmpwalk and gosnmp do: walking an instance OID returns it.
            pdu = await self._single(ch, auth, PduType.GET, (root,), options)
            if not pdu.error_status and pdu.varbinds:
                vb = pdu.varbinds[0]
                if vb.oid == root and vb.type not in EXCEPTION_TYPES:
                    out.append(vb)
        return out

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        channels, self._channels = list(self._channels.values()), {}
        for ch in channels:
            ch.close()
        self._v3.clear()
        self._community.clear()
        # Let the transports' connection_lost run, so the sockets are really closed
        # when close() returns.
        for _ in range(3):
            await asyncio.sleep(0)

    # ---------------------------------------------------------------- channels

    async def _channel(self, endpoint: Endpoint) -> _Channel:
        if self._closed:
            raise SnmpError(ErrorReason.TRANSPORT, "client is closed")
        if endpoint.transport != "udp":
            raise SnmpError(ErrorReason.TRANSPORT, "tcp transport not supported by this client")
        name_key = (endpoint.host, endpoint.port)
        hit = self._names.get(name_key)
        if hit is None or hit[2] <= time.monotonic():
            family, addr = await self._resolve(endpoint)
            ttl = float("inf") if is_literal(endpoint.host) else NAME_TTL_SECONDS
            hit = (family, addr, time.monotonic() + ttl)
            self._names[name_key] = hit
        key = (hit[0], hit[1])
        now = time.monotonic()
        ch = self._channels.get(key)
        if ch is None:
            async with self._lock:
                ch = self._channels.get(key)
                if ch is None:
                    ch = await self._open(hit[0], hit[1])
                    if self._closed:
                        ch.close()
                        raise SnmpError(ErrorReason.TRANSPORT, "client is closed")
                    self._channels[key] = ch
        ch.last_used = now
        if now - self._swept > IDLE_SWEEP_SECONDS:
            self._sweep(now)
        return ch

    def _sweep(self, now: float) -> None:
        """Close sockets of agents not asked for a while (targets removed on reload,
        names that now resolve elsewhere): a socket per agent must not mean a socket
        per agent ever polled."""
        self._swept = now
        for key, ch in list(self._channels.items()):
            if not ch.pending and now - ch.last_used > IDLE_CLOSE_SECONDS:
                del self._channels[key]
                ch.close()

    async def _resolve(self, endpoint: Endpoint) -> tuple[int, tuple[Any, ...]]:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in endpoint.host else socket.AF_UNSPEC
        try:
            infos = await loop.getaddrinfo(
                endpoint.host, endpoint.port, family=family, type=socket.SOCK_DGRAM
            )
        except (OSError, UnicodeError):
            infos = []
        if not infos:
            raise SnmpError(ErrorReason.TRANSPORT, f"{endpoint}: cannot resolve {endpoint.host}")
        # Prefer IPv4 for names with both, as pysnmp's UdpTransportTarget does.
        infos.sort(key=lambda i: i[0] != socket.AF_INET)
        fam, _, _, _, addr = infos[0]
        return int(fam), tuple(addr)

    async def _open(self, family: int, addr: tuple[Any, ...]) -> _Channel:
        host, port = str(addr[0]), int(addr[1])
        peer = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as e:
            if e.errno != errno.EMFILE or not _raise_open_files_limit():
                raise SnmpError(ErrorReason.TRANSPORT, f"{peer}: {e.strerror or e}") from None
            sock = socket.socket(family, socket.SOCK_DGRAM)
        ch = _Channel(peer)
        try:
            enlarge_receive_buffer(sock, self._recv_buffer_bytes)
            sock.setblocking(False)
            sock.connect(addr)
            await asyncio.get_running_loop().create_datagram_endpoint(lambda: ch, sock=sock)
        except OSError as e:
            sock.close()
            raise SnmpError(ErrorReason.TRANSPORT, f"{peer}: {e.strerror or e}") from None
        except BaseException:
            sock.close()
            raise
        ch.recv_buffer = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        return ch

    # ---------------------------------------------------------------- operations

    async def _single(
        self,
        ch: _Channel,
        auth: Auth,
        pdu_type: PduType,
        oids: Sequence[Oid],
        options: RequestOptions,
    ) -> Pdu:
        """One request PDU, its Response PDU."""
        got: list[Pdu] = []

        def on_pdu(pdu: Pdu) -> bool:
            got.append(pdu)
            return True

        await self._operate(
            ch,
            auth,
            options,
            pdu_type=pdu_type,
            max_repetitions=0,
            next_oids=lambda: oids,
            on_pdu=on_pdu,
        )
        return got[0]

    async def _operate(
        self,
        ch: _Channel,
        auth: Auth,
        options: RequestOptions,
        *,
        pdu_type: PduType,
        max_repetitions: int,
        next_oids: Callable[[], Sequence[Oid]],
        on_pdu: Callable[[Pdu], bool],
    ) -> None:
        """Send ``pdu_type`` requests for ``next_oids()`` until ``on_pdu`` says done."""
        relearnt = False
        loop = asyncio.get_running_loop()
        while True:
            if auth.version == 3:
                make = await self._v3_maker(ch, auth, options)
            else:
                make = self._community_maker(ch, auth)

            def on_reply(op: _Op, pdu: Pdu, make: MakeRequest = make) -> None:
                if on_pdu(pdu):
                    op.finish(None)
                else:
                    op.send(make(pdu_type, next_oids(), max_repetitions))

            op = _Op(ch, loop, options, on_reply)
            try:
                op.send(make(pdu_type, next_oids(), max_repetitions))
                await op.future
            except _ReportReceived as r:
                if relearnt or not self._relearn(ch, r):
                    raise SnmpError(ErrorReason.AUTH, f"{ch.peer}: {report_name(r.pdu)}") from None
                relearnt = True
                continue
            finally:
                op.close()
            return

    async def _run(self, ch: _Channel, options: RequestOptions, request: Request) -> Any:
        """One request, the value its ``accept`` returns."""
        op = _Op(ch, asyncio.get_running_loop(), options, _Op.finish)
        try:
            op.send(request)
            return await op.future
        finally:
            op.close()

    # ---------------------------------------------------------------- v1/v2c

    def _community_maker(self, ch: _Channel, auth: Auth) -> MakeRequest:
        version = VERSION_1 if auth.version == 1 else VERSION_2C
        community = self._community.get(auth)
        if community is None:
            community = auth.community.reveal().encode() if auth.community else b"public"
            self._community[auth] = community

        def accept(msg: CommunityMessage | V3Message, _data: bytes) -> Pdu:
            if (
                not isinstance(msg, CommunityMessage)
                or msg.version != version
                or msg.community != community
            ):
                raise _Drop(bad=False)
            pdu = msg.pdu
            if not isinstance(pdu, Pdu) or pdu.type is not _RESPONSE:
                raise _Drop(bad=True)
            return pdu

        def make(pdu_type: PduType, oids: Sequence[Oid], reps: int) -> Request:
            rid = self._next_id()
            try:
                wire = encode_community_message(
                    version, community, encode_request_pdu(pdu_type, rid, oids, 0, reps)
                )
            except ValueError as e:
                raise SnmpError(
                    ErrorReason.TRANSPORT, f"{ch.peer}: cannot encode request: {e}"
                ) from None
            return rid, lambda: wire, accept

        return make

    # ---------------------------------------------------------------- SNMPv3

    async def _credentials(self, auth: Auth) -> _V3:
        sec = self._v3.get(auth)
        if sec is not None:
            return sec
        level = auth.security_level
        auth_proto = auth.auth_protocol if level != "noAuthNoPriv" else None
        priv_proto = auth.priv_protocol if level == "authPriv" else None
        auth_pw = auth.password.reveal() if auth_proto and auth.password else None
        priv_pw = auth.priv_password.reveal() if priv_proto and auth.priv_password else None
        try:
            # the 1 MiB password expansion: milliseconds, kept off the event loop
            user = await asyncio.to_thread(
                UsmUser.from_passwords, auth.username, auth_proto, auth_pw, priv_proto, priv_pw
            )
        except ValueError as e:
            raise SnmpError(ErrorReason.AUTH, f"credentials unusable: {e}") from None
        sec = _V3(user, LEVELS[level], auth.context_name.encode())
        self._v3[auth] = sec
        return sec

    async def _engine(self, ch: _Channel, options: RequestOptions) -> EngineClock:
        """The agent's engine ID, boots and time: discovered once (RFC 3414 §4)."""
        clock = ch.clock
        if clock is not None:
            return clock
        asked = time.monotonic()
        async with ch.discovery:
            if ch.clock is not None:
                return ch.clock
            failed = ch.discovery_failed
            if failed is not None and failed[0] >= asked:
                # It failed while we queued: requests piled up on an unreachable agent
                # fail together instead of each waiting out its own discovery.
                raise SnmpError(failed[1].reason, failed[1].detail)
            rid = self._next_id()
            wire = encode_discovery(rid, rid)

            def accept(msg: CommunityMessage | V3Message, _data: bytes) -> EngineClock:
                if not isinstance(msg, V3Message) or msg.usm is None or msg.scoped_pdu is None:
                    raise _Drop(bad=True)
                if msg.scoped_pdu.pdu.type is not _REPORT or not msg.usm.engine_id:
                    raise _Drop(bad=True)
                u = msg.usm
                return EngineClock(u.engine_id, u.engine_boots, u.engine_time, time.monotonic())

            try:
                clock = cast(EngineClock, await self._run(ch, options, (rid, lambda: wire, accept)))
            except SnmpError as e:
                ch.discovery_failed = (time.monotonic(), e)
                raise
            ch.clock = clock
            ch.discovery_failed = None
            return clock

    def _relearn(self, ch: _Channel, report: _ReportReceived) -> bool:
        """After a notInTimeWindow / unknownEngineID report: forget or correct what we
        know of the agent's engine. False for any other report."""
        failure = report_failure(report.pdu)
        u = report.msg.usm
        if u is None or failure not in (
            UsmFailure.NOT_IN_TIME_WINDOW,
            UsmFailure.UNKNOWN_ENGINE_ID,
        ):
            return False
        clock = ch.clock
        if failure is UsmFailure.NOT_IN_TIME_WINDOW and clock and u.engine_id == clock.engine_id:
            ch.clock = EngineClock(u.engine_id, u.engine_boots, u.engine_time, time.monotonic())
        else:
            ch.clock = None
        return True

    async def _v3_maker(self, ch: _Channel, auth: Auth, options: RequestOptions) -> MakeRequest:
        sec = await self._credentials(auth)
        clock = await self._engine(ch, options)
        keys = localize(sec.user, clock.engine_id)
        level = sec.level
        engine_id = clock.engine_id
        user_name = sec.user.name

        def accept(msg: CommunityMessage | V3Message, data: bytes) -> Pdu:
            if not isinstance(msg, V3Message):
                raise _Drop(bad=True)
            u = msg.usm
            if u is None:
                raise _Drop(bad=True)
            scoped = msg.scoped_pdu
            if scoped is not None and scoped.pdu.type is _REPORT:
                raise _ReportReceived(scoped.pdu, msg)  # reports may come unauthenticated
            try:
                scoped = unprotect(data, msg, keys)
            except UsmError:
                raise _Drop(bad=False) from None
            pdu = scoped.pdu
            if pdu.type is _REPORT:
                raise _ReportReceived(pdu, msg)
            if (
                pdu.type is not _RESPONSE
                or pdu.request_id != msg.msg_id
                or (msg.flags & 3) != level
                or u.engine_id != engine_id
                or u.user_name != user_name
            ):
                raise _Drop(bad=False)
            if level & FLAG_AUTH:
                # RFC 3414 §3.2.7 b: only authenticated messages move our view of its clock
                now = time.monotonic()
                current = ch.clock or clock
                if not current.in_window(u.engine_boots, u.engine_time, now):
                    raise _Drop(bad=False)
                ch.clock = current.updated(u.engine_boots, u.engine_time, now)
            return pdu

        def make(pdu_type: PduType, oids: Sequence[Oid], reps: int) -> Request:
            rid = self._next_id()
            try:
                scoped = encode_scoped_pdu(
                    engine_id, sec.context_name, encode_request_pdu(pdu_type, rid, oids, 0, reps)
                )
            except ValueError as e:
                raise SnmpError(
                    ErrorReason.TRANSPORT, f"{ch.peer}: cannot encode request: {e}"
                ) from None

            def build() -> bytes:
                boots, engine_time = (ch.clock or clock).now(time.monotonic())
                return encode_v3(
                    msg_id=rid,
                    user=keys,
                    level=level,
                    engine_boots=boots,
                    engine_time=engine_time,
                    scoped_pdu=scoped,
                    reportable=True,
                )

            return rid, build, accept

        return make


# --------------------------------------------------------------------------- errors
