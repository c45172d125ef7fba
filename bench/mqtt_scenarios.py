"""Scenarios 4 and 5: the ``/metrics`` exposition at size, and MQTT ingest of
Zigbee2MQTT JSON, commandcentre vs mqtt2prometheus through one Mosquitto."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench.procs import Proc, http_get
from bench.results import Row, Scenario
from bench.settings import Settings
from bench.subjects import (
    Z2M_FIELDS,
    Service,
    cc_mqtt_config,
    commandcentre,
    mosquitto,
    mqtt2prometheus,
    samples,
    series_count,
    total,
)

MIB = 1024 * 1024
MOSQUITTO_PUB = "/usr/bin/mosquitto_pub"
PUBLISHERS = 4  # parallel mosquitto_pub processes for floods


def z2m_payload(i: int) -> bytes:
    """A Zigbee2MQTT climate sensor's state message; values vary with ``i``."""
    return json.dumps(
        {
            "battery": 40 + i % 60,
            "humidity": 30 + (i % 400) / 10,
            "linkquality": i % 255,
            "pressure": 990 + (i % 500) / 10,
            "temperature": 18 + (i % 1000) / 100,
            "voltage": 2800 + i % 400,
        },
        separators=(",", ":"),
    ).encode()


# --------------------------------------------------------------------------- publishing


def publish_devices(broker_port: int, devices: int) -> None:
    """One message from each of ``devices`` distinct devices (distinct topics)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{devices}")
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", broker_port)
    client.loop_start()
    try:
        last = None
        for i in range(devices):
            last = client.publish(f"zigbee2mqtt/sensor-{i:06d}", z2m_payload(i), qos=0)
        if last is not None:
            last.wait_for_publish(timeout=120)
    finally:
        client.disconnect()
        client.loop_stop()


def flood(broker_port: int, messages: int, workdir: Path) -> float:
    """``messages`` Zigbee2MQTT messages from ``PUBLISHERS`` devices, as fast as
    ``mosquitto_pub -l`` sends them; returns the seconds it took."""
    per = messages // PUBLISHERS
    files = []
    for k in range(PUBLISHERS):
        path = workdir / f"flood-{k}-{per}.txt"
        if not path.exists():
            path.write_bytes(b"\n".join(z2m_payload(k * per + i) for i in range(per)) + b"\n")
        files.append(path)
    t0 = time.monotonic()
    procs = []
    for k, path in enumerate(files):
        with path.open("rb") as stdin:
            procs.append(
                subprocess.Popen(  # noqa: S603 - fixed argv
                    [
                        *(MOSQUITTO_PUB, "-h", "127.0.0.1", "-p", str(broker_port), "-q", "0"),
                        *("-t", f"zigbee2mqtt/flood-{k}", "-l"),
                    ],
                    stdin=stdin,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
    for p in procs:
        if p.wait(timeout=600) != 0:
            raise RuntimeError("mosquitto_pub failed")
    return time.monotonic() - t0


QUIET = 0.25  # idle this long = done (the resolution of the drain time)


def wait_idle(proc: Proc, quiet: float = 1.0, limit: float = 600.0) -> float:
    """Until the process has used < 2 % of a core (for short ``quiet``: less than a
    tick) for ``quiet`` seconds; its CPU then."""
    deadline = time.monotonic() + limit
    last = proc.cpu()
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = proc.cpu()
        if now - last < 0.02 * quiet:
            return now
        last = now
    raise RuntimeError(f"{proc.name} still busy after {limit:.0f} s")


def _cc_counter(cc: Service, name: str) -> float:
    text = http_get(f"{cc.url}/metrics").decode()
    return total("\n".join(_self_lines(text)), name)


def _self_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("commandcentre_mqtt_")]


def _wait_reaches(count: Callable[[], float], n: float, failure: str, limit: float) -> None:
    """Until ``count()`` is at least ``n``, checked every 0.25 s; else RuntimeError."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if count() >= n:
            return
        time.sleep(0.25)
    raise RuntimeError(failure)


def _wait_cc_seen(cc: Service, processed: float, limit: float = 600.0) -> None:
    """Until commandcentre has processed ``processed`` messages in all."""
    _wait_reaches(
        lambda: _cc_counter(cc, "commandcentre_mqtt_messages_total"),
        processed,
        f"commandcentre processed fewer than {processed:.0f} messages",
        limit,
    )


# --------------------------------------------------------------------------- scenario 4


