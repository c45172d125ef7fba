"""A reload storm: valid and broken configs alternating, by SIGHUP to the real daemon
process, while it polls and while scrapers read ``/metrics`` without pause.

Each valid config moves one target (``changing``) to a new ``generation`` label; the
broken ones are each broken differently (bad YAML, unknown key, bad address, a
module file that does not exist, an unknown module). (An empty file is a valid,
empty config by design, so it is not among them.) Checked: every scrape taken during
the storm has the series of the two unchanged targets; after each reload the
daemon runs the newest valid config and ``commandcentre_config_last_reload_successful``
says whether the newest reload worked; a burst of signals faster than reloads
complete ends on the last config too; SIGTERM in the middle of a burst exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.faults.helpers import (
    REPO,
    DaemonProcess,
    Metrics,
    bounded,
    scrape,
    value,
    values,
    wait_for_metrics,
    write_yaml,
)
from tests.integration.agents import AgentProcess, run_snmpd

pytestmark = pytest.mark.integration

STABLE = ("stable-a", "stable-b")
SEQUENTIAL_RELOADS = 40  # half valid, half broken
BURST = 20
SCRAPERS = 3


@pytest.fixture(scope="module")
def snmpd() -> Iterator[AgentProcess]:
    with run_snmpd(tcp=False) as agent:
        yield agent


def valid(agent: AgentProcess, generation: int) -> dict[str, Any]:
    address = f"127.0.0.1:{agent.port}"
    return {
        "snmp": {
            "module_files": [str(REPO / "config" / "snmp" / "system.yml")],
            "auths": {"v2": {"version": 2, "community": "public"}},
            "defaults": {"interval": "1s", "timeout": "500ms", "retries": 0, "auth": "v2"},
            "targets": [
                *({"name": t, "address": address, "modules": ["system"]} for t in STABLE),
                {
                    "name": "changing",
                    "address": address,
                    "modules": ["system"],
                    "labels": {"generation": str(generation)},
                },
            ],
        }
    }


def write_broken(path: Path, agent: AgentProcess, kind: int) -> None:
    cfg = valid(agent, -1)
    kind %= 5
    if kind == 0:
        path.write_text("snmp: [this is not, valid: yaml\n")
        return
    if kind == 1:
        cfg["snmp"]["no_such_key"] = True
    elif kind == 2:
        cfg["snmp"]["targets"][2]["address"] = "127.0.0.1:notaport"
    elif kind == 3:
        cfg["snmp"]["module_files"].append("/nonexistent/module.yml")
    else:
        cfg["snmp"]["targets"][2]["modules"] = ["no_such_module"]
    write_yaml(path, cfg)


def reloads(m: Metrics) -> float:
    return sum(v for _, v in values(m, "commandcentre_config_reloads_total"))


def reloads_above(count: float) -> Callable[[Metrics], bool]:
    """A check for ``wait_for_metrics``: more reloads than ``count`` have been counted."""
    return lambda m: reloads(m) > count


def generation(m: Metrics) -> str | None:
    found = values(m, "commandcentre_snmp_up", target="changing")
    return found[0][0].get("generation") if len(found) == 1 else None


class Scrapers:
    """Scrape without pause; record any scrape missing an unchanged target's series."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base
        self.scrapes = 0
        self.missing: list[str] = []

    async def run(self) -> None:
        while True:
            m = await scrape(self.session, self.base)
            self.scrapes += 1
            for t in STABLE:
                if value(m, "commandcentre_snmp_up", target=t) != 1:
                    self.missing.append(f"scrape {self.scrapes}: {t} not up")
                if value(m, "sysUpTime", target=t) is None:
                    self.missing.append(f"scrape {self.scrapes}: sysUpTime of {t} missing")


@bounded(120)
async def test_reload_storm_ends_on_the_last_valid_config_and_loses_no_series(
    snmpd: AgentProcess, tmp_path: Path
) -> None:
    path = write_yaml(tmp_path / "cc.yml", valid(snmpd, 0))
    daemon = DaemonProcess(path, tmp_path)
    tasks: list[asyncio.Task[None]] = []
    try:
        async with aiohttp.ClientSession() as session:
            await daemon.start(session)
            await wait_for_metrics(
                session,
                daemon.base,
                lambda m: all(value(m, "sysUpTime", target=t) is not None for t in STABLE),
                "first polls",
            )
            scrapers = [Scrapers(session, daemon.base) for _ in range(SCRAPERS)]
            tasks = [asyncio.create_task(s.run()) for s in scrapers]

            # sequential: each reload's outcome checked before the next
            last_valid = 0
            for i in range(1, SEQUENTIAL_RELOADS + 1):
                before = reloads(await scrape(session, daemon.base))
                ok = i % 2 == 1
                if ok:
                    last_valid = i
                    write_yaml(path, valid(snmpd, i))
                else:
                    write_broken(path, snmpd, i // 2)
                daemon.signal(signal.SIGHUP)
                m = await wait_for_metrics(
                    session, daemon.base, reloads_above(before), f"reload {i}"
                )
                assert value(m, "commandcentre_config_last_reload_successful") == int(ok), i
                assert generation(m) == str(last_valid), (i, generation(m))

            # a burst: signals faster than reloads complete, ending on a valid config
            for i in range(BURST):
                if i % 2:
                    write_broken(path, snmpd, i)
                else:
                    write_yaml(path, valid(snmpd, 1000 + i))
                daemon.signal(signal.SIGHUP)
                await asyncio.sleep(0.01)
            write_yaml(path, valid(snmpd, 9999))
            daemon.signal(signal.SIGHUP)
            m = await wait_for_metrics(
                session,
                daemon.base,
                lambda m: (
                    generation(m) == "9999"
                    and value(m, "commandcentre_config_last_reload_successful") == 1
                ),
                "the burst's last config",
            )
            # and a broken one last: refused, the last valid one keeps running
            write_broken(path, snmpd, 0)
            before = reloads(m)
            daemon.signal(signal.SIGHUP)
            m = await wait_for_metrics(
                session, daemon.base, reloads_above(before), "the final broken reload"
            )
            assert value(m, "commandcentre_config_last_reload_successful") == 0
            await asyncio.sleep(1.5)  # polls go on under the refused config
            m = await scrape(session, daemon.base)
            assert generation(m) == "9999"
            assert value(m, "commandcentre_snmp_up", target="changing") == 1

            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            total = sum(s.scrapes for s in scrapers)
            missing = [x for s in scrapers for x in s.missing]
            assert missing == [], missing[:10]
            print(
                f"\nreload storm: {SEQUENTIAL_RELOADS} sequential reloads "
                f"({SEQUENTIAL_RELOADS // 2} broken) + a burst of {BURST + 1} signals + 1 broken; "
                f"reloads counted: {reloads(m):.0f}; {total} scrapes, none missing a series"
            )

            # SIGTERM in the middle of another burst
            for i in range(10):
                write_yaml(path, valid(snmpd, 2000 + i)) if i % 2 else write_broken(path, snmpd, i)
                daemon.signal(signal.SIGHUP)
            took = await daemon.stop()
            print(f"SIGTERM during a reload burst: clean exit in {took:.2f}s")
    finally:
        for t in tasks:
            t.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)
        daemon.close()
