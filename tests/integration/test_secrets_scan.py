"""No secret ever leaves the daemon: the demo's server room and every failure path,
run with MARKER secrets, and everything emitted scanned for them.

The secrets are unique random strings, one per role, given in every form the
config takes (inline, ``${ENV}``, ``*_file``, ``*_credential``):

- SNMP v2c communities of the demo's three simulated devices (snmpsim, whose
  community picks the recording: the demo's recordings are copied under the
  marker names) and of an unreachable device;
- SNMPv3 auth and privacy passphrases of a real net-snmp ``snmpd`` user, and a
  second pair that is wrong for that user (authentication failures);
- the MQTT password of a real Mosquitto with a password file, and a wrong one
  (connection refused as not authorised); the demo's sensors publish through it;
- the HTTP basic-auth password (bcrypt-hashed in the web config), and a wrong one;
- the basic-auth password for Alertmanager, to which trap alerts go (down here,
  so posting fails), and a wrong community on a trap (refused).

The daemon runs as ``commandcentre run`` at log level debug, so libraries' debug
logging is scanned too. Captured: its stdout and stderr, ``/metrics``, ``/``,
``/snmp`` answers and errors, 401s, ``/-/reload`` answers, the logs of a reload
with a broken config and of a broken web config (a plaintext password where the
hash belongs, a classic mistake), ``check-config`` on good and broken files, and
``run`` refusing a broken config. Each capture must also hold the context around
the secret (the failing target's name and reason, the problem's key path), so a
capture that missed the event cannot pass for a clean one.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml

from commandcentre.demo import DATA_DIR, simulated_devices
from commandcentre.demo.sensors import SensorRoom, demo_subscriptions
from tests.integration.agents import V3User, free_tcp_port, free_udp_port, run_snmpd
from tests.integration.mosquitto import MOSQUITTO_PUB, Mosquitto

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not Path(sys.executable).with_name("snmpsim-command-responder").exists()
        and shutil.which("snmpsim-command-responder") is None,
        reason="needs snmpsim (pip install 'commandcentre[demo]')",
    ),
]

REPO = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("commandcentre"))
MODULE_FILES = sorted(str(p) for p in (REPO / "config" / "snmp").glob("*.yml"))
DEVICES = {  # demo recording -> modules
    "ups-rfc1628": ["system", "ups_mib"],
    "ups-apc": ["system", "apcups"],
    "switch-24": ["system", "if_mib"],
}
HTTP_USER = "prometheus"
MQTT_USER = "commandcentre"


def marker(role: str) -> str:
    return f"MARK{role}{secrets.token_hex(10)}"


@dataclass
class Capture:
    """Everything emitted, by where it came from."""

    parts: dict[str, str] = field(default_factory=dict)

    def add(self, where: str, text: str) -> str:
        self.parts[where] = self.parts.get(where, "") + text
        return text


@dataclass
class Room:
    workdir: Path
    markers: dict[str, str]
    config: Path
    web: Path
    env: dict[str, str]
    base: str
    mqtt: Mosquitto
    trap_port: int


def http(
    cap: Capture, where: str, url: str, *, password: str | None, method: str = "GET"
) -> tuple[int, str]:
    req = urllib.request.Request(url, method=method)
    if password is not None:
        token = base64.b64encode(f"{HTTP_USER}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, body = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read().decode()
    cap.add(where, f"{method} {url} -> {status}\n{body}\n")
    return status, body


def write_config(room: Room, snmpsim_port: int, snmpd_port: int, dead_port: int) -> None:
    m = room.markers
    secrets_dir = room.workdir / "secrets"
    auths: dict[str, Any] = {
        "rfc1628": {"version": 2, "community": "${CC_UPS_COMMUNITY}"},
        "apc": {"version": 2, "community_file": "secrets/apc-community"},
        "switch": {"version": 2, "community_credential": "switch-community"},
        "v3_good": {
            "version": 3,
            "username": "ccuser",
            "security_level": "authPriv",
            "auth_protocol": "SHA",
            "password_credential": "v3-auth",
            "priv_protocol": "AES",
            "priv_password": "${CC_V3_PRIV}",
        },
        "v3_wrong_key": {
            "version": 3,
            "username": "ccuser",
            "security_level": "authPriv",
            "auth_protocol": "SHA",
            "password": m["wrong_v3_auth"],
            "priv_protocol": "AES",
            "priv_password": m["wrong_v3_priv"],
        },
        "dead": {"version": 2, "community": m["dead_community"]},
    }
    (secrets_dir / "apc-community").write_text(m["apc_community"] + "\n")
    (secrets_dir / "mqtt-password").write_text(m["mqtt_password"] + "\n")
    targets = [
        {
            "name": name,
            "address": f"127.0.0.1:{snmpsim_port}",
            "auth": auth,
            "modules": DEVICES[name],
            "interval": "5s",  # snmpsim walks switch-24's if_mib in about a second
        }
        for name, auth in (("ups-rfc1628", "rfc1628"), ("ups-apc", "apc"), ("switch-24", "switch"))
    ]
    targets += [
        {"name": "v3-good", "address": f"127.0.0.1:{snmpd_port}", "auth": "v3_good"},
        {"name": "v3-wrong-key", "address": f"127.0.0.1:{snmpd_port}", "auth": "v3_wrong_key"},
        {"name": "unreachable", "address": f"127.0.0.1:{dead_port}", "auth": "dead"},
    ]
    cfg = {
        "http": {"listen": room.base.removeprefix("http://")},
        "log": {"level": "debug", "format": "json"},
        "snmp": {
            "module_files": MODULE_FILES,
            "auths": auths,
            "defaults": {
                "interval": "2s",
                "timeout": "1s",
                "retries": 0,
                "modules": ["system"],
                "labels": {"site": "demo"},
            },
            "targets": targets,
            # traps from the UPS (its community) to an Alertmanager that is down,
            # with basic-auth credentials
            "traps": {
                "listen": f"127.0.0.1:{room.trap_port}",
                "accept": [{"auth": "rfc1628"}],
                "table_files": [str(REPO / "config" / "snmp" / "traps" / "*.yml")],
                "alertmanager": {
                    "urls": [f"http://127.0.0.1:{free_tcp_port()}"],
                    "basic_auth": {"username": "commandcentre", "password": "${CC_AM_PASSWORD}"},
                    "timeout": "1s",
                },
            },
        },
        "mqtt": {
            "brokers": [
                {
                    "name": "demo",
                    "host": room.mqtt.host,
                    "port": room.mqtt.port,
                    "username": MQTT_USER,
                    "password_file": "secrets/mqtt-password",
                    "reconnect": {"initial": "200ms", "max": "1s"},
                },
                {
                    "name": "wrong-password",
                    "host": room.mqtt.host,
                    "port": room.mqtt.port,
                    "username": MQTT_USER,
                    "password": m["wrong_mqtt_password"],
                    "reconnect": {"initial": "200ms", "max": "1s"},
                },
            ],
            "subscriptions": [
                *demo_subscriptions("demo"),
                {  # a broker without subscriptions is never connected to
                    "name": "refused",
                    "broker": "wrong-password",
                    "profile": "number",
                    "topic": "refused/{device}",
                    "metric": "refused",
                },
            ],
        },
    }
    room.config.write_text(yaml.safe_dump(cfg, sort_keys=False))


@pytest.fixture(scope="module")
def room(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Room]:
    workdir = tmp_path_factory.mktemp("secrets-scan")
    roles = (
        "rfc1628_community",
        "apc_community",
        "switch_community",
        "dead_community",
        "v3_auth",
        "v3_priv",
        "wrong_v3_auth",
        "wrong_v3_priv",
        "mqtt_password",
        "wrong_mqtt_password",
        "http_password",
        "wrong_http_password",
        "broken_config",
        "broken_web_config",
        "alertmanager_password",
        "wrong_trap_community",
    )
    m = {role: marker(role.replace("_", "")) for role in roles}
    creds = workdir / "credentials"
    creds.mkdir()
    (creds / "switch-community").write_text(m["switch_community"] + "\n")
    (creds / "v3-auth").write_text(m["v3_auth"] + "\n")
    (workdir / "secrets").mkdir()
    # the demo's recordings under the marker communities (snmpsim: community = file name)
    data = workdir / "recordings"
    data.mkdir()
    for device, role in (
        ("ups-rfc1628", "rfc1628_community"),
        ("ups-apc", "apc_community"),
        ("switch-24", "switch_community"),
    ):
        shutil.copyfile(DATA_DIR / f"{device}.snmprec", data / f"{m[role]}.snmprec")
    web = workdir / "web.yml"
    web.write_text(
        yaml.safe_dump(
            {
                "basic_auth_users": {
                    HTTP_USER: bcrypt.hashpw(
                        m["http_password"].encode(), bcrypt.gensalt(4)
                    ).decode()
                }
            }
        )
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CC_UPS_COMMUNITY": m["rfc1628_community"],
        "CC_V3_PRIV": m["v3_priv"],
        "CC_AM_PASSWORD": m["alertmanager_password"],
        "CREDENTIALS_DIRECTORY": str(creds),
    }
    v3 = {"ccuser": V3User("ccuser", "authPriv", "SHA", m["v3_auth"], "AES", m["v3_priv"])}
    snmpsim_dir = workdir / "snmpsim"
    snmpsim_dir.mkdir()
    with (
        simulated_devices(snmpsim_dir, data) as (snmpsim_port, _),
        run_snmpd(users=v3, tcp=False) as snmpd,
        Mosquitto(users={MQTT_USER: m["mqtt_password"]}) as mqtt,
    ):
        r = Room(
            workdir=workdir,
            markers=m,
            config=workdir / "commandcentre.yml",
            web=web,
            env=env,
            base=f"http://127.0.0.1:{free_tcp_port()}",
            mqtt=mqtt,
            trap_port=free_udp_port(),
        )
        write_config(r, snmpsim_port, snmpd.port, free_udp_port())
        yield r


def publish_sensors(room: Room) -> None:
    """The demo's simulated sensors, published once through the password-protected broker."""
    sensors = SensorRoom(start=time.time())
    for msg in [*sensors.birth_messages(), *sensors.messages(1.0)]:
        subprocess.run(
            [
                *(MOSQUITTO_PUB, "-h", room.mqtt.host, "-p", str(room.mqtt.port)),
                *("-u", MQTT_USER, "-P", room.markers["mqtt_password"]),
                *("-t", msg.topic, "-m", msg.payload.decode(), "-q", "1"),
                *(["-r"] if msg.retain else []),
            ],
            check=True,
            capture_output=True,
            timeout=10,
        )


