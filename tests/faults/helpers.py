"""Shared pieces of the fault suite: the daemon as a real process, scrapes, process stats.

The fault tests drive commandcentre only through what an operator has: a config
file, signals, HTTP and the ``commandcentre_*`` self-metrics. ``DaemonProcess``
runs ``python -m commandcentre run`` exactly as the systemd unit does, so SIGTERM
and SIGHUP are real signals and the memory and descriptors measured are the
daemon's alone.

Every wait here has a deadline: a fault test that hangs is a failed test, not a
stuck CI job.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from commandcentre.demo.processes import free_port

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "commandcentre.service"

Metrics = dict[tuple[str, frozenset[tuple[str, str]]], float]

P = ParamSpec("P")
R = TypeVar("R")


def stop_timeout() -> float:
    """The unit's ``TimeoutStopSec`` in seconds: how long systemd waits for a clean exit."""
    m = re.search(r"^TimeoutStopSec=(\d+)s?\s*$", UNIT.read_text(), re.MULTILINE)
    assert m is not None, f"no TimeoutStopSec= in {UNIT}"
    return float(m.group(1))


def bounded(seconds: float) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Fail an async test that runs longer than ``seconds`` (asyncio.wait_for), so
    every fault case is bounded in time without a pytest plugin."""

    def wrap(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(fn)
        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await asyncio.wait_for(fn(*args, **kwargs), seconds)
            except TimeoutError:
                raise AssertionError(f"{fn.__name__} exceeded its {seconds:.0f} s bound") from None

        return run

    return wrap


# --------------------------------------------------------------------------- scrapes


def parse_metrics(text: str) -> Metrics:
    """Every sample of an exposition; raises ValueError if the text does not parse."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def value(m: Metrics, name: str, **labels: str) -> float | None:
    """The one sample of ``name`` whose labels include ``labels``, or None."""
    want = set(labels.items())
    found = [v for (n, lbl), v in m.items() if n == name and want <= lbl]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


def values(m: Metrics, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
    want = set(labels.items())
    return [(dict(lbl), v) for (n, lbl), v in m.items() if n == name and want <= lbl]


async def scrape(session: aiohttp.ClientSession, base: str, limit: float = 10.0) -> Metrics:
    async with session.get(base + "/metrics", timeout=aiohttp.ClientTimeout(total=limit)) as r:
        assert r.status == 200, r.status
        return parse_metrics(await r.text())


async def wait_for_metrics(
    session: aiohttp.ClientSession,
    base: str,
    check: Callable[[Metrics], bool],
    what: str,
    *,
    limit: float = 15.0,
    every: float = 0.1,
) -> Metrics:
    deadline = time.monotonic() + limit
    while True:
        m = await scrape(session, base)
        if check(m):
            return m
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit:.0f} s waiting for {what}")
        await asyncio.sleep(every)


# --------------------------------------------------------------------------- process stats


def fd_count(pid: int | None = None) -> int:
    """Open file descriptors (sockets included) of a process."""
    return len(os.listdir(f"/proc/{pid or os.getpid()}/fd"))


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process, from /proc/<pid>/status."""
    text = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    m = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    assert m is not None
    return int(m.group(1)) * 1024


# --------------------------------------------------------------------------- the daemon process


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class DaemonProcess:
    """``python -m commandcentre run`` on a free port; stopped (and reaped) on exit.

    ``stop()`` sends SIGTERM and asserts a clean exit (code 0) within the
    systemd unit's ``TimeoutStopSec``; ``close()`` only makes sure nothing is left.
    """

    def __init__(self, config: Path, workdir: Path) -> None:
        self.config = config
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"daemon-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def output(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    async def start(self, session: aiohttp.ClientSession, ready_within: float = 20.0) -> None:
        with self.log_path.open("wb") as log:
            # (Popen returns at once; the wait for readiness below is async)
            self.proc = subprocess.Popen(  # noqa: ASYNC220
                [
                    sys.executable,
                    "-m",
                    "commandcentre",
                    "run",
                    "--config",
                    str(self.config),
                    "--listen",
                    f"127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO,
            )
        deadline = time.monotonic() + ready_within
        while True:
            assert self.proc.poll() is None, f"daemon exited early:\n{self.output()}"
            try:
                async with session.get(
                    self.base + "/-/ready", timeout=aiohttp.ClientTimeout(total=1)
                ) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            assert time.monotonic() < deadline, f"daemon not ready:\n{self.output()}"
            await asyncio.sleep(0.1)

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        assert self.proc.poll() is None, self.output()
        self.proc.send_signal(sig)

    async def stop(self) -> float:
        """SIGTERM; assert exit 0 within the unit's stop timeout; return how long it took."""
        assert self.proc is not None
        assert self.proc.poll() is None, f"daemon died before SIGTERM:\n{self.output()}"
        limit = stop_timeout()
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        while self.proc.poll() is None:
            assert time.monotonic() - t0 < limit, (
                f"no exit within TimeoutStopSec={limit:.0f}s after SIGTERM:\n{self.output()}"
            )
            await asyncio.sleep(0.05)
        took = time.monotonic() - t0
        assert self.proc.returncode == 0, f"exit {self.proc.returncode}:\n{self.output()}"
        return took

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
