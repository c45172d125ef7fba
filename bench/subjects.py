"""The processes compared: commandcentre (the real daemon, as a user runs it), the
anchors (Debian's snmp_exporter and mqtt2prometheus) and the Mosquitto broker."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.procs import Proc, free_port, started, wait_for_http, wait_for_tcp

REPO = Path(__file__).resolve().parents[1]
IF_MIB = REPO / "config" / "snmp" / "if_mib.yml"
SNMP_EXPORTER = "/usr/bin/prometheus-snmp-exporter"
MQTT_EXPORTER = "/usr/bin/prometheus-mqtt-exporter"
MOSQUITTO = "/usr/sbin/mosquitto"
# snmp.client values the harness tries; a daemon that predates the key runs as "current"
SNMP_CLIENTS = ("fast", "pysnmp")
CURRENT = "current"


@dataclass
class Service:
    """A process under measurement and the base URL of its HTTP endpoint."""

    proc: Proc
    url: str


def samples(text: str, name: str) -> list[tuple[str, float]]:
    """(label text, value) of every sample of metric ``name`` in exposition text."""
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)", re.MULTILINE)
    return [(m.group(1) or "", float(m.group(2))) for m in pattern.finditer(text)]


def total(text: str, name: str) -> float:
    """The sum of every sample of ``name`` (0 when absent)."""
    return sum(v for _, v in samples(text, name))


def series_count(text: str) -> int:
    """Sample lines in an exposition (every line that is not a comment or blank)."""
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


# --------------------------------------------------------------------------- commandcentre


def client_variants(workdir: Path, wanted: list[str] | None) -> list[str]:
    """The ``snmp.client`` values this daemon accepts (checked with ``check-config``),
    in the order asked; ``[CURRENT]`` when it accepts none (the key predates it)."""
    accepted: list[str] = []
    for client in wanted or list(SNMP_CLIENTS):
        if client == CURRENT:
            accepted.append(client)
            continue
        path = workdir / f"probe-{client}.yml"
        path.write_text(yaml.safe_dump({"snmp": {"client": client}}))
        r = subprocess.run(  # noqa: S603 - fixed argv
            [sys.executable, "-m", "commandcentre", "check-config", "--config", str(path)],
            capture_output=True,
            check=False,
            cwd=REPO,
        )
        if r.returncode == 0:
            accepted.append(client)
    return accepted or [CURRENT]


def cc_subject(client: str) -> str:
    return "commandcentre" if client == CURRENT else f"commandcentre (snmp.client={client})"


@contextlib.contextmanager
def commandcentre(
    workdir: Path, config: dict[str, Any], client: str = CURRENT, tag: str = "cc"
) -> Iterator[Service]:
    """``python -m commandcentre run --config <generated>``, ready, on a free port."""
    port = free_port()
    cfg = {**config, "http": {"listen": f"127.0.0.1:{port}"}}
    cfg.setdefault("log", {"level": "warning", "format": "json"})
    if client != CURRENT:
        cfg["snmp"] = {**cfg.get("snmp", {}), "client": client}
    path = workdir / f"{tag}-{client}.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    argv = [sys.executable, "-m", "commandcentre", "run", "--config", str(path)]
    with started(f"{tag}-{client}", argv, workdir) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(proc, f"{url}/-/ready")
        yield Service(proc, url)


def if_mib_module() -> dict[str, Any]:
    """The shipped if_mib module (a byte-for-byte copy of snmp_exporter's)."""
    module: dict[str, Any] = yaml.safe_load(IF_MIB.read_text())["modules"]["if_mib"]
    return module


# --------------------------------------------------------------------------- snmp_exporter


def legacy_module(auth: dict[str, Any], version: int) -> dict[str, Any]:
    """if_mib as snmp_exporter 0.21 wants it: credentials inside, no scale/offset."""
    mod: dict[str, Any] = yaml.safe_load(yaml.safe_dump(if_mib_module()))
    mod["version"] = version
    mod["auth"] = auth
    for metric in mod["metrics"]:
        metric.pop("scale", None)
        metric.pop("offset", None)
    return mod


@contextlib.contextmanager
def snmp_exporter(workdir: Path, modules: dict[str, dict[str, Any]]) -> Iterator[Service]:
    conf = workdir / "snmp_exporter.yml"
    conf.write_text(yaml.safe_dump(modules))
    port = free_port()
    argv = [SNMP_EXPORTER, f"--config.file={conf}", f"--web.listen-address=127.0.0.1:{port}"]
    with started("snmp_exporter", argv, workdir) as proc:
        wait_for_tcp(proc, port)
        yield Service(proc, f"http://127.0.0.1:{port}")


def package_version(package: str) -> str:
    r = subprocess.run(  # noqa: S603 - fixed argv
        ["/usr/bin/dpkg-query", "-W", "-f=${Version}", package],
        capture_output=True,
        check=False,
        text=True,
    )
    return r.stdout.strip() or "not installed"


# --------------------------------------------------------------------------- MQTT


@contextlib.contextmanager
def mosquitto(workdir: Path) -> Iterator[tuple[Proc, int]]:
    """A private Mosquitto on a free port. Its per-client queue is unbounded so that a
    QoS 0 flood reaches the subscriber in full (Mosquitto otherwise drops silently
    at 1,000 queued) and the subscriber's own bound is what a burst tests."""
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        "\n".join(
            [
                f"listener {port} 127.0.0.1",
                "allow_anonymous true",
                "persistence false",
                "user root",
                "max_queued_messages 0",
                "max_inflight_messages 0",
                "sys_interval 1",
                "log_dest stderr",
                "log_type error",
                "log_type warning",
                "",
            ]
        )
    )
    with started("mosquitto", [MOSQUITTO, "-c", str(conf)], workdir) as proc:
        wait_for_tcp(proc, port)
        yield proc, port


