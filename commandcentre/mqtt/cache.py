"""The MQTT series cache: the latest reading of every sensor series, with expiry and limits.

Sensors push; Prometheus pulls. Between them this cache keeps, per
subscription and device (a label set), the last value of each series and when
it was seen, and renders each device's series into the sample store (key
``("mqtt", subscription, device labels)``) whenever one of them changes. A
series not updated for the subscription's ``ttl`` leaves ``/metrics`` (as
mqtt2prometheus' cache does) instead of showing a dead sensor's last value
forever; availability (``..._up``) is the exception, since it is published only
when it changes. Caps per subscription and overall refuse *new* series beyond them
(existing ones keep updating), so a misconfigured device flooding topics
cannot take the daemon's memory.

Exposition, per series (``commandcentre_sensor_temperature_celsius`` here):

    commandcentre_sensor_temperature_celsius{device="rack-a1",site="hq"} 22.5
    commandcentre_mqtt_last_seen_timestamp_seconds{metric="commandcentre_sensor_temperature_celsius",
                                                   device="rack-a1",site="hq"} 1.7e9
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import structlog

from commandcentre.mqtt.config import Subscription
from commandcentre.mqtt.types import BadPayload, ParseOutcome, Problem, Reading
from commandcentre.samples import Labels, Sample
from commandcentre.store import SampleStore

log = structlog.get_logger("commandcentre.mqtt")

LAST_SEEN = "commandcentre_mqtt_last_seen_timestamp_seconds"
LOG_EVERY = 60.0  # seconds between repeated warnings of one kind, per subscription


@dataclass
class _Series:
    reading: Reading
    seen: float


@dataclass
class SubscriptionState:
    """Series and self-metric state of one subscription."""

    sub: Subscription
    devices: dict[Labels, dict[str, _Series]] = field(default_factory=dict)
    series: int = 0
    messages: int = 0
    bad: dict[BadPayload, int] = field(default_factory=lambda: dict.fromkeys(BadPayload, 0))
    refused: int = 0
    expired: int = 0
    # rate-limited logging: when each kind was last logged, and what was held back since
    logged_at: dict[str, float] = field(default_factory=dict)
    held_back: dict[str, int] = field(default_factory=dict)

    @property
    def extra_labels(self) -> Labels:
        return tuple(self.sub.labels.items())


class SeriesCache:
    def __init__(
        self,
        store: SampleStore,
        max_series_total: int = 200_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.max_series_total = max_series_total
        self.clock = clock
        self.subs: dict[str, SubscriptionState] = {}
        self.total_series = 0

    # ------------------------------------------------------------------ config

    def configure(self, subscriptions: Iterable[Subscription], max_series_total: int) -> None:
        """Apply a (re)loaded config. Series of unchanged subscriptions are kept; a
        subscription that is gone takes its series with it; one whose static labels
        changed is re-rendered with the new labels."""
        self.max_series_total = max_series_total
        wanted = {s.name: s for s in subscriptions}
        for name in [n for n in self.subs if n not in wanted]:
            self._drop_subscription(name)
        for name, sub in wanted.items():
            st = self.subs.get(name)
            if st is None:
                self.subs[name] = SubscriptionState(sub)
                continue
            relabel = st.sub.labels != sub.labels
            st.sub = sub
            if relabel:
                for device in st.devices:
                    self._render(st, device)

    def _drop_subscription(self, name: str) -> None:
        st = self.subs.pop(name)
        for device in st.devices:
            self.store.drop(("mqtt", name, device))
        self.total_series -= st.series

    # ------------------------------------------------------------------ ingest

    def ingest(self, sub_name: str, outcome: ParseOutcome, topic: str) -> None:
        """Record what one message mapped to."""
        st = self.subs.get(sub_name)
        if st is None:
            return
        st.messages += 1
        now = self.clock()
        for problem in outcome.problems:
            self._bad(st, problem, topic, now)
        touched: set[Labels] = set()
        for r in outcome.readings:
            device = st.devices.get(r.labels)
            series = device.get(r.name) if device is not None else None
            if series is not None:
                series.reading = r
                series.seen = now
                touched.add(r.labels)
                continue
            if st.series >= st.sub.max_series or self.total_series >= self.max_series_total:
                self._refuse(st, r, topic, now)
                continue
            if device is None:
                device = st.devices[r.labels] = {}
            device[r.name] = _Series(r, now)
            st.series += 1
            self.total_series += 1
            touched.add(r.labels)
        for labels in touched:
            self._render(st, labels)

    def _render(self, st: SubscriptionState, device: Labels) -> None:
        series = st.devices.get(device)
        if not series:
            self.store.drop(("mqtt", st.sub.name, device))
            return
        samples = [
            Sample(
                s.reading.name, s.reading.labels, s.reading.value, s.reading.kind, s.reading.help
            )
            for s in series.values()
        ]
        samples.extend(
            Sample(
                LAST_SEEN,
                (("metric", s.reading.name), *s.reading.labels),
                s.seen,
                "gauge",
                "Unix time a sensor series was last updated over MQTT.",
            )
            for s in series.values()
        )
        self.store.put(("mqtt", st.sub.name, device), samples, st.extra_labels)

    # ------------------------------------------------------------------ expiry

    def expire(self) -> int:
        """Drop every series not updated within its subscription's TTL. Returns how many."""
        now = self.clock()
        dropped = 0
        for st in self.subs.values():
            cutoff = now - st.sub.ttl
            # Availability comes from retained LWT/status messages, sent only when it
            # changes: it stays until the next one says otherwise, whatever the TTL.
            availability = st.sub.metric_prefix + "up"
            for device in list(st.devices):
                series = st.devices[device]
                stale = [
                    name for name, s in series.items() if s.seen < cutoff and name != availability
                ]
                if not stale:
                    continue
                for name in stale:
                    del series[name]
                if not series:
                    del st.devices[device]
                st.series -= len(stale)
                st.expired += len(stale)
                self.total_series -= len(stale)
                dropped += len(stale)
                self._render(st, device)
        return dropped

    def next_expiry_check(self) -> float:
        """Seconds until the next expiry pass is worth doing: a quarter of the shortest TTL."""
        ttls = [st.sub.ttl for st in self.subs.values()]
        return min(30.0, max(0.5, min(ttls, default=30.0) / 4))

    def offline_devices(self) -> list[tuple[str, str, float]]:
        """(subscription, device, last seen) of every device whose availability is 0."""
        out = []
        for name, st in self.subs.items():
            availability = st.sub.metric_prefix + "up"
            for series in st.devices.values():
                s = series.get(availability)
                if s is not None and s.reading.value == 0:
                    labels = dict(s.reading.labels)
                    device = labels.get("device") or ",".join(f"{k}={v}" for k, v in labels.items())
                    seen = (
                        max(x.seen for n, x in series.items() if n != availability)
                        if len(series) > 1
                        else s.seen
                    )
                    out.append((name, device, seen))
        return sorted(out)

    # ------------------------------------------------------------------ problems

    def _once_per_interval(self, st: SubscriptionState, kind: str, now: float) -> int | None:
        """None if this kind was logged recently (and count it); else how many were held back."""
        last = st.logged_at.get(kind)
        if last is not None and now - last < LOG_EVERY:
            st.held_back[kind] = st.held_back.get(kind, 0) + 1
            return None
        st.logged_at[kind] = now
        return st.held_back.pop(kind, 0)

    def _bad(self, st: SubscriptionState, problem: Problem, topic: str, now: float) -> None:
        st.bad[problem.reason] += 1
        held = self._once_per_interval(st, "bad:" + problem.reason.value, now)
        if held is not None:
            log.warning(
                "mqtt_bad_payload",
                subscription=st.sub.name,
                reason=problem.reason.value,
                topic=topic[:200],
                detail=problem.detail,
                similar_since_last_log=held,
            )

    def _refuse(self, st: SubscriptionState, r: Reading, topic: str, now: float) -> None:
        st.refused += 1
        held = self._once_per_interval(st, "refused", now)
        if held is not None:
            log.warning(
                "mqtt_series_limit_reached",
                subscription=st.sub.name,
                series=st.series,
                max_series=st.sub.max_series,
                total_series=self.total_series,
                max_series_total=self.max_series_total,
                refused_metric=r.name,
                topic=topic[:200],
                refused_since_last_log=held,
            )

    # ------------------------------------------------------------------ self-metrics

    def self_samples(self) -> list[Sample]:
        out: list[Sample] = []
        for name, st in self.subs.items():
            lbl = (("subscription", name),)
            out.append(
                Sample(
                    "commandcentre_mqtt_messages_total",
                    lbl,
                    st.messages,
                    "counter",
                    "Messages processed for this subscription.",
                )
            )
            out.append(
                Sample("commandcentre_mqtt_series", lbl, st.series, "gauge", "Series held now.")
            )
            out.append(
                Sample(
                    "commandcentre_mqtt_series_refused_total",
                    lbl,
                    st.refused,
                    "counter",
                    "New series refused because a series limit was reached.",
                )
            )
            out.append(
                Sample(
                    "commandcentre_mqtt_series_expired_total",
                    lbl,
                    st.expired,
                    "counter",
                    "Series removed after their TTL without an update.",
                )
            )
            out.extend(
                Sample(
                    "commandcentre_mqtt_bad_payloads_total",
                    (*lbl, ("reason", reason.value)),
                    n,
                    "counter",
                    "Messages (or fields of them) that could not be turned into readings.",
                )
                for reason, n in st.bad.items()
            )
        return out
