"""The ``commandcentre`` command: run, check-config, demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from commandcentre import __version__
from commandcentre.config import ConfigError, load_config
from commandcentre.configwarnings import config_warnings
from commandcentre.webconfig import load_web_config


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
    run.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="FILE",
        help="TLS and basic auth for the HTTP server, in the Prometheus exporter-toolkit "
        "format; re-read when it changes",
    )
    run.add_argument(
        "--web.enable-lifecycle",
        dest="enable_lifecycle",
        action="store_true",
        help="allow POST /-/reload (as Prometheus); SIGHUP reloads regardless",
    )

    check = sub.add_parser("check-config", help="validate a config, print a summary, exit")
    check.add_argument("--config", "-c", required=True, metavar="FILE", help="YAML config file")
    check.add_argument(
        "--web.config.file", dest="web_config_file", metavar="FILE", help="web config to check too"
    )

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


def check_config(path: str, web_config_file: str | None = None) -> int:
    problems = []
    web = None
    try:
        cfg = load_config(path)
    except ConfigError as e:
        problems += e.problems
    if web_config_file is not None:
        try:
            web = load_web_config(web_config_file)
        except ConfigError as e:
            problems += e.problems
    if problems:
        print(f"{path}: {len(problems)} problem(s):", file=sys.stderr)
        for problem in problems:
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
    if web is not None:
        web_tls = web.spec.tls_server_config
        print(
            f"  web config:  {web.source}: "
            + (
                f"tls {web_tls.min_version}+, client certificates {web_tls.client_auth_type}"
                if web_tls
                else "no tls"
            )
            + f", {len(web.spec.basic_auth_users)} basic-auth user(s)"
        )
    warnings = config_warnings(cfg, web)
    if warnings:
        print(
            f"{path}: {len(warnings)} warning(s) (weak choices; the config is valid):",
            file=sys.stderr,
        )
        for w in warnings:
            print(f"  WARNING {w}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return check_config(args.config, args.web_config_file)
    if args.command == "run":
        from commandcentre.daemon import run_daemon

        return run_daemon(args.config, args.listen, args.web_config_file, args.enable_lifecycle)
    if args.command == "demo":
        from commandcentre.demo import run_demo

        return run_demo(args.listen, args.interval)
    raise AssertionError(args.command)  # argparse enforces the choices


if __name__ == "__main__":
    sys.exit(main())
