"""``python -m bench``: every scenario, commandcentre and the anchors in one run.

See bench/README.md for what each scenario measures and how to read the results.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import mqtt_scenarios, snmp_scenarios
from bench.report import fmt, render, scenario_table
from bench.results import Scenario
from bench.settings import Settings
from bench.subjects import SNMP_CLIENTS, client_variants, package_version

Runner = Callable[[Settings, Path], list[Scenario]]

SCENARIOS: dict[str, tuple[str, Runner]] = {
    "snmp_v2c": (
        "SNMP if_mib on one 48-port switch, v2c, end to end: CPU per varbind vs snmp_exporter",
        lambda s, w: [snmp_scenarios.one_switch(s, w, 2)],
    ),
    "snmp_v3": (
        "the same with v3 authPriv SHA/AES, vs snmp_exporter on v3",
        lambda s, w: [snmp_scenarios.one_switch(s, w, 3)],
    ),
    "snmp_fleet": (
        "500 switches every 30 s: polls on time, CPU per varbind, RSS (--quick: 4 every 3 s)",
        lambda s, w: [snmp_scenarios.many_targets(s, w)],
    ),
    "scrape": (
        "/metrics at ≈10k and ≈100k series: CPU per series and latency vs mqtt2prometheus, "
        "longest event-loop stall",
        mqtt_scenarios.scrape,
    ),
    "mqtt": (
        "MQTT flat-out ingest per CPU-second vs mqtt2prometheus; a 1M-message burst",
        mqtt_scenarios.ingest,
    ),
}

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "RESULTS.md"


def _parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {k:<11} {d}" for k, (d, _) in SCENARIOS.items())
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark commandcentre against snmp_exporter and mqtt2prometheus "
        "on the same work, in the same run, on loopback.",
        epilog=f"scenarios:\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--scenario",
        action="append",
        choices=list(SCENARIOS),
        metavar="NAME",
        help="run only this scenario (repeatable; default: all)",
    )
    p.add_argument("--quick", action="store_true", help="one small repetition of each (smoke)")
    p.add_argument("--reps", type=int, metavar="N", help="repetitions (default 5; --quick 1)")
    p.add_argument(
        "--snmp-client",
        action="append",
        metavar="NAME",
        help="commandcentre snmp.client values to run (repeatable; default: each of "
        f"{', '.join(SNMP_CLIENTS)} the daemon accepts, else its only client)",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        metavar="FILE",
        help="markdown results file (default bench/RESULTS.md)",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs)")
    return p


def _loadavg() -> str:
    """Other work on the machine inflates every figure: the results file says how much."""
    return Path("/proc/loadavg").read_text().split()[0]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so every started process is stopped on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.reps is not None and args.reps < 1:
        print("--reps must be at least 1", file=sys.stderr)
        return 2
    settings = Settings.make(args.quick, args.reps)
    settings.versions = {
        "snmp": package_version("prometheus-snmp-exporter"),
        "mqtt": package_version("prometheus-mqtt-exporter"),
    }
    workdir = Path(tempfile.mkdtemp(prefix="cc-bench-"))
    started = time.monotonic()
    load_before = _loadavg()
    scenarios: list[Scenario] = []
    failed: list[str] = []
    try:
        settings.clients = client_variants(workdir, args.snmp_client)
        print(f"commandcentre SNMP clients: {', '.join(settings.clients)}; work dir {workdir}")
        for key in args.scenario or list(SCENARIOS):
            t0 = time.monotonic()
            print(f"\n== {key}: {SCENARIOS[key][0]}", flush=True)
            try:
                results = SCENARIOS[key][1](settings, workdir)
            except Exception as e:  # noqa: BLE001 - one broken scenario must not lose the rest
                traceback.print_exc()
                failed.append(f"{key}: {type(e).__name__}: {e}")
                continue
            for sc in results:
                scenarios.append(sc)
                print("\n".join(scenario_table(sc)), flush=True)
            print(f"({time.monotonic() - t0:.0f} s)", flush=True)
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    command = "python -m bench " + shlex.join(list(argv if argv is not None else sys.argv[1:]))
    versions = {
        "prometheus-snmp-exporter": settings.versions["snmp"],
        "prometheus-mqtt-exporter": settings.versions["mqtt"],
        "snmpd": package_version("snmpd"),
        "mosquitto": package_version("mosquitto"),
        "commandcentre snmp.client": ", ".join(settings.clients),
        "load average (1 min) before / after the run": f"{load_before} / {_loadavg()}",
    }
    text = render(scenarios, command.strip(), settings.reps, elapsed, versions)
    if failed:
        text += "\n## Failed scenarios\n\n" + "".join(f"- {f}\n" for f in failed)
    args.output.write_text(text)
    if args.json:
        args.json.write_text(json.dumps([sc.to_json() for sc in scenarios], indent=1))
    print(f"\nratios (commandcentre / anchor), {elapsed / 60:.1f} min:")
    for sc in scenarios:
        for c, a, x in sc.ratios():
            print(f"  {sc.key:<14} {sc.primary:<24} {c} / {a}: {fmt(x)}x  (target {sc.target})")
    for f in failed:
        print(f"  FAILED {f}")
    print(f"written: {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
