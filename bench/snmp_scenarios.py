"""Scenarios 1-3: SNMP polling of the synthetic 48-port switch, commandcentre vs
snmp_exporter, end to end (poll → samples → exposition)."""

from __future__ import annotations

import concurrent.futures
import math
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.agents import COMMUNITY, V3, switch_agent
from bench.procs import Proc, free_port, http_get
from bench.results import Row, Scenario
from bench.settings import Settings
from bench.subjects import (
    IF_MIB,
    Service,
    cc_subject,
    commandcentre,
    legacy_module,
    samples,
    snmp_exporter,
    total,
)

MIB = 1024 * 1024


def _cc_auth(version: int) -> dict[str, Any]:
    """commandcentre's auth: snmp_exporter's fields, with the version given."""
    return {"version": version, **_exporter_auth(version)}


def _exporter_auth(version: int) -> dict[str, Any]:
    if version == 2:
        return {"community": COMMUNITY}
    return {
        "username": V3.name,
        "security_level": "authPriv",
        "auth_protocol": V3.auth_protocol,
        "password": V3.auth_password,
        "priv_protocol": V3.priv_protocol,
        "priv_password": V3.priv_password,
    }


def _cc_config(version: int, addresses: list[str], interval: float) -> dict[str, Any]:
    return {
        "snmp": {
            "module_files": [str(IF_MIB)],
            "auths": {"bench": _cc_auth(version)},
            "defaults": {"interval": f"{interval * 1000:.0f}ms", "modules": ["if_mib"]},
            "targets": [
                {"name": f"switch-{i}", "address": a, "auth": "bench"}
                for i, a in enumerate(addresses)
            ],
        }
    }


def _memory(row: Row, proc: Proc) -> None:
    row.add("RSS", "MiB", proc.rss() / MIB)
    row.add("peak RSS", "MiB", proc.peak_rss() / MIB)


# --------------------------------------------------------------------------- scenarios 1, 2


def one_switch(settings: Settings, workdir: Path, version: int) -> Scenario:
    """One switch polled every ``settings.snmp_interval``; CPU per varbind."""
    v = "v2c" if version == 2 else "v3 authPriv SHA/AES"
    sc = Scenario(
        key=f"snmp_{'v2c' if version == 2 else 'v3'}",
        title=f"SNMP if_mib, one 48-port switch, {v}, end to end",
        primary="CPU per varbind",
        lower_is_better=True,
        target="≤ 1.0x (stretch 0.5x)" if version == 2 else "≤ 1.5x",
        highlights=("poll wall time", "peak RSS"),
    )
    sc.notes.append(
        "commandcentre polls on its own schedule and is scraped on /metrics once per "
        "interval; snmp_exporter walks on each /snmp scrape. CPU = the process's own "
        "user+sys time over the window / varbinds walked in it "
        "(commandcentre_snmp_varbinds x polls; snmp_scrape_pdus_returned)."
    )
    port = free_port(socket.SOCK_DGRAM)
    with switch_agent(workdir, port, ["127.0.0.1"]):
        address = f"127.0.0.1:{port}"
        modules = {"if_mib": legacy_module(_exporter_auth(version), 3 if version == 3 else 2)}
        with snmp_exporter(workdir, modules) as exp:
            _measure_exporter(
                sc.row(f"snmp_exporter {settings.versions['snmp']}", "anchor"),
                exp,
                address,
                settings,
            )
        for client in settings.clients:
            cfg = _cc_config(version, [address], settings.snmp_interval)
            with commandcentre(workdir, cfg, client, tag=sc.key) as cc:
                _measure_cc_one(sc.row(cc_subject(client), "commandcentre"), cc, settings)
    return sc


