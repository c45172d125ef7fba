"""Processes under measurement: start, wait for, stop, and read their own CPU and memory.

Every figure the harness reports comes from ``/proc/<pid>``: ``stat`` fields 14 and 15
(utime, stime: the process's own user and system time, all threads, children
excluded) and ``status`` (VmRSS, VmHWM: resident memory now and its peak). The
measured process is always exec'd directly (no shell in between), so the pid is
the process doing the work.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

# the demo's helpers: a free port now, SIGTERM then SIGKILL, always reaped
from commandcentre.demo.processes import free_port as free_port
from commandcentre.demo.processes import stop_process

CLK_TCK = os.sysconf("SC_CLK_TCK")


class StartError(RuntimeError):
    """A process did not come up; the message carries its output."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process itself has used, in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # the command name (field 2) may contain spaces: split after its closing paren
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLK_TCK


def memory_bytes(pid: int) -> tuple[int, int]:
    """(resident now, peak resident) in bytes, from /proc/<pid>/status."""
    rss = hwm = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    return rss, hwm


@dataclass
class Proc:
    """A started process, its log and what it is called in the results."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> int:
        return memory_bytes(self.pid)[0]

    def peak_rss(self) -> int:
        return memory_bytes(self.pid)[1]

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise StartError(
                f"{self.name} exited with status {self.popen.returncode}:\n{self.output()}"
            )


@contextlib.contextmanager
def started(
    name: str,
    argv: Sequence[str],
    workdir: Path,
    env: dict[str, str] | None = None,
) -> Iterator[Proc]:
    """Start ``argv`` with output to ``workdir/<name>.log``; SIGTERM, then SIGKILL, on exit."""
    log_path = workdir / f"{name.replace(' ', '_')}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(  # noqa: S603 - argv built by the harness
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
    proc = Proc(name, popen, log_path)
    try:
        yield proc
    finally:
        stop_process(popen, timeout=10.0)


def wait_for_tcp(proc: Proc, port: int, limit: float = 20.0) -> None:
    """Until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        proc.check_alive()
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise StartError(f"{proc.name} did not listen on port {port} within {limit:.0f} s")


def wait_for_http(proc: Proc, url: str, limit: float = 30.0) -> None:
    """Until ``url`` answers 200."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        proc.check_alive()
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(url, timeout=2) as r,  # noqa: S310 - our loopback URL
        ):
            if r.status == 200:
                return
        time.sleep(0.05)
    raise StartError(f"{proc.name} did not answer {url} within {limit:.0f} s:\n{proc.output()}")


def http_get(url: str, timeout: float = 120.0) -> bytes:
    """The body of a GET (raises on a non-2xx status)."""
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - our loopback URL
        body: bytes = r.read()
        return body
