"""The bucket shared by all trap senders (the per-sender ones are in test_traps_mapping)."""

from __future__ import annotations

from commandcentre.traps.ratelimit import TokenBucket


def test_bucket_passes_its_burst_then_its_rate() -> None:
    now = [100.0]
    bucket = TokenBucket(rate=10, burst=5, clock=lambda: now[0])
    assert [bucket.take() for _ in range(7)] == [True] * 5 + [False] * 2
    now[0] += 0.25  # 2.5 tokens
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    now[0] += 100.0  # refills to the burst, not beyond
    assert sum(bucket.take() for _ in range(20)) == 5


def test_refused_takes_do_not_use_up_the_refill() -> None:
    """A flood hammering an empty bucket still gets exactly the rate through."""
    now = [0.0]
    bucket = TokenBucket(rate=100, burst=1, clock=lambda: now[0])
    passed = 0
    for _ in range(10_000):  # one second, a take every 0.1 ms
        now[0] += 0.0001
        passed += bucket.take()
    assert 99 <= passed <= 101
