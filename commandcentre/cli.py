"""The ``commandcentre`` command: run, check-config, demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from commandcentre import __version__
from commandcentre.config import ConfigError, load_config


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="commandcentre",
        description="Poll SNMP equipment and MQTT sensors; expose them as Prometheus metrics.",
    )
    p.add_argument("--version", action="version", version=f"commandcentre {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", "-c", required=True, metavar="FILE", help="YAML config file")
    run.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="HTTP listen address, overriding http.listen (like --web.listen-address)",
    )

    check = sub.add_parser("check-config", help="validate a config, print a summary, exit")
    check.add_argument("--config", "-c", required=True, metavar="FILE", help="YAML config file")

    demo = sub.add_parser(
        "demo", help="run against a built-in simulated server room (no hardware needed)"
    )
    demo.add_argument(
        "--listen", metavar="HOST:PORT", default="127.0.0.1:8116", help="HTTP listen address"
    )
    demo.add_argument(
        "--interval", metavar="DURATION", default="10s", help="poll interval for the demo devices"
    )
    return p


def check_config(path: str) -> int:
    try:
        cfg = load_config(path)
    except ConfigError as e:
        print(f"{path}: {len(e.problems)} problem(s):", file=sys.stderr)
        for problem in e.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    snmp = cfg.snmp
    print(f"{path}: OK")
    print(f"  http.listen: {cfg.http.listen}")
    print(f"  targets:     {len(snmp.targets)}")
    for t in snmp.targets:
        labels = ",".join(f"{k}={v}" for k, v in t.labels)
        print(
            f"    - {t.name} {t.endpoint} auth={t.auth_name} modules={','.join(t.modules)} "
            f"every {t.interval:g}s" + (f" [{labels}]" if labels else "")
        )
    print(f"  modules:     {len(snmp.modules)} ({', '.join(sorted(snmp.modules))})")
    auths = ", ".join(f"{n} (v{a.version})" for n, a in sorted(snmp.auths.items()))
    print(f"  auths:       {len(snmp.auths)} ({auths})")
    if snmp.traps is None:
        print("  traps:       off")
    else:
        traps = snmp.traps
        am = traps.spec.alertmanager
        accepted = ", ".join(a.auth for a in traps.spec.accept)
        print(
            f"  traps:       {traps.spec.listen}, accepting {accepted};"
            f" {len(traps.table)} trap types from {len(traps.table.files)} table file(s);"
            f" alerts to {', '.join(am.urls) if am else '(no alertmanager)'}"
        )
    mqtt = cfg.mqtt
    print(f"  mqtt brokers: {len(mqtt.brokers)}")
    for b in mqtt.brokers:
        tls = " tls" if b.tls is not None else ""
        user = f" user={b.username}" if b.username else ""
        print(f"    - {b.name} {b.host}:{b.effective_port} mqtt {b.protocol}{tls}{user}")
    print(f"  mqtt subscriptions: {len(mqtt.subscriptions)}")
    for sub in mqtt.subscriptions:
        shared = f" shared={sub.shared_group}" if sub.shared_group else ""
        print(
            f"    - {sub.name} {sub.profile} on {mqtt.broker_of(sub).name}"
            f" topic={sub.topic or '(profile default)'} ttl {sub.ttl:g}s{shared}"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return check_config(args.config)
    if args.command == "run":
        from commandcentre.daemon import run_daemon

        return run_daemon(args.config, args.listen)
    if args.command == "demo":
        from commandcentre.demo import run_demo

        return run_demo(args.listen, args.interval)
    raise AssertionError(args.command)  # argparse enforces the choices


if __name__ == "__main__":
    sys.exit(main())
