"""The MQTT series cache: the latest reading of every sensor series, with expiry and limits.

Sensors push; Prometheus pulls. Between them this cache keeps, per
subscription, the last value of each series and when it was seen. A series
not updated for the subscription's ``ttl`` leaves ``/metrics`` (as
mqtt2prometheus' cache does) instead of showing a dead sensor's last value
forever; availability (``..._up``) is the exception, since it is published only
when it changes. Caps per subscription and overall refuse *new* series beyond them
(existing ones keep updating), so a misconfigured device flooding topics
cannot take the daemon's memory.

Messages outnumber scrapes by thousands to one, so a message only stores its
values and marks their *chunk* changed; rendering waits for a scrape. Each
metric family's series are kept in chunks of at most ``CHUNK_SERIES`` (in
arrival order), each holding its rendered text; a scrape re-renders only the
chunks that changed since the last one, in slices the event loop can
interleave (``render_step``), and joins the rest as they are. The device's
label text (static labels included) is rendered once, when its first series
appears.

Exposition, per series (``commandcentre_sensor_temperature_celsius`` here):

    commandcentre_sensor_temperature_celsius{device="rack-a1",site="hq"} 22.5
    commandcentre_mqtt_last_seen_timestamp_seconds{metric="commandcentre_sensor_temperature_celsius",
                                                   device="rack-a1",site="hq"} 1.7e9
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import structlog

from commandcentre.mqtt.config import Subscription
from commandcentre.mqtt.types import BadPayload, ParseOutcome, Problem, Reading
from commandcentre.samples import Labels, MetricKind, Sample
from commandcentre.store import Family, SampleStore, format_labels

log = structlog.get_logger("commandcentre.mqtt")

LAST_SEEN = "commandcentre_mqtt_last_seen_timestamp_seconds"
LAST_SEEN_HELP = "Unix time a sensor series was last updated over MQTT."
LOG_EVERY = 60.0  # seconds between repeated warnings of one kind, per subscription
CHUNK_SERIES = 512  # series per rendered chunk: what one change costs to re-render
RENDER_SLICE = 4  # chunks rendered per render_step (2k series, a few ms)
EXPIRE_SLICE = 2048  # devices checked per expiry step (a few ms)


class _Device:
    """One label set (a device, or one sensor of it) and its label text, rendered once."""

    __slots__ = ("labels", "seen_text", "series", "text")

    def __init__(self, labels: Labels, extra: Labels) -> None:
        self.labels = labels
        self.series: dict[str, _Series] = {}
        self.text = ""
        self.seen_text = ""
        self.relabel(extra)

    def relabel(self, extra: Labels) -> None:
        """Label text with the subscription's static labels (a reading's own label of
        the same name wins, as in ``store.render_families``)."""
        own = {k for k, _ in self.labels}
        full = self.labels + tuple(kv for kv in extra if kv[0] not in own)
        self.text = format_labels(full)
        # the same labels after `metric="..."` in the last-seen family
        self.seen_text = "," + self.text[1:] if full else "}"


class _Series:
    __slots__ = ("chunk", "device", "reading", "seen", "value")

    def __init__(self, reading: Reading, seen: float, device: _Device, chunk: _Chunk) -> None:
        self.reading = reading  # the first reading: name, labels, kind, help
        self.value = reading.value
        self.seen = seen
        self.device = device
        self.chunk = chunk


class _Chunk:
    """Up to CHUNK_SERIES series of one family, and their rendered text."""

    __slots__ = ("dirty", "family", "rendered", "series")

    def __init__(self, family: _FamilyState) -> None:
        self.family = family
        self.series: list[_Series] = []
        self.dirty = False  # set, with the chunk queued for rendering, by its first series
        self.rendered: tuple[Family, Family] | None = None

    def render(self) -> None:
        name = self.family.name
        values = []
        seen = []
        for s in self.series:
            d = s.device
            # Values here are finite (``Out.add`` refuses others): repr is their exact
            # text, as format_value's; "21.0" is cut to "21" as format_value does.
            v = repr(s.value)
            if v.endswith(".0"):
                v = v[:-2]
            values.append(f"{name}{d.text} {v}\n")
            seen.append(f'{LAST_SEEN}{{metric="{name}"{d.seen_text} {s.seen!r}\n')
        self.rendered = (
            Family(name, self.family.kind, self.family.help, "".join(values)),
            Family(LAST_SEEN, "gauge", LAST_SEEN_HELP, "".join(seen)),
        )
        self.dirty = False


class _FamilyState:
    __slots__ = ("chunks", "help", "kind", "name")

    def __init__(self, name: str, kind: MetricKind, help_: str) -> None:
        self.name = name
        self.kind: MetricKind = kind
        self.help = help_
        self.chunks: list[_Chunk] = []

    def chunk_for_new(self) -> _Chunk:
        if not self.chunks or len(self.chunks[-1].series) >= CHUNK_SERIES:
            self.chunks.append(_Chunk(self))
        return self.chunks[-1]


@dataclass
class SubscriptionState:
    """Series and self-metric state of one subscription; the store's source for it."""

    sub: Subscription
    devices: dict[Labels, _Device] = field(default_factory=dict)
    metric_families: dict[str, _FamilyState] = field(default_factory=dict)
    dirty: list[_Chunk] = field(default_factory=list)
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

    # FamilySource -----------------------------------------------------------

    def render_step(self) -> bool:
        dirty = self.dirty
        for _ in range(min(RENDER_SLICE, len(dirty))):
            chunk = dirty.pop()
            if chunk.dirty:
                chunk.render()
        return bool(dirty)

    def families(self) -> tuple[Family, ...]:
        while self.render_step():
            pass
        values: list[Family] = []
        seen: list[Family] = []
        for fam in self.metric_families.values():
            for chunk in fam.chunks:
                if chunk.rendered is not None and chunk.series:
                    values.append(chunk.rendered[0])
                    seen.append(chunk.rendered[1])
        return (*values, *seen)

    def series_count(self) -> int:
        """Series in the exposition: each reading's value and its last-seen time."""
        return 2 * self.series

    def mark(self, chunk: _Chunk) -> None:
        if not chunk.dirty:
            chunk.dirty = True
            self.dirty.append(chunk)


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
                st = self.subs[name] = SubscriptionState(sub)
                self.store.add_source(("mqtt", name), st)
                continue
            relabel = st.sub.labels != sub.labels
            st.sub = sub
            if relabel:
                extra = st.extra_labels
                for device in st.devices.values():
                    device.relabel(extra)
                for fam in st.metric_families.values():
                    for chunk in fam.chunks:
                        st.mark(chunk)

    def _drop_subscription(self, name: str) -> None:
        st = self.subs.pop(name)
        self.store.drop(("mqtt", name))
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
        devices = st.devices
        for r in outcome.readings:
            device = devices.get(r.labels)
            series = device.series.get(r.name) if device is not None else None
            if series is not None:
                series.value = r.value
                series.seen = now
                chunk = series.chunk
                if not chunk.dirty:
                    chunk.dirty = True
                    st.dirty.append(chunk)
                continue
            if st.series >= st.sub.max_series or self.total_series >= self.max_series_total:
                self._refuse(st, r, topic, now)
                continue
            self._add(st, r, device, now)

    def _add(self, st: SubscriptionState, r: Reading, device: _Device | None, now: float) -> None:
        if device is None:
            device = st.devices[r.labels] = _Device(r.labels, st.extra_labels)
        fam = st.metric_families.get(r.name)
        if fam is None:
            fam = st.metric_families[r.name] = _FamilyState(r.name, r.kind, r.help)
        chunk = fam.chunk_for_new()
        series = _Series(r, now, device, chunk)
        chunk.series.append(series)
        device.series[r.name] = series
        st.mark(chunk)
        st.series += 1
        self.total_series += 1

    # ------------------------------------------------------------------ expiry

    def expire(self) -> int:
        """Drop every series not updated within its subscription's TTL. Returns how many."""
        dropped = 0
        for dropped in self.expire_steps():  # noqa: B007 - the last running total is the answer
            pass
        return dropped

    def expire_steps(self) -> Iterator[int]:
        """``expire`` in slices of ``EXPIRE_SLICE`` devices, yielding the running count
        after each, so that the caller can let the event loop run in between (an
        expiry pass over 100k series is tens of ms). A message arriving between
        slices is handled as usual: a series it refreshes is no longer stale."""
        now = self.clock()
        dropped = 0
        for st in list(self.subs.values()):
            cutoff = now - st.sub.ttl
            # Availability comes from retained LWT/status messages, sent only when it
            # changes: it stays until the next one says otherwise, whatever the TTL.
            availability = st.sub.metric_prefix + "up"
            all_labels = list(st.devices)
            for start in range(0, len(all_labels), EXPIRE_SLICE):
                if self.subs.get(st.sub.name) is not st:
                    break  # reloaded away between slices, series and all
                removed: set[_Series] = set()
                for labels in all_labels[start : start + EXPIRE_SLICE]:
                    device = st.devices.get(labels)
                    if device is None:
                        continue
                    for name, series in list(device.series.items()):
                        if series.seen < cutoff and name != availability:
                            del device.series[name]
                            removed.add(series)
                    if not device.series:
                        del st.devices[labels]
                if removed:
                    self._drop_from_chunks(st, removed)
                    n = len(removed)
                    st.series -= n
                    st.expired += n
                    self.total_series -= n
                    dropped += n
                yield dropped

    @staticmethod
    def _drop_from_chunks(st: SubscriptionState, removed: set[_Series]) -> None:
        """Take removed series out of their chunks: one pass per chunk touched."""
        for chunk in {s.chunk for s in removed}:
            chunk.series = [s for s in chunk.series if s not in removed]
            if chunk.series:
                st.mark(chunk)
                continue
            fam = chunk.family
            fam.chunks.remove(chunk)
            if not fam.chunks:
                del st.metric_families[fam.name]

    def next_expiry_check(self) -> float:
        """Seconds until the next expiry pass is worth doing: a quarter of the shortest TTL."""
        ttls = [st.sub.ttl for st in self.subs.values()]
        return min(30.0, max(0.5, min(ttls, default=30.0) / 4))

    def offline_devices(self) -> list[tuple[str, str, float]]:
        """(subscription, device, last seen) of every device whose availability is 0."""
        out = []
        for name, st in self.subs.items():
            availability = st.sub.metric_prefix + "up"
            for dev in st.devices.values():
                series = dev.series
                s = series.get(availability)
                if s is not None and s.value == 0:
                    labels = dict(dev.labels)
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
