"""Floods against the real daemon process: a million distinct MQTT topics, a burst
far above the ingest rate, and 20 concurrent scrapers at 100k series.

Checked through self-metrics and /proc: the series caps hold exactly and every
refusal is counted; messages the daemon could not keep up with are counted as
dropped (received = processed + dropped); memory stays within the bound README
documents (``MEMORY_BOUND``); every scrape is complete and parses; ``/-/healthy``
keeps answering within the test's deadline throughout; SIGTERM in the middle of a
flood exits 0 within the unit's stop timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.faults.helpers import (
    REPO,
    DaemonProcess,
    Metrics,
    bounded,
    parse_metrics,
    rss_bytes,
    scrape,
    value,
    wait_for_metrics,
    write_yaml,
)
from tests.faults.raw_mqtt import flood
from tests.integration.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

TOPICS = 1_000_000
SUB_CAP = 60_000  # max_series of subscription "a"
TOTAL_CAP = 100_000  # mqtt.max_series_total: the 100k series the scrapers read
MEMORY_BOUND = 400 * 2**20  # README "Limits": RSS at 100k MQTT series under these floods
HEALTHY_DEADLINE = 10.0  # seconds /-/healthy may take to answer during a flood
SCRAPERS = 20


def test_the_memory_bound_is_the_one_readme_documents() -> None:
    readme = (REPO / "README.md").read_text()
    assert f"RSS stays under **{MEMORY_BOUND // 2**20} MiB**" in " ".join(readme.split())


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    # the broker queues for a slow subscriber instead of dropping: drops are the daemon's
    with Mosquitto(max_queued_messages=2_000_000) as b:
        yield b


class Health:
    """GET /-/healthy every 200 ms; record the slowest answer and any failure."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base
        self.slowest = 0.0
        self.checks = 0
        self.failures: list[str] = []

    async def run(self) -> None:
        while True:
            t0 = time.monotonic()
            try:
                async with self.session.get(
                    self.base + "/-/healthy",
                    timeout=aiohttp.ClientTimeout(total=HEALTHY_DEADLINE),
                ) as r:
                    await r.read()
                    if r.status != 200:
                        self.failures.append(f"status {r.status}")
            except (aiohttp.ClientError, TimeoutError) as e:
                self.failures.append(f"{type(e).__name__} after {time.monotonic() - t0:.1f}s")
            self.slowest = max(self.slowest, time.monotonic() - t0)
            self.checks += 1
            await asyncio.sleep(0.2)


