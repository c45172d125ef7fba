"""The MQTT side of the daemon: one connection task per broker, messages dispatched to the
subscriptions whose topics they match, readings into the series cache.

Reloads diff brokers: a broker whose settings and subscribed filters are
unchanged keeps its connection (no reconnect, no lost messages); others are
restarted. Subscriptions are swapped in place, so a changed mapping applies
to the next message.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from commandcentre.mqtt.cache import SeriesCache
from commandcentre.mqtt.config import Broker, MqttSpec
from commandcentre.mqtt.mapping import CompiledSubscription, Routed, compile_subscription
from commandcentre.mqtt.types import BrokerStats, Message
from commandcentre.samples import Sample
from commandcentre.store import SampleStore

log = structlog.get_logger("commandcentre.mqtt")

# Topics whose routing is remembered per broker (~0.4 kB each); beyond it the memo
# starts over, which costs one match per topic again. Longer topics are routed
# every time, so the memo stays under ~20 MB whatever publishers send.
ROUTE_CACHE_TOPICS = 32_768
ROUTE_CACHE_TOPIC_CHARS = 256


class Connection(Protocol):
    """What the service needs from a broker connection (``AiomqttConnection``)."""

    async def run(self) -> None: ...


ConnectionFactory = Callable[
    [Broker, list[tuple[str, int]], Callable[[Message], None], BrokerStats], Connection
]


def _aiomqtt_connection(
    broker: Broker,
    filters: list[tuple[str, int]],
    on_message: Callable[[Message], None],
    stats: BrokerStats,
) -> Connection:
    # Imported here: only a daemon that has brokers configured loads aiomqtt.
    from commandcentre.mqtt.aiomqtt_client import AiomqttConnection

    # client id: the broker's, else commandcentre-<hostname>-<broker name>
    return AiomqttConnection(broker, filters, on_message, stats)


@dataclass
class _BrokerRun:
    broker: Broker
    filters: list[tuple[str, int]]
    stats: BrokerStats
    task: asyncio.Task[None] | None = None
    unmatched: int = 0


class MqttService:
    def __init__(self, store: SampleStore, factory: ConnectionFactory | None = None) -> None:
        self.cache = SeriesCache(store)
        self._factory = factory or _aiomqtt_connection
        self._brokers: dict[str, _BrokerRun] = {}
        self._subs_by_broker: dict[str, list[CompiledSubscription]] = {}
        self._expiry: asyncio.Task[None] | None = None
        self.running = False

    def apply(self, spec: MqttSpec) -> None:
        compiled = [(spec.broker_of(s).name, compile_subscription(s)) for s in spec.subscriptions]
        by_broker: dict[str, list[CompiledSubscription]] = {}
        for broker_name, c in compiled:
            by_broker.setdefault(broker_name, []).append(c)
        self._subs_by_broker = by_broker
        self.cache.configure(spec.subscriptions, spec.max_series_total)

        wanted = {b.name: b for b in spec.brokers if b.name in by_broker}
        for name in [n for n in self._brokers if n not in wanted]:
            self._stop_broker(name)
            del self._brokers[name]
        for name, broker in wanted.items():
            filters = sorted({f for c in by_broker[name] for f in c.filters})
            run = self._brokers.get(name)
            if run is not None and run.broker == broker and run.filters == filters:
                continue
            if run is not None:
                self._stop_broker(name)
            stats = run.stats if run is not None else BrokerStats()
            self._brokers[name] = _BrokerRun(broker, filters, stats)
            if self.running:
                self._start_broker(name)

    def _on_message(self, broker_name: str) -> Callable[[Message], None]:
        # topic -> the subscriptions mapping it, with their routes: sensors publish on
        # the same few topics over and over, so each topic is matched once (per config)
        routes_of: dict[str, tuple[tuple[CompiledSubscription, Routed], ...]] = {}
        subs = self._subs_by_broker.get(broker_name, [])
        ingest = self.cache.ingest

        def handle(message: Message) -> None:
            nonlocal subs
            if subs is not self._subs_by_broker.get(broker_name, subs):
                subs = self._subs_by_broker.get(broker_name, [])  # reloaded
                routes_of.clear()
            topic = message.topic
            routes = routes_of.get(topic)
            if routes is None:
                routes = tuple((c, r) for c in subs if (r := c.route(topic)) is not None)
                if len(topic) <= ROUTE_CACHE_TOPIC_CHARS:
                    if len(routes_of) >= ROUTE_CACHE_TOPICS:
                        routes_of.clear()
                    routes_of[topic] = routes
            if not routes:
                # e.g. a retained message on an overlapping filter: not an error, but visible
                self._brokers[broker_name].unmatched += 1
                return
            for c, routed in routes:
                ingest(c.name, c.parse_routed(message, routed), topic)

        return handle

    def _start_broker(self, name: str) -> None:
        run = self._brokers[name]
        conn = self._factory(run.broker, run.filters, self._on_message(name), run.stats)
        run.task = asyncio.create_task(conn.run(), name=f"mqtt:{name}")

    def _stop_broker(self, name: str) -> None:
        run = self._brokers[name]
        if run.task is not None:
            run.task.cancel()
            run.task = None
        run.stats.connected = 0

    def start(self) -> None:
        self.running = True
        for name in self._brokers:
            self._start_broker(name)
        self._expiry = asyncio.create_task(self._expire_loop(), name="mqtt:expiry")

    async def stop(self) -> None:
        self.running = False
        tasks = [r.task for r in self._brokers.values() if r.task is not None]
        if self._expiry is not None:
            tasks.append(self._expiry)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        for r in self._brokers.values():
            r.task = None
            r.stats.connected = 0

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cache.next_expiry_check())
            n = 0
            for n in self.cache.expire_steps():  # noqa: B007 - the running total
                await asyncio.sleep(0)  # let messages and scrapes in between slices
            if n:
                log.info("mqtt_series_expired", series=n)

    def self_samples(self) -> list[Sample]:
        out = self.cache.self_samples()
        for name, run in self._brokers.items():
            s = run.stats
            lbl = (("broker", name),)
            out += [
                Sample(
                    "commandcentre_mqtt_connected",
                    lbl,
                    s.connected,
                    "gauge",
                    "1 while connected to the broker.",
                ),
                Sample(
                    "commandcentre_mqtt_reconnects_total",
                    lbl,
                    s.reconnects,
                    "counter",
                    "Connections made after the first one.",
                ),
                Sample(
                    "commandcentre_mqtt_last_connect_timestamp_seconds",
                    lbl,
                    s.last_connect,
                    "gauge",
                    "Unix time of the last successful connection.",
                ),
                Sample(
                    "commandcentre_mqtt_messages_received_total",
                    lbl,
                    s.messages_received,
                    "counter",
                    "Messages received from the broker.",
                ),
                Sample(
                    "commandcentre_mqtt_messages_dropped_total",
                    lbl,
                    s.messages_dropped,
                    "counter",
                    "Messages dropped because the incoming queue was full.",
                ),
                Sample(
                    "commandcentre_mqtt_consumer_errors_total",
                    lbl,
                    s.consumer_errors,
                    "counter",
                    "Messages whose processing failed with an error (a bug; logged).",
                ),
                Sample(
                    "commandcentre_mqtt_messages_unmatched_total",
                    lbl,
                    run.unmatched,
                    "counter",
                    "Messages whose topic matched no subscription's template.",
                ),
            ]
        return out

    def broker_states(self) -> list[tuple[str, BrokerStats]]:
        return [(name, run.stats) for name, run in self._brokers.items()]
