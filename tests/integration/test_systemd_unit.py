"""The shipped systemd unit: `systemd-analyze verify` is silent, `systemd-analyze
security --offline=yes` rates it "OK" or better, and the essentials are there.

``verify`` checks that ExecStart='s binary exists, and the production path
/usr/bin/commandcentre does not exist on a development machine: the tests rate a
temporary copy whose command paths point at this venv's ``commandcentre`` (the
only change; the shipped file stays the production one). ``security`` and
``verify`` run offline: no systemd as PID 1 is needed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "commandcentre.service"
DROPIN = REPO / "systemd" / "commandcentre.service.d" / "traps.conf"
PRODUCTION_BIN = "/usr/bin/commandcentre"
VENV_BIN = Path(sys.executable).with_name("commandcentre")
MAX_EXPOSURE = 4.9  # systemd-analyze's "OK" band ends below 5.0 ("MEDIUM")

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed (Debian package systemd)"
    ),
]


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run(
        [SYSTEMD_ANALYZE, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def man_pages_installed() -> bool:
    """`verify` resolves Documentation=man:... with man(1); minimal images drop man pages."""
    man = shutil.which("man")
    if man is None:
        return False
    found = subprocess.run(
        [man, "-w", "5", "systemd.exec"], capture_output=True, timeout=30, check=False
    )
    return found.returncode == 0


def unit_copy(tmp_path: Path, *, with_dropin: bool) -> Path:
    """The unit as shipped, command paths pointing at this venv; optionally the drop-in."""
    text = UNIT.read_text()
    assert PRODUCTION_BIN in text
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace(PRODUCTION_BIN, str(VENV_BIN)))
    if with_dropin:
        # verify and security read drop-ins from <unit>.d/ next to the unit file
        (tmp_path / DROPIN.parent.name).mkdir()
        shutil.copy(DROPIN, tmp_path / DROPIN.parent.name / DROPIN.name)
    return unit


def directives(path: Path) -> dict[str, list[str]]:
    """Active `Key=value` lines of a unit file, by key (comments and sections skipped)."""
    out: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a Key=value line: {raw!r}"
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def exposure(output: str) -> float:
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?) (\w+)", output)
    assert m, f"no overall exposure level in:\n{output}"
    return float(m.group(1))


@pytest.mark.parametrize("with_dropin", [False, True], ids=["unit", "unit+traps.conf"])
def test_verify_is_silent(tmp_path: Path, with_dropin: bool) -> None:
    assert VENV_BIN.exists(), f"{VENV_BIN} missing: install the package into the venv"
    unit = unit_copy(tmp_path, with_dropin=with_dropin)
    man = "yes" if man_pages_installed() else "no"
    result = analyze("verify", f"--man={man}", f"./{unit.name}", cwd=tmp_path)
    # verify prints problems (and warnings about other units on this machine it
    # happens to load) on stderr; only lines about our unit count.
    ours = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "commandcentre" in line or unit.name in line
    ]
    assert result.returncode == 0, result.stdout + result.stderr
    assert ours == [], "\n".join(ours)


def test_security_exposure_is_ok(tmp_path: Path) -> None:
    unit = unit_copy(tmp_path, with_dropin=False)
    result = analyze("security", "--offline=yes", "--no-pager", f"./{unit.name}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    score = exposure(result.stdout)
    assert score <= MAX_EXPOSURE, result.stdout
    # The hardening the exposure rests on, as systemd-analyze reads it (✓ = in force).
    for check in (
        "SystemCallFilter=~@privileged",
        "PrivateDevices=",
        "ProtectSystem=",
        "MemoryDenyWriteExecute=",
        "CapabilityBoundingSet=~CAP_NET_(BIND_SERVICE|BROADCAST|RAW)",
        "RestrictAddressFamilies=~AF_NETLINK",
        "User=/DynamicUser=",
    ):
        lines = [line for line in result.stdout.splitlines() if f" {check} " in f"{line} "]
        assert lines, f"{check} not rated:\n{result.stdout}"
        assert lines[0].lstrip().startswith("✓"), lines[0]


def test_traps_dropin_adds_only_net_bind_service(tmp_path: Path) -> None:
    unit = unit_copy(tmp_path, with_dropin=True)
    result = analyze("security", "--offline=yes", "--no-pager", f"./{unit.name}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert exposure(result.stdout) <= MAX_EXPOSURE, result.stdout
    rated = {
        line.split()[1]: line.lstrip()[0]
        for line in result.stdout.splitlines()
        if line.lstrip()[:1] in {"✓", "✗"}
    }
    # The drop-in was read: port < 1024 allowed ...
    assert rated["CapabilityBoundingSet=~CAP_NET_(BIND_SERVICE|BROADCAST|RAW)"] == "✗"
    # ... and nothing else was added to the (empty) bounding set.
    assert rated["CapabilityBoundingSet=~CAP_SYS_ADMIN"] == "✓"
    assert rated["CapabilityBoundingSet=~CAP_NET_ADMIN"] == "✓"
    assert rated["CapabilityBoundingSet=~CAP_(DAC_*|FOWNER|IPC_OWNER)"] == "✓"
    assert rated["NoNewPrivileges="] == "✓"


def test_unit_essentials() -> None:
    d = directives(UNIT)
    one = {k: v[-1] for k, v in d.items()}
    assert one["Type"] == "notify"  # systemd 252: no notify-reload
    assert one["NotifyAccess"] == "main"
    watchdog = re.fullmatch(r"(\d+)s", one["WatchdogSec"])
    assert watchdog, one["WatchdogSec"]
    # Daemon._watchdog pings at half of it: tolerate event-loop stalls of >= 10 s.
    assert int(watchdog.group(1)) >= 20
    assert one["ExecStart"] == f"{PRODUCTION_BIN} run --config /etc/commandcentre/commandcentre.yml"
    assert f"{PRODUCTION_BIN} check-config --config" in one["ExecStartPre"]
    assert d["ExecReload"][-1] == "/bin/kill -HUP $MAINPID"
    assert one["Restart"] == "on-failure"
    assert "TimeoutStopSec" in one
    assert one.get("DynamicUser") == "yes" or one.get("User") not in {None, "", "root"}
    assert one["ConfigurationDirectory"] == "commandcentre"
    assert one["ProtectSystem"] == "strict"
    assert one["ProtectHome"] == "yes"
    assert one["PrivateTmp"] == "yes"
    assert one["NoNewPrivileges"] == "yes"
    assert set(one["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert "@system-service" in d["SystemCallFilter"]
    assert one["SystemCallArchitectures"] == "native"
    assert one["CapabilityBoundingSet"] == ""
    assert one["MemoryDenyWriteExecute"] == "yes"
    assert one["UMask"] == "0077"
    creds = d["LoadCredential"]
    assert creds
    assert all(re.fullmatch(r"[\w.-]+:/\S+", c) for c in creds), creds


def test_traps_dropin_essentials() -> None:
    d = directives(DROPIN)
    assert d["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert d["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    # a private user namespace would void the capability in the host's network namespace
    assert d["PrivateUsers"] == ["no"]