def scrape(settings: Settings, workdir: Path) -> list[Scenario]:
    out: list[Scenario] = []
    with mosquitto(workdir) as (_broker, port):
        for size in settings.scrape_series:
            # commandcentre serves a value and a last-seen series per reading,
            # mqtt2prometheus the value: twice the devices give it as many series
            devices = size // (2 * len(Z2M_FIELDS))
            sc = Scenario(
                key=f"scrape_{size // 1000}k",
                title=f"/metrics scrape at ≈{size // 1000}k series",
                primary="CPU per series",
                lower_is_better=True,
                target="≤ 0.25x; no stall over 50 ms at 100k series",
                highlights=("longest loop stall", "scrape latency", "CPU per scrape"),
            )
            sc.notes.append(
                f"Zigbee2MQTT devices with 6 readings each, one message per device: "
                f"{devices:,} for commandcentre (a value and a last-seen series per reading), "
                f"{2 * devices:,} for mqtt2prometheus (a value per reading). CPU = the "
                "process's own time over the scrapes / (scrapes x sample lines served, "
                "self-metrics included). 'longest loop "
                "stall' = the slowest of /-/healthy requests sent every 5 ms during the "
                "scrapes (the daemon has no loop-lag self-metric)."
            )
            with mqtt2prometheus(workdir, port, tag=f"m2p-{size}") as m2p:
                publish_devices(port, 2 * devices)
                _wait_series(m2p, "temperature", 2 * devices)
                _measure_scrape(
                    sc.row(f"mqtt2prometheus {settings.versions['mqtt']}", "anchor"),
                    m2p,
                    settings,
                    probe=False,
                )
            cfg = cc_mqtt_config(port, max_series=devices * 20, max_queued=100_000)
            with commandcentre(workdir, cfg, tag=f"scrape-{size}") as cc:
                time.sleep(0.5)  # connected and subscribed (ready does not wait for MQTT)
                publish_devices(port, devices)
                _wait_cc_seen(cc, devices)
                _wait_cc_series(cc, devices * len(Z2M_FIELDS))
                _measure_scrape(sc.row("commandcentre", "commandcentre"), cc, settings, probe=True)
            out.append(sc)
    return out


def _wait_cc_series(cc: Service, n: int, limit: float = 120.0) -> None:
    _wait_reaches(
        lambda: _cc_counter(cc, "commandcentre_mqtt_series"),
        n,
        f"commandcentre did not reach {n} MQTT series",
        limit,
    )


def _wait_series(svc: Service, metric: str, n: int, limit: float = 120.0) -> None:
    _wait_reaches(
        lambda: len(samples(http_get(f"{svc.url}/metrics").decode(), metric)),
        n,
        f"{svc.proc.name} did not reach {n} {metric} series",
        limit,
    )


