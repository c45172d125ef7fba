"""The results file: the machine, then one table per scenario and the ratios."""

from __future__ import annotations

import math
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from bench.results import Figure, Scenario
from bench.subjects import REPO


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "CPU": model,
        "cores": str(os.cpu_count()),
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "OS": _os_name(),
        "Python": platform.python_version(),
        "commandcentre": _commit(),
    }


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def _commit() -> str:
    r = subprocess.run(  # noqa: S603 - fixed argv
        ["/usr/bin/git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return r.stdout.strip() or "unknown"


def fmt(x: float) -> str:
    """Three significant figures, thousands separated."""
    if math.isnan(x):
        return "—"
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def cell(f: Figure | None) -> str:
    if f is None or not f.measured:
        return "—"
    lo, hi = f.spread
    if len(f.measured) == 1 or lo == hi:
        return fmt(f.median)
    return f"{fmt(f.median)} ({fmt(lo)}-{fmt(hi)})"


def scenario_table(sc: Scenario) -> list[str]:
    names: list[str] = []
    units: dict[str, str] = {}
    for r in sc.rows:
        for name, f in r.figures.items():
            if name not in names:
                names.append(name)
                units[name] = f.unit
    head = ["subject"] + [f"{n} ({units[n]})" if units[n] else n for n in names]
    lines = [f"### {sc.title}", "", "| " + " | ".join(head) + " |"]
    lines.append("|" + "---|" * len(head))
    lines += [
        "| " + " | ".join([r.subject, *(cell(r.figures.get(n)) for n in names)]) + " |"
        for r in sc.rows
    ]
    lines.append("")
    for c, a, x in sc.ratios():
        lines.append(f"- **{sc.primary}, {c} / {a}: {fmt(x)}x** (target {sc.target})")
    for r in sc.rows:
        lines += [f"- {r.subject}: {n}" for n in dict.fromkeys(r.notes)]
    lines += [f"- {n}" for n in sc.notes]
    lines.append("")
    return lines


def _highlights(sc: Scenario, c: str, a: str) -> str:
    rows = {r.subject: r for r in sc.rows}
    out = []
    for name in sc.highlights:
        fc, fa = rows[c].figures.get(name), rows[a].figures.get(name)
        if fc is None:
            continue
        unit = f" {fc.unit}" if fc.unit else ""
        theirs = f"; {fmt(fa.median)}{unit}" if fa is not None and fa.measured else ""
        out.append(f"{name}: {fmt(fc.median)}{unit}{theirs}")
    return ", ".join(out)


def summary_table(scenarios: list[Scenario]) -> list[str]:
    lines = [
        "| scenario | figure | commandcentre | anchor | ratio | target "
        "| also (commandcentre; anchor) |",
        "|---|---|---|---|---|---|---|",
    ]
    for sc in scenarios:
        for c, a, x in sc.ratios():
            cf = next(r for r in sc.rows if r.subject == c).figures[sc.primary]
            af = next(r for r in sc.rows if r.subject == a).figures[sc.primary]
            unit = f" {cf.unit}" if cf.unit else ""
            better = "" if sc.lower_is_better else " (higher is better)"
            lines.append(
                f"| {sc.title} | {sc.primary}{better}"
                f" | {c}: {fmt(cf.median)}{unit} | {a}: {fmt(af.median)}{unit} "
                f"| **{fmt(x)}x** | {sc.target} | {_highlights(sc, c, a)} |"
            )
    return lines


def render(
    scenarios: list[Scenario],
    command: str,
    reps: int,
    elapsed: float,
    versions: dict[str, str],
) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmark results",
        "",
        f"Written by `{command}` on {now} in {elapsed / 60:.1f} min; "
        f"{reps} repetition(s) per figure, shown as median (min-max). "
        "CPU is each measured process's own user+sys time (/proc/<pid>/stat), "
        "RSS from /proc/<pid>/status. Everything ran on loopback in the same run.",
        "",
        "## Machine",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in machine().items()]
    lines += [f"- {k}: {v}" for k, v in versions.items()]
    lines += ["", "## Ratios (commandcentre / anchor)", "", *summary_table(scenarios), ""]
    lines += ["## Scenarios", ""]
    for sc in scenarios:
        lines += scenario_table(sc)
    return "\n".join(lines)
