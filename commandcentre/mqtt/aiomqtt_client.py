"""The broker connection: the only module that imports aiomqtt (and, through it, paho).

``AiomqttConnection.run()`` is the whole life of one subscriber connection: connect,
subscribe every filter, hand each message to ``on_message`` in arrival order, and on
any failure wait (exponential backoff with jitter) and start again, re-subscribing.
It writes what it sees into a ``BrokerStats`` that the self-metrics read.

aiomqtt (through paho) does everything but the hot path: connecting (TLS, auth,
MQTT 3.1.1 and 5, client ids), subscribing, keepalive, reconnect semantics and
the goodbye. Once the subscriptions are acknowledged, ``_FrameReader`` takes over
the socket's read side: paho reads each packet with three or four ``recv`` calls
and aiomqtt then creates a task per message, which together cost ~80 us CPU per
message; ``_FrameReader`` reads 64 KiB per wake-up, cuts PUBLISH frames out of
the buffer itself (QoS 0 and 1; it acknowledges QoS 1 through paho), and hands
every other packet (PINGRESP, SUBACK, PUBACK, QoS 2 flows, a v5 DISCONNECT) to
paho's own handler, so paho's state machine stays the authority. If paho's
internals are not what this was written against, the reader stays paho's
(slower, same results).

Memory stays bounded under a burst: received messages wait in a queue of at most
``Broker.max_queued_messages``; what does not fit is discarded, counted in
``stats.messages_dropped`` and logged as one summary at most every 10 s. The
queue is drained by a callback on the event loop, for at most 10 ms at a time (no
task per message), so ``on_message`` runs synchronously, in arrival order.

``AiomqttPublisher`` is a plain publishing client for the demo's simulated sensors
and for the tests.
"""

from __future__ import annotations

import asyncio
import collections
import math
import random
import secrets
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self

import aiomqtt
import paho.mqtt.client as paho_mqtt
import structlog
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.reasoncodes import ReasonCode

from commandcentre.mqtt.config import Broker, TlsConfig
from commandcentre.mqtt.types import BrokerStats, Message

__all__ = ["AiomqttConnection", "AiomqttPublisher", "default_client_id"]

log = structlog.get_logger("commandcentre.mqtt")

# How long each request to the broker (SUBACK, PUBACK) may take.
_CALL_TIMEOUT = 10.0
# How long CONNACK may take. aiomqtt ignores a connection that closes before CONNACK
# (a broker refusing a TLS 1.3 client without a certificate does that), so this is
# also how long such a failure takes to be noticed.
_CONNACK_TIMEOUT = 5.0
# How long the DISCONNECT on the way out may take: bounds how late run() ends when cancelled.
_GOODBYE_TIMEOUT = 1.0
# A connection that stayed up this long resets the backoff to its initial delay.
_STABLE_AFTER = 10.0
# Consumer failures and queue overflows are summarised at most this often.
_REPORT_EVERY = 10.0

# How long one drain of the queue may hold the event loop, in CPU time of the
# loop's thread (checked every _DRAIN_CHECK messages). Between drains the loop
# serves everything else, the socket read included, so the queue overflows only
# when messages arrive faster than on_message can take them. CPU time, not wall
# time: when another process takes the core, a wall-clock budget would shrink
# each drain while reads stay the same size, and drop messages for it.
_DRAIN_BUDGET = 0.010
_DRAIN_CHECK = 32
# Bytes read from the socket per wake-up (one recv, plus what TLS has decrypted):
# ~450 Zigbee2MQTT messages, fewer than one drain takes.
_READ_SIZE = 64 * 1024

_new_tuple = tuple.__new__

# CONNACK codes that mean "wrong credentials": 3.1.1 (4, 5) and MQTT 5 (134, 135).
# paho reports 3.1.1 codes already translated to the MQTT 5 ones; both are listed.
_AUTH_CODES = frozenset({4, 5, 134, 135})


