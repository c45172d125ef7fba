"""The loop-lag probe sees a real stall of the event loop, and forgets it after a minute."""

from __future__ import annotations

import asyncio
import time

from commandcentre.looplag import LoopLagProbe


async def test_a_blocked_loop_is_measured_as_lag_and_counted_as_a_stall() -> None:
    probe = LoopLagProbe(interval=0.02)
    task = asyncio.create_task(probe.run())
    await asyncio.sleep(0.1)
    stalls_before = probe.stalls
    time.sleep(0.3)  # noqa: ASYNC251 -- the stall under test
    await asyncio.sleep(0.1)
    task.cancel()
    # the probe asked to wake within 20 ms of the block's start; it woke 0.3 s later
    assert probe.max_lag >= 0.25, probe.max_lag
    assert probe.stalls >= stalls_before + 1
    by_name = {s.name: s.value for s in probe.self_samples()}
    assert by_name["commandcentre_event_loop_lag_max_seconds"] == probe.max_lag
    assert by_name["commandcentre_event_loop_stalls_total"] == probe.stalls


def test_the_maximum_covers_the_last_minute_then_is_forgotten() -> None:
    probe = LoopLagProbe()
    probe.record(0.2, now=1.0)
    probe.record(0.001, now=10.0)
    assert probe.max_lag == 0.2
    probe.record(0.001, now=31.0)  # next half-window: the 0.2 s is still within a minute
    assert probe.max_lag == 0.2
    probe.record(0.001, now=61.5)  # two halves later: gone
    assert probe.max_lag == 0.001
    probe.record(0.002, now=200.0)  # after a long quiet gap nothing stale is kept
    assert probe.max_lag == 0.002
    assert probe.stalls == 1