def metric_lines(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name + "{")]


def wait_until_the_room_is_seen(room: Room, cap: Capture, proc: subprocess.Popen[bytes]) -> str:
    pw = room.markers["http_password"]
    deadline = time.monotonic() + 90
    text = ""
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the daemon exited"
        try:
            status, text = http(Capture(), "", room.base + "/metrics", password=pw)
        except OSError:
            time.sleep(0.3)
            continue
        up = metric_lines(text, "commandcentre_snmp_up")
        ups = {t: any(f'target="{t}"' in line and line.endswith(" 1") for line in up) for t in
               ("ups-rfc1628", "ups-apc", "switch-24", "v3-good")}  # fmt: skip
        failing = all(
            any(
                f'target="{t}"' in line
                for line in metric_lines(text, "commandcentre_snmp_errors_total")
            )
            for t in ("v3-wrong-key", "unreachable")
        )
        sensors = "commandcentre_sensor_temperature_celsius{" in text
        mqtt_refused = 'commandcentre_mqtt_connected{broker="wrong-password"} 0' in text
        if status == 200 and all(ups.values()) and failing and sensors and mqtt_refused:
            return cap.add("/metrics", text)
        publish_sensors(room)
        time.sleep(0.5)
    raise AssertionError(f"the room was not seen in full within 90 s:\n{text[-3000:]}")