def default_client_id(broker: Broker) -> str:
    """``commandcentre-<hostname>-<broker name>``: stable across restarts, unique per host."""
    return f"commandcentre-{socket.gethostname()}-{broker.name}"


class _ClientContext(ssl.SSLContext):
    """An ``SSLContext`` that does two things paho cannot be told to do.

    * Sends SNI for, and verifies the certificate against, ``server_name`` instead of
      the host connected to (paho passes its host to ``wrap_socket``).
    * Closes the socket when the handshake fails: paho does the handshake itself and
      leaves a failed socket to the garbage collector (a ResourceWarning and a file
      descriptor held until then, once per reconnect attempt). Done here, paho's own
      ``do_handshake()`` afterwards has nothing left to do.
    """

    server_name: str = ""

    def wrap_socket(  # noqa: PLR0917 - SSLContext.wrap_socket's own signature
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        tls_sock = super().wrap_socket(
            sock,
            server_side=server_side,
            do_handshake_on_connect=False,
            suppress_ragged_eofs=suppress_ragged_eofs,
            server_hostname=self.server_name or server_hostname,
            session=session,
        )
        if do_handshake_on_connect or not server_side:
            try:
                tls_sock.do_handshake()  # blocking, bounded by paho's connect timeout (5 s)
            except BaseException:
                tls_sock.close()
                raise
        return tls_sock


def tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """A client context for ``tls``: the given CA (or the system's), an optional client
    certificate, hostname verification unless ``insecure_skip_verify``.

    Built for every connection attempt, so renewed certificate files are picked up on
    the next reconnect. Raises ``OSError``/``ssl.SSLError`` for unreadable or bad files.
    """
    ctx = _ClientContext(ssl.PROTOCOL_TLS_CLIENT)  # TLS >= 1.2, CERT_REQUIRED, hostnames
    ctx.server_name = tls.server_name or ""
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif tls.ca_file is not None:
        ctx.load_verify_locations(cafile=tls.ca_file)
    else:
        ctx.load_default_certs()
    if tls.cert_file is not None:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    return ctx


def _client(broker: Broker, identifier: str) -> aiomqtt.Client:
    tls = broker.tls
    client = aiomqtt.Client(
        broker.host,
        broker.effective_port,
        username=broker.username,
        password=broker.password.reveal() if broker.password is not None else None,
        identifier=identifier,
        protocol=aiomqtt.ProtocolVersion.V5
        if broker.protocol == "5"
        else (aiomqtt.ProtocolVersion.V311),
        keepalive=max(1, math.ceil(broker.keepalive)),
        timeout=_CONNACK_TIMEOUT,  # __aenter__'s wait; _CALL_TIMEOUT once connected
        tls_context=tls_context(tls) if tls is not None else None,
        # paho checks hostnames itself unless told not to; the context does it already.
        tls_insecure=True if tls is not None and tls.insecure_skip_verify else None,
        # Without it a QoS 0 publish after a QoS 1 one waits ~20 ms for Nagle.
        socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
    )
    _register_writes_only_while_open(client)
    return client


def _register_writes_only_while_open(client: aiomqtt.Client) -> None:
    """Replace aiomqtt's write registration with one that checks the socket first.

    paho asks for a writer whenever it queues a packet; aiomqtt registers it on the
    loop's *next* iteration (``call_soon_threadsafe``, as paho may ask from the
    connect thread). If the socket is closed in between (a DISCONNECT queued in the
    same iteration as the reader meets the broker's end-of-stream, as when Ctrl-C stops
    the demo's broker and publisher together), aiomqtt's ``add_writer`` gets a closed
    descriptor, or one already reused by another socket. Here it is registered only if
    the socket is still paho's; the write callback is aiomqtt's, unchanged.
    """
    paho = client._client
    loop = client._loop

    def write() -> None:
        # aiomqtt's: a failed write (a broken pipe, say) ends the connection
        try:
            paho.loop_write()
        except Exception as exc:  # noqa: BLE001 - handed to whoever awaits the session
            if not client._disconnected.done():
                client._disconnected.set_exception(exc)

    def on_register_write(
        _paho: paho_mqtt.Client,
        _userdata: Any,
        sock: paho_mqtt.SocketLike,
    ) -> None:
        def register() -> None:
            if paho.socket() is sock:
                loop.add_writer(sock.fileno(), write)

        loop.call_soon_threadsafe(register)

    paho.on_socket_register_write = on_register_write


def _close_socket(client: aiomqtt.Client) -> None:
    """Close the client's socket if it is still open (a no-op after a normal exit).

    aiomqtt leaves the socket open, with its reader registered on the loop, when
    ``__aenter__`` is cancelled while waiting for CONNACK, and when its DISCONNECT
    times out; it has no public way to abort. paho's ``_sock_close`` unregisters the
    socket from the loop (through aiomqtt's callbacks) and closes it.
    """
    client._client._sock_close()
    # A connection lost during the goodbye (the broker stopping with us, say) leaves
    # aiomqtt's disconnect future holding an error nobody awaits any more; asyncio
    # would print it as "Future exception was never retrieved" at exit. Mark it seen.
    disconnected = client._disconnected
    if disconnected.done() and not disconnected.cancelled():
        disconnected.exception()


def exc_text(exc: BaseException) -> str:
    """An error for the log and ``BrokerStats.last_error``: the message and its cause."""
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause):
        text = f"{text}: {cause}"
    return text


