"""The broker connection: the only module that imports aiomqtt (and, through it, paho).

``AiomqttConnection.run()`` is the whole life of one subscriber connection: connect,
subscribe every filter, hand each message to ``on_message`` in arrival order, and on
any failure wait (exponential backoff with jitter) and start again, re-subscribing.
It writes what it sees into a ``BrokerStats`` that the self-metrics read.

Memory stays bounded under a burst: aiomqtt's incoming queue is capped at
``Broker.max_queued_messages`` and what does not fit is discarded by our queue class
(counted in ``stats.messages_dropped``, logged as one summary at most every 10 s)
instead of by aiomqtt, which would log one WARNING per discarded message.

``AiomqttPublisher`` is a plain publishing client for the demo's simulated sensors
and for the tests.
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

import aiomqtt
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


def _client(
    broker: Broker,
    identifier: str,
    *,
    max_queued: int | None = None,
    queue_type: type[asyncio.Queue[aiomqtt.Message]] | None = None,
) -> aiomqtt.Client:
    tls = broker.tls
    return aiomqtt.Client(
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
        max_queued_incoming_messages=max_queued,
        queue_type=queue_type,
        tls_context=tls_context(tls) if tls is not None else None,
        # paho checks hostnames itself unless told not to; the context does it already.
        tls_insecure=True if tls is not None and tls.insecure_skip_verify else None,
        # Without it a QoS 0 publish after a QoS 1 one waits ~20 ms for Nagle.
        socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
    )


def _close_socket(client: aiomqtt.Client) -> None:
    """Close the client's socket if it is still open (a no-op after a normal exit).

    aiomqtt leaves the socket open, with its reader registered on the loop, when
    ``__aenter__`` is cancelled while waiting for CONNACK, and when its DISCONNECT
    times out; it has no public way to abort. paho's ``_sock_close`` unregisters the
    socket from the loop (through aiomqtt's callbacks) and closes it.
    """
    client._client._sock_close()


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
        self._queue_type = self._dropping_queue_type()

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Connect, subscribe and consume until cancelled; reconnect on any failure."""
        failures = 0  # since the last stable connection
        last_error = ""
        delay = 0.0  # (set by every failure; a session only ever ends by failing)
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
        client = _client(
            self.broker,
            self.client_id,
            max_queued=self.broker.max_queued_messages,
            queue_type=self._queue_type,
        )
        try:
            async with client:
                client.timeout = _CALL_TIMEOUT
                try:
                    await self._subscribe(client)
                    self._connected()
                    async for message in client.messages:
                        self._deliver(message)
                finally:
                    # Bounds the DISCONNECT that __aexit__ sends, cancellation included.
                    client.timeout = _GOODBYE_TIMEOUT
                    self.stats.connected = 0
                    self._report_drops(force=True)
            raise aiomqtt.MqttError("Disconnected during message iteration")
        finally:
            _close_socket(client)

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

    def _deliver(self, message: aiomqtt.Message) -> None:
        self.stats.messages_received += 1
        payload = message.payload
        if not isinstance(payload, bytes):  # paho always gives bytes; the type says more
            payload = bytes(str(payload), "utf-8") if payload is not None else b""
        msg = Message(message.topic.value, payload, bool(message.retain))
        try:
            self._on_message(msg)
        except Exception as exc:  # noqa: BLE001 - a consumer bug must not drop the connection
            self._consumer_failed(exc, msg.topic)
        if self._drops.held:
            self._report_drops()

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

    def _dropping_queue_type(self) -> type[asyncio.Queue[aiomqtt.Message]]:
        """aiomqtt's queue class, bound to this connection: a full queue discards the
        message and counts it here, so aiomqtt never sees ``QueueFull`` (and never logs
        its WARNING per discarded message)."""
        on_drop = self._dropped

        class DroppingQueue(asyncio.Queue[aiomqtt.Message]):
            def put_nowait(self, item: aiomqtt.Message) -> None:
                if self.full():
                    on_drop()
                    return
                super().put_nowait(item)

        return DroppingQueue


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
