"""The daemon's MQTT side end to end against a real Mosquitto: messages in, samples out.

Each test uses its own topic prefix, so runs never collide.
"""

from __future__ import annotations

import asyncio
import gzip
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from commandcentre.daemon import Daemon
from commandcentre.mqtt.aiomqtt_client import AiomqttPublisher
from commandcentre.mqtt.config import Broker
from tests.integration.daemons import running_daemon
from tests.integration.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

Metrics = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    with Mosquitto() as broker:
        yield broker


@pytest.fixture
def prefix() -> str:
    return f"cc-test-{uuid.uuid4().hex[:8]}"


def write_config(
    path: Path, broker: Mosquitto, subscriptions: list[dict[str, Any]], **b: Any
) -> Path:
    cfg = {
        "http": {"listen": "127.0.0.1:0"},
        "mqtt": {
            "brokers": [
                {
                    "name": "main",
                    "host": broker.host,
                    "port": broker.port,
                    "reconnect": {"initial": "200ms", "max": "1s"},
                    **b,
                }
            ],
            "subscriptions": subscriptions,
        },
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


class Running:
    def __init__(self, daemon: Daemon, base: str, session: aiohttp.ClientSession) -> None:
        self.daemon = daemon
        self.base = base
        self.session = session

    async def metrics(self) -> Metrics:
        async with self.session.get(self.base + "/metrics") as r:
            assert r.status == 200
            text = await r.text()
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
        }

    async def wait_for(
        self, check: Callable[[Metrics], bool], what: str, limit: float = 10
    ) -> Metrics:
        deadline = time.monotonic() + limit
        while True:
            m = await self.metrics()
            if check(m):
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.05)


def value(m: Metrics, name: str, **labels: str) -> float | None:
    want = set(labels.items())
    found = [v for (n, lbl), v in m.items() if n == name and want <= lbl]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


@pytest.fixture
async def start() -> AsyncIterator[Callable[[Path], Any]]:
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())

        async def go(path: Path) -> Running:
            daemon, base = await stack.enter_async_context(running_daemon(path))
            return Running(daemon, base, session)

        yield go


async def publish(broker: Mosquitto, *msgs: tuple[str, bytes, bool], qos: int = 0) -> None:
    b = Broker(name="test-publisher", host=broker.host, port=broker.port)
    async with AiomqttPublisher(b) as pub:
        for topic, payload, retain in msgs:
            await pub.publish(topic, payload, qos=qos, retain=retain)


async def test_messages_become_samples_with_availability_and_bad_payloads_counted(
    tmp_path: Path, mosquitto: Mosquitto, prefix: str, start: Callable[[Path], Any]
) -> None:
    z2m = f"{prefix}-z2m"
    # retained before the daemon exists: it must see it on subscribing
    await publish(mosquitto, (f"{z2m}/rack-1/inlet/availability", b'{"state":"online"}', True))
    cfg = write_config(
        tmp_path / "c.yml",
        mosquitto,
        [
            {
                "name": "z2m",
                "profile": "zigbee2mqtt",
                "topic": z2m,
                "labels": {"room": "server-room"},
            },
            {
                "name": "plain",
                "profile": "number",
                "topic": f"{prefix}/{{room}}/temperature",
                "metric": "temperature_celsius",
            },
        ],
    )
    d = await start(cfg)
    await d.wait_for(
        lambda m: value(m, "commandcentre_mqtt_connected", broker="main") == 1, "connected"
    )
    await publish(
        mosquitto,
        (
            f"{z2m}/rack-1/inlet",
            b'{"temperature":22.5,"humidity":41,"contact":true,"battery":97}',
            False,
        ),
        # truncated JSON (a plain value there would be attribute-mode output, ignored)
        (f"{z2m}/rack-1/inlet", b'{"temperature": 22.5, "humid', False),
        (f"{prefix}/office-2/temperature", b"19.5", False),
        (f"{prefix}/office-3/temperature", b"nan", False),
        qos=1,
    )
    m = await d.wait_for(
        lambda m: (
            value(m, "commandcentre_mqtt_messages_total", subscription="plain") == 2
            and value(m, "commandcentre_mqtt_messages_total", subscription="z2m") == 3
        ),
        "all messages processed",
    )
    dev = {"device": "rack-1/inlet", "room": "server-room"}
    assert value(m, "commandcentre_sensor_temperature_celsius", **dev) == 22.5
    assert value(m, "commandcentre_sensor_humidity_ratio", **dev) == 0.41
    assert value(m, "commandcentre_sensor_door_open", **dev) == 0  # contact true = closed
    assert value(m, "commandcentre_sensor_up", **dev) == 1  # from the retained message
    assert value(m, "commandcentre_sensor_temperature_celsius", room="office-2") == 19.5
    assert value(m, "commandcentre_sensor_temperature_celsius", room="office-3") is None
    assert (
        value(m, "commandcentre_mqtt_bad_payloads_total", subscription="z2m", reason="not_json")
        == 1
    )
    assert (
        value(m, "commandcentre_mqtt_bad_payloads_total", subscription="plain", reason="not_finite")
        == 1
    )
    seen = value(
        m,
        "commandcentre_mqtt_last_seen_timestamp_seconds",
        metric="commandcentre_sensor_temperature_celsius",
        **dev,
    )
    assert seen is not None
    assert abs(seen - time.time()) < 30


