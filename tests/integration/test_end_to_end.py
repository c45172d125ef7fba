"""The whole chain against a real Prometheus: simulated room -> daemon -> Prometheus -> rules.

The demo is built in-process from its parts, in a temporary directory: snmpsim
serving the demo recordings, the demo MQTT broker, a ``SensorRoom`` held here so
faults can be injected, and the daemon on 127.0.0.1 (a free port). A real
Prometheus scrapes it, with a temporary copy of the shipped ``prometheus.yml``
(scrape and evaluation every second, job ``commandcentre`` pointed at the daemon;
the Alertmanager and the ``snmp`` job are dropped: one scrape mode per device, and
no Alertmanager is needed to see alerts in ``/api/v1/alerts``) and temporary copies
of the shipped rule files in which every ``for:`` is shortened to ``FOR``.

The ``for:`` edges are covered by ``promtool test rules`` (config/prometheus/tests,
run by test_prometheus_config.py); this test proves the expressions and the
wiring against real data: the metric names and labels the daemon really exposes,
the recording rules, every Grafana panel query, silence when all is well, and
each simulated fault raising its alert (pending, then firing).

Time is compressed for the test, and said where:
- the sensors publish every ``SENSOR_PERIOD`` instead of the demo's 10 s (Tasmota's
  minimum TelePeriod), by running the demo's own ``publish_sensors`` with its
  ``REPORT_INTERVAL`` patched;
- so ``SensorStale``'s 10-minute threshold (``> 600``) becomes ``STALE_AFTER``
  seconds, still several report periods;
- SNMP polls every second with a 1 s timeout and no retry, so a dead device shows
  within about 2 s.

The tests run in file order and share one stack; each fault test puts things back
(and waits for its alert to resolve), except the last, which stops snmpsim.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml

from commandcentre import demo
from commandcentre.daemon import Daemon
from commandcentre.demo.broker import BrokerUnavailableError, DemoBroker, run_demo_broker
from commandcentre.demo.processes import stop_process
from commandcentre.demo.sensors import SensorRoom
from tests.integration.agents import probe
from tests.integration.daemons import running_daemon
from tests.integration.prometheus import PROMETHEUS, run_prometheus
from tests.integration.test_traps import v2c_trap

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

REPO = Path(__file__).resolve().parents[2]
PROM_DIR = REPO / "config" / "prometheus"
SNMP_MODULE_DIR = REPO / "config" / "snmp"
RULE_FILES = sorted((PROM_DIR / "rules").glob("*.yml"))
PROMTOOL = shutil.which("promtool")
SNMPSET = shutil.which("snmpset")

FOR = "3s"  # every `for:` of the shipped rules, in the test's copies
SENSOR_PERIOD = 1.0  # seconds between two reports of every simulated sensor
# SNMP polls: snmpsim walks switch-24's if_mib in about a second, over a 1 s
# interval's budget at times; a dead device still shows within 3 s.
POLL_INTERVAL = "2s"
STALE_AFTER = 8  # SensorStale's "no reading for" threshold (600 s shipped), seconds
UPS_OUTPUT_SOURCE = "1.3.6.1.2.1.33.1.4.1.0"  # upsOutputSource.0: 3 normal, 5 battery

# Grafana template variables for the panel queries (tests/grafana.py substitutes them).
DASHBOARD_VARIABLES = {
    "site": "demo",
    "room": "server-room",
    "__rate_interval": "15s",
}
# Panels allowed to be empty in the healthy demo, each for a stated reason; any
# other empty query fails. (dashboard file, panel title) -> why.
EMPTY_IN_HEALTHY_DEMO = {
    ("collector-health.json", "Errors by reason"): "`> 0`: shows only SNMP errors",
    ("collector-health.json", "Errors by device"): "`> 0`: shows only SNMP errors",
    ("collector-health.json", "Unreadable payloads"): "`> 0`: shows only bad payloads",
    ("network.json", "Errors"): "`> 0`: the demo's error counters stand still",
    ("network.json", "Discards"): "`> 0`: the demo's discard counters stand still",
    ("environment.json", "UPS / PDU probe temperature (SNMP)"): "the demo has no rack PDU",
    ("environment.json", "UPS / PDU probe humidity (SNMP)"): "the demo has no rack PDU",
    ("power.json", "Rack PDU power"): "the demo has no rack PDU (rPDU2)",
    ("power.json", "Rack PDU phase current"): "the demo has no rack PDU (rPDU2)",
    ("power.json", "Rack PDU phase voltage"): "the demo has no rack PDU (rPDU2)",
    ("wall-overview.json", "Trap states"): "only traps in effect: none in a healthy room "
    "(tests/integration/test_traps.py sends them)",
    ("collector-health.json", "Trap datagrams refused"): "`> 0`: shows only refusals",
    ("collector-health.json", "Trap alerts to Alertmanager"): "the demo has no Alertmanager "
    "(tests/integration/test_traps_alertmanager.py has one)",
}
SCRAPES_BEFORE_DASHBOARDS = 16  # samples in the last 20 s: every [15s] window has data

# promtool's naming-style lints, allowed only on metrics of the SNMP modules (which
# keep snmp_exporter's names on purpose, for dashboard compatibility).
ALLOWED_SNMP_LINTS = (
    "metric names should be written in 'snake_case' not 'camelCase'",
    "label names should be written in 'snake_case' not 'camelCase'",
    'counter metrics should have "_total" suffix',
)

pytestmark.append(
    pytest.mark.skipif(
        PROMETHEUS is None or PROMTOOL is None,
        reason="needs prometheus and promtool (Debian package prometheus)",
    )
)
pytestmark.append(
    pytest.mark.skipif(
        not Path(sys.executable).with_name("snmpsim-command-responder").exists()
        and shutil.which("snmpsim-command-responder") is None,
        reason="needs snmpsim (pip install 'commandcentre[demo]')",
    )
)


# --------------------------------------------------------------------------- helpers


async def wait_for(
    check: Callable[[], Awaitable[Any]], what: str, limit: float, every: float = 0.2
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    last: Any = None
    while True:
        last = await check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit:g} s waiting for {what}")
        await asyncio.sleep(every)


def shortened_rules(text: str, name: str) -> str:
    """A rule file with every ``for:`` set to ``FOR`` and SensorStale's threshold
    lowered to ``STALE_AFTER`` (see the module docstring)."""
    out, count = re.subn(r"(?m)^(\s+for:\s*)\S+\s*$", rf"\g<1>{FOR}", text)
    assert count > 0 or "alert:" not in text, name
    if name == "environment.yml":
        out, stale = re.subn(
            r"time\(\) - commandcentre:sensor_last_seen:timestamp_seconds > 600",
            f"time() - commandcentre:sensor_last_seen:timestamp_seconds > {STALE_AFTER}",
            out,
        )
        assert stale == 1, "SensorStale's threshold changed: update this test"
    return out


def prometheus_config(daemon_address: str) -> dict[str, Any]:
    """The shipped prometheus.yml, rewritten for the test (see the module docstring)."""
    cfg: dict[str, Any] = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    cfg["global"].update(
        {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    )
    cfg.pop("alerting", None)
    jobs = {job["job_name"]: job for job in cfg["scrape_configs"]}
    job = jobs["commandcentre"]
    job["static_configs"] = [{"targets": [daemon_address]}]
    job["scrape_timeout"] = "1s"
    cfg["scrape_configs"] = [job]
    assert cfg["rule_files"] == ["rules/*.yml"], cfg["rule_files"]
    return cfg


def snmp_module_metric_names() -> set[str]:
    names: set[str] = set()
    for path in SNMP_MODULE_DIR.glob("*.yml"):
        for module in (yaml.safe_load(path.read_text()).get("modules") or {}).values():
            names.update(m["name"] for m in module.get("metrics", []))
    return names


@dataclass
class AlertSeen:
    pending_after: float | None = None  # seconds after the fault, first seen pending
    firing_after: float | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Stack:
    workdir: Path
    daemon: Daemon
    daemon_url: str
    prom_url: str
    room: SensorRoom
    broker: DemoBroker
    snmpsim_port: int
    snmpsim: subprocess.Popen[bytes]
    session: aiohttp.ClientSession
    prometheus: subprocess.Popen[bytes]

    def prometheus_log(self) -> str:
        return (self.workdir / "prometheus.log").read_text(errors="replace")[-3000:]

    async def get_text(self, url: str) -> str:
        async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as r:
            assert r.status == 200, (url, r.status)
            return await r.text()

    async def api(self, path: str, **params: str) -> Any:
        async with self.session.get(
            self.prom_url + path, params=params, timeout=aiohttp.ClientTimeout(total=5)
        ) as r:
            body = json.loads(await r.text())
        if body.get("status") != "success":
            raise PromQLError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        data = await self.api("/api/v1/query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    async def alerts(self) -> list[dict[str, Any]]:
        return list((await self.api("/api/v1/alerts"))["alerts"])

    async def watch_alert(
        self, name: str, labels: dict[str, str], started: float, limit: float
    ) -> AlertSeen:
        """Poll /api/v1/alerts until alert ``name`` with ``labels`` fires; note when it
        was first seen pending and firing (seconds after ``started``)."""
        seen = AlertSeen()
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            matching = [
                a
                for a in await self.alerts()
                if a["labels"].get("alertname") == name
                and all(a["labels"].get(k) == v for k, v in labels.items())
            ]
            now = time.monotonic() - started
            states = {a["state"] for a in matching}
            if "pending" in states and seen.pending_after is None:
                seen.pending_after = now
            if "firing" in states:
                seen.firing_after = now
                seen.alerts = matching
                return seen
            await asyncio.sleep(0.1)
        raise AssertionError(
            f"{name}{labels} did not fire within {limit:g} s (pending seen after "
            f"{seen.pending_after} s); alerts now: {await self.alerts()}"
        )

    async def wait_resolved(self, name: str, labels: dict[str, str], limit: float) -> None:
        async def gone() -> bool:
            return not [
                a
                for a in await self.alerts()
                if a["labels"].get("alertname") == name
                and all(a["labels"].get(k) == v for k, v in labels.items())
            ]

        await wait_for(gone, f"{name}{labels} to resolve", limit)

    async def inject(self, fault: str, on: bool) -> None:
        """Switch a sensor fault and publish at once what the change itself sends
        (a device's LWT/status); the readings follow within ``SENSOR_PERIOD``."""
        from commandcentre.mqtt.aiomqtt_client import AiomqttPublisher
        from commandcentre.mqtt.config import Broker

        messages = self.room.set_fault(fault, on)
        if messages:
            target = Broker(name="e2e-faults", host=self.broker.host, port=self.broker.port)
            async with asyncio.timeout(10), AiomqttPublisher(target) as pub:
                for m in messages:
                    await pub.publish(m.topic, m.payload, retain=m.retain and self.broker.retain_ok)


class PromQLError(RuntimeError):
    """Prometheus refused a query (bad expression, ...)."""


def ups_set_output_source(port: int, value: int) -> None:
    assert SNMPSET is not None, "snmpset (Debian package snmp) is needed"
    r = subprocess.run(
        [
            *(SNMPSET, "-v2c", "-c", "ups-rfc1628", "-t", "2", "-r", "1"),
            *(f"127.0.0.1:{port}", UPS_OUTPUT_SOURCE, "i", str(value)),
        ],
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"INTEGER: {value}" in r.stdout, r.stdout


def start_prometheus(workdir: Path, daemon_address: str) -> tuple[subprocess.Popen[bytes], str]:
    assert PROMETHEUS is not None
    conf_dir = workdir / "prometheus"
    (conf_dir / "rules").mkdir(parents=True)
    for path in RULE_FILES:
        (conf_dir / "rules" / path.name).write_text(shortened_rules(path.read_text(), path.name))
    conf = conf_dir / "prometheus.yml"
    conf.write_text(yaml.safe_dump(prometheus_config(daemon_address), sort_keys=False))
    return run_prometheus(conf, workdir, "--web.enable-lifecycle")


def night_start() -> float:
    """The simulation's start: now, but shifted so the room's clock reads 03:00 UTC
    today. The door opens a few times a day in working hours on its own schedule;
    at night it stays shut, so a healthy room means no door alert either."""
    day = 86_400.0
    now = time.time()
    return now - (now % day - 3 * 3_600.0)


@contextlib.contextmanager
def patched_report_interval() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(demo, "REPORT_INTERVAL", SENSOR_PERIOD)
        yield


# --------------------------------------------------------------------------- the stack


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    workdir = tmp_path_factory.mktemp("e2e")
    with contextlib.ExitStack() as exits:
        snmpsim_port, snmpsim = exits.enter_context(demo.simulated_devices(workdir))
        try:
            broker = exits.enter_context(run_demo_broker(workdir))
        except BrokerUnavailableError as e:
            pytest.skip(f"no MQTT broker for the demo: {e}")

        async def snmpsim_answers() -> bool:
            assert snmpsim.poll() is None, (workdir / "snmpsim.log").read_text()
            return await asyncio.to_thread(probe, "127.0.0.1", snmpsim_port, "ups-rfc1628")

        await wait_for(snmpsim_answers, "snmpsim to answer", 30)

        path = demo.demo_config(workdir, snmpsim_port, "127.0.0.1:0", POLL_INTERVAL, broker)
        cfg = yaml.safe_load(path.read_text())
        cfg["snmp"]["defaults"].update({"timeout": "1s", "retries": 0})
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        async with running_daemon(path, ready_within=15) as (daemon, daemon_url):
            daemon_address = daemon_url.removeprefix("http://")
            session = aiohttp.ClientSession()
            sensors: asyncio.Task[None] | None = None
            prometheus: subprocess.Popen[bytes] | None = None
            try:
                room = SensorRoom(start=night_start())
                # publish_sensors reads REPORT_INTERVAL at every round: patched for good
                exits.enter_context(patched_report_interval())
                sensors = asyncio.create_task(demo.publish_sensors(broker, room))
                # a UPS restarting: its coldStart trap gives the trap panels data
                assert daemon.traps.bound is not None
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    cold_start = v2c_trap("ups-rfc1628", (1, 3, 6, 1, 6, 3, 1, 1, 5, 1), 1)
                    s.sendto(cold_start, ("127.0.0.1", daemon.traps.bound[1]))

                prometheus, prom_url = start_prometheus(workdir, daemon_address)
                st = Stack(
                    workdir,
                    daemon,
                    f"http://{daemon_address}",
                    prom_url,
                    room,
                    broker,
                    snmpsim_port,
                    snmpsim,
                    session,
                    prometheus,
                )

                async def prometheus_ready() -> bool:
                    assert prometheus is not None
                    assert prometheus.poll() is None, st.prometheus_log()
                    try:
                        async with session.get(
                            prom_url + "/-/ready", timeout=aiohttp.ClientTimeout(total=1)
                        ) as r:
                            return r.status == 200
                    except aiohttp.ClientError:
                        return False

                await wait_for(prometheus_ready, "Prometheus to be ready", 30)
                yield st
            finally:
                if prometheus is not None:
                    await asyncio.to_thread(stop_process, prometheus, 10.0)
                if sensors is not None:
                    sensors.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sensors
                await session.close()


@pytest_asyncio.fixture(loop_scope="module")
async def healthy(stack: Stack) -> Stack:
    """The stack once Prometheus has the daemon, every SNMP poll up and the sensors."""

    async def state() -> tuple[int, dict[str, float], int]:
        up = await stack.query('up{job="commandcentre"} == 1')
        polls = {
            f"{p['metric']['target']}/{p['metric']['module']}": float(p["value"][1])
            for p in await stack.query("commandcentre_snmp_up")
        }
        sensors = await stack.query("commandcentre_sensor_temperature_celsius")
        return len(up), polls, len(sensors)

    async def all_in() -> bool:
        up, polls, sensors = await state()
        return (
            up == 1 and len(polls) == 6 and set(polls.values()) == {1.0} and sensors >= 6
        )  # 3 racks x inlet, outlet

    try:
        await wait_for(all_in, "Prometheus to scrape the whole healthy demo", 30)
    except AssertionError:
        up, polls, sensors = await state()
        pytest.fail(
            f"the healthy demo is not all in Prometheus: up={up}, SNMP polls {polls}, "
            f"{sensors} temperature series\n{stack.prometheus_log()}"
        )
    return stack


# --------------------------------------------------------------------------- healthy


async def test_prometheus_scrapes_the_daemon_and_every_recording_rule_has_data(
    healthy: Stack,
) -> None:
    st = healthy
    up = await st.query('up{job="commandcentre"}')
    assert [float(r["value"][1]) for r in up] == [1.0]

    records = sorted(
        {
            rule["record"]
            for path in RULE_FILES
            for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"]
            if "record" in rule
        }
    )
    assert len(records) > 10, records

    async def missing() -> list[str]:
        return [r for r in records if not await st.query(r)]

    async def none_missing() -> bool:
        return not await missing()

    try:
        await wait_for(none_missing, "every recording rule to have data", 15)
    except AssertionError:
        pytest.fail(f"recording rules without data: {await missing()}")

    # values, not just presence: both UPSes on mains, one series per UPS
    on_battery = {
        r["metric"]["target"]: float(r["value"][1])
        for r in await st.query("commandcentre:ups_on_battery")
    }
    assert on_battery == {"ups-rfc1628": 0.0, "ups-apc": 0.0}
    inlets = {
        (r["metric"]["device"], r["metric"].get("sensor", "")): float(r["value"][1])
        for r in await st.query("commandcentre:inlet_temperature:celsius")
    }
    assert {
        ("server-room/rack-a1/inlet", ""),
        ("rack-a2-inlet", "AM2301"),
        ("rack-a3-env", "inlet_temperature"),
    } <= set(inlets), inlets
    assert all(18 < v < 27 for v in inlets.values()), inlets
    dew = {
        (r["metric"]["device"], r["metric"].get("sensor", "")): float(r["value"][1])
        for r in await st.query("commandcentre:dew_point:celsius")
    }
    # Zigbee2MQTT (no sensor label), Tasmota (AM2301) and ESPHome (inlet/outlet points)
    assert {
        ("server-room/rack-a1/inlet", ""),
        ("rack-a2-outlet", "AM2301"),
        ("rack-a3-env", "inlet"),
        ("rack-a3-env", "outlet"),
    } <= set(dew), dew
    assert all(5 < v < 15 for v in dew.values()), dew  # same air, same dew point
    sites = await st.query("commandcentre:site_targets:count")
    assert [(r["metric"]["site"], float(r["value"][1])) for r in sites] == [("demo", 3.0)]


def dashboard_queries() -> list[tuple[str, str, str, str]]:
    """(file, dashboard, panel, expr with the variables substituted) per panel query."""
    if not (REPO / "tests" / "grafana.py").exists():
        pytest.skip(
            "tests/grafana.py (the Grafana dashboard helper: load_dashboards, "
            "panel_queries, substitute) is missing: no dashboard queries to check"
        )
    from tests import grafana

    dashboards = grafana.load_dashboards()
    if not dashboards:
        pytest.skip("grafana-dashboards/ holds no dashboard yet")
    return [
        (Path(name).name, dash, panel, grafana.substitute(expr, variables))
        for name, dashboard in sorted(dashboards.items())
        # every other variable at "All" (.*), as the helper's defaults have it
        for variables in [{**grafana.default_variables(dashboard), **DASHBOARD_VARIABLES}]
        for dash, panel, expr in grafana.panel_queries(dashboard)
    ]


async def test_every_dashboard_panel_query_returns_data(healthy: Stack) -> None:
    st = healthy
    queries = dashboard_queries()
    assert queries, "the dashboards have no panel queries"
    panels = {(name, panel) for name, _, panel, _ in queries}
    assert set(EMPTY_IN_HEALTHY_DEMO) <= panels, set(EMPTY_IN_HEALTHY_DEMO) - panels

    async def enough_scrapes() -> bool:
        r = await st.query('count_over_time(up{job="commandcentre"}[20s])')
        return bool(r) and float(r[0]["value"][1]) >= SCRAPES_BEFORE_DASHBOARDS

    await wait_for(enough_scrapes, "enough scrapes for the [15s] rate windows", 40)

    async def problems() -> list[str]:
        out = []
        for name, dash, panel, expr in queries:
            try:
                if not await st.query(expr) and (name, panel) not in EMPTY_IN_HEALTHY_DEMO:
                    out.append(f"{name} ({dash}) / {panel}: empty: {expr}")
            except PromQLError as e:
                out.append(f"{name} ({dash}) / {panel}: {e}: {expr}")
        return out

    # A series can lag its first scrape by a poll or a sensor report: retry briefly.
    deadline = time.monotonic() + 10
    found = await problems()
    while found and time.monotonic() < deadline:
        await asyncio.sleep(1)
        found = await problems()
    assert not found, (
        f"{len(found)} of {len(queries)} dashboard queries return no data:\n" + "\n".join(found)
    )


async def test_nothing_fires_while_all_is_well(healthy: Stack) -> None:
    st = healthy

    def listing(alerts: list[dict[str, Any]]) -> str:
        return "\n".join(f"{a['state']}: {a['labels']} = {a['value']}" for a in alerts)

    # Until Prometheus' first scrape of the daemon, absent(up{job="commandcentre"})
    # holds and CommandcentreDown goes pending (with the shortened `for:`, may fire):
    # that one, and only that one, may still be active until the next evaluation.
    async def settled() -> bool:
        alerts = await st.alerts()
        others = [a for a in alerts if a["labels"]["alertname"] != "CommandcentreDown"]
        assert not others, "alerts in a healthy room:\n" + listing(others)
        return not alerts

    await wait_for(settled, "the start-up CommandcentreDown to resolve", 10)
    # Then watch for a few evaluations beyond the (shortened) `for:`: every rule has
    # had data all along, so anything true now would show as pending at once.
    watch = 2 * float(FOR.rstrip("s")) + 3
    deadline = time.monotonic() + watch
    while time.monotonic() < deadline:
        alerts = await st.alerts()
        assert not alerts, "alerts in a healthy room:\n" + listing(alerts)
        await asyncio.sleep(0.25)


async def test_the_exposition_passes_promtool_except_snmp_naming_lints(healthy: Stack) -> None:
    assert PROMTOOL is not None
    text = await healthy.get_text(healthy.daemon_url + "/metrics")
    r = await asyncio.to_thread(
        subprocess.run,
        [PROMTOOL, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    output = (r.stdout + r.stderr).strip()
    # promtool exits 1 on a parse error, 3 when it only has lint problems
    assert r.returncode in (0, 3), output
    assert "error while linting" not in output, output
    snmp_names = snmp_module_metric_names()
    unexpected = []
    for line in output.splitlines():
        name, _, problem = line.partition(" ")
        allowed = (
            not name.startswith("commandcentre_")
            and name.removesuffix("_info") in snmp_names  # EnumAsInfo adds _info
            and problem in ALLOWED_SNMP_LINTS
        )
        if not allowed:
            unexpected.append(line)
    assert not unexpected, "promtool check metrics:\n" + "\n".join(unexpected)
    # the lints that remain are really on SNMP metrics that are there
    assert "sysUpTime" in text


# --------------------------------------------------------------------------- faults


async def test_ups_on_battery_fires_upsonbattery(healthy: Stack) -> None:
    st = healthy
    t0 = time.monotonic()
    await asyncio.to_thread(ups_set_output_source, st.snmpsim_port, 5)  # battery(5)
    try:
        seen = await st.watch_alert("UpsOnBattery", {"target": "ups-rfc1628"}, t0, 30)
        assert seen.pending_after is not None, "never seen pending before firing"
        [alert] = seen.alerts
        assert alert["labels"]["severity"] == "critical"
        assert alert["labels"]["site"] == "demo"
        assert alert["labels"]["room"] == "server-room"
        # the annotation's queries found the UPS's runtime and charge
        assert "Estimated runtime" in alert["annotations"]["description"]
        assert "Battery charge" in alert["annotations"]["description"]
        # the APC UPS is still on mains
        assert not [
            a
            for a in await st.alerts()
            if a["labels"]["alertname"] == "UpsOnBattery" and a["labels"]["target"] != "ups-rfc1628"
        ]
    finally:
        await asyncio.to_thread(ups_set_output_source, st.snmpsim_port, 3)  # normal(3)
    await st.wait_resolved("UpsOnBattery", {}, 20)


async def test_water_leak_fires_waterleak_for_both_leak_sensors(healthy: Stack) -> None:
    st = healthy
    t0 = time.monotonic()
    await st.inject("leak", True)
    try:
        zigbee = await st.watch_alert("WaterLeak", {"device": "server-room/floor-leak"}, t0, 30)
        esphome = await st.watch_alert("WaterLeak", {"device": "rack-a3-env"}, t0, 30)
        for seen in (zigbee, esphome):
            assert seen.alerts[0]["labels"]["severity"] == "critical"
            assert seen.alerts[0]["labels"]["room"] == "server-room"
        assert zigbee.pending_after is not None or esphome.pending_after is not None
    finally:
        await st.inject("leak", False)
    await st.wait_resolved("WaterLeak", {}, 20)


async def test_a_quiet_sensor_goes_stale_and_a_node_offline_goes_offline(healthy: Stack) -> None:
    st = healthy
    t0 = time.monotonic()
    await st.inject("sensor_quiet", True)
    await st.inject("node_offline", True)
    try:
        stale = await st.watch_alert(
            "SensorStale", {"device": "server-room/rack-a1/inlet"}, t0, STALE_AFTER + 25
        )
        offline = await st.watch_alert("SensorOffline", {"device": "rack-a3-env"}, t0, 30)
        assert stale.firing_after is not None
        assert stale.firing_after > STALE_AFTER, "stale before the threshold"
        assert offline.alerts[0]["labels"]["severity"] == "warning"
        # the offline node is SensorOffline only, not SensorStale as well
        assert not [
            a
            for a in await st.alerts()
            if a["labels"]["alertname"] == "SensorStale"
            and a["labels"]["device"] != "server-room/rack-a1/inlet"
        ]
    finally:
        await st.inject("sensor_quiet", False)
        await st.inject("node_offline", False)
    await st.wait_resolved("SensorStale", {}, 20)
    await st.wait_resolved("SensorOffline", {}, 20)


async def test_devices_down_fire_deviceunreachable_and_siteunreachable(healthy: Stack) -> None:
    """Last: stops snmpsim for good."""
    st = healthy
    t0 = time.monotonic()
    await asyncio.to_thread(stop_process, st.snmpsim, 10.0)
    site = await st.watch_alert("SiteUnreachable", {"site": "demo"}, t0, 30)
    devices = {}
    for target in ("ups-rfc1628", "ups-apc", "switch-24"):
        devices[target] = await st.watch_alert("DeviceUnreachable", {"target": target}, t0, 30)
    assert site.alerts[0]["labels"]["severity"] == "critical"
    assert math.isclose(float(site.alerts[0]["value"]), 3.0)
    assert all(d.alerts[0]["labels"]["source"] == "snmp" for d in devices.values())
    assert "timeout" in devices["ups-apc"].alerts[0]["annotations"]["description"]