def _code(rc: int | ReasonCode) -> int:
    """paho reports CONNACK and SUBACK codes as ``ReasonCode`` (3.1.1 ones too) or int."""
    return int(rc.value) if isinstance(rc, ReasonCode) else int(rc)


def _error_kind(exc: BaseException) -> str:
    """The ``kind`` of a connection failure, for ``BrokerStats.errors``."""
    if isinstance(exc, MqttConnectError):
        return "auth" if exc.rc is not None and _code(exc.rc) in _AUTH_CODES else "refused"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return "tls"
    text = str(exc)
    if "Disconnected during message iteration" in text:
        return "connection_lost"
    if "timed out" in text:
        return "timeout"
    # aiomqtt turns connect()'s OSError (TLS errors included) into MqttError(str(exc)).
    if "SSL" in text or "certificate" in text.lower():
        return "tls"
    return "connect"


class _Limiter:
    """Lets one report through per ``period`` and counts the events held back."""

    __slots__ = ("held", "last", "period")

    def __init__(self, period: float) -> None:
        self.period = period
        self.last = -math.inf
        self.held = 0

    def ready(self) -> bool:
        now = time.monotonic()
        if now - self.last >= self.period:
            self.last = now
            return True
        return False


def _in_packet(command: int, length: int, packet: bytes) -> paho_mqtt._InPacket:
    """paho's read state with one whole packet read (``command`` 0: none, as paho
    leaves it between packets)."""
    return {
        "command": command,
        "have_remaining": 1 if command else 0,
        "remaining_count": [],
        "remaining_mult": 1,
        "remaining_length": length,
        "packet": bytearray(packet),
        "to_process": 0,
        "pos": 0,
    }