class Peak:
    """The daemon's peak RSS, sampled every 100 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.rss = 0

    async def run(self) -> None:
        while True:
            with contextlib.suppress(OSError):
                self.rss = max(self.rss, rss_bytes(self.pid))
            await asyncio.sleep(0.1)


def mqtt(m: Metrics, name: str, **labels: str) -> float:
    v = value(m, name, **labels)
    assert v is not None, (name, labels)
    return v


def flood_config(tmp_path: Path, broker: Mosquitto, prefix: str, max_queued: int) -> Path:
    """Two number subscriptions, ``a`` and ``b``, under ``prefix``; the caps above."""
    return write_yaml(
        tmp_path / "cc.yml",
        {
            "mqtt": {
                "max_series_total": TOTAL_CAP,
                "brokers": [
                    {
                        "name": "main",
                        "host": broker.host,
                        "port": broker.port,
                        "max_queued_messages": max_queued,
                    }
                ],
                "subscriptions": [
                    {
                        "name": sub,
                        "profile": "number",
                        "topic": f"{prefix}/{sub}/" + "{device}",
                        "metric": "flood",
                        "max_series": SUB_CAP,
                    }
                    for sub in ("a", "b")
                ],
            }
        },
    )


async def started(session: aiohttp.ClientSession, daemon: DaemonProcess) -> None:
    await daemon.start(session)
    await wait_for_metrics(
        session,
        daemon.base,
        lambda m: value(m, "commandcentre_mqtt_connected", broker="main") == 1,
        "connected",
    )
    await asyncio.sleep(0.5)  # subscribed


@bounded(150)
async def test_a_million_topics_hold_the_caps_and_count_refusals_and_drops(
    broker: Mosquitto, tmp_path: Path
) -> None:
    prefix = f"cc-flood-{uuid.uuid4().hex[:8]}"
    config = flood_config(tmp_path, broker, prefix, max_queued=10_000)
    daemon = DaemonProcess(config, tmp_path)
    tasks: list[asyncio.Task[None]] = []
    try:
        async with aiohttp.ClientSession() as session:
            await started(session, daemon)
            health = Health(session, daemon.base)
            peak = Peak(daemon.pid)
            tasks = [asyncio.create_task(health.run()), asyncio.create_task(peak.run())]

            # a million distinct topics, half per subscription, as fast as possible
            t0 = time.monotonic()
            sent = await asyncio.to_thread(
                flood,
                broker.host,
                broker.port,
                ((f"{prefix}/{'ab'[i % 2]}/d{i}", b"1") for i in range(TOPICS)),
                f"{prefix}-flooder",
            )
            assert sent == TOPICS

            def settled(m: Metrics) -> bool:
                received = mqtt(m, "commandcentre_mqtt_messages_received_total", broker="main")
                dropped = mqtt(m, "commandcentre_mqtt_messages_dropped_total", broker="main")
                return received + dropped >= TOPICS

            m = await wait_for_metrics(
                session, daemon.base, settled, "the flood to be taken", limit=150, every=1
            )
            await asyncio.sleep(1.0)  # the last queued messages processed
            m = await scrape(session, daemon.base, limit=30)
            took = time.monotonic() - t0
            received = mqtt(m, "commandcentre_mqtt_messages_received_total", broker="main")
            dropped = mqtt(m, "commandcentre_mqtt_messages_dropped_total", broker="main")
            processed = {
                s: mqtt(m, "commandcentre_mqtt_messages_total", subscription=s) for s in "ab"
            }
            series = {s: mqtt(m, "commandcentre_mqtt_series", subscription=s) for s in "ab"}
            refused = {
                s: mqtt(m, "commandcentre_mqtt_series_refused_total", subscription=s) for s in "ab"
            }
            print(
                f"\nflood: {TOPICS} distinct topics in {took:.1f}s; received {received:.0f}, "
                f"dropped {dropped:.0f}, processed {processed}, series {series}, "
                f"refused {refused}, peak RSS {peak.rss / 2**20:.0f} MiB"
            )
            # every message accounted for: processed or dropped (the broker dropped none)
            assert received + dropped == TOPICS
            assert dropped > 0, "the flood never outran the daemon: no drop path exercised"
            assert sum(processed.values()) == received
            # the caps hold exactly, and every refusal is counted
            assert all(series[s] <= SUB_CAP for s in "ab"), series
            assert sum(series.values()) == TOTAL_CAP, series
            for s in "ab":
                assert refused[s] == processed[s] - series[s], (s, refused, processed, series)
            assert mqtt(m, "commandcentre_series") >= TOTAL_CAP

            assert health.failures == [], health.failures[:5]
            assert health.checks > 0
            assert peak.rss <= MEMORY_BOUND, peak.rss

            # a burst far above the ingest rate on existing series, SIGTERM in the middle
            burst = asyncio.create_task(
                asyncio.to_thread(
                    flood,
                    broker.host,
                    broker.port,
                    ((f"{prefix}/a/d{i % 1000}", b"2") for i in range(300_000)),
                    f"{prefix}-burst",
                )
            )
            await wait_for_metrics(
                session,
                daemon.base,
                lambda m: (
                    mqtt(m, "commandcentre_mqtt_messages_received_total", broker="main") > received
                ),
                "the burst to arrive",
                limit=60,
            )
            took = await daemon.stop()
            await burst
            print(f"SIGTERM during a burst: clean exit in {took:.2f}s")
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        daemon.close()


@bounded(150)
async def test_twenty_scrapers_at_100k_series_stay_within_the_memory_bound(
    broker: Mosquitto, tmp_path: Path
) -> None:
    prefix = f"cc-scrape-{uuid.uuid4().hex[:8]}"
    # a queue large enough that all 100k messages are processed: exactly 100k series
    daemon = DaemonProcess(flood_config(tmp_path, broker, prefix, max_queued=200_000), tmp_path)
    tasks: list[asyncio.Task[None]] = []
    try:
        async with aiohttp.ClientSession() as session:
            await started(session, daemon)
            await asyncio.to_thread(
                flood,
                broker.host,
                broker.port,
                ((f"{prefix}/{'ab'[i % 2]}/d{i}", b"1") for i in range(TOTAL_CAP)),
                f"{prefix}-flooder",
            )
            await wait_for_metrics(
                session,
                daemon.base,
                lambda m: (
                    sum(mqtt(m, "commandcentre_mqtt_series", subscription=s) for s in "ab")
                    == TOTAL_CAP
                ),
                "100k series",
                limit=60,
                every=1,
            )
            health = Health(session, daemon.base)
            peak = Peak(daemon.pid)
            tasks = [asyncio.create_task(health.run()), asyncio.create_task(peak.run())]

            async def one_scrape() -> str:
                async with session.get(
                    daemon.base + "/metrics", timeout=aiohttp.ClientTimeout(total=120)
                ) as r:
                    assert r.status == 200
                    return await r.text()

            def flood_lines(text: str) -> list[str]:
                return [
                    ln for ln in text.splitlines() if ln.startswith("commandcentre_sensor_flood{")
                ]

            t0 = time.monotonic()
            bodies = await asyncio.gather(*(one_scrape() for _ in range(SCRAPERS)))
            print(
                f"{SCRAPERS} concurrent scrapes of {TOTAL_CAP} series: {time.monotonic() - t0:.1f}s"
                f", all complete; /-/healthy: {health.checks} checks, slowest "
                f"{health.slowest:.2f}s; peak RSS {peak.rss / 2**20:.0f} MiB "
                f"(bound {MEMORY_BOUND / 2**20:.0f} MiB)"
            )
            # complete: each has every series, and the same ones (nothing was published
            # meanwhile); parseable: the whole text parses (one body in full, since the
            # series part of all of them is identical)
            first = flood_lines(bodies[0])
            assert len(first) == TOTAL_CAP
            assert all(flood_lines(b) == first for b in bodies[1:])
            assert all(b.endswith("\n") for b in bodies)
            parsed = await asyncio.to_thread(parse_metrics, bodies[-1])
            assert sum(1 for n, _ in parsed if n == "commandcentre_sensor_flood") == TOTAL_CAP
            assert health.failures == [], health.failures[:5]
            assert health.checks > 0
            assert peak.rss <= MEMORY_BOUND, peak.rss

            took = await daemon.stop()
            print(f"SIGTERM after the scrapes: clean exit in {took:.2f}s")
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        daemon.close()
