"""The daemon run in-process by the integration tests: one way to start and stop it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

from commandcentre.config import load_config
from commandcentre.daemon import Daemon
from commandcentre.webconfig import WebConfigWatcher


@contextlib.asynccontextmanager
async def running_daemon(
    config_path: Path,
    ready_within: float = 10.0,
    *,
    web: WebConfigWatcher | None = None,
    enable_lifecycle: bool = False,
) -> AsyncIterator[tuple[Daemon, str]]:
    """The daemon on the test's event loop, ready, with its base URL; on exit it is
    asked to stop and must exit 0 (a clean SIGTERM path) within 15 s. ``web`` and
    ``enable_lifecycle`` go to ``Daemon`` (spelt out, so a misspelt option is a type error)."""
    daemon = Daemon(load_config(config_path), web=web, enable_lifecycle=enable_lifecycle)
    task = asyncio.create_task(daemon.run())
    try:
        deadline = time.monotonic() + ready_within
        while not daemon.ready:
            assert not task.done(), f"daemon exited early: {task.result()}"
            assert time.monotonic() < deadline, "daemon did not become ready"
            await asyncio.sleep(0.02)
        host, port = daemon.bound[0]
        yield daemon, f"http://{host}:{port}"
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(task, 15) == 0
