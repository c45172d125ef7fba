"""An SNMP agent killed mid-walk, restarted, replaced by one answering garbage and by
one answering too slowly — over and over, next to two healthy targets.

The faulty target polls a fixed address (a UDP relay, ``udp_relay.py``) behind which
the agent is swapped: a real snmpd that is SIGKILLed when the relay sees the second
request of a walk, a fresh snmpd, the hostile agent in GARBAGE mode, and in SLOW
mode. Checked through the daemon's own metrics:

* the healthy targets stay up and keep completing a poll every interval in every
  scrape taken during the faults (no error of any reason on them);
* the faulty target's failures are counted under the right reasons (dead and slow:
  ``timeout``/``budget``; garbage: ``decode``) and it comes back up on a real agent;
* nothing leaks: asyncio tasks, open descriptors and RSS after the fault cycles
  are back within a bound of what they were after the first cycle;
* SIGTERM in the middle of a fault stops the daemon cleanly.

The daemon runs in-process (``running_daemon``) so its tasks can be counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.faults.helpers import (
    REPO,
    Metrics,
    bounded,
    fd_count,
    rss_bytes,
    scrape,
    value,
    values,
    wait_for_metrics,
    write_yaml,
)
from tests.faults.udp_relay import UdpRelay
from tests.integration.agents import HostileAgent, HostileMode, run_snmpd
from tests.integration.daemons import running_daemon

pytestmark = pytest.mark.integration

CYCLES = 4  # leaks: the state after cycle 0 against the state after cycle 2
HEALTHY = ("healthy-a", "healthy-b")
WALK_ROOT = (1, 3, 6, 1, 2, 1, 1)
RSS_GROWTH_BOUND = 16 * 2**20  # bytes the daemon may grow over two fault cycles
STALE_BOUND = 5.0  # seconds: a healthy target's last success is never older than this


def victim_module(path: Path) -> Path:
    """The system module with max_repetitions 3, so one walk is several requests."""
    system = yaml.safe_load((REPO / "config" / "snmp" / "system.yml").read_text())
    module = dict(system["modules"]["system"], max_repetitions=3)
    return write_yaml(path, {"modules": {"system_small_bulk": module}})


def errors(m: Metrics, target: str) -> dict[str, float]:
    return {
        lbl["reason"]: v
        for lbl, v in values(m, "commandcentre_snmp_errors_total", target=target)
        if v
    }


class Watch:
    """Scrapes continuously; records every violation of the healthy targets' contract."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base
        self.scrapes = 0
        self.violations: list[str] = []
        self.durations: dict[str, list[float]] = {t: [] for t in HEALTHY}

    async def run(self) -> None:
        while True:
            m = await scrape(self.session, self.base)
            now = time.time()
            self.scrapes += 1
            for t in HEALTHY:
                up = value(m, "commandcentre_snmp_up", target=t)
                last = value(m, "commandcentre_snmp_last_success_timestamp_seconds", target=t)
                if up != 1 or last is None or now - last > STALE_BOUND:
                    self.violations.append(f"{t}: up={up}, last success {last} at {now}")
                if errors(m, t):
                    self.violations.append(f"{t}: errors {errors(m, t)}")
                d = value(m, "commandcentre_snmp_poll_duration_seconds", target=t)
                if d is not None:
                    self.durations[t].append(d)
            await asyncio.sleep(0.25)


