"""The daemon end to end against real agents: polling, /metrics, /snmp, reload, failures.

The daemon runs in-process (its event loop is the test's); agents are real
net-snmp snmpd processes and, for misbehaviour no real agent shows on demand,
the in-process hostile agent from ``agents.py``.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from commandcentre.daemon import Daemon
from tests.integration.agents import (
    SNMPD_USERS,
    AgentProcess,
    HostileAgent,
    HostileMode,
    free_udp_port,
    run_snmpd,
)
from tests.integration.daemons import running_daemon

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MODULE_FILES = [
    str(REPO / "config" / "snmp" / "system.yml"),
    str(REPO / "config" / "snmp" / "if_mib.yml"),
]


@pytest.fixture(scope="module")
def snmpd() -> Iterator[AgentProcess]:
    with run_snmpd() as agent:
        yield agent


def v3_auth(user: str, password: str | None = None) -> dict[str, Any]:
    u = SNMPD_USERS[user]
    return {
        "version": 3,
        "username": u.name,
        "security_level": u.level,
        "auth_protocol": u.auth_protocol,
        "password": password if password is not None else u.auth_password,
        "priv_protocol": u.priv_protocol,
        "priv_password": u.priv_password,
    }


def write_config(path: Path, targets: list[dict[str, Any]], **snmp: Any) -> Path:
    cfg = {
        "http": {"listen": "127.0.0.1:0"},
        "snmp": {
            "module_files": MODULE_FILES,
            "auths": {
                "v2": {"version": 2, "community": "public"},
                "v2_wrong": {"version": 2, "community": "not-the-community"},
                "v3": v3_auth("shaaes"),
                "v3_wrong_key": v3_auth("shaaes", "wrong-password-1"),
            },
            "defaults": {"interval": "1s", "timeout": "500ms", "retries": 0, "modules": ["system"]},
            "targets": targets,
            **snmp,
        },
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


class Running:
    def __init__(self, daemon: Daemon, base: str, session: aiohttp.ClientSession) -> None:
        self.daemon = daemon
        self.base = base
        self.session = session

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(self.base + path) as r:
            return r.status, await r.text()

    async def post(self, path: str) -> tuple[int, str]:
        async with self.session.post(self.base + path) as r:
            return r.status, await r.text()

    async def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        status, text = await self.get("/metrics")
        assert status == 200
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
        }

    async def wait_for(self, check: Callable[[], bool], what: str, limit: float = 10.0) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if check():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def state(self, target: str, module: str = "system") -> Any:
        return self.daemon.poller.states.get((target, module))


class StartDaemon(Protocol):
    """What the ``run_daemon`` fixture hands a test: start the daemon on a config."""

    async def __call__(self, config_path: Path, *, enable_lifecycle: bool = False) -> Running: ...


@pytest.fixture
async def run_daemon() -> AsyncIterator[StartDaemon]:
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())

        async def start(config_path: Path, *, enable_lifecycle: bool = False) -> Running:
            daemon, base = await stack.enter_async_context(
                running_daemon(config_path, enable_lifecycle=enable_lifecycle)
            )
            return Running(daemon, base, session)

        yield start


def series(
    metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> list[float]:
    want = set(labels.items())
    return [v for (n, lbl), v in metrics.items() if n == name and want <= lbl]


async def test_polls_v2c_and_v3_and_exposes_snmp_exporter_metrics(
    tmp_path: Path, snmpd: AgentProcess, run_daemon: StartDaemon
) -> None:
    addr = f"127.0.0.1:{snmpd.port}"
    cfg = write_config(
        tmp_path / "c.yml",
        [
            {
                "name": "sw-v2",
                "address": addr,
                "auth": "v2",
                "modules": ["system", "if_mib"],
                "labels": {"room": "r1"},
            },
            {"name": "sw-v3", "address": addr, "auth": "v3", "modules": ["system"]},
        ],
    )
    d = await run_daemon(cfg)
    await d.wait_for(
        lambda: all(
            (s := d.state(t, m)) is not None and s.up == 1
            for t, m in [("sw-v2", "system"), ("sw-v2", "if_mib"), ("sw-v3", "system")]
        ),
        "all targets up",
    )
    m = await d.metrics()
    assert series(m, "commandcentre_snmp_up", target="sw-v2", module="if_mib", room="r1") == [1]
    assert series(m, "commandcentre_snmp_up", target="sw-v3", module="system") == [1]
    # snmp_exporter names and labels, plus target and static labels
    assert series(m, "sysUpTime", target="sw-v2", room="r1")[0] > 0
    assert series(m, "sysUpTime", target="sw-v3")[0] > 0
    assert series(
        m, "sysLocation", target="sw-v2", sysLocation="commandcentre integration test"
    ) == [1]
    lo = series(m, "ifMtu", target="sw-v2", ifDescr="lo", ifName="lo")
    assert lo == [65536]
    # (prometheus-client's parser reports counter samples with a _total suffix; the
    # exposition itself has snmp_exporter's name, checked in the compat test)
    assert series(m, "ifHCInOctets_total", target="sw-v2", ifName="lo")[0] > 0
    assert series(m, "commandcentre_snmp_varbinds", target="sw-v2", module="if_mib")[0] > 20
    assert series(m, "commandcentre_config_last_reload_successful") == [1]
    # the loop-lag probe runs in the daemon (its measuring is tested in test_looplag.py)
    assert len(series(m, "commandcentre_event_loop_lag_max_seconds")) == 1
    assert len(series(m, "commandcentre_event_loop_stalls_total")) == 1

    # the exposition is one Prometheus accepts
    if shutil.which("promtool"):
        _, text = await d.get("/metrics")
        proc = await asyncio.to_thread(
            subprocess.run,
            ["promtool", "check", "metrics"],
            input=text,
            capture_output=True,
            text=True,
            check=False,
        )
        assert "error while linting" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


async def test_dead_and_slow_targets_do_not_delay_a_healthy_one(
    tmp_path: Path, snmpd: AgentProcess, run_daemon: StartDaemon
) -> None:
    async with (
        HostileAgent(HostileMode.SLOW, delay=5.0) as slow,
        HostileAgent(HostileMode.SILENT) as dead,
    ):
        cfg = write_config(
            tmp_path / "c.yml",
            [
                {"name": "healthy", "address": f"127.0.0.1:{snmpd.port}", "auth": "v2"},
                {"name": "dead", "address": f"127.0.0.1:{dead.port}", "auth": "v2", "retries": 2},
                {
                    "name": "slow",
                    "address": f"127.0.0.1:{slow.port}",
                    "auth": "v2",
                    "timeout": "3s",
                },
                {"name": "unreachable", "address": f"127.0.0.1:{free_udp_port()}", "auth": "v2"},
            ],
            max_in_flight=2,  # even with most slots held by bad targets
        )
        d = await run_daemon(cfg)
        # (seconds since start when the poll ended, its duration)
        polls: list[tuple[float, float]] = []
        seen_polls = 0
        t0 = time.monotonic()
        while time.monotonic() < t0 + 7:
            st = d.state("healthy")
            if st is not None and st.polls > seen_polls:
                seen_polls = st.polls
                polls.append((time.monotonic() - t0, st.duration))
            await asyncio.sleep(0.02)
        m = await d.metrics()
    # healthy: polled on schedule (1 s interval over 7 s)...
    assert len(polls) >= 6, polls
    # ...and fast once each bad target has failed once (by 2.5 s: every start offset is
    # under 1 s and every budget 0.9 s). Before that, a bad target is not yet known to
    # be bad and may hold a slot the healthy one waits for; after, bad targets poll in
    # their own lane and the healthy one never waits for them.
    later = [dur for ended, dur in polls if ended > 2.5]
    assert len(later) >= 4, polls
    assert max(later) < 0.3, polls
    assert series(m, "commandcentre_snmp_up", target="healthy") == [1]
    # the bad ones: down, each with a reason. A dead device ends its poll either by its
    # request timing out or, queued behind the other bad ones in the suspect lane, by
    # running out of its budget: both are counted, under their own reason.
    for name in ("dead", "unreachable", "slow"):
        assert series(m, "commandcentre_snmp_up", target=name) == [0]
        failed = sum(
            series(m, "commandcentre_snmp_errors_total", target=name, reason=r)[0]
            for r in ("timeout", "budget")
        )
        polled = series(m, "commandcentre_snmp_polls_total", target=name)[0]
        assert failed == polled >= 3, (name, failed, polled)


async def test_wrong_credentials_report_their_reason(
    tmp_path: Path, snmpd: AgentProcess, run_daemon: StartDaemon
) -> None:
    addr = f"127.0.0.1:{snmpd.port}"
    cfg = write_config(
        tmp_path / "c.yml",
        [
            {"name": "bad-community", "address": addr, "auth": "v2_wrong"},
            {"name": "bad-v3-key", "address": addr, "auth": "v3_wrong_key"},
        ],
    )
    d = await run_daemon(cfg)
    await d.wait_for(
        lambda: all(
            (s := d.state(t)) is not None and s.polls >= 1 for t in ("bad-community", "bad-v3-key")
        ),
        "a poll of each",
    )
    m = await d.metrics()
    assert series(m, "commandcentre_snmp_up", target="bad-community") == [0]
    # a v2c agent ignores a wrong community: all the manager sees is silence
    assert (
        series(m, "commandcentre_snmp_errors_total", target="bad-community", reason="timeout")[0]
        >= 1
    )
    assert series(m, "commandcentre_snmp_up", target="bad-v3-key") == [0]
    assert series(m, "commandcentre_snmp_errors_total", target="bad-v3-key", reason="auth")[0] >= 1
    assert not series(m, "sysUpTime", target="bad-community")


async def test_stale_samples_dropped_after_failed_polls_but_up_stays(
    tmp_path: Path, run_daemon: StartDaemon
) -> None:
    with run_snmpd() as agent:
        cfg = write_config(
            tmp_path / "c.yml",
            [
                {
                    "name": "flaky",
                    "address": f"127.0.0.1:{agent.port}",
                    "auth": "v2",
                    "stale_after_failures": 2,
                }
            ],
        )
        d = await run_daemon(cfg)
        await d.wait_for(lambda: (s := d.state("flaky")) is not None and s.up == 1, "flaky up")
        assert series(await d.metrics(), "sysUpTime", target="flaky")
    # the agent is gone now
    await d.wait_for(lambda: d.state("flaky").failures_in_a_row >= 1, "first failure")
    m = await d.metrics()
    assert series(m, "sysUpTime", target="flaky"), "kept after one failure"
    await d.wait_for(lambda: d.state("flaky").failures_in_a_row >= 2, "second failure")
    m = await d.metrics()
    assert not series(m, "sysUpTime", target="flaky"), "dropped after stale_after_failures"
    assert series(m, "commandcentre_snmp_up", target="flaky") == [0]


async def test_reload_adds_removes_keeps_unchanged_and_survives_a_bad_config(
    tmp_path: Path, snmpd: AgentProcess, run_daemon: StartDaemon
) -> None:
    addr = f"127.0.0.1:{snmpd.port}"
    path = tmp_path / "c.yml"
    write_config(
        path,
        [
            {"name": "keep", "address": addr, "auth": "v2", "interval": "2s"},
            {"name": "remove", "address": addr, "auth": "v2"},
        ],
    )
    d = await run_daemon(path, enable_lifecycle=True)
    await d.wait_for(
        lambda: all((s := d.state(t)) is not None and s.up == 1 for t in ("keep", "remove")), "up"
    )
    keep_task = d.daemon.scheduler._tasks["keep"]
    keep_polls = d.state("keep").polls

    write_config(
        path,
        [
            {"name": "keep", "address": addr, "auth": "v2", "interval": "2s"},
            {"name": "added", "address": addr, "auth": "v3"},
        ],
    )
    status, body = await d.post("/-/reload")
    assert (status, body) == (200, "config reloaded\n")
    # unchanged target: the same task (same phase, no restart), series still there
    assert d.daemon.scheduler._tasks["keep"] is keep_task
    m = await d.metrics()
    assert series(m, "sysUpTime", target="keep")
    assert d.state("keep").polls >= keep_polls
    # removed target: gone, self-metrics too
    assert not [k for k in m if ("target", "remove") in k[1]]
    await d.wait_for(lambda: (s := d.state("added")) is not None and s.up == 1, "added up")

    # a broken config is refused; the old one keeps running
    path.write_text(path.read_text().replace("interval: 2s", "interval: 2 parsecs"))
    status, body = await d.post("/-/reload")
    assert status == 500
    assert "still running the previous config" in body
    assert f"{path}: snmp.targets[0].interval: must be a duration" in body
    m = await d.metrics()
    assert series(m, "commandcentre_config_last_reload_successful") == [0]
    assert series(m, "commandcentre_config_reloads_total", result="failure") == [1]
    assert series(m, "sysUpTime", target="keep")
    polls_before = d.state("added").polls
    await d.wait_for(
        lambda: d.state("added").polls > polls_before, "still polling after a bad reload"
    )

    # a file emptied by a save caught half-way (truncate, then write) is refused too,
    # though an empty file is a valid config at start
    path.write_text("# being rewritten\n")
    status, body = await d.post("/-/reload")
    assert status == 500
    assert f"{path}: the file is empty: a reload would stop all monitoring" in body
    assert series(await d.metrics(), "commandcentre_config_reloads_total", result="failure") == [2]
    assert series(await d.metrics(), "sysUpTime", target="keep")

    # reload is POST only
    status, _ = await d.get("/-/reload")
    assert status == 405


async def test_snmp_probe_endpoint_has_snmp_exporter_semantics_and_refuses_unknowns(
    tmp_path: Path, snmpd: AgentProcess, run_daemon: StartDaemon
) -> None:
    addr = f"127.0.0.1:{snmpd.port}"
    cfg = write_config(
        tmp_path / "c.yml", [{"name": "sw", "address": addr, "auth": "v2", "interval": "1h"}]
    )
    d = await run_daemon(cfg)

    status, text = await d.get("/snmp?target=sw&module=system")
    assert status == 200, text
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert fams["sysUpTime"].samples[0].labels == {}  # no target label: Prometheus adds instance
    assert fams["snmp_scrape_pdus_returned"].samples[0].labels == {"module": "system"}

    # by address, with an explicit auth
    status, text = await d.get(f"/snmp?target={addr}&module=system,if_mib&auth=v3")
    assert status == 200, text
    assert "ifMtu{" in text
    assert "sysUpTime " in text
    # each module has its own snmp_scrape_* lines, under one HELP/TYPE per name
    types = [line for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types)), text
    assert 'snmp_scrape_pdus_returned{module="system"}' in text
    assert 'snmp_scrape_pdus_returned{module="if_mib"}' in text

    for query, message in [
        ("", "'target' parameter must be specified"),
        ("?target=sw&module=nope", "Unknown module 'nope'"),
        ("?target=sw&auth=nope", "Unknown auth 'nope'"),
        ("?target=192.0.2.1&module=system", "target '192.0.2.1' is not configured"),
        (
            "?target=bad%20host!&module=system",
            "is neither a configured target name nor a valid address",
        ),
    ]:
        status, text = await d.get("/snmp" + query)
        assert status == 400, query
        assert message in text, (query, text)

    # a device that does not answer: an error Prometheus sees as a failed scrape
    status, text = await d.get(f"/snmp?target={addr}&module=system&auth=v2_wrong")
    assert status == 500
    assert "timeout" in text
    assert "not-the-community" not in text


async def test_status_page_escapes_untrusted_text(
    tmp_path: Path, snmpd: AgentProcess, run_daemon: StartDaemon
) -> None:
    evil = "<script>alert(1)</script>"
    cfg = write_config(
        tmp_path / "c.yml", [{"name": evil, "address": f"127.0.0.1:{snmpd.port}", "auth": "v2"}]
    )
    d = await run_daemon(cfg)
    async with d.session.get(d.base + "/") as r:
        body = await r.text()
        assert r.status == 200
        assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert evil not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_sigterm_and_sighup_with_systemd_notify(tmp_path: Path, snmpd: AgentProcess) -> None:
    cfg = write_config(
        tmp_path / "c.yml", [{"name": "sw", "address": f"127.0.0.1:{snmpd.port}", "auth": "v2"}]
    )
    sock_path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(sock_path)
        notify.settimeout(15)
        proc = subprocess.Popen(
            [
                str(Path(__import__("sys").executable).with_name("commandcentre")),
                "run",
                "--config",
                str(cfg),
                "--listen",
                "127.0.0.1:0",
            ],
            env={"NOTIFY_SOCKET": sock_path, "PATH": "/usr/bin:/bin", "WATCHDOG_USEC": "1000000"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            messages: list[bytes] = []

            def expect(prefix: bytes) -> None:
                while True:
                    msg = notify.recv(4096)
                    messages.append(msg)
                    if msg.startswith(prefix):
                        return

            expect(b"READY=1")
            expect(b"WATCHDOG=1")  # polls complete, so the watchdog is fed
            proc.send_signal(1)  # SIGHUP
            expect(b"RELOADING=1")
            expect(b"READY=1")
            t0 = time.monotonic()
            proc.terminate()
            expect(b"STOPPING=1")
            assert proc.wait(timeout=10) == 0
            assert time.monotonic() - t0 < 5
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    _, err = proc.communicate()
    log = err.decode()
    # JSON logs when stderr is not a terminal
    assert '"event": "config_applied"' in log
    assert '"event": "stopped"' in log


# What each misbehaviour must be counted as, on the target that showed it.
HOSTILE_REASONS: dict[HostileMode, set[str]] = {
    HostileMode.GARBAGE: {"decode"},
    HostileMode.TRUNCATED: {"decode"},
    HostileMode.BAD_VALUE_TYPE: {"decode"},
    HostileMode.WRONG_REQUEST_ID: {"timeout"},  # not an answer to our request: ignored
    HostileMode.WRONG_COMMUNITY: {"timeout"},
    HostileMode.BACKWARDS: {"oid_not_increasing"},
    HostileMode.ENDLESS: {"walk_too_long", "budget"},
    HostileMode.GEN_ERR: {"agent_error"},
    HostileMode.TOO_BIG: {"agent_error"},
}


async def test_hostile_replies_are_counted_by_reason_logged_once_and_bounded(
    tmp_path: Path, snmpd: AgentProcess, run_daemon: StartDaemon
) -> None:
    from structlog.testing import capture_logs

    async with AsyncExitStack() as stack:
        agents = {
            mode: await stack.enter_async_context(HostileAgent(mode)) for mode in HOSTILE_REASONS
        }
        targets: list[dict[str, Any]] = [
            {"name": mode.value, "address": f"127.0.0.1:{a.port}", "auth": "v2"}
            for mode, a in agents.items()
        ]
        targets.append({"name": "healthy", "address": f"127.0.0.1:{snmpd.port}", "auth": "v2"})
        # a module that does not fit the device: sysDescr is a string, declared a gauge
        targets.append(
            {
                "name": "wrong-types",
                "address": f"127.0.0.1:{snmpd.port}",
                "auth": "v2",
                "modules": ["mistyped"],
            }
        )
        mistyped = {
            "walk": ["1.3.6.1.2.1.1"],
            "metrics": [
                {"name": "sysDescr", "oid": "1.3.6.1.2.1.1.1", "type": "gauge"},
                {"name": "sysUpTime", "oid": "1.3.6.1.2.1.1.3", "type": "gauge"},
            ],
        }
        cfg = write_config(tmp_path / "c.yml", targets, modules={"mistyped": mistyped})
        with capture_logs() as logs:
            d = await run_daemon(cfg)
            names = [t["name"] for t in targets]
            await d.wait_for(
                lambda: all(
                    any(st.polls >= 3 for (t, _), st in d.daemon.poller.states.items() if t == n)
                    for n in names
                ),
                "three polls of every target",
                limit=20,
            )
            m = await d.metrics()
            states = {n: d.state(n) for n in names if n != "wrong-types"}

    for mode, reasons in HOSTILE_REASONS.items():
        name = mode.value
        counted = {
            r: series(m, "commandcentre_snmp_errors_total", target=name, reason=r)[0]
            for r in (
                "timeout",
                "auth",
                "decode",
                "agent_error",
                "oid_not_increasing",
                "walk_too_long",
                "budget",
                "transport",
            )
        }
        nonzero = {r for r, n in counted.items() if n}
        assert nonzero, (name, counted)
        assert nonzero <= reasons, (name, counted)
        assert series(m, "commandcentre_snmp_up", target=name) == [0]
        # each poll ended within its budget (0.9 s of the 1 s interval), with a margin
        assert states[name].duration < 1.2, (name, states[name].duration)
        failures = [e for e in logs if e["event"] == "snmp_poll_failed" and e.get("target") == name]
        # logged when the failure starts (and again only if its reason changes)
        assert 1 <= len(failures) <= len(reasons), (name, failures)
        assert failures[0]["module"] == "system"
        assert failures[0]["address"] == f"127.0.0.1:{agents[mode].port}"
    # a device sending values of the wrong type is up, and the bad values are counted
    assert series(m, "commandcentre_snmp_up", target="wrong-types", module="mistyped") == [1]
    wrong = series(m, "commandcentre_snmp_errors_total", target="wrong-types", reason="wrong_type")
    assert wrong[0] >= 3
    assert series(m, "sysUpTime", target="wrong-types")[0] > 0  # the rest still maps
    assert not series(m, "sysDescr", target="wrong-types")
    # and the healthy device beside all of them was never disturbed
    assert series(m, "commandcentre_snmp_up", target="healthy") == [1]
    assert series(m, "commandcentre_snmp_errors_total", target="healthy", reason="timeout") == [0]