class _FrameReader:
    """The read side of a connected paho client, for speed: one ``recv`` per wake-up,
    PUBLISH frames (QoS 0/1) cut out of the buffer here, every other packet given to
    paho's own handler exactly as paho would have read it.

    Installed only at a packet boundary (paho holds no half-read packet), after the
    SUBACK, and uninstalled by closing: paho's socket close removes the fd's reader.
    Errors and end-of-stream are left to paho: its ``loop_read`` meets them again
    (``recv`` keeps failing, or keeps returning ``b""``) and runs its disconnect path,
    which ends aiomqtt's session the usual way.
    """

    __slots__ = ("_buf", "_deliver", "_have", "_need", "_paho", "_parts", "_sock", "_v5")

    def __init__(self, paho: paho_mqtt.Client, deliver: Callable[[str, bytes, bool], None]) -> None:
        self._paho = paho
        self._sock = paho.socket()
        self._deliver = deliver
        self._buf = b""  # unparsed bytes: at most one partial frame after _parse
        # a frame longer than one read, gathered without re-copying: its pieces, the
        # bytes they hold and the bytes it needs (0: no such frame pending)
        self._parts: list[bytes] = []
        self._have = 0
        self._need = 0
        self._v5 = paho.protocol == paho_mqtt.MQTTv5

    @staticmethod
    def supported(paho: paho_mqtt.Client) -> bool:
        """Whether paho has the internals this reader hands packets to."""
        return all(
            hasattr(paho, a)
            for a in ("_in_packet", "_packet_handle", "_send_puback", "_loop_rc_handle")
        ) and isinstance(getattr(paho, "_in_packet", None), dict)

    def at_boundary(self) -> bool:
        return self._paho._in_packet.get("command") == 0

    def on_readable(self) -> None:
        """One read per wake-up, parsed. One, not as many as the socket has: between
        two reads the loop drains the queue for up to 10 ms of CPU (~1,000 messages,
        more than a read brings), so the queue overflows only when on_message cannot
        keep up, and a burst it can absorb waits in the socket buffers instead.
        (Measured with a 1M-message burst at a third of the daemon's capacity:
        reading until the queue was full lost 25 % to it; this way, none.)"""
        paho = self._paho
        sock = self._sock
        if sock is None or paho.socket() is not sock:
            return
        try:
            data = sock.recv(_READ_SIZE)
            pending = getattr(sock, "pending", None)
            while pending is not None and data and pending() > 0:
                data += sock.recv(_READ_SIZE)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError, InterruptedError):
            return
        except OSError:
            self._to_paho_read()
            return
        if not data:
            self._to_paho_read()
            return
        paho._last_bytes_received = time.monotonic()
        if self._need:
            # the rest of a frame longer than one read: keep the pieces, join once
            self._parts.append(data)
            self._have += len(data)
            if self._have < self._need:
                return
            data = b"".join(self._parts)
            self._parts = []
            self._have = self._need = 0
        elif self._buf:
            data = self._buf + data
        self._buf = data
        try:
            self._parse()
        except IndexError:  # a PUBLISH whose fields run past its end: not MQTT
            self._protocol_error()

    def _to_paho_read(self) -> None:
        """Let paho meet the error or the end of the stream and disconnect its way."""
        if self._buf and not self._need:
            self._parse()  # complete frames first (a v5 DISCONNECT, say)
        if self._paho.socket() is not None:
            self._paho.loop_read()

    def _parse(self) -> None:  # noqa: PLR0915 - one flat loop: a call per frame costs ~10 %
        buf = self._buf
        n = len(buf)
        pos = 0
        deliver = self._deliver
        v5 = self._v5
        while n - pos >= 2:
            first = buf[pos]
            i = pos + 1
            length = 0
            shift = 0
            while True:
                if i >= n:
                    self._buf = buf[pos:]
                    return
                b = buf[i]
                i += 1
                length |= (b & 0x7F) << shift
                if b < 0x80:
                    break
                shift += 7
                if shift > 21:
                    self._protocol_error()
                    return
            end = i + length
            if end > n:
                if end - pos > _READ_SIZE:
                    self._need = end - pos
                    self._have = n - pos
                    self._parts = [buf[pos:]]
                    self._buf = b""
                    return
                break
            qos = (first >> 1) & 3
            if first >> 4 == 3 and qos < 2 and length >= 2:
                t_end = i + 2 + ((buf[i] << 8) | buf[i + 1])
                p = t_end
                mid = 0
                if qos:
                    mid = (buf[p] << 8) | buf[p + 1]
                    p += 2
                if v5:  # skip the properties (a variable-length length, then that many bytes)
                    plen = 0
                    shift = 0
                    while True:
                        b = buf[p]
                        p += 1
                        plen |= (b & 0x7F) << shift
                        if b < 0x80:
                            break
                        shift += 7
                    p += plen
                if p > end:
                    self._protocol_error()
                    return
                deliver(buf[i + 2 : t_end].decode("utf-8", "replace"), buf[p:end], bool(first & 1))
                if qos:
                    self._paho._send_puback(mid)
            elif not self._to_paho(first, length, buf[i:end]):
                return
            pos = end
        self._buf = buf[pos:] if pos < n else b""

    def _to_paho(self, command: int, length: int, packet: bytes) -> bool:
        """paho's handler for one whole packet; False if it ended the connection."""
        paho = self._paho
        paho._in_packet = _in_packet(command, length, packet)
        try:
            rc = paho._packet_handle()
        except Exception:  # noqa: BLE001 - paho's MalformedPacket and friends
            rc = paho_mqtt.MQTT_ERR_PROTOCOL
        finally:
            paho._in_packet = _in_packet(0, 0, b"")
        if rc:
            self._buf = b""
            paho._loop_rc_handle(rc)
            return False
        return True

    def _protocol_error(self) -> None:
        self._buf = b""
        self._paho._loop_rc_handle(paho_mqtt.MQTT_ERR_PROTOCOL)


