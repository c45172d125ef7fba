"""sd_notify datagrams over a real unix socket; the schedule's phase spreading."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from commandcentre.sdnotify import Notifier
from commandcentre.snmp.scheduler import phase_offset


def test_notifier_sends_states_to_the_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(path)
        n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"})
        assert n.enabled
        assert n.watchdog_interval == pytest.approx(2.0)
        n.notify("READY=1", "STATUS=polling 3 targets")
        assert srv.recv(4096) == b"READY=1\nSTATUS=polling 3 targets"


def test_notifier_abstract_socket() -> None:
    name = f"commandcentre-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind("\0" + name)
        Notifier({"NOTIFY_SOCKET": "@" + name}).notify("STOPPING=1")
        assert srv.recv(100) == b"STOPPING=1"


def test_notifier_without_socket_is_silent_and_watchdog_for_other_pid_ignored() -> None:
    n = Notifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert not n.enabled
    assert n.watchdog_interval is None
    n.notify("READY=1")  # no socket: nothing to send, no error


def test_notifier_survives_a_vanished_socket(tmp_path: Path) -> None:
    Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}).notify("READY=1")


def test_phase_offsets_spread_200_targets_over_the_interval() -> None:
    offsets = sorted(phase_offset(f"switch-{i:03d}", 30.0) for i in range(200))
    assert all(0 <= o < 30.0 for o in offsets)
    # evenly spread: no one-second slot holds more than 20 of the 200 starts (mean 6.7)
    per_second = [0] * 30
    for o in offsets:
        per_second[int(o)] += 1
    assert max(per_second) <= 20
    assert phase_offset("switch-001", 30.0) == phase_offset("switch-001", 30.0)