async def test_series_expire_after_ttl(
    tmp_path: Path, mosquitto: Mosquitto, prefix: str, start: Callable[[Path], Any]
) -> None:
    cfg = write_config(
        tmp_path / "c.yml",
        mosquitto,
        [
            {
                "name": "quick",
                "profile": "number",
                "topic": f"{prefix}/{{device}}",
                "metric": "power_watts",
                "ttl": "1s",
            }
        ],
    )
    d = await start(cfg)
    await d.wait_for(
        lambda m: value(m, "commandcentre_mqtt_connected", broker="main") == 1, "connected"
    )
    await publish(mosquitto, (f"{prefix}/meter-1", b"2450", False), qos=1)
    await d.wait_for(
        lambda m: value(m, "commandcentre_sensor_power_watts", device="meter-1") == 2450, "value"
    )
    m = await d.wait_for(
        lambda m: value(m, "commandcentre_sensor_power_watts", device="meter-1") is None,
        "expiry",
        limit=5,
    )
    assert value(m, "commandcentre_mqtt_series_expired_total", subscription="quick") == 1
    assert value(m, "commandcentre_mqtt_series", subscription="quick") == 0


async def test_broker_restart_reconnects_resubscribes_and_carries_on(
    tmp_path: Path, mosquitto: Mosquitto, prefix: str, start: Callable[[Path], Any]
) -> None:
    cfg = write_config(
        tmp_path / "c.yml",
        mosquitto,
        [
            {
                "name": "n",
                "profile": "number",
                "topic": f"{prefix}/{{device}}",
                "metric": "power_watts",
            }
        ],
    )
    d = await start(cfg)
    await d.wait_for(
        lambda m: value(m, "commandcentre_mqtt_connected", broker="main") == 1, "connected"
    )
    await publish(mosquitto, (f"{prefix}/m", b"1", False), qos=1)
    await d.wait_for(
        lambda m: value(m, "commandcentre_sensor_power_watts", device="m") == 1, "first"
    )

    mosquitto.kill()
    await d.wait_for(
        lambda m: value(m, "commandcentre_mqtt_connected", broker="main") == 0, "disconnect"
    )
    t0 = time.monotonic()
    mosquitto.start()  # same port, no persistence: every subscription is gone
    await d.wait_for(
        lambda m: value(m, "commandcentre_mqtt_connected", broker="main") == 1, "reconnect"
    )
    reconnect_seconds = time.monotonic() - t0
    await publish(mosquitto, (f"{prefix}/m", b"2", False), qos=1)
    m = await d.wait_for(
        lambda m: value(m, "commandcentre_sensor_power_watts", device="m") == 2, "after"
    )
    reconnects = value(m, "commandcentre_mqtt_reconnects_total", broker="main")
    assert reconnects is not None
    assert reconnects >= 1
    assert reconnect_seconds < 5, reconnect_seconds


