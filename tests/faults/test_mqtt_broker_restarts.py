"""Mosquitto killed (SIGKILL) and restarted while sensors publish at QoS 1.

Three sensors publish numbered messages, each on its own topic
(``<prefix>/s<sensor>-<n>``, payload ``n``), so the daemon's ``/metrics`` shows
every message that arrived as its own series and a lost one is a missing series.
Each sensor keeps its own queue: a message counts as published once the broker
acknowledged it (PUBACK); one that was not acknowledged is sent again after the
sensor reconnects. A restarted broker has no sessions, so sensors publish only
while the daemon is subscribed (a probe message round trip proves it after each
restart) — "published while the broker was up" in the only sense a broker
without persistence can honour. The claim: every acknowledged message arrives.
Reconnect times (broker start → daemon subscribed again) are printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import aiomqtt
import pytest

from tests.faults.helpers import (
    DaemonProcess,
    bounded,
    scrape,
    value,
    values,
    wait_for_metrics,
    write_yaml,
)
from tests.integration.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

RESTARTS = 5
SENSORS = 3
PER_CYCLE = 60  # acknowledged messages (all sensors together) before each kill
METRIC = "commandcentre_sensor_seq"


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto(max_queued_messages=100_000) as b:
        yield b


class Sensor:
    """A QoS 1 publisher with its own queue: retries a message until it is acknowledged."""

    def __init__(self, name: str, broker: Mosquitto, prefix: str, gate: asyncio.Event) -> None:
        self.name = name
        self.broker = broker
        self.prefix = prefix
        self.gate = gate
        self.acked: list[int] = []
        self.retries = 0
        self.stop = asyncio.Event()

    async def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            try:
                async with aiomqtt.Client(
                    self.broker.host, self.broker.port, identifier=f"{self.prefix}-{self.name}"
                ) as client:
                    while not self.stop.is_set():
                        await self.gate.wait()
                        await client.publish(
                            f"{self.prefix}/{self.name}-{n}", str(n).encode(), qos=1, timeout=2
                        )
                        self.acked.append(n)
                        n += 1
                        await asyncio.sleep(0.01)
            except (aiomqtt.MqttError, TimeoutError):
                self.retries += 1
                await asyncio.sleep(0.1)


async def probe_round_trip(
    session: aiohttp.ClientSession, daemon: DaemonProcess, broker: Mosquitto, prefix: str, mark: int
) -> None:
    """Publish ``mark`` on the probe topic until the daemon shows it: it is subscribed."""
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with aiomqtt.Client(broker.host, broker.port) as c:
                await c.publish(f"{prefix}/probe", str(mark).encode(), qos=1, timeout=2)
        m = await scrape(session, daemon.base)
        if value(m, METRIC, device="probe") == mark:
            return
        assert time.monotonic() < deadline, f"daemon never resubscribed:\n{daemon.output()}"
        await asyncio.sleep(0.1)


@bounded(150)
async def test_every_acknowledged_message_arrives_across_broker_kills(
    broker: Mosquitto, tmp_path: Path
) -> None:
    prefix = f"cc-fault-{uuid.uuid4().hex[:8]}"
    config = write_yaml(
        tmp_path / "cc.yml",
        {
            "mqtt": {
                "brokers": [
                    {
                        "name": "main",
                        "host": broker.host,
                        "port": broker.port,
                        "keepalive": "5s",
                        "reconnect": {"initial": "100ms", "max": "500ms"},
                    }
                ],
                "subscriptions": [
                    {
                        "name": "seq",
                        "profile": "number",
                        "topic": prefix + "/{device}",
                        "metric": "seq",
                        "qos": 1,
                        "max_series": 100_000,
                    }
                ],
            }
        },
    )
    daemon = DaemonProcess(config, tmp_path)
    gate = asyncio.Event()
    sensors = [Sensor(f"s{i}", broker, prefix, gate) for i in range(SENSORS)]
    tasks: list[asyncio.Task[None]] = []
    rng = random.Random(7)
    reconnect_times: list[float] = []
    try:
        async with aiohttp.ClientSession() as session:
            await daemon.start(session)
            await probe_round_trip(session, daemon, broker, prefix, 0)
            gate.set()
            tasks = [asyncio.create_task(s.run()) for s in sensors]
            for cycle in range(1, RESTARTS + 1):
                target = sum(len(s.acked) for s in sensors) + PER_CYCLE + rng.randrange(40)
                # (polling a count the sensor tasks update)
                while sum(len(s.acked) for s in sensors) < target:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                # the kill lands while every sensor is mid-stream
                broker.kill()
                gate.clear()
                await asyncio.sleep(rng.uniform(0.2, 1.5))
                t0 = time.monotonic()
                broker.start()
                await probe_round_trip(session, daemon, broker, prefix, cycle)
                reconnect_times.append(time.monotonic() - t0)
                gate.set()
            # one last stretch with the broker up, then the sensors stop
            target = sum(len(s.acked) for s in sensors) + PER_CYCLE
            while sum(len(s.acked) for s in sensors) < target:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            for s in sensors:
                s.stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 10)

            expected = {f"{s.name}-{n}": n for s in sensors for n in s.acked}

            def all_arrived(m: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> bool:
                got = {lbl["device"]: v for lbl, v in values(m, METRIC)}
                return all(got.get(d) == n for d, n in expected.items())

            try:
                m = await wait_for_metrics(
                    session, daemon.base, all_arrived, "every acknowledged message", limit=20
                )
            except AssertionError:
                m = await scrape(session, daemon.base)
                got = {lbl["device"] for lbl, _ in values(m, METRIC)}
                lost = sorted(set(expected) - got)
                raise AssertionError(
                    f"{len(lost)} of {len(expected)} acknowledged messages lost: {lost[:20]}"
                ) from None
            reconnects = value(m, "commandcentre_mqtt_reconnects_total", broker="main")
            assert reconnects is not None
            assert reconnects >= RESTARTS
            assert value(m, "commandcentre_mqtt_connected", broker="main") == 1
            print(
                f"\nmqtt broker kills: {RESTARTS}, messages acknowledged: {len(expected)}, "
                f"lost: 0, sensor retries: {sum(s.retries for s in sensors)}, "
                f"daemon reconnects: {reconnects:.0f}, reconnect times (broker start -> "
                f"subscribed): {', '.join(f'{t:.2f}s' for t in reconnect_times)}"
            )
            # SIGTERM with the broker gone and the daemon in its reconnect backoff
            broker.kill()
            await asyncio.sleep(0.5)
            took = await daemon.stop()
            print(f"SIGTERM during broker outage: clean exit in {took:.2f}s")
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        daemon.close()