def run_cli(cap: Capture, where: str, room: Room, *args: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [CLI, *args], capture_output=True, text=True, env=room.env, timeout=60, check=False
    )
    cap.add(where, f"$ commandcentre {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}\n")
    return r


def send_trap(room: Room, community: str) -> None:
    """A v2c coldStart trap, as a rebooted device sends it."""
    subprocess.run(
        [
            *("snmptrap", "-v2c", "-c", community, f"127.0.0.1:{room.trap_port}"),
            *("", "1.3.6.1.6.3.1.1.5.1"),
        ],
        check=True,
        capture_output=True,
        timeout=10,
    )


def wait_for_log(path: Path, needle: str, limit: float = 20) -> None:
    deadline = time.monotonic() + limit
    while needle not in path.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{needle!r} not logged within {limit:g} s"
        time.sleep(0.1)


def test_no_secret_appears_in_anything_the_daemon_emits(room: Room) -> None:
    m = room.markers
    cap = Capture()
    pw = m["http_password"]
    out_path, err_path = room.workdir / "daemon.stdout", room.workdir / "daemon.stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            [
                *(CLI, "run", "--config", str(room.config)),
                *("--web.config.file", str(room.web), "--web.enable-lifecycle"),
            ],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=room.env,
        )
    try:
        publish_sensors(room)
        metrics = wait_until_the_room_is_seen(room, cap, proc)
        base = room.base

        # every page and answer, good and bad
        status, page = http(cap, "/", base + "/", password=pw)
        assert status == 200
        for target, modules in DEVICES.items():
            for module in modules:
                url = f"{base}/snmp?target={target}&module={module}"
                assert http(cap, "/snmp", url, password=pw)[0] == 200
        for url in (
            f"{base}/snmp?target=v3-wrong-key&module=system",
            f"{base}/snmp?target=unreachable&module=system",
            f"{base}/snmp?target=v3-good&module=system&auth=v3_wrong_key",
            f"{base}/snmp?target=v3-good&module=system&auth=no-such-auth",
            f"{base}/snmp?target=10.9.9.9&module=system",
        ):
            assert http(cap, "/snmp errors", url, password=pw)[0] in (400, 500), url
        assert http(cap, "401", base + "/metrics", password=None)[0] == 401
        assert http(cap, "401", base + "/metrics", password=m["wrong_http_password"])[0] == 401
        assert http(cap, "health", base + "/-/healthy", password=None)[0] == 200

        # traps: one accepted (an alert for the Alertmanager that is down), one refused
        for community in (m["rfc1628_community"], m["wrong_trap_community"]):
            send_trap(room, community)
        wait_for_log(err_path, "alertmanager_post_failed")
        wait_for_log(err_path, '"reason": "unknown_community"')
        deadline = time.monotonic() + 10  # trap counters are flushed in batches
        while True:
            traps = http(cap, "/metrics after traps", base + "/metrics", password=pw)[1]
            dropped = [
                float(line.rsplit(" ", 1)[1])
                for line in traps.splitlines()
                if line.startswith(
                    'commandcentre_snmp_traps_dropped_total{reason="unknown_community"}'
                )
            ]
            if dropped == [1] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert dropped == [1], traps
        assert http(cap, "/-/reload", base + "/-/reload", password=pw, method="POST")[0] == 200

        # a reload with a broken config: secrets in all the wrong places
        good = room.config.read_text()
        broken = yaml.safe_load(good)
        broken["snmp"]["auths"]["dead"]["community"] = [m["broken_config"]]  # wrong type
        broken["snmp"]["auths"]["scalar"] = m["broken_config"]  # an auth that is just a string
        broken["snmp"]["auths"]["v3_good"]["passwrd"] = m["broken_config"]  # a typo
        broken["mqtt"]["brokers"][1]["password_file"] = "secrets/mqtt-password"  # and password
        room.config.write_text(yaml.safe_dump(broken, sort_keys=False))
        proc.send_signal(signal.SIGHUP)
        wait_for_log(err_path, "config_reload_failed")
        status, body = http(cap, "/-/reload broken", base + "/-/reload", password=pw, method="POST")
        assert status == 500
        assert "snmp.auths.dead.community" in body
        room.config.write_text(good)

        # a broken web config: a plaintext password where the hash belongs
        web_good = room.web.read_text()
        room.web.write_text(
            yaml.safe_dump({"basic_auth_users": {HTTP_USER: m["broken_web_config"]}})
        )
        wait_for_log(err_path, "web_config_reload_failed")
        assert http(cap, "after broken web config", base + "/metrics", password=pw)[0] == 200
        room.web.write_text(web_good)
        cap.add("/ after the failures", http(Capture(), "", base + "/", password=pw)[1])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    cap.add("daemon stdout", out_path.read_text(errors="replace"))
    cap.add("daemon stderr", err_path.read_text(errors="replace"))

    # check-config and run, on good and broken files
    r = run_cli(cap, "check-config", room, "check-config", "--config", str(room.config),
                "--web.config.file", str(room.web))  # fmt: skip
    assert r.returncode == 0, r.stderr
    room.config.write_text(yaml.safe_dump(broken, sort_keys=False))
    room.web.write_text(yaml.safe_dump({"basic_auth_users": {HTTP_USER: m["broken_web_config"]}}))
    r = run_cli(cap, "check-config broken", room, "check-config", "--config", str(room.config),
                "--web.config.file", str(room.web))  # fmt: skip
    assert r.returncode == 1
    r = run_cli(cap, "run broken", room, "run", "--config", str(room.config))
    assert r.returncode == 2
    room.config.write_text(good)
    room.web.write_text(web_good)

    # ---- the scan: no marker anywhere, in plain text or as a basic-auth token
    forbidden = dict(m)
    for role in ("http_password", "wrong_http_password"):
        token = base64.b64encode(f"{HTTP_USER}:{m[role]}".encode()).decode()
        forbidden[role + " (basic auth token)"] = token
    leaks = [
        f"{role} in {where}"
        for where, text in cap.parts.items()
        for role, secret in forbidden.items()
        if secret in text
    ]
    assert not leaks, leaks

    # ---- and the captures hold what surrounds the secrets, so the scan could fail
    log = cap.parts["daemon stderr"] + cap.parts["daemon stdout"]
    assert len(log.splitlines()) > 15, log
    for needle in (
        '"snmp_poll_failed"',
        '"target": "v3-wrong-key"',
        '"reason": "auth"',
        '"target": "unreachable"',
        '"reason": "timeout"',
        '"mqtt_connect_failed"',
        '"broker": "wrong-password"',
        '"mqtt_connected"',
        '"config_reload_failed"',
        '"key": "snmp.auths.dead.community"',
        '"key": "snmp.auths.scalar"',
        '"web_config_reload_failed"',
        '"key": "basic_auth_users"',
        '"alertmanager_post_failed"',
    ):
        assert needle in log, needle
    for target in (*DEVICES, "v3-good", "v3-wrong-key", "unreachable"):
        assert f'target="{target}"' in metrics
        assert f'data-target="{target}"' in page
    assert "upsBatteryStatus" in metrics, "the marker communities really read the UPS"
    assert 'commandcentre_mqtt_connected{broker="demo"} 1' in metrics
    assert "auth" in cap.parts["/snmp errors"]
    assert "Unauthorized" in cap.parts["401"]
    checked = cap.parts["check-config broken"]
    for key in (
        "snmp.auths.dead.community",
        "snmp.auths.scalar",
        "snmp.auths.v3_good.passwrd",
        "mqtt.brokers[1]",
        "basic_auth_users",
    ):
        assert key in checked, key
    assert "<secret>" in checked
    assert "snmp.auths.dead.community" in cap.parts["run broken"]
    assert "targets:     6" in cap.parts["check-config"]
