"""The demo's MQTT broker: a real Mosquitto on a free 127.0.0.1 port, checked with the
``mosquitto_pub``/``mosquitto_sub`` clients, and gone after the context exits."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from commandcentre.demo import broker as demo_broker
from commandcentre.demo.broker import (
    BrokerUnavailableError,
    amqtt_available,
    find_mosquitto,
    run_demo_broker,
)

pytestmark = pytest.mark.integration

needs_mosquitto = pytest.mark.skipif(
    find_mosquitto() is None or shutil.which("mosquitto_pub") is None,
    reason="needs mosquitto and mosquitto-clients (apt install mosquitto mosquitto-clients)",
)


def pub(port: int, topic: str, payload: str, *, retain: bool = False) -> None:
    subprocess.run(
        [
            *("mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1"),
            *("-t", topic, "-m", payload, *(["-r"] if retain else [])),
        ],
        check=True,
        timeout=10,
        capture_output=True,
    )


def sub_one(port: int, topic_filter: str, wait: int = 5) -> subprocess.CompletedProcess[str]:
    """The first message on the filter (``-C 1``), or rc 27 when none came within ``wait`` s."""
    return subprocess.run(
        [
            *("mosquitto_sub", "-h", "127.0.0.1", "-p", str(port)),
            *("-v", "-C", "1", "-W", str(wait), "-t", topic_filter),
        ],
        check=False,
        timeout=wait + 10,
        capture_output=True,
        text=True,
    )


def listening_sockets(port: int) -> list[str]:
    """Local addresses of TCP listeners on the port, from ``ss``."""
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], check=True, capture_output=True, text=True
    ).stdout
    return [line.split()[3] for line in out.splitlines() if line.strip()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


@needs_mosquitto
def test_mosquitto_serves_retained_messages_on_loopback_only_and_stops(tmp_path: Path) -> None:
    topic = f"commandcentre-test/{uuid.uuid4().hex}/status"
    with run_demo_broker(tmp_path, prefer="mosquitto") as b:
        assert (b.host, b.kind, b.retain_ok) == ("127.0.0.1", "mosquitto", True)
        assert alive(b.pid)

        if shutil.which("ss") is not None:
            assert listening_sockets(b.port) == [f"127.0.0.1:{b.port}"]

        # retained: published before anyone subscribes, still delivered
        pub(b.port, topic, "online", retain=True)
        got = sub_one(b.port, topic)
        assert got.returncode == 0, got.stderr
        assert got.stdout.strip() == f"{topic} online"

        # not retained: only a subscriber already there gets it
        other = f"commandcentre-test/{uuid.uuid4().hex}/state"
        pub(b.port, other, "21.5")
        assert sub_one(b.port, other, wait=1).returncode == 27  # timed out: nothing kept

        # a retained message is not handed to a filter it does not match
        assert sub_one(b.port, f"{topic}/nothing-here", wait=1).returncode == 27

        conf = (tmp_path / "mosquitto.conf").read_text()
        assert f"listener {b.port} 127.0.0.1" in conf
        assert "persistence false" in conf
        pid, port, log_path = b.pid, b.port, b.log_path

    assert not alive(pid)
    assert refused(port)
    log = log_path.read_text()
    assert "running" in log
    assert "terminating" in log  # stopped cleanly by SIGTERM, not killed


@needs_mosquitto
def test_mosquitto_as_root_drops_privileges_and_still_logs(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only meaningful when run as root")
    tmp_path.chmod(0o700)  # a private work directory the mosquitto user cannot enter
    with run_demo_broker(tmp_path, prefer="mosquitto") as b:
        owner = subprocess.run(
            ["ps", "-o", "user=", "-p", str(b.pid)], check=True, capture_output=True, text=True
        ).stdout.strip()
        assert owner != "root"
    assert "Opening ipv4 listen socket" in b.log_path.read_text()


@needs_mosquitto
def test_two_brokers_get_different_ports(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    with (
        run_demo_broker(tmp_path / "one", prefer="mosquitto") as one,
        run_demo_broker(tmp_path / "two", prefer="mosquitto") as two,
    ):
        assert one.port != two.port


@needs_mosquitto
def test_the_broker_is_stopped_when_the_body_raises(tmp_path: Path) -> None:
    pids: list[int] = []

    def failing_demo() -> None:
        with run_demo_broker(tmp_path) as b:
            pids.append(b.pid)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        failing_demo()
    assert len(pids) == 1
    assert not alive(pids[0])


@pytest.mark.skipif(not amqtt_available(), reason="amqtt is not installed (pip install amqtt)")
def test_amqtt_fallback_listens_on_loopback_and_says_retain_is_unreliable(tmp_path: Path) -> None:
    with run_demo_broker(tmp_path, prefer="amqtt") as b:
        assert (b.kind, b.retain_ok) == ("amqtt", False)
        if shutil.which("ss") is not None:
            assert listening_sockets(b.port) == [f"127.0.0.1:{b.port}"]
        if shutil.which("mosquitto_pub") is not None:
            topic = f"commandcentre-test/{uuid.uuid4().hex}"
            pub(b.port, topic, "x", retain=True)
            assert sub_one(b.port, topic).stdout.strip() == f"{topic} x"
        pid = b.pid
    assert not alive(pid)


def test_no_broker_installed_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo_broker, "find_mosquitto", lambda: None)
    monkeypatch.setattr(demo_broker, "amqtt_available", lambda: False)
    with (
        pytest.raises(BrokerUnavailableError, match=r"install Mosquitto.*pip install amqtt"),
        run_demo_broker(tmp_path),
    ):
        pass
    with (
        pytest.raises(BrokerUnavailableError, match="pip install amqtt"),
        run_demo_broker(tmp_path, prefer="amqtt"),
    ):
        pass


@needs_mosquitto
def test_a_broker_that_cannot_start_reports_its_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo_broker, "mosquitto_config", lambda port: "no_such_option yes\n")
    with (
        pytest.raises(BrokerUnavailableError, match="exited with status") as err,
        run_demo_broker(tmp_path, prefer="mosquitto"),
    ):
        pass
    assert "no_such_option" in str(err.value)
