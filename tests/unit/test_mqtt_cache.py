"""The MQTT series cache: TTL expiry, cardinality caps, reloads, problem counting."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from commandcentre.mqtt import cache as cache_module
from commandcentre.mqtt.cache import LAST_SEEN, SeriesCache
from commandcentre.mqtt.config import Subscription
from commandcentre.mqtt.types import BadPayload, ParseOutcome, Problem, Reading
from commandcentre.store import SampleStore, exposition


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def sub(name: str = "s", **kw: Any) -> Subscription:
    base: dict[str, Any] = {"name": name, "profile": "number", "topic": "t/{device}", "metric": "m"}
    return Subscription.model_validate({**base, **kw})


def reading(
    device: str, metric: str = "commandcentre_sensor_temperature_celsius", v: float = 21.0
) -> Reading:
    return Reading(metric, (("device", device),), v, "gauge", "Temperature.")


def outcome(*readings: Reading, problems: tuple[Problem, ...] = ()) -> ParseOutcome:
    return ParseOutcome(tuple(readings), problems)


def scrape(store: SampleStore) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for f in text_string_to_metric_families(exposition(store.families()))
        for s in f.samples
    }


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_readings_are_exposed_with_static_labels_and_last_seen(clock: Clock) -> None:
    store = SampleStore()
    cache = SeriesCache(store, clock=clock)
    cache.configure([sub(labels={"room": "server-room"})], 1000)
    cache.ingest("s", outcome(reading("a1", v=21.5)), "t/a1")
    m = scrape(store)
    labels = frozenset({("device", "a1"), ("room", "server-room")})
    assert m[("commandcentre_sensor_temperature_celsius", labels)] == 21.5
    seen_labels = labels | {("metric", "commandcentre_sensor_temperature_celsius")}
    assert m[(LAST_SEEN, seen_labels)] == clock.now
    # an update replaces the value and moves last-seen
    clock.now += 10
    cache.ingest("s", outcome(reading("a1", v=22.0)), "t/a1")
    m = scrape(store)
    assert m[("commandcentre_sensor_temperature_celsius", labels)] == 22.0
    assert m[(LAST_SEEN, seen_labels)] == clock.now
    assert cache.subs["s"].messages == 2
    assert cache.subs["s"].series == 1


def test_series_expire_individually_after_ttl(clock: Clock) -> None:
    store = SampleStore()
    cache = SeriesCache(store, clock=clock)
    cache.configure([sub(ttl="60s")], 1000)
    cache.ingest(
        "s",
        outcome(reading("a1"), reading("a1", "commandcentre_sensor_humidity_ratio", 0.4)),
        "t/a1",
    )
    cache.ingest("s", outcome(reading("a2")), "t/a2")
    clock.now += 40
    cache.ingest("s", outcome(reading("a1")), "t/a1")  # only temperature of a1 updated
    clock.now += 30  # 70 s after the first readings, 30 s after the update
    assert cache.expire() == 2
    names = {(n, dict(lbl)["device"]) for (n, lbl) in scrape(store) if n != LAST_SEEN}
    assert names == {("commandcentre_sensor_temperature_celsius", "a1")}
    assert cache.subs["s"].expired == 2
    assert cache.subs["s"].series == 1
    assert cache.total_series == 1
    clock.now += 61
    assert cache.expire() == 1
    assert store.keys() == []


def test_caps_refuse_new_series_but_keep_updating_existing(clock: Clock) -> None:
    store = SampleStore()
    cache = SeriesCache(store, clock=clock)
    cache.configure([sub("small", max_series=2), sub("other")], 3)
    with capture_logs() as logs:
        for i in range(10):
            cache.ingest("small", outcome(reading(f"d{i}")), f"t/d{i}")
    st = cache.subs["small"]
    assert (st.series, st.refused) == (2, 8)
    # one warning for the flood, not one per refused series
    assert [e["event"] for e in logs].count("mqtt_series_limit_reached") == 1
    cache.ingest("small", outcome(reading("d0", v=30.0)), "t/d0")
    assert (
        scrape(store)[("commandcentre_sensor_temperature_celsius", frozenset({("device", "d0")}))]
        == 30.0
    )
    # the overall cap (3) binds across subscriptions
    cache.ingest("other", outcome(reading("x"), reading("y")), "t/x")
    assert cache.subs["other"].series == 1
    assert cache.subs["other"].refused == 1
    assert cache.total_series == 3


def test_warnings_repeat_after_the_interval_with_a_count(clock: Clock) -> None:
    cache = SeriesCache(SampleStore(), clock=clock)
    cache.configure([sub()], 1000)
    bad = outcome(problems=(Problem(BadPayload.NOT_JSON, "payload starts with b'<'"),))
    with capture_logs() as logs:
        for _ in range(5):
            cache.ingest("s", bad, "t/a")
        clock.now += 61
        cache.ingest("s", bad, "t/a")
    events = [e for e in logs if e["event"] == "mqtt_bad_payload"]
    assert len(events) == 2
    assert events[1]["similar_since_last_log"] == 4
    assert events[0]["reason"] == "not_json"
    assert cache.subs["s"].bad[BadPayload.NOT_JSON] == 6


def test_reload_keeps_unchanged_relabels_changed_and_drops_removed(clock: Clock) -> None:
    store = SampleStore()
    cache = SeriesCache(store, clock=clock)
    cache.configure([sub("keep"), sub("relabel", labels={"room": "a"}), sub("gone")], 1000)
    for name in ("keep", "relabel", "gone"):
        cache.ingest(name, outcome(reading(name)), f"t/{name}")
    cache.configure([sub("keep"), sub("relabel", labels={"room": "b"})], 1000)
    m = scrape(store)
    temps = {lbl for (n, lbl) in m if n == "commandcentre_sensor_temperature_celsius"}
    assert temps == {
        frozenset({("device", "keep")}),
        frozenset({("device", "relabel"), ("room", "b")}),
    }
    assert cache.total_series == 2
    assert "gone" not in cache.subs


def test_self_metrics_count_by_subscription_and_reason(clock: Clock) -> None:
    cache = SeriesCache(SampleStore(), clock=clock)
    cache.configure([sub()], 1000)
    cache.ingest(
        "s",
        outcome(reading("a"), problems=(Problem(BadPayload.NOT_FINITE, "temperature: NaN"),)),
        "t/a",
    )
    got = {(s.name, s.labels): s.value for s in cache.self_samples()}
    assert got[("commandcentre_mqtt_messages_total", (("subscription", "s"),))] == 1
    assert got[("commandcentre_mqtt_series", (("subscription", "s"),))] == 1
    assert (
        got[
            (
                "commandcentre_mqtt_bad_payloads_total",
                (("subscription", "s"), ("reason", "not_finite")),
            )
        ]
        == 1
    )
    assert (
        got[
            (
                "commandcentre_mqtt_bad_payloads_total",
                (("subscription", "s"), ("reason", "not_json")),
            )
        ]
        == 0
    )


def test_availability_does_not_expire(clock: Clock) -> None:
    store = SampleStore()
    cache = SeriesCache(store, clock=clock)
    cache.configure([sub(ttl="60s")], 1000)
    up = Reading("commandcentre_sensor_up", (("device", "a1"),), 1, "gauge", "Online.")
    cache.ingest("s", outcome(up, reading("a1")), "t/a1")
    clock.now += 3600
    assert cache.expire() == 1  # the temperature, not the availability
    assert scrape(store)[("commandcentre_sensor_up", frozenset({("device", "a1")}))] == 1


def test_an_update_re_renders_only_its_chunk(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_module, "CHUNK_SERIES", 4)
    store = SampleStore()
    cache = SeriesCache(store, clock=clock)
    cache.configure([sub()], 1000)
    for i in range(10):
        cache.ingest("s", outcome(reading(f"d{i}", v=i)), f"t/d{i}")
    st = cache.subs["s"]
    assert len(st.dirty) == 3, "10 new series in chunks of 4"
    before = scrape(store)
    assert not st.dirty
    chunks = st.metric_families["commandcentre_sensor_temperature_celsius"].chunks
    untouched = [c.rendered for c in chunks]
    cache.ingest("s", outcome(reading("d5", v=50.0)), "t/d5")
    assert st.dirty == [chunks[1]]
    after = scrape(store)
    assert [c.rendered for c in chunks][0::2] == untouched[0::2], "other chunks kept their text"
    assert after[("commandcentre_sensor_temperature_celsius", frozenset({("device", "d5")}))] == 50
    changed = {k for k in after if after[k] != before.get(k)}
    assert {dict(lbl)["device"] for _, lbl in changed} == {"d5"}


METRICS = ["commandcentre_sensor_temperature_celsius", "commandcentre_sensor_humidity_ratio"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.just("msg"),
                st.integers(0, 6),
                st.sampled_from(METRICS),
                st.floats(-1e20, 1e20, allow_nan=False),
            ),
            st.tuples(st.just("wait"), st.integers(1, 40)),
            st.tuples(st.just("scrape")),
        ),
        max_size=60,
    )
)
def test_exposition_always_matches_a_model_of_the_latest_values(
    ops: list[tuple[Any, ...]],
) -> None:
    """Whatever the order of messages, scrapes, expiry and chunk boundaries (3 series
    per chunk here), a scrape shows exactly the latest value and last-seen time of
    every live series, each family contiguous (the parser would reject it otherwise)."""
    clock = Clock()
    store = SampleStore()
    cache = SeriesCache(store, clock=clock)
    cache.configure([sub(ttl="60s", labels={"site": "hq"})], 1000)
    model: dict[tuple[str, str], tuple[float, float]] = {}
    old_chunk = cache_module.CHUNK_SERIES
    cache_module.CHUNK_SERIES = 3
    try:
        for op in ops:
            if op[0] == "msg":
                _, d, metric, v = op
                cache.ingest("s", outcome(reading(f"d{d}", metric, v)), f"t/d{d}")
                model[(metric, f"d{d}")] = (v, clock.now)
            elif op[0] == "wait":
                clock.now += op[1]
                cache.expire()
                model = {k: (v, t) for k, (v, t) in model.items() if t >= clock.now - 60}
            else:
                scrape(store)
        got = scrape(store)
    finally:
        cache_module.CHUNK_SERIES = old_chunk
    expected: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for (metric, device), (v, seen) in model.items():
        labels = frozenset({("device", device), ("site", "hq")})
        expected[(metric, labels)] = v
        expected[(LAST_SEEN, labels | {("metric", metric)})] = seen
    assert got == expected
    assert cache.total_series == len(model)
    assert store.series_count() == 2 * len(model), "a value and a last-seen line each"


def test_expiry_in_slices_spares_a_series_refreshed_between_them(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "EXPIRE_SLICE", 2)
    store = SampleStore()
    cache = SeriesCache(store, clock=clock)
    cache.configure([sub(ttl="60s")], 1000)
    for i in range(6):
        cache.ingest("s", outcome(reading(f"d{i}")), f"t/d{i}")
    clock.now += 61
    steps = cache.expire_steps()
    assert next(steps) == 2  # d0, d1
    cache.ingest("s", outcome(reading("d5", v=5.0)), "t/d5")  # refreshed before its slice
    assert list(steps) == [4, 5]
    assert {dict(lbl)["device"] for (n, lbl) in scrape(store) if n != LAST_SEEN} == {"d5"}
    assert (cache.total_series, cache.subs["s"].expired, store.series_count()) == (1, 5, 2)


def test_expiry_stops_for_a_subscription_reloaded_away_between_slices(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "EXPIRE_SLICE", 2)
    store = SampleStore()
    cache = SeriesCache(store, clock=clock)
    cache.configure([sub("a", ttl="60s"), sub("b", ttl="60s")], 1000)
    for name in ("a", "b"):
        for i in range(4):
            cache.ingest(name, outcome(reading(f"d{i}")), f"t/d{i}")
    clock.now += 61
    steps = cache.expire_steps()
    assert next(steps) == 2
    cache.configure([sub("b", ttl="60s")], 1000)  # "a" goes, with its 2 remaining series
    assert list(steps) == [4, 6]
    assert cache.total_series == 0
    assert store.keys() == []
