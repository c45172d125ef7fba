"""The ``commandcentre`` command as a user runs it: check-config, --version, demo."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from commandcentre.demo.sensors import REPORT_INTERVAL
from tests.integration.agents import free_tcp_port

REPO = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("commandcentre"))
EXAMPLE = REPO / "config" / "commandcentre.example.yml"


def example_env(tmp_path: Path) -> dict[str, str]:
    """What the example config's ${...} references and credential files need."""
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "switch-auth-password").write_text("example-auth-pass\n")
    (creds / "switch-priv-password").write_text("example-priv-pass\n")
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CC_POWER_COMMUNITY": "example-community",
        "CREDENTIALS_DIRECTORY": str(creds),
    }


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_version_and_help() -> None:
    from commandcentre import __version__

    r = run("--version")
    assert (r.returncode, r.stdout.strip()) == (0, f"commandcentre {__version__}")
    r = run("--help")
    assert r.returncode == 0
    for word in ("run", "check-config", "demo"):
        assert word in r.stdout


def test_check_config_accepts_the_example_and_prints_a_summary(tmp_path: Path) -> None:
    r = run("check-config", "--config", str(EXAMPLE), env=example_env(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{EXAMPLE}: OK\n")
    for heading in ("targets:", "modules:", "auths:", "http.listen:"):
        assert heading in r.stdout
    for secret in ("example-auth-pass", "example-priv-pass", "example-community"):
        assert secret not in r.stdout + r.stderr


def test_check_config_lists_every_problem_and_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "snmp:\n"
        "  auths:\n"
        "    v3: {version: 3, username: u, security_level: authPriv, password: hunter2-secret}\n"
        "  targets:\n"
        "    - {name: a, address: 10.0.0.1, modules: [nope], interval: 30x}\n"
        "  colour: blue\n"
    )
    r = run("check-config", "--config", str(bad))
    assert r.returncode == 1
    err = r.stderr
    assert f"{bad}: snmp.colour: unknown key" in err
    assert f"{bad}: snmp.targets[0].interval: must be a duration" in err
    assert f"{bad}: snmp.auths.v3: security_level authPriv needs priv_password" in err
    assert "hunter2-secret" not in err + r.stdout


def test_run_with_a_bad_config_exits_2_naming_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("snmp:\n  targets:\n    - {name: a, address: 'udp://:161', modules: [x]}\n")
    r = run("run", "--config", str(bad))
    assert r.returncode == 2
    assert "snmp.targets[0].address" in r.stderr


def test_demo_runs_the_simulated_server_room_and_stops_cleanly() -> None:
    port = free_tcp_port()
    proc = subprocess.Popen(
        [CLI, "demo", "--listen", f"127.0.0.1:{port}", "--interval", "1s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as in a terminal
    )
    try:
        deadline = time.monotonic() + 60
        ups: dict[tuple[str, str], float] = {}
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    text = r.read().decode()
            except OSError:
                time.sleep(0.2)
                continue
            up = {
                (s.labels["target"], s.labels["module"]): s.value
                for f in text_string_to_metric_families(text)
                for s in f.samples
                if s.name == "commandcentre_snmp_up"
            }
            sensors_in = 'commandcentre_mqtt_connected{broker="demo"} 1' in text and (
                "commandcentre_sensor_temperature_celsius{" in text
            )
            if up and all(v == 1 for v in up.values()) and sensors_in:
                ups = up
                break
            time.sleep(0.2)
        assert set(ups) == {
            ("ups-rfc1628", "system"),
            ("ups-rfc1628", "ups_mib"),
            ("ups-apc", "system"),
            ("ups-apc", "apcups"),
            ("switch-24", "system"),
            ("switch-24", "if_mib"),
        }, ups
        assert 'upsEstimatedChargeRemaining{target="ups-rfc1628"' in text
        assert 'ifHCInOctets{ifIndex="1"' in text
        # the simulated sensors, in each of the three ecosystems' styles
        for line in (
            'commandcentre_sensor_temperature_celsius{device="server-room/rack-a1/inlet"',
            'commandcentre_sensor_power_watts{device="rack-a1-power"',
            'commandcentre_sensor_temperature_celsius{device="rack-a3-env",sensor="inlet_temperature"',
            'commandcentre_sensor_door_open{device="server-room/door"',
            'commandcentre_sensor_up{device="rack-a3-env"',
        ):
            assert line in text, line
        no_bad = 'subscription="demo-zigbee2mqtt",reason="not_json"} 0'
        assert "commandcentre_mqtt_bad_payloads_total{" + no_bad in text

        # Ctrl-C once the sensors have reported a second time, with their publisher
        # waiting for the next report (a stop there once left an MQTT error unread,
        # which asyncio printed at exit)
        def received() -> float:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                families = text_string_to_metric_families(r.read().decode())
            return sum(
                s.value
                for f in families
                for s in f.samples
                if s.name == "commandcentre_mqtt_messages_received_total"
            )

        first = received()
        second_report = time.monotonic() + 3 * REPORT_INTERVAL
        while received() <= first and time.monotonic() < second_report:
            time.sleep(0.5)
        assert received() > first, "the sensors reported only once"
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole group, broker included
        assert proc.wait(timeout=15) == 0
        _, err = proc.communicate()
        assert f"http://127.0.0.1:{port}/metrics" in err
        # a clean Ctrl-C: no asyncio complaint (an MQTT disconnect error left unread)
        assert "never retrieved" not in err, err[-2000:]
        assert "Traceback" not in err, err[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # nothing it started is left behind
    left = subprocess.run(
        ["pgrep", "-f", "snmpsim-command-responder.*commandcentre-demo-"],
        capture_output=True,
        check=False,
    )
    assert left.returncode == 1, left.stdout