async def test_two_daemons_on_one_shared_subscription_see_each_message_once(
    tmp_path: Path, mosquitto: Mosquitto, prefix: str, start: Callable[[Path], Any]
) -> None:
    daemons = []
    for i in range(2):
        cfg = write_config(
            tmp_path / f"c{i}.yml",
            mosquitto,
            [
                {
                    "name": "shared",
                    "profile": "number",
                    "topic": f"{prefix}/{{device}}",
                    "metric": "power_watts",
                    "shared_group": "commandcentre",
                    "qos": 1,
                }
            ],
            protocol="5",
            client_id=f"{prefix}-daemon-{i}",
        )
        daemons.append(await start(cfg))
    for d in daemons:
        await d.wait_for(
            lambda m: value(m, "commandcentre_mqtt_connected", broker="main") == 1, "connected"
        )
    n = 200
    await publish(
        mosquitto, *[(f"{prefix}/meter-{k}", str(k).encode(), False) for k in range(n)], qos=1
    )

    async def counts() -> list[float]:
        return [
            value(await d.metrics(), "commandcentre_mqtt_messages_total", subscription="shared")
            or 0
            for d in daemons
        ]

    deadline = time.monotonic() + 10
    for _ in range(1000):
        if sum(await counts()) >= n or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # nothing more must arrive: each message exactly once
    got = await counts()
    assert sum(got) == n, got
    assert all(c > 0 for c in got), got  # the group really split the work
    devices = [
        {
            dict(lbl)["device"]
            for (name, lbl) in (await d.metrics())
            if name == "commandcentre_sensor_power_watts"
        }
        for d in daemons
    ]
    assert not devices[0] & devices[1]
    assert len(devices[0] | devices[1]) == n


async def test_metrics_are_gzipped_when_the_scraper_asks(
    tmp_path: Path, mosquitto: Mosquitto, prefix: str, start: Callable[[Path], Any]
) -> None:
    """Both ways of sending /metrics: a small body whole, a large one (over 256 KiB)
    in pieces; gzipped or not, the scraper reads the same series."""
    sub = {"name": "n", "profile": "number", "topic": f"{prefix}/{{device}}"}
    cfg = write_config(tmp_path / "c.yml", mosquitto, [{**sub, "metric": "power_watts"}])
    d = await start(cfg)
    await d.wait_for(
        lambda m: value(m, "commandcentre_mqtt_connected", broker="main") == 1, "connected"
    )

    def sensors(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name.startswith("commandcentre_sensor_")
        }

    url = d.base + "/metrics"
    async with aiohttp.ClientSession(auto_decompress=False) as raw:
        for n in (50, 3000):
            await publish(
                mosquitto, *[(f"{prefix}/m{i}", str(i).encode(), False) for i in range(n)]
            )
            await d.wait_for(
                lambda m, n=n: (
                    value(m, "commandcentre_sensor_power_watts", device=f"m{n - 1}") == n - 1
                ),
                f"{n} values",
            )
            async with raw.get(url, headers={"Accept-Encoding": "gzip"}) as r:
                assert r.headers["Content-Encoding"] == "gzip"
                assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
                assert "Accept-Encoding" in r.headers["Vary"]
                assert r.headers["X-Content-Type-Options"] == "nosniff"
                zipped = gzip.decompress(await r.read()).decode()
            for refused in ("identity", "gzip;q=0", "br"):
                async with raw.get(url, headers={"Accept-Encoding": refused}) as r:
                    assert "Content-Encoding" not in r.headers, refused
                    plain = (await r.read()).decode()
            assert (len(plain) > 256 * 1024) == (n == 3000)
            assert len(sensors(zipped)) == n
            assert sensors(zipped) == sensors(plain)


async def test_a_reload_changes_the_mapping_of_topics_already_seen(
    tmp_path: Path, mosquitto: Mosquitto, prefix: str, start: Callable[[Path], Any]
) -> None:
    """Topics are routed once and remembered: a reload must forget that."""
    path = tmp_path / "c.yml"
    sub = {"name": "n", "profile": "number", "topic": f"{prefix}/{{device}}"}
    write_config(path, mosquitto, [{**sub, "metric": "power_watts"}])
    d = await start(path)
    await d.wait_for(
        lambda m: value(m, "commandcentre_mqtt_connected", broker="main") == 1, "connected"
    )
    await publish(mosquitto, (f"{prefix}/m", b"5", False), qos=1)
    await d.wait_for(lambda m: value(m, "commandcentre_sensor_power_watts", device="m") == 5, "w")
    write_config(path, mosquitto, [{**sub, "metric": "current_amperes"}])
    assert await d.daemon.reload() == []
    await publish(mosquitto, (f"{prefix}/m", b"7", False), qos=1)
    m = await d.wait_for(
        lambda m: value(m, "commandcentre_sensor_current_amperes", device="m") == 7, "amperes"
    )
    assert value(m, "commandcentre_sensor_power_watts", device="m") == 5  # until its ttl