class AiomqttConnection:
    """One subscriber connection to one broker, kept up by ``run()`` until cancelled.

    ``on_message`` is called synchronously, in arrival order, for every message of
    every filter; it must be fast and must not block (it runs on the event loop). An
    exception from it is logged (rate-limited) and the connection carries on.

    ``stats.connected`` is 1 once the broker has acknowledged the subscriptions: a
    connection that cannot receive anything does not count as connected.
    """

    def __init__(
        self,
        broker: Broker,
        filters: Sequence[tuple[str, int]],
        on_message: Callable[[Message], None],
        stats: BrokerStats,
        *,
        client_id: str | None = None,
    ) -> None:
        self.broker = broker
        self.filters = list(filters)
        self.client_id = client_id or broker.client_id or default_client_id(broker)
        self.stats = stats
        self._on_message = on_message
        self._consumer_failures = _Limiter(_REPORT_EVERY)
        self._drops = _Limiter(_REPORT_EVERY)
        self._up_since: float | None = None
        # received and not yet handed to on_message
        self._queue: collections.deque[Message] = collections.deque()
        self._max_queued = broker.max_queued_messages
        self._drain_handle: asyncio.Handle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Connect, subscribe and consume until cancelled; reconnect on any failure."""
        failures = 0  # since the last stable connection
        last_error = ""
        delay = 0.0  # (set by every failure; a session only ever ends by failing)
        self._loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    await self._session()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # Any failure (network, TLS, a library bug) ends this session only:
                    # the daemon keeps trying, and says why.
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        # aiomqtt's goodbye failed while we were being cancelled and its
                        # error replaced the CancelledError: honour the cancellation.
                        raise asyncio.CancelledError from exc
                    up_since, self._up_since = self._up_since, None
                    if up_since is not None and time.monotonic() - up_since >= _STABLE_AFTER:
                        failures = 0
                    failures += 1
                    delay = self._backoff(failures)
                    error = exc_text(exc)
                    self._failed(exc, up_since, failures, delay, repeated=error == last_error)
                    last_error = error
                await asyncio.sleep(delay)
        finally:
            self.stats.connected = 0
            self._up_since = None
            self._discard_queue()

    def _failed(
        self, exc: Exception, up_since: float | None, attempt: int, delay: float, *, repeated: bool
    ) -> None:
        """Counts a failure and logs it once: the loss of a connection, or a new reason
        for connecting to fail (the same reason again only at debug level)."""
        b = self.broker
        kind, error = _error_kind(exc), exc_text(exc)
        self.stats.last_error = error
        self.stats.errors[kind] = self.stats.errors.get(kind, 0) + 1
        if up_since is not None:
            log.warning(
                "mqtt_disconnected",
                broker=b.name,
                error=error,
                kind=kind,
                connected_seconds=round(time.monotonic() - up_since, 3),
                retry_in=round(delay, 3),
            )
            return
        (log.debug if repeated else log.warning)(
            "mqtt_connect_failed",
            broker=b.name,
            host=b.host,
            port=b.effective_port,
            error=error,
            kind=kind,
            attempt=attempt,
            retry_in=round(delay, 3),
        )

    def _backoff(self, failures: int) -> float:
        """Delay before attempt ``failures + 1``: doubling from ``initial`` up to ``max``,
        then a random 50-100 % of it so that many daemons do not reconnect in step."""
        r = self.broker.reconnect
        ceiling = min(r.max, r.initial * 2.0 ** min(failures - 1, 62))
        return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not cryptography

    async def _session(self) -> None:
        """One connection, from connect to failure. Only ever ends by raising."""
        client = _client(self.broker, self.client_id)
        paho = client._client
        # Every message paho itself reads (retained ones arriving with the SUBACK, QoS 2,
        # or all of them without _FrameReader) comes here instead of aiomqtt's queue.
        paho.on_message = self._on_paho_message
        try:
            async with client:
                client.timeout = _CALL_TIMEOUT
                try:
                    await self._subscribe(client)
                    self._connected()
                    await self._read_until_disconnected(client)
                finally:
                    # Bounds the DISCONNECT that __aexit__ sends, cancellation included.
                    client.timeout = _GOODBYE_TIMEOUT
                    self.stats.connected = 0
                    self._report_drops(force=True)
            raise aiomqtt.MqttError("Disconnected during message iteration")
        finally:
            _close_socket(client)

    async def _read_until_disconnected(self, client: aiomqtt.Client) -> None:
        """Read with ``_FrameReader`` until aiomqtt learns the connection is gone."""
        paho = client._client
        loop = asyncio.get_running_loop()
        if _FrameReader.supported(paho):
            reader = _FrameReader(paho, self._enqueue)
            # Wait for a packet boundary: paho reads a packet in pieces across wake-ups.
            while not reader.at_boundary() and not client._disconnected.done():  # noqa: ASYNC110 - paho signals no boundary
                await asyncio.sleep(0.001)
            sock = paho.socket()
            if sock is not None and not client._disconnected.done():
                fd = sock.fileno()
                loop.remove_reader(fd)  # aiomqtt's: one packet per wake-up
                loop.add_reader(fd, reader.on_readable)
                # TLS may hold decrypted bytes paho has not asked for yet: the fd will
                # not signal them, so read once now.
                loop.call_soon(reader.on_readable)
        else:
            log.warning("mqtt_fast_reader_unavailable", broker=self.broker.name)
        disconnected = client._disconnected
        await asyncio.wait([disconnected])  # never cancels the future itself
        cause = None if disconnected.cancelled() else disconnected.exception()
        raise aiomqtt.MqttError("Disconnected during message iteration") from cause

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        if not self.filters:
            return
        granted: list[int | ReasonCode] = list(await client.subscribe(self.filters))
        for (topic, qos), code in zip(self.filters, granted, strict=False):
            if _code(code) >= 0x80:
                self.stats.errors["subscribe_refused"] = (
                    self.stats.errors.get("subscribe_refused", 0) + 1
                )
                log.warning(
                    "mqtt_subscribe_refused",
                    broker=self.broker.name,
                    topic=topic,
                    qos=qos,
                    reason=str(code),
                )

    def _connected(self) -> None:
        s = self.stats
        s.connects += 1
        if s.connects > 1:
            s.reconnects += 1
        s.connected = 1
        s.last_connect = time.time()
        self._up_since = time.monotonic()
        log.info(
            "mqtt_connected",
            broker=self.broker.name,
            host=self.broker.host,
            port=self.broker.effective_port,
            protocol=self.broker.protocol,
            client_id=self.client_id,
            tls=self.broker.tls is not None,
            filters=len(self.filters),
            reconnect=s.connects > 1,
        )

    # ------------------------------------------------------------------ messages

    def _on_paho_message(
        self, _client: paho_mqtt.Client, _userdata: object, message: paho_mqtt.MQTTMessage
    ) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = message._topic.decode("utf-8", "replace")
        self._enqueue(topic, bytes(message.payload), bool(message.retain))

    def _enqueue(self, topic: str, payload: bytes, retain: bool) -> None:
        """Queue one received message, or drop and count it when the queue is full."""
        q = self._queue
        if len(q) >= self._max_queued:
            self._dropped()
            return
        # tuple.__new__ is what Message(...) does, minus a Python-level call
        q.append(_new_tuple(Message, (topic, payload, retain)))
        if self._drain_handle is None and self._loop is not None:
            self._drain_handle = self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        """Hand queued messages to ``on_message``, in order, for up to ``_DRAIN_BUDGET`` of CPU;
        comes back on the next loop iteration while any are left, so a flood never
        holds the loop for long and socket reads (and drops) carry on in between."""
        self._drain_handle = None
        q = self._queue
        on_message = self._on_message
        stats = self.stats
        clock = time.thread_time
        deadline = clock() + _DRAIN_BUDGET
        while q:
            for _ in range(min(len(q), _DRAIN_CHECK)):
                message = q.popleft()
                stats.messages_received += 1
                try:
                    on_message(message)
                except Exception as exc:  # noqa: BLE001 - a consumer bug must not drop the connection
                    self._consumer_failed(exc, message.topic)
            if clock() >= deadline:
                break
        if q and self._loop is not None:
            self._drain_handle = self._loop.call_soon(self._drain)
        if self._drops.held:
            self._report_drops()

    def _discard_queue(self) -> None:
        """On the way out: what was received and not handed on counts as dropped."""
        if self._drain_handle is not None:
            self._drain_handle.cancel()
            self._drain_handle = None
        if self._queue:
            self.stats.messages_dropped += len(self._queue)
            self._drops.held += len(self._queue)
            self._queue.clear()
        self._report_drops(force=True)

    def _consumer_failed(self, exc: Exception, topic: str) -> None:
        self.stats.consumer_errors += 1
        lim = self._consumer_failures
        if lim.ready():
            log.error(
                "mqtt_consumer_failed",
                broker=self.broker.name,
                topic=topic,
                error=repr(exc),
                suppressed=lim.held,
                exc_info=exc,
            )
            lim.held = 0
        else:
            lim.held += 1

    def _dropped(self) -> None:
        self.stats.messages_dropped += 1
        self._drops.held += 1
        self._report_drops()

    def _report_drops(self, *, force: bool = False) -> None:
        lim = self._drops
        if lim.held and (lim.ready() or force):
            log.warning(
                "mqtt_messages_dropped",
                broker=self.broker.name,
                dropped=lim.held,
                dropped_total=self.stats.messages_dropped,
                max_queued_messages=self.broker.max_queued_messages,
            )
            lim.held = 0


class AiomqttPublisher:
    """A publishing client over one broker: ``async with AiomqttPublisher(b) as p:
    await p.publish(...)``. Errors are ``aiomqtt.MqttError``; it does not reconnect.

    Its default client id has a random suffix, so it never takes over the session of
    the daemon's own connection (or of another publisher) on the same broker.
    """

    def __init__(self, broker: Broker, *, client_id: str | None = None) -> None:
        self.broker = broker
        self.client_id = client_id or f"{default_client_id(broker)}-pub-{secrets.token_hex(3)}"
        self._client: aiomqtt.Client | None = None

    async def __aenter__(self) -> Self:
        client = _client(self.broker, self.client_id)
        try:
            await client.__aenter__()
        except BaseException:
            _close_socket(client)
            raise
        client.timeout = _CALL_TIMEOUT
        self._client = client
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        client.timeout = _GOODBYE_TIMEOUT
        try:
            await client.__aexit__(exc_type, exc, tb)
        finally:
            _close_socket(client)

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False
    ) -> None:
        """Publish; with QoS 1/2, returns once the broker has acknowledged."""
        if self._client is None:
            raise RuntimeError("AiomqttPublisher is not connected (use async with)")
        await self._client.publish(topic, payload, qos=qos, retain=retain)
