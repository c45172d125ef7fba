"""A real Prometheus (Debian package ``prometheus``) started by a test."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.integration.agents import free_tcp_port

PROMETHEUS = shutil.which("prometheus")


def run_prometheus(conf: Path, workdir: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    """Prometheus with ``conf`` on a free 127.0.0.1 port, run from ``workdir`` (its
    TSDB and ``prometheus.log`` there), ``extra`` flags added; and its base URL.
    The caller stops it."""
    assert PROMETHEUS is not None
    port = free_tcp_port()
    with (workdir / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={conf}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
        )
    return proc, f"http://127.0.0.1:{port}"
