"""How long the event loop was kept from running: the daemon's own stall meter.

Everything (polls, MQTT ingest, scrapes, the trap receiver) shares one event loop,
so a stall anywhere delays everything. A probe task asks to wake every
``interval`` seconds; how late it wakes is the loop's lag. Exposed as the longest
lag in the last minute (rolling, two 30-s halves, so every scrape interval of up
to 30 s is covered) and a count of stalls over ``STALL_SECONDS``.
"""

from __future__ import annotations

import asyncio

from commandcentre.samples import Sample

STALL_SECONDS = 0.05
_HALF_WINDOW = 30.0


class LoopLagProbe:
    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.stalls = 0
        self._max_current = 0.0  # this half-window
        self._max_previous = 0.0  # the one before
        self._half_started = 0.0

    def record(self, lag: float, now: float) -> None:
        if now - self._half_started >= _HALF_WINDOW:
            stale = now - self._half_started >= 2 * _HALF_WINDOW
            self._max_previous = 0.0 if stale else self._max_current
            self._max_current = 0.0
            self._half_started = now
        self._max_current = max(self._max_current, lag)
        if lag > STALL_SECONDS:
            self.stalls += 1

    @property
    def max_lag(self) -> float:
        return max(self._max_current, self._max_previous)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._half_started = loop.time()
        while True:
            expected = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            now = loop.time()
            self.record(max(0.0, now - expected), now)

    def self_samples(self) -> list[Sample]:
        return [
            Sample(
                "commandcentre_event_loop_lag_max_seconds",
                (),
                self.max_lag,
                "gauge",
                "Longest delay of the event loop in the last minute (polls, MQTT, "
                "scrapes and traps all wait while it is held).",
            ),
            Sample(
                "commandcentre_event_loop_stalls_total",
                (),
                self.stalls,
                "counter",
                f"Times the event loop was held for more than {STALL_SECONDS * 1000:g} ms.",
            ),
        ]