class _StallProbe:
    """Sends /-/healthy every 5 ms from a thread and keeps the slowest answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.worst = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.perf_counter()
            http_get(self.url, timeout=60)
            self.worst = max(self.worst, time.perf_counter() - t0)
            self._stop.wait(0.005)

    def __enter__(self) -> _StallProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _scrapes(svc: Service, settings: Settings) -> tuple[int, float, list[float], bytes]:
    """Scrape /metrics at least ``scrapes_per_rep`` times and until the process has
    used ``min_cpu`` seconds (CPU time is counted in 10 ms ticks); (scrapes, CPU,
    latencies, the last body)."""
    url = f"{svc.url}/metrics"
    latencies: list[float] = []
    cpu0 = svc.proc.cpu()
    body = b""
    while len(latencies) < settings.scrapes_per_rep or (
        svc.proc.cpu() - cpu0 < settings.min_cpu and len(latencies) < 1000
    ):
        t0 = time.perf_counter()
        body = http_get(url)
        latencies.append(time.perf_counter() - t0)
    return len(latencies), svc.proc.cpu() - cpu0, latencies, body


def _measure_scrape(row: Row, svc: Service, settings: Settings, probe: bool) -> None:
    for _ in range(settings.reps):
        stall = 0.0
        if probe:
            with _StallProbe(f"{svc.url}/-/healthy") as p:
                n, cpu, latencies, body = _scrapes(svc, settings)
            stall = p.worst
        else:
            n, cpu, latencies, body = _scrapes(svc, settings)
        # counted after the probe has stopped: parsing holds the harness's GIL, which
        # would delay the probe thread and pass for a stall of the daemon
        series = series_count(body.decode())
        row.add("series", "", series)
        row.add("CPU per series", "µs", cpu / (n * series) * 1e6)
        row.add("CPU per scrape", "ms", cpu / n * 1000)
        row.add("scrape latency", "ms", sorted(latencies)[len(latencies) // 2] * 1000)
        if probe:
            row.add("longest loop stall", "ms", stall * 1000)
        row.add("RSS", "MiB", svc.proc.rss() / MIB)


# --------------------------------------------------------------------------- scenario 5


def ingest(settings: Settings, workdir: Path) -> list[Scenario]:
    n = settings.ingest_messages
    flat = Scenario(
        key="mqtt_ingest",
        title=f"MQTT ingest, {n:,} Zigbee2MQTT messages flat out",
        primary="messages per CPU-second",
        lower_is_better=False,
        target="≥ 1.5x",
        highlights=("lost", "peak RSS"),
    )
    flat.notes.append(
        f"{PUBLISHERS} mosquitto_pub -l processes publish QoS 0 as fast as they can to a "
        "Mosquitto with an unbounded per-client queue; commandcentre's own queue is set "
        "large enough to drop nothing. CPU = the subscriber's own time from the first "
        "message until it is idle again; commandcentre's count is "
        "commandcentre_mqtt_messages_total, mqtt2prometheus' is the messages sent."
    )
    b = settings.burst_messages
    burst = Scenario(
        key="mqtt_burst",
        title=f"MQTT burst of {b:,} messages, default bounds",
        primary="peak RSS",
        lower_is_better=True,
        target="memory bounded, drops counted",
        highlights=("processed", "lost", "dropped (counted)", "time to drain after resume"),
    )
    burst.notes.append(
        "Each subscriber is paused (SIGSTOP) while the burst is published and then "
        "resumed, so the burst arrives at once, faster than it can be processed; "
        "commandcentre with its default max_queued_messages (10,000): "
        "'lost' = sent - processed (dropped messages are counted in "
        "commandcentre_mqtt_messages_dropped_total). mqtt2prometheus has no queue bound "
        "and no drop counter: it processes everything, however long it takes."
    )
    with mosquitto(workdir) as (_broker, port):
        m2p_row = flat.row(f"mqtt2prometheus {settings.versions['mqtt']}", "anchor")
        with mqtt2prometheus(workdir, port, tag="m2p-ingest") as m2p:
            flood(port, PUBLISHERS, workdir)  # warm up: first messages, first series
            wait_idle(m2p.proc)
            for _ in range(settings.reps):
                cpu0 = m2p.proc.cpu()
                t0 = time.monotonic()
                flood(port, n, workdir)
                cpu = wait_idle(m2p.proc) - cpu0
                _ingest_add(m2p_row, n, done=n, cpu=cpu, wall=time.monotonic() - t0, proc=m2p.proc)
        cc_row = flat.row("commandcentre", "commandcentre")
        cfg = cc_mqtt_config(port, max_series=1000, max_queued=max(n, 10_000) * 2)
        with commandcentre(workdir, cfg, tag="ingest") as cc:
            time.sleep(0.5)
            flood(port, PUBLISHERS, workdir)
            _wait_cc_seen(cc, PUBLISHERS)
            wait_idle(cc.proc)
            for _ in range(settings.reps):
                before = _cc_counter(cc, "commandcentre_mqtt_messages_total")
                cpu0 = cc.proc.cpu()
                t0 = time.monotonic()
                flood(port, n, workdir)
                cpu = wait_idle(cc.proc) - cpu0
                done = _cc_counter(cc, "commandcentre_mqtt_messages_total") - before
                _ingest_add(cc_row, n, done=done, cpu=cpu, wall=time.monotonic() - t0, proc=cc.proc)

        with mqtt2prometheus(workdir, port, tag="m2p-burst") as m2p:
            row = burst.row(f"mqtt2prometheus {settings.versions['mqtt']}", "anchor")
            cpu, elapsed = _paused_burst(m2p.proc, port, b, workdir)
            _burst_add(row, b, done=b, cpu=cpu, wall=elapsed, proc=m2p.proc)
        cfg = cc_mqtt_config(port, max_series=1000, max_queued=10_000)
        with commandcentre(workdir, cfg, tag="burst") as cc:
            time.sleep(0.5)
            row = burst.row("commandcentre", "commandcentre")
            cpu, elapsed = _paused_burst(cc.proc, port, b, workdir)
            done = _cc_counter(cc, "commandcentre_mqtt_messages_total")
            dropped = _cc_counter(cc, "commandcentre_mqtt_messages_dropped_total")
            _burst_add(row, b, done=done, cpu=cpu, wall=elapsed, proc=cc.proc)
            row.add("dropped (counted)", "", dropped)
    return [flat, burst]


def _paused_burst(proc: Proc, port: int, messages: int, workdir: Path) -> tuple[float, float]:
    """The subscriber is stopped (SIGSTOP) while ``messages`` are published, then
    resumed: the whole burst waits in the broker and the socket and arrives at once,
    faster than it can be processed, as after a stall or a reconnect. Returns (CPU
    used, seconds from resuming until idle)."""
    cpu0 = proc.cpu()
    proc.popen.send_signal(signal.SIGSTOP)
    try:
        flood(port, messages, workdir)
    finally:
        proc.popen.send_signal(signal.SIGCONT)
    resumed = time.monotonic()
    cpu = wait_idle(proc, quiet=QUIET) - cpu0
    return cpu, time.monotonic() - resumed - QUIET


def _ingest_add(row: Row, sent: int, *, done: float, cpu: float, wall: float, proc: Proc) -> None:
    row.add("messages per CPU-second", "", done / cpu if cpu else 0.0)
    row.add("CPU per message", "µs", cpu / done * 1e6 if done else 0.0)
    row.add("lost", "", sent - done)
    row.add("wall time", "s", wall)
    row.add("peak RSS", "MiB", proc.peak_rss() / MIB)


def _burst_add(row: Row, sent: int, *, done: float, cpu: float, wall: float, proc: Proc) -> None:
    row.add("peak RSS", "MiB", proc.peak_rss() / MIB)
    row.add("processed", "", done)
    row.add("lost", "", sent - done)
    row.add("CPU", "s", cpu)
    row.add("time to drain after resume", "s", wall)
