"""systemd's notify protocol (sd_notify(3)) without libsystemd: one datagram per state."""

from __future__ import annotations

import os
import socket


class Notifier:
    """Sends READY=1, RELOADING=1, STOPPING=1 and WATCHDOG=1 when NOTIFY_SOCKET is set."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        addr = env.get("NOTIFY_SOCKET", "")
        if addr.startswith("@"):
            addr = "\0" + addr[1:]  # abstract namespace socket
        self._addr = addr or None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        wd_for_us = usec.isdigit() and (not pid or pid == str(os.getpid()))
        # Ping at half the watchdog timeout, as sd_watchdog_enabled(3) advises.
        self.watchdog_interval: float | None = int(usec) / 2e6 if wd_for_us else None

    @property
    def enabled(self) -> bool:
        return self._addr is not None

    def notify(self, *states: str) -> None:
        if self._addr is None:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            try:
                s.connect(self._addr)
                s.sendall("\n".join(states).encode())
            except OSError:
                # systemd gone or socket not ours: nothing useful to do but carry on.
                pass