def _measure_exporter(row: Row, exp: Service, address: str, settings: Settings) -> None:
    url = f"{exp.url}/snmp?target={address}&module=if_mib"
    http_get(url)  # warm up: first connection, first walk
    for _ in range(settings.reps):
        varbinds = 0.0
        walls: list[float] = []
        cpu0 = exp.proc.cpu()
        # at least as many walks as commandcentre makes, and enough CPU for 10 ms ticks
        while len(walls) < settings.polls_per_rep or (
            exp.proc.cpu() - cpu0 < settings.snmp_min_cpu and len(walls) < 1000
        ):
            t0 = time.perf_counter()
            text = http_get(url).decode()
            walls.append(time.perf_counter() - t0)
            varbinds += total(text, "snmp_scrape_pdus_returned")
        cpu = exp.proc.cpu() - cpu0
        row.add("CPU per varbind", "µs", cpu / varbinds * 1e6)
        row.add("varbinds per poll", "", varbinds / len(walls))
        row.add("poll wall time", "ms", sorted(walls)[len(walls) // 2] * 1000)
        _memory(row, exp.proc)


def _measure_cc_one(row: Row, cc: Service, settings: Settings) -> None:
    interval = settings.snmp_interval
    metrics = f"{cc.url}/metrics"
    # warm up: the first polls (engine creation, first requests) are not steady state
    deadline = time.monotonic() + 60
    while total(http_get(metrics).decode(), "commandcentre_snmp_polls_total") < 2:
        if time.monotonic() > deadline:
            raise RuntimeError(f"commandcentre did not complete 2 polls:\n{cc.proc.output()}")
        time.sleep(interval / 2)
    for _ in range(settings.reps):
        text = http_get(metrics).decode()
        polls0 = total(text, "commandcentre_snmp_polls_total")
        errors0 = total(text, "commandcentre_snmp_errors_total")
        cpu0 = cc.proc.cpu()
        walls: list[float] = []
        # at least polls_per_rep intervals, and enough CPU for 10 ms ticks
        while len(walls) < settings.polls_per_rep or (
            cc.proc.cpu() - cpu0 < settings.snmp_min_cpu
            and len(walls) < 20 * settings.polls_per_rep
        ):
            time.sleep(interval)
            text = http_get(metrics).decode()
            walls.append(total(text, "commandcentre_snmp_poll_duration_seconds"))
        cpu = cc.proc.cpu() - cpu0
        polls = total(text, "commandcentre_snmp_polls_total") - polls0
        errors = total(text, "commandcentre_snmp_errors_total") - errors0
        varbinds = total(text, "commandcentre_snmp_varbinds")
        if errors:
            row.notes.append(f"{errors:.0f} failed poll(s) in a repetition")
        ok = polls - errors
        if ok <= 0 or varbinds <= 0:
            raise RuntimeError(f"no successful polls in a window:\n{cc.proc.output()}")
        row.add("CPU per varbind", "µs", cpu / (ok * varbinds) * 1e6)
        row.add("varbinds per poll", "", varbinds)
        row.add("poll wall time", "ms", sorted(walls)[len(walls) // 2] * 1000)
        _memory(row, cc.proc)


# --------------------------------------------------------------------------- scenario 3


def addresses(n: int) -> list[str]:
    """``n`` loopback addresses, 127.0.1.1 onwards (all of 127/8 is on ``lo``)."""
    return [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(n)]


def many_targets(settings: Settings, workdir: Path) -> Scenario:
    n, interval = settings.targets, settings.fleet_interval
    sc = Scenario(
        key="snmp_fleet",
        title=f"{n} switches (48 ports, v2c) every {interval:g} s",
        primary="CPU per varbind",
        lower_is_better=True,
        target="every poll on time",
        highlights=("targets on time", "slowest poll", "peak RSS"),
    )
    sc.notes.append(
        f"{n} targets on distinct loopback addresses served by one snmpd, "
        f"{n} x ≈1,969 varbinds per {interval:g} s; commandcentre with its default "
        "snmp.max_in_flight. Each repetition is one interval after a warm-up interval. "
        "'on time' = targets with a successful poll inside the last interval when it "
        "ends; commandcentre is scraped on /metrics once per interval; snmp_exporter is "
        "scraped once per target per interval, spread over the interval as Prometheus "
        "spreads scrapes. CPU per varbind counts the varbinds of the polls that "
        "succeeded in the interval; 'agent CPU' is snmpd's, to show it was not the limit."
    )
    port = free_port(socket.SOCK_DGRAM)
    addrs = addresses(n)
    with switch_agent(workdir, port, addrs) as agent:
        targets = [f"{a}:{port}" for a in addrs]
        modules = {"if_mib": legacy_module(_exporter_auth(2), 2)}
        with snmp_exporter(workdir, modules) as exp:
            row = sc.row(f"snmp_exporter {settings.versions['snmp']}", "anchor")
            _fleet_exporter(row, exp, agent, targets, settings)
        for client in settings.clients:
            cfg = _cc_config(2, targets, interval)
            with commandcentre(workdir, cfg, client, tag=sc.key) as cc:
                row = sc.row(cc_subject(client), "commandcentre")
                _fleet_cc(row, cc, agent, n, settings)
    return sc


@dataclass
class _Interval:
    """What one measured interval produced."""

    cpu: float
    agent_cpu: float
    varbinds: float
    on_time: int
    slowest: float


def _fleet_add(row: Row, settings: Settings, n: int, proc: Proc, i: _Interval) -> None:
    interval = settings.fleet_interval
    row.add("CPU per varbind", "µs", i.cpu / i.varbinds * 1e6 if i.varbinds else math.nan)
    row.add("CPU share of one core", "%", i.cpu / interval * 100)
    row.add("targets on time", "%", i.on_time / n * 100)
    row.add("slowest poll", "s", i.slowest)
    row.add("agent CPU", "%", i.agent_cpu / interval * 100)
    _memory(row, proc)


def _fleet_exporter(
    row: Row, exp: Service, agent: Proc, targets: list[str], settings: Settings
) -> None:
    interval, n = settings.fleet_interval, len(targets)

    def scrape(t: str) -> tuple[float, float]:
        """(seconds, varbinds) of one /snmp scrape; (-1, 0) if it failed."""
        t0 = time.monotonic()
        try:
            text = http_get(f"{exp.url}/snmp?target={t}&module=if_mib", timeout=interval)
        except OSError:
            return -1.0, 0.0
        pdus = total(text.decode(), "snmp_scrape_pdus_returned")
        return (time.monotonic() - t0, pdus) if pdus else (-1.0, 0.0)

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(64, n)) as pool:
        for rep in range(settings.fleet_reps + 1):  # the first interval warms up
            start = time.monotonic()
            cpu0, agent0 = exp.proc.cpu(), agent.cpu()
            futures = []
            for i, t in enumerate(targets):
                time.sleep(max(0.0, start + i * interval / n - time.monotonic()))
                futures.append(pool.submit(scrape, t))
            time.sleep(max(0.0, start + interval - time.monotonic()))
            done = [f.result() for f in futures if f.done()]
            cpu, agent_cpu = exp.proc.cpu() - cpu0, agent.cpu() - agent0
            for f in futures:
                f.cancel()
            ok = [(d, v) for d, v in done if 0 <= d <= interval]
            if rep:
                result = _Interval(
                    cpu=cpu,
                    agent_cpu=agent_cpu,
                    varbinds=sum(v for _, v in done),
                    on_time=len(ok),
                    slowest=max((d for d, _ in done), default=0.0),
                )
                _fleet_add(row, settings, n, exp.proc, result)
            concurrent.futures.wait(futures)


def _fleet_cc(row: Row, cc: Service, agent: Proc, n: int, settings: Settings) -> None:
    interval = settings.fleet_interval
    metrics = f"{cc.url}/metrics"
    time.sleep(interval)  # warm up: every target's first poll (phases spread over one interval)
    for _ in range(settings.fleet_reps):
        before = _self_metrics(http_get(metrics, timeout=interval * 4).decode())
        cpu0, agent0 = cc.proc.cpu(), agent.cpu()
        time.sleep(interval)
        scraped_at = time.time()
        text = _self_metrics(http_get(metrics, timeout=interval * 4).decode())
        cpu, agent_cpu = cc.proc.cpu() - cpu0, agent.cpu() - agent0
        recent = [v for _, v in samples(text, "commandcentre_snmp_last_success_timestamp_seconds")]
        polls = total(text, "commandcentre_snmp_polls_total") - total(
            before, "commandcentre_snmp_polls_total"
        )
        errors = total(text, "commandcentre_snmp_errors_total") - total(
            before, "commandcentre_snmp_errors_total"
        )
        per_poll = [v for _, v in samples(text, "commandcentre_snmp_varbinds") if v]
        mean_varbinds = sum(per_poll) / len(per_poll) if per_poll else 0.0
        durations = [v for _, v in samples(text, "commandcentre_snmp_poll_duration_seconds")]
        result = _Interval(
            cpu=cpu,
            agent_cpu=agent_cpu,
            varbinds=max(0.0, polls - errors) * mean_varbinds,
            on_time=sum(1 for ts in recent if scraped_at - ts <= interval),
            slowest=max(durations, default=0.0),
        )
        _fleet_add(row, settings, n, cc.proc, result)


def _self_metrics(text: str) -> str:
    """Only the ``commandcentre_snmp_*`` lines: the polled samples are ≈ 1,800 per
    target and the harness need not regex through all of them."""
    return "\n".join(line for line in text.splitlines() if line.startswith("commandcentre_snmp_"))
