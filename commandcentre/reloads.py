"""How the loads of one file went (the config, the web config): the
``*_last_reload_successful`` gauges, the timestamp and the attempt counter as
self-metrics, and one log line per problem when a reload is refused."""

from __future__ import annotations

import time

import structlog

from commandcentre.configbase import ConfigError
from commandcentre.samples import Sample

log = structlog.get_logger("commandcentre")


class ReloadRecord:
    """``name`` prefixes the metrics (``commandcentre_<name>_...``) and the log
    events (``<name>_reload_problem``, ``<name>_reload_failed``); the three help
    texts are the metrics' HELP lines."""

    def __init__(self, name: str, ok_help: str, time_help: str, attempts_help: str) -> None:
        self.name = name
        self._help = (ok_help, time_help, attempts_help)
        self.ok = 1
        self.time = time.time()  # the start's load counts as the first success
        self.reloads = {"success": 0, "failure": 0}

    def succeeded(self) -> None:
        self.ok = 1
        self.time = time.time()
        self.reloads["success"] += 1

    def failed(self, file: str, error: ConfigError) -> list[str]:
        """Count and log a refused reload; the problems, for the caller's answer."""
        self.ok = 0
        self.reloads["failure"] += 1
        for p in error.problems:
            log.error(
                f"{self.name}_reload_problem",
                file=p.file,
                key=p.path,
                problem=p.message,
                given=p.given,
            )
        log.error(f"{self.name}_reload_failed", file=file, problems=len(error.problems))
        return [str(p) for p in error.problems]

    def self_samples(self) -> list[Sample]:
        ok_help, time_help, attempts_help = self._help
        prefix = f"commandcentre_{self.name}"
        return [
            Sample(f"{prefix}_last_reload_successful", (), self.ok, "gauge", ok_help),
            Sample(
                f"{prefix}_last_reload_success_timestamp_seconds", (), self.time, "gauge", time_help
            ),
            *(
                Sample(f"{prefix}_reloads_total", (("result", r),), n, "counter", attempts_help)
                for r, n in self.reloads.items()
            ),
        ]
