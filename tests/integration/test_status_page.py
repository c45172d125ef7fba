"""The status page in a real browser: headless Chromium loads ``/`` from a running daemon.

Two targets on two real net-snmp ``snmpd`` agents; one agent is then stopped and
the page, loaded again after its refresh period, shows that target down.

``chromium --dump-dom`` prints the DOM once the page has loaded, and that first
load is all it gives: the page's ``<meta http-equiv="refresh">`` reload happens
after the dump (``--virtual-time-budget`` would run the reload in virtual time,
but the daemon's poll runs in real time, so the reloaded page could still be the
old state). So the test does what the wall screen does, in real time: it waits
one refresh period (``STATUS_REFRESH_SECONDS``) plus a poll interval, by polling
the daemon's own state for the failed poll first, then loads the page again.

The screenshot goes to a temporary path; with ``COMMANDCENTRE_UPDATE_SCREENSHOT=1``
it is written to ``docs/status-page.png`` instead (the documentation's picture).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from commandcentre.daemon import Daemon
from commandcentre.http import STATUS_REFRESH_SECONDS
from tests.integration.agents import run_snmpd
from tests.integration.daemons import running_daemon

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = REPO / "docs" / "status-page.png"
POLL_INTERVAL = 1.0  # seconds
EVIL_NAME = "<script>alert(1)</script>"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        CHROMIUM is None, reason="needs a chromium binary (Debian package chromium)"
    ),
]


def chromium(url: str, *args: str) -> str:
    """Run headless Chromium on ``url`` with a fresh profile; its stdout."""
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory(prefix="cc-chromium-") as profile:
        r = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                *args,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def write_config(path: Path, healthy_port: int, doomed_port: int) -> Path:
    auth = {"version": 2, "community": "public"}
    target = {"auth": "v2", "modules": ["system"]}
    cfg = {
        "http": {"listen": "127.0.0.1:0"},
        "snmp": {
            "module_files": [str(REPO / "config" / "snmp" / "system.yml")],
            "auths": {"v2": auth},
            "defaults": {"interval": f"{POLL_INTERVAL:g}s", "timeout": "500ms", "retries": 0},
            "targets": [
                {"name": "core-sw1", "address": f"127.0.0.1:{healthy_port}", **target},
                {"name": "ups-a1", "address": f"127.0.0.1:{doomed_port}", **target},
                # same agent as core-sw1: a hostile name, shown escaped
                {"name": EVIL_NAME, "address": f"127.0.0.1:{healthy_port}", **target},
            ],
        },
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


async def wait_for_state(daemon: Daemon, target: str, up: bool, limit: float) -> None:
    deadline = time.monotonic() + limit
    while True:
        st = daemon.poller.states.get((target, "system"))
        if st is not None and bool(st.up) == up:
            return
        assert time.monotonic() < deadline, f"{target} not {'up' if up else 'down'}"
        await asyncio.sleep(0.05)


@pytest.fixture
async def daemon_url(tmp_path: Path) -> AsyncIterator[tuple[Daemon, str, list[object]]]:
    with run_snmpd() as healthy, run_snmpd() as doomed:
        config = write_config(tmp_path / "c.yml", healthy.port, doomed.port)
        async with running_daemon(config) as (daemon, base):
            yield daemon, base + "/", [doomed.proc]


def rows(dom: str, state: str) -> list[str]:
    return [line for line in dom.split("<tr") if f'data-state="{state}"' in line]


async def test_status_page_in_chromium_shows_a_target_going_down(
    daemon_url: tuple[Daemon, str, list[object]], tmp_path: Path
) -> None:
    daemon, url, (doomed,) = daemon_url
    for target in ("core-sw1", "ups-a1", EVIL_NAME):
        await wait_for_state(daemon, target, True, 10)

    # strict CSP, no script allowed: straight from the server
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        assert r.status == 200
        csp = r.headers["Content-Security-Policy"]
        raw = await r.text()
    assert "default-src 'none'" in csp
    assert "script-src" not in csp  # falls back to default-src 'none'
    assert EVIL_NAME not in raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in raw

    dom = await asyncio.to_thread(chromium, url, "--dump-dom")
    assert "<title>commandcentre status</title>" in dom
    assert dom.count("<table>") == 4  # SNMP targets, sensors offline, brokers, subscriptions
    up = rows(dom, "up")
    assert any('data-target="core-sw1"' in r for r in up), dom
    assert any('data-target="ups-a1"' in r for r in up), dom
    assert not rows(dom, "down"), dom
    # the hostile name is text in the browser's DOM, not an element
    assert "<script>" not in dom
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom

    # take ups-a1's agent down; the page loaded before shows it red at its next
    # refresh: within STATUS_REFRESH_SECONDS + a poll (+ the poll's timeout)
    t0 = time.monotonic()
    assert isinstance(doomed, subprocess.Popen)
    doomed.terminate()
    await asyncio.to_thread(doomed.wait, 10)
    await wait_for_state(daemon, "ups-a1", False, POLL_INTERVAL + 2)
    await asyncio.sleep(max(0.0, STATUS_REFRESH_SECONDS - (time.monotonic() - t0)))
    assert time.monotonic() - t0 <= STATUS_REFRESH_SECONDS + POLL_INTERVAL + 1.0
    dom = await asyncio.to_thread(chromium, url, "--dump-dom")
    down = rows(dom, "down")
    assert len(down) == 1, dom
    assert 'data-target="ups-a1"' in down[0]
    assert 'class="bad"' in down[0]
    assert any('data-target="core-sw1"' in r for r in rows(dom, "up"))

    shot = (
        SCREENSHOT
        if os.environ.get("COMMANDCENTRE_UPDATE_SCREENSHOT") == "1"
        else tmp_path / "status-page.png"
    )
    shot.parent.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(
        chromium, url, f"--screenshot={shot}", "--window-size=1920,1080", "--hide-scrollbars"
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