@bounded(150)
async def test_faulty_agent_cycles_leave_healthy_targets_alone_and_leak_nothing(
    tmp_path: Path,
) -> None:
    relay = await UdpRelay().start()
    with contextlib.ExitStack() as agents:
        healthy_agent = agents.enter_context(run_snmpd(tcp=False))
        config = write_yaml(
            tmp_path / "cc.yml",
            {
                "http": {"listen": "127.0.0.1:0"},
                "snmp": {
                    "module_files": [
                        str(REPO / "config" / "snmp" / "system.yml"),
                        str(victim_module(tmp_path / "victim.yml")),
                    ],
                    "auths": {"v2": {"version": 2, "community": "public"}},
                    "defaults": {
                        "interval": "1s",
                        "timeout": "400ms",
                        "retries": 0,
                        "auth": "v2",
                    },
                    "targets": [
                        *(
                            {
                                "name": t,
                                "address": f"127.0.0.1:{healthy_agent.port}",
                                "modules": ["system"],
                            }
                            for t in HEALTHY
                        ),
                        {
                            "name": "victim",
                            "address": f"127.0.0.1:{relay.port}",
                            "modules": ["system_small_bulk"],
                        },
                    ],
                },
            },
        )
        async with (
            aiohttp.ClientSession() as session,
            running_daemon(config) as (daemon, base),
        ):

            async def until(check: Callable[[Metrics], bool], what: str) -> Metrics:
                return await wait_for_metrics(session, base, check, what, limit=15)

            def victim_errors(*reasons: str) -> Callable[[Metrics], float]:
                return lambda m: sum(errors(m, "victim").get(r, 0) for r in reasons)

            def victim_up(m: Metrics) -> bool:
                return value(m, "commandcentre_snmp_up", target="victim") == 1

            def victim_down(
                reasons: tuple[str, ...], more_than: float
            ) -> Callable[[Metrics], bool]:
                """Down, with more than ``more_than`` failures of ``reasons`` counted."""
                failures = victim_errors(*reasons)
                return lambda m: failures(m) > more_than and not victim_up(m)

            injected = {"killed_mid_walk": 0, "restarted": 0, "garbage": 0, "slow": 0}
            snapshots: list[tuple[int, int, int]] = []  # tasks, fds, rss; victim healthy
            stack = contextlib.AsyncExitStack()
            await until(
                lambda m: all(value(m, "commandcentre_snmp_up", target=t) == 1 for t in HEALTHY),
                "the healthy targets' first polls",
            )
            watch = Watch(session, base)
            watcher = asyncio.create_task(watch.run())
            try:
                m0 = await scrape(session, base)
                polls0 = {t: value(m0, "commandcentre_snmp_polls_total", target=t) for t in HEALTHY}
                t_start = time.monotonic()
                for cycle in range(CYCLES):
                    # a real agent, killed between two requests of one walk
                    agent = stack.enter_context(run_snmpd(tcp=False))
                    relay.set_backend((agent.host, agent.port))
                    await until(victim_up, "victim up on snmpd")
                    dead_before = victim_errors("timeout", "budget")(await scrape(session, base))
                    kills = relay.mid_walk_kills
                    relay.kill_mid_walk = (WALK_ROOT, agent.proc.kill)
                    await until(
                        victim_down(("timeout", "budget"), more_than=dead_before),
                        "victim down after its agent died mid-walk",
                    )
                    assert relay.mid_walk_kills == kills + 1
                    injected["killed_mid_walk"] += 1
                    # restarted
                    agent = stack.enter_context(run_snmpd(tcp=False))
                    relay.set_backend((agent.host, agent.port))
                    await until(victim_up, "victim up again after the restart")
                    injected["restarted"] += 1
                    # replaced by one answering garbage, then by a slow one
                    for mode, reasons, kind in (
                        (HostileMode.GARBAGE, ("decode",), "garbage"),
                        (HostileMode.SLOW, ("timeout", "budget"), "slow"),
                    ):
                        hostile = await stack.enter_async_context(HostileAgent(mode, delay=2.0))
                        before = victim_errors(*reasons)(await scrape(session, base))
                        relay.set_backend((hostile.host, hostile.port))
                        # (two more failures: counters count whole failures)
                        await until(
                            victim_down(reasons, more_than=before + 1),
                            f"victim failing with {reasons}",
                        )
                        injected[kind] += 1
                    if cycle == CYCLES - 1:
                        break  # the last fault (slow) stays on for the SIGTERM
                    # healthy again; every agent of this cycle gone
                    relay.set_backend((healthy_agent.host, healthy_agent.port))
                    await stack.aclose()
                    await until(victim_up, "victim up on a healthy agent")
                    await asyncio.sleep(1.0)  # let the last failed polls' leftovers settle
                    snapshots.append((len(asyncio.all_tasks()), fd_count(), rss_bytes()))

                m = await scrape(session, base)
                elapsed = time.monotonic() - t_start
                baseline, (tasks, fds, rss) = snapshots[0], snapshots[-1]
                print(
                    f"\nfaults injected: {injected}; between cycle 0 and {CYCLES - 2}: tasks "
                    f"{baseline[0]} -> {tasks}, fds {baseline[1]} -> {fds}, rss "
                    f"{baseline[2] / 2**20:.1f} -> {rss / 2**20:.1f} MiB; "
                    f"{watch.scrapes} scrapes during {elapsed:.0f}s"
                )
                assert watch.violations == [], watch.violations[:10]
                assert watch.scrapes >= elapsed / 0.5
                for t in HEALTHY:
                    polls = value(m, "commandcentre_snmp_polls_total", target=t)
                    first = polls0[t]
                    assert polls is not None
                    assert first is not None
                    # one poll per 1 s interval kept completing (half of them, at the least)
                    assert polls - first >= elapsed / 2, (t, polls, first, elapsed)
                    d = watch.durations[t]
                    print(f"{t} poll duration: median {sorted(d)[len(d) // 2] * 1000:.1f} ms")
                victim = errors(m, "victim")
                assert set(victim) <= {"timeout", "budget", "decode"}, victim
                assert victim.get("decode", 0) >= 2 * CYCLES, victim
                assert victim.get("timeout", 0) + victim.get("budget", 0) >= 3 * CYCLES, victim
                print(f"victim errors by reason: {victim}")
                assert tasks <= baseline[0] + 1, snapshots
                assert fds <= baseline[1] + 1, snapshots
                assert rss <= baseline[2] + RSS_GROWTH_BOUND, snapshots
                # SIGTERM (a real signal, to this process: the daemon's handler) mid-fault
                os.kill(os.getpid(), signal.SIGTERM)
                await until(lambda m: True, "a scrape")  # the loop runs the handler
                deadline = time.monotonic() + 5
                while daemon.ready:
                    assert time.monotonic() < deadline, "SIGTERM did not start the stop"
                    await asyncio.sleep(0.02)
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await watcher
                await stack.aclose()
                await relay.stop()
            # leaving running_daemon asserts exit 0 within 15 s (TimeoutStopSec is 30 s)
