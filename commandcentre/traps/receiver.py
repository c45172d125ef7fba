"""The trap receiver: a UDP socket in the daemon's event loop, and what each
datagram goes through.

Per datagram, in this order: the sender's rate limit (a dict lookup: a flood
is refused before any decoding, HMAC or decryption), the limit of all senders
together (a flood from many addresses), decoding and USM checks
(``decode``), the sender's networks, the inform's answer, then the trap table,
the counters and state gauges, one structured log event, and alerts queued for
Alertmanager. Nothing on this path awaits: a slow Alertmanager or a busy
scrape cannot delay the next datagram.

Reloads keep the socket (and so no datagram is lost) when ``listen`` is
unchanged; counters and trap states survive every reload.

A sender is known as a target (and its traps carry the target's name and labels)
by its source address: targets given by address directly, and targets given by
host name through a lookup done beside the receiver at start, on reload and
every ``_LOOKUP_EVERY`` seconds. A failed lookup keeps the addresses found before.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import structlog

from commandcentre.samples import Labels, Sample
from commandcentre.store import SampleStore
from commandcentre.traps.alertmanager import AlertmanagerPoster
from commandcentre.traps.config import TrapsConfig, parse_trap_listen
from commandcentre.traps.credentials import Credentials
from commandcentre.traps.decode import Decoder, Verdict
from commandcentre.traps.mapping import event_alerts, to_event
from commandcentre.traps.ratelimit import RateLimiter, TokenBucket
from commandcentre.traps.state import ActiveState, TrapStats
from commandcentre.traps.types import Notification, TrapEvent, oid_text

log = structlog.get_logger("commandcentre.traps")

STORE_KEY = ("traps",)
_FLUSH_DELAY = 0.2  # seconds: samples are re-rendered at most this often
_RATE_LOG_EVERY = 60.0
_RECV_BUFFER = 4 * 1024 * 1024
_INFORMS_REMEMBERED = 10_000
_INFORM_REPEAT_WINDOW = 120.0  # seconds: longer than any sender's retry schedule
_LOOKUP_EVERY = 300.0  # seconds between lookups of targets' host names
_LOOKUP_TIMEOUT = 5.0


def normalize_address(address: str) -> str:
    """``::ffff:10.0.0.5`` (a dual-stack socket's view of IPv4) -> ``10.0.0.5``."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, handle: Callable[[bytes, Any], None]) -> None:
        self._handle = handle

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._handle(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for replies to vanished informers: nothing to do
        log.debug("snmp_trap_socket_error", error=str(exc))


class TrapService:
    def __init__(
        self,
        store: SampleStore,
        decoder_factory: Callable[[Credentials, Decoder | None], Decoder] | None = None,
    ) -> None:
        self.store = store
        self.stats = TrapStats()
        self.config: TrapsConfig | None = None
        self.bound: tuple[str, int] | None = None
        self._decoder_factory = decoder_factory or (lambda c, old: Decoder(c, previous=old))
        self._decoder: Decoder | None = None
        self._limiter: RateLimiter | None = None
        self._all_sources: TokenBucket | None = None
        self._all_logged = -_RATE_LOG_EVERY
        self._poster: AlertmanagerPoster | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._flush_handle: asyncio.TimerHandle | None = None
        self._resend: asyncio.Task[None] | None = None
        self._rate_logged: dict[str, float] = {}
        self._pending: set[asyncio.Task[None]] = set()
        # informs answered lately, by sender and request ID: a retransmission (our
        # answer was lost) is answered again but not counted, logged or alerted twice
        self._informs_seen: OrderedDict[tuple[Any, str, int], float] = OrderedDict()
        # senders known from targets' host names: address -> (target, labels)
        self._looked_up: dict[str, tuple[str, Labels]] = {}
        self._lookup: asyncio.Task[None] | None = None
        self._lookup_failing: set[str] = set()  # hosts whose failure was logged
        self.running = False

    # ------------------------------------------------------------------ config

    def apply(self, config: TrapsConfig | None) -> None:
        """Take a new config. The socket is rebound only if ``listen`` changed, and
        counters, states and rate-limit buckets carry over when their settings do."""
        old = self.config
        self.config = config
        if config is None:
            if self.running:
                self._later(self._close())
            self._flush_now()
            return
        spec = config.spec
        self.stats.max_states = spec.max_states
        if old is None or old.credentials != config.credentials or self._decoder is None:
            self._decoder = self._decoder_factory(config.credentials, self._decoder)
        rl = spec.rate_limit
        if old is None or old.spec.rate_limit != rl or self._limiter is None:
            self._limiter = RateLimiter(rl.per_source, rl.burst, rl.max_sources)
            self._all_sources = TokenBucket(rl.all_sources, rl.all_sources_burst)
        if old is None or old.spec.alertmanager != spec.alertmanager:
            previous = self._poster
            if previous is not None:
                self._later(previous.stop())
            self._poster = (
                AlertmanagerPoster(spec.alertmanager, self._schedule_flush, previous)
                if spec.alertmanager is not None
                else None
            )
            if self._poster is not None and self.running:
                self._poster.start()
        if self.running and (old is None or old.spec.listen != spec.listen):
            self._later(self._rebind())
        if self.running and self._resend is None:
            self._resend = asyncio.create_task(self._resend_loop(), name="traps:resend")
        if self.running and (old is None or old.named_targets != config.named_targets):
            self._start_lookups()
        self._schedule_flush()

    def _later(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _rebind(self) -> None:
        await self._close_socket()
        try:
            await self._bind()
        except OSError as e:
            assert self.config is not None
            log.error("snmp_trap_listen_failed", listen=self.config.spec.listen, error=e.strerror)
            self._schedule_flush()  # receiver_up 0: alert SnmpTrapReceiverDown

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind the socket (raises ``OSError`` if it cannot) and start the posters."""
        self.running = True
        if self.config is None:
            return
        await self._bind()
        if self._poster is not None:
            self._poster.start()
        self._resend = asyncio.create_task(self._resend_loop(), name="traps:resend")
        self._start_lookups()

    async def stop(self) -> None:
        self.running = False
        for task in list(self._pending):
            with contextlib.suppress(Exception):
                await task
        await self._close()

    async def _close(self) -> None:
        await self._close_socket()
        await self._stop_lookups()
        if self._resend is not None:
            self._resend.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resend
            self._resend = None
        if self._poster is not None:
            await self._poster.stop()
            if self.config is None:
                self._poster = None
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None

    async def _bind(self) -> None:
        assert self.config is not None
        host, port = parse_trap_listen(self.config.spec.listen)
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECV_BUFFER)
            sock.bind((host, port))
        except OSError:
            sock.close()
            self.stats.receiver_up = 0
            raise
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self._datagram), sock=sock
        )
        self._transport = transport
        name = sock.getsockname()
        self.bound = (str(name[0]), int(name[1]))
        self.stats.receiver_up = 1
        self._schedule_flush()
        log.info("snmp_trap_listening", listen=self.config.spec.listen, port=self.bound[1])

    async def _close_socket(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
            self.bound = None
        self.stats.receiver_up = 0

    # ------------------------------------------------------------------ datagrams

    def _datagram(self, data: bytes, addr: Any) -> None:
        config, limiter, decoder = self.config, self._limiter, self._decoder
        all_sources = self._all_sources
        if config is None or limiter is None or decoder is None or all_sources is None:
            return
        source = normalize_address(str(addr[0]))
        if not limiter.allow(source):
            self.stats.drop("rate_limited")
            self._log_rate_limited(source)
            self._schedule_flush()
            return
        if not all_sources.take():
            self.stats.drop("rate_limited_all_sources")
            self._log_all_sources_limited(source)
            self._schedule_flush()
            return
        try:
            verdict: Verdict = decoder.decode(data)
        except Exception as e:  # noqa: BLE001 - a codec bug must not stop the receiver
            log.error("snmp_trap_decode_error", source=source, error=f"{type(e).__name__}: {e}")
            verdict = Verdict(drop="malformed")
        if verdict.report is not None:
            self._send(verdict.report, addr)
        n = verdict.notification
        if verdict.discovery:
            return
        if verdict.drop is not None or n is None:
            reason = verdict.drop or "malformed"
            self.stats.drop(reason)
            log.debug("snmp_trap_dropped", source=source, reason=reason)
            self._schedule_flush()
            return
        if not self._allowed(config, n.principal, source):
            self.stats.drop("source_not_allowed")
            log.debug("snmp_trap_dropped", source=source, reason="source_not_allowed")
            self._schedule_flush()
            return
        if verdict.reply is not None:
            self._send(verdict.reply, addr)
            self.stats.informs_answered += 1
            if self._repeated_inform(n, addr):
                return
        self.handle(n, source)

    def _repeated_inform(self, n: Notification, addr: Any) -> bool:
        if n.request_id is None:
            return False
        now = time.monotonic()
        while self._informs_seen and (
            len(self._informs_seen) > _INFORMS_REMEMBERED
            or next(iter(self._informs_seen.values())) < now - _INFORM_REPEAT_WINDOW
        ):
            self._informs_seen.popitem(last=False)
        key = (tuple(addr[:2]), n.principal, n.request_id)
        if key in self._informs_seen:
            return True
        self._informs_seen[key] = now
        return False

    def handle(self, n: Notification, source: str) -> TrapEvent:
        """An accepted notification: count, log, move states, queue alerts."""
        assert self.config is not None
        target, target_labels = self._target(source)
        event = to_event(n, source, self.config.table, target)
        self.stats.record(event, n.version)
        log.info(
            "snmp_trap",
            source=source,
            target=target,
            trap=event.name,
            oid=oid_text(event.oid),
            severity=event.severity,
            version=n.version,
            auth=n.principal,
            inform=n.inform,
            subject=event.subject_text or None,
            summary=event.summary,
            varbinds={oid_text(vb.oid): vb.text() for vb in n.varbinds},
        )
        if self._poster is not None and self.config.spec.alertmanager is not None:
            am = self.config.spec.alertmanager
            self._poster.submit(
                event_alerts(
                    event,
                    datetime.now(UTC),
                    target=target,
                    target_labels=target_labels,
                    resolve_timeout=am.resolve_timeout,
                    active_for=4 * am.resend_interval,
                    generator_url=am.generator_url,
                )
            )
        self._schedule_flush()
        return event

    @staticmethod
    def _allowed(config: TrapsConfig, principal: str, source: str) -> bool:
        return any(a.auth == principal and a.allows(source) for a in config.spec.accept)

    def _send(self, reply: bytes, addr: Any) -> None:
        if self._transport is not None:
            self._transport.sendto(reply, addr)

    def _log_rate_limited(self, source: str) -> None:
        now = time.monotonic()
        if now - self._rate_logged.get(source, -_RATE_LOG_EVERY) >= _RATE_LOG_EVERY:
            if len(self._rate_logged) > 1000:
                self._rate_logged.clear()
            self._rate_logged[source] = now
            log.warning("snmp_trap_rate_limited", source=source)

    def _log_all_sources_limited(self, source: str) -> None:
        now = time.monotonic()
        if now - self._all_logged >= _RATE_LOG_EVERY:
            self._all_logged = now
            assert self._all_sources is not None
            log.warning(
                "snmp_trap_rate_limited_all_sources",
                per_second=self._all_sources.rate,
                burst=self._all_sources.burst,
                example_source=source,
            )

    # ------------------------------------------------------------------ alerts in effect

    async def _resend_loop(self) -> None:
        """Re-post alerts of paired traps still in effect, so Alertmanager keeps them."""
        while True:
            am = self.config.spec.alertmanager if self.config is not None else None
            await asyncio.sleep(am.resend_interval if am is not None else 60.0)
            if am is None or self._poster is None or self.config is None:
                continue
            now = datetime.now(UTC)
            for state in self.stats.active():
                self._poster.submit(self._alerts_for(state, now))

    def _alerts_for(self, state: ActiveState, now: datetime) -> list[dict[str, Any]]:
        assert self.config is not None
        assert self.config.spec.alertmanager is not None
        am = self.config.spec.alertmanager
        target, target_labels = self._target(state.event.source)
        alerts = event_alerts(
            state.event,
            now,
            target=target,
            target_labels=target_labels,
            resolve_timeout=am.resolve_timeout,
            active_for=4 * am.resend_interval,
            generator_url=am.generator_url,
        )
        for a in alerts:
            a["startsAt"] = (
                datetime.fromtimestamp(state.since, UTC).isoformat().replace("+00:00", "Z")
            )
        return alerts

    # ------------------------------------------------------------------ senders by name

    def _target(self, source: str) -> tuple[str | None, Labels]:
        """The target a sender is, by address: literal addresses first."""
        if self.config is None:
            return None, ()
        found = self.config.targets.get(source) or self._looked_up.get(source)
        return found if found is not None else (None, ())

    def _start_lookups(self) -> None:
        old = self._lookup
        if old is not None:
            old.cancel()
        named = self.config.named_targets if self.config is not None else ()
        # until the new lookups end, keep what is known of the targets still named
        kept = {(name, labels) for name, _, labels in named}
        self._looked_up = {a: t for a, t in self._looked_up.items() if t in kept}
        if not named:
            self._lookup = None
            return
        self._lookup = asyncio.get_running_loop().create_task(
            self._lookup_loop(named), name="traps:lookup"
        )

    async def _stop_lookups(self) -> None:
        task, self._lookup = self._lookup, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _lookup_loop(self, named: tuple[tuple[str, str, Labels], ...]) -> None:
        while True:
            found = await self._look_up(named)
            if self.config is not None and self.config.named_targets == named:
                self._looked_up = found
                self._schedule_flush()  # the senders' series gain their target labels
            await asyncio.sleep(_LOOKUP_EVERY)

    async def _look_up(
        self, named: tuple[tuple[str, str, Labels], ...]
    ) -> dict[str, tuple[str, Labels]]:
        """Every address of every named target, in config order (the first target
        named for an address wins). A host that fails keeps its earlier addresses."""
        loop = asyncio.get_running_loop()
        found: dict[str, tuple[str, Labels]] = {}
        for name, host, labels in named:
            try:
                async with asyncio.timeout(_LOOKUP_TIMEOUT):
                    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
                addresses = {normalize_address(str(info[4][0])) for info in infos}
            except (OSError, TimeoutError, UnicodeError) as e:
                self.stats.sender_lookup_errors += 1
                if host not in self._lookup_failing:
                    self._lookup_failing.add(host)
                    log.warning(
                        "snmp_trap_sender_lookup_failed",
                        target=name,
                        host=host,
                        error=str(e) or type(e).__name__,
                    )
                addresses = {a for a, (t, _) in self._looked_up.items() if t == name}
            else:
                if host in self._lookup_failing:
                    self._lookup_failing.discard(host)
                    log.info("snmp_trap_sender_lookup_recovered", target=name, host=host)
            for address in sorted(addresses):
                found.setdefault(address, (name, labels))
        return found

    # ------------------------------------------------------------------ metrics

    def _labels_for(self, source: str) -> Labels:
        target, labels = self._target(source)
        if target is None:
            return ()
        # a target label named like one of the trap metrics' own labels would clash
        own = {"source", "trap", "version", "subject", "severity", "reason", "url"}
        return (("target", target), *((k, v) for k, v in labels if k not in own))

    def samples(self) -> list[Sample]:
        out = self.stats.samples(self._labels_for)
        if self._poster is not None:
            out += self._poster.samples()
        return out

    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._flush_now()
                return
            self._flush_handle = loop.call_later(_FLUSH_DELAY, self._flush_now)

    def _flush_now(self) -> None:
        self._flush_handle = None
        if self.config is None:
            self.store.drop(STORE_KEY)
        else:
            self.store.put(STORE_KEY, self.samples())