# Zigbee2MQTT payload fields both subscribers read, with mqtt2prometheus' names.
Z2M_FIELDS = ("temperature", "humidity", "pressure", "battery", "linkquality", "voltage")


@contextlib.contextmanager
def mqtt2prometheus(workdir: Path, broker_port: int, tag: str = "m2p") -> Iterator[Service]:
    """mqtt2prometheus subscribed to ``zigbee2mqtt/+``, exporting the same fields."""
    port = free_port()
    conf = workdir / f"{tag}.yaml"
    conf.write_text(
        yaml.safe_dump(
            {
                "mqtt": {
                    "server": f"tcp://127.0.0.1:{broker_port}",
                    "topic_path": "zigbee2mqtt/+",
                    "device_id_regex": "(.*/)?(?P<deviceid>.*)",
                    "qos": 0,
                    "client_id": f"bench-{tag}-{port}",
                },
                "cache": {"timeout": "24h"},
                "json_parsing": {"separator": "."},
                "metrics": [
                    {"prom_name": f, "mqtt_name": f, "help": f, "type": "gauge"} for f in Z2M_FIELDS
                ],
            }
        )
    )
    argv = [
        MQTT_EXPORTER,
        f"-config={conf}",
        "-listen-address=127.0.0.1",
        f"-listen-port={port}",
        "-log-level=warn",
    ]
    with started(tag, argv, workdir) as proc:
        wait_for_http(proc, f"http://127.0.0.1:{port}/metrics")
        yield Service(proc, f"http://127.0.0.1:{port}")


def cc_mqtt_config(broker_port: int, max_series: int, max_queued: int) -> dict[str, Any]:
    """commandcentre subscribed to the same Zigbee2MQTT topics."""
    return {
        "mqtt": {
            "max_series_total": max_series,
            "brokers": [
                {
                    "name": "bench",
                    "host": "127.0.0.1",
                    "port": broker_port,
                    "max_queued_messages": max_queued,
                }
            ],
            "subscriptions": [
                {
                    "name": "z2m",
                    "profile": "zigbee2mqtt",
                    "topic": "zigbee2mqtt",
                    "ttl": "24h",
                    "max_series": max_series,
                }
            ],
        }
    }
