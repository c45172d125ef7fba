"""MQTT messages -> readings: the pure heart of the MQTT side (mqtt2prometheus's
``(topic, payload) -> samples or error``), with no network and no clock.

``compile_subscription(sub)`` is called once per config load; the client asks the
result for its ``filters``, routes each message with ``matches(topic)`` and calls
``parse(message)``, which never raises. The cache (not this module) appends the
subscription's static ``labels``, applies ``ttl`` and ``max_series``.

For example (default prefix ``commandcentre_sensor_``), a Zigbee2MQTT message::

    zigbee2mqtt/kitchen/fridge  {"temperature":4.2,"humidity":61,"battery":90,
                                 "voltage":2995,"contact":true,"linkquality":72}

becomes::

    commandcentre_sensor_temperature_celsius{device="kitchen/fridge"} 4.2
    commandcentre_sensor_humidity_ratio{device="kitchen/fridge"} 0.61
    commandcentre_sensor_battery_ratio{device="kitchen/fridge"} 0.9
    commandcentre_sensor_voltage_volts{device="kitchen/fridge"} 2.995
    commandcentre_sensor_door_open{device="kitchen/fridge"} 0
    commandcentre_sensor_link_quality{device="kitchen/fridge"} 72

a Tasmota plug's ``tele/plug-3/SENSOR`` with ``{"ENERGY":{"Total":1.5,"Power":40}}``::

    commandcentre_sensor_energy_joules_total{device="plug-3",sensor="ENERGY"} 5.4e+06
    commandcentre_sensor_power_watts{device="plug-3",sensor="ENERGY"} 40

and ``shellies/shellyht-1/online`` ``false``::

    commandcentre_sensor_up{device="shellyht-1"} 0

Topic templates
---------------
``Subscription.topic`` is split on ``/``. A level ``{name}`` matches one level
(subscribed as ``+``) and becomes label ``name``; a final ``{name*}`` matches one
or more levels (subscribed as ``#``) and its label is those levels joined with
``/``. Other levels are literal and must match exactly. A level may not mix
text and braces. An empty level where a placeholder stands gives no reading
(TOPIC_MISMATCH): a series with an empty identity label is not a device. Topics
starting with ``$`` never match a leading placeholder, as in MQTT. For the
built-in profiles the template is the *base* the profile's own topics hang from
(``{name*}`` is not allowed there: the profile owns the rest of the topic), and
template labels may not reuse a name the profile adds.

With ``shared_group`` set, data filters become ``$share/<group>/<filter>``;
availability filters (LWT, ``online``, ``status``, Zigbee2MQTT ``availability``
and ``bridge/state``) stay plain, since a shared subscription never delivers
retained messages and availability is published retained. Availability messages
can then arrive twice (plain and shared); the readings are identical.

Metric vocabulary
-----------------
Every profile names what it knows with one vocabulary, units in the name,
prefixed with ``metric_prefix``:

==========================================  =======  =====================================
name (after the prefix)                     kind     conversion from the device
==========================================  =======  =====================================
``temperature_celsius``                     gauge    °C; Tasmota °F -> (F-32)x5/9
``device_temperature_celsius``              gauge    the device's own temperature
``dew_point_celsius``                       gauge    Tasmota DewPoint
``humidity_ratio``                          gauge    % ÷ 100
``pressure_pascals``                        gauge    hPa x 100 (Tasmota mmHg, inHg too)
``sea_level_pressure_pascals``              gauge    Tasmota SeaPressure
``illuminance_lux``                         gauge    lx
``co2_ppm``                                 gauge    ppm
``battery_ratio``                           gauge    % ÷ 100
``voltage_volts``                           gauge    V (Zigbee2MQTT battery mV ÷ 1000)
``current_amperes``                         gauge    A
``power_watts``                             gauge    W
``apparent_power_voltamperes``              gauge    VA
``reactive_power_voltamperes_reactive``     gauge    var
``power_factor_ratio``                      gauge    0-1
``frequency_hertz``                         gauge    Hz
``energy_joules_total``                     counter  kWh x 3.6e6, Wh x 3600, W·min x 60
``energy_returned_joules_total``            counter  same, energy fed back
``energy_today_joules``                     gauge    Tasmota Today (kWh x 3.6e6)
``energy_yesterday_joules``                 gauge    Tasmota Yesterday
``door_open``                               gauge    1 open, 0 closed (z2m contact inverted)
``water_leak``                              gauge    1 leak
``smoke``                                   gauge    1 smoke
``occupancy``                               gauge    1 occupied / motion
``tamper``                                  gauge    1 tampered
``battery_low``                             gauge    1 low
``link_quality``                            gauge    Zigbee LQI 0-255
``signal_strength_dbm``                     gauge    RSSI dBm
``relay_on``                                gauge    1 output on
``uptime_seconds``                          gauge    s
``up``                                      gauge    1 online, 0 offline (availability)
``value`` / ``state``                       gauge    ESPHome sensor / binary sensor whose
                                                     object id names nothing known
==========================================  =======  =====================================

Energy is in joules, the SI base unit Prometheus asks for; ``/ 3.6e6`` in a
query gives kWh. Fields a profile does not know get a generic snake_case name of
their own without a unit (``formaldehyd``, ``power_outage_count``), except that
names ending in ``temperature`` get ``_celsius``; they are never problems. The
per-profile topics, labels and decisions are in ``commandcentre.mqtt.profiles``.

Profiles json and number
------------------------
``json``: each configured ``fields`` entry reads a dotted path (``ENERGY.Power``;
a numeric part indexes a list, ``sensors.0.t``; keys containing dots cannot be
addressed) and gives ``prefix + metric`` = value x scale + offset. ``flatten``
exposes every number, boolean and mappable string of the document under its
sanitized dotted path (``ENERGY.Power`` -> ``energy_power``), filtered by
``allow``/``deny`` shell patterns on the dotted path; it walks at most
``FLATTEN_MAX_DEPTH`` levels and ``FLATTEN_MAX_LEAVES`` values. ``number``: the
whole payload is one value.

Values and problems
-------------------
JSON numbers are used as they are, booleans are 1/0, strings go through the
subscription's ``value_map`` (case-insensitive, wins), then decimal numbers
(``"21.5"``), then the built-in words (on/off, true/false, yes/no, open/opened
vs close/closed, online/offline, detected/clear, wet/dry, locked/unlocked,
lock/unlock). A message yields readings *and* problems; at most
``MAX_PROBLEMS`` problems per message, each with a short detail (field and
value type, never the payload). In order of checking:

* TOPIC_MISMATCH: the topic does not fit the template or the profile.
* TOO_LARGE: payload over ``max_payload_bytes``, before any decoding.
* EMPTY: empty payload (a retained message being cleared).
* INVALID_UTF8, then NOT_JSON where JSON is expected (also for nesting deeper
  than Python's parser allows).
* WRONG_TYPE: an object/array/null where a number is expected, or a JSON
  document that is not an object where one is expected.
* UNKNOWN_FIELD: a configured json field missing.
* UNKNOWN_VALUE: a string no map knows (also a Tasmota TempUnit/PressureUnit it
  cannot convert: those fields are then skipped).
* NOT_FINITE: NaN or ±Inf, including ``nan`` strings (ESPHome) and values
  that overflow after scaling; never a reading.

Profiles skip values of fields they do not map (strings, null) silently; only
configured json fields, the number payload, availability and the values of
topics that carry exactly one value report them.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Mapping
from typing import Final

from commandcentre.mqtt.config import Field_, Subscription
from commandcentre.mqtt.profiles import (
    DEFAULT_TOPICS,
    MAX_PROBLEMS,
    PROFILES,
    Names,
    Out,
    Profile,
    Route,
    json_value,
    load_json,
    sanitize,
    text_value,
)
from commandcentre.mqtt.types import BadPayload, Message, ParseOutcome, Problem
from commandcentre.samples import Labels

__all__ = [
    "FLATTEN_MAX_DEPTH",
    "FLATTEN_MAX_LEAVES",
    "MAX_PROBLEMS",
    "CompiledSubscription",
    "Routed",
    "compile_subscription",
]

FLATTEN_MAX_DEPTH: Final = 32
FLATTEN_MAX_LEAVES: Final = 10_000

_NO_OUTCOME: Final = ParseOutcome()
Routed = tuple[Labels, Route]  # a topic's template labels and its profile route
_LABEL_NAME_RE: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_FORBIDDEN_IN_LEVEL: Final = ("+", "#", "{", "}", "\x00")


def _problem_outcome(reason: BadPayload, detail: str) -> ParseOutcome:
    return ParseOutcome((), (Problem(reason, detail),))


# --------------------------------------------------------------------------- templates


class _Template:
    """A compiled topic template: levels compared one by one, no regex per message."""

    __slots__ = ("filter", "labels", "levels", "multi", "wild_first")

    def __init__(self, text: str, *, allow_multi: bool, reserved: tuple[str, ...]) -> None:
        if not text:
            raise ValueError("topic template is empty")
        levels: list[tuple[str | None, str]] = []
        names: list[str] = []
        multi: str | None = None
        parts = text.split("/")
        for i, part in enumerate(parts):
            if part.startswith("{") and part.endswith("}") and len(part) > 2:
                name = part[1:-1]
                star = name.endswith("*")
                if star:
                    name = name[:-1]
                    if not allow_multi:
                        raise ValueError(
                            f"{{{name}*}}: multi-level placeholders are only for profiles "
                            "json and number (built-in profiles own the rest of the topic)"
                        )
                    if i != len(parts) - 1:
                        raise ValueError(f"{{{name}*}} must be the last level of the template")
                if not _LABEL_NAME_RE.fullmatch(name) or name.startswith("__"):
                    raise ValueError(f"{{{name}}}: not a valid Prometheus label name")
                if name in names:
                    raise ValueError(f"{{{name}}} appears twice in the template")
                if name in reserved:
                    raise ValueError(f"{{{name}}}: the profile sets label {name!r} itself")
                names.append(name)
                if star:
                    multi = name
                else:
                    levels.append((name, ""))
            else:
                bad = [c for c in _FORBIDDEN_IN_LEVEL if c in part]
                if bad:
                    raise ValueError(
                        f"topic level {part!r}: a level is either literal text or one "
                        "{placeholder}; MQTT wildcards are written as placeholders"
                    )
                levels.append((None, part))
        self.levels = tuple(levels)
        self.multi = multi
        self.labels = tuple(names)
        self.wild_first = (levels[0][0] is not None) if levels else multi is not None
        self.filter = "/".join(["+" if n is not None else lit for n, lit in levels])
        if multi is not None:
            self.filter = f"{self.filter}/#" if levels else "#"

    def match(self, parts: list[str]) -> tuple[Labels, list[str]] | None:
        """The template's labels and the levels after it, or None."""
        n = len(self.levels)
        if len(parts) < n or (self.wild_first and parts[0].startswith("$")):
            return None
        labels: list[tuple[str, str]] = []
        for i in range(n):
            name, literal = self.levels[i]
            part = parts[i]
            if name is None:
                if part != literal:
                    return None
            elif part:
                labels.append((name, part))
            else:
                return None
        if self.multi is not None:
            if len(parts) == n:
                return None
            labels.append((self.multi, "/".join(parts[n:])))
            return tuple(labels), []
        return tuple(labels), parts[n:]


# --------------------------------------------------------------------------- json / number


class _JsonField:
    __slots__ = ("help", "kind", "name", "offset", "parts", "path", "scale")

    def __init__(self, field: Field_, prefix: str) -> None:
        self.path = field.path
        self.parts = tuple(
            (p, int(p) if p.isascii() and p.isdigit() else None) for p in field.path.split(".")
        )
        self.name = prefix + field.metric
        self.help = field.help
        self.kind = field.type
        self.scale = field.scale
        self.offset = field.offset


_MISSING: Final = object()


def _lookup(doc: object, parts: tuple[tuple[str, int | None], ...]) -> object:
    cur = doc
    for key, index in parts:
        if type(cur) is dict:
            if key not in cur:
                return _MISSING
            cur = cur[key]
        elif type(cur) is list and index is not None and index < len(cur):
            cur = cur[index]
        else:
            return _MISSING
    return cur


def _compile_patterns(patterns: list[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


class _JsonProfile(Profile):
    __slots__ = ("_allow", "_deny", "_fields", "_flatten", "_names")

    def __init__(self, sub: Subscription, names: Names) -> None:
        self._fields = tuple(_JsonField(f, sub.metric_prefix) for f in sub.fields)
        self._flatten = sub.flatten is not None
        self._allow = _compile_patterns(sub.flatten.allow) if sub.flatten else None
        self._deny = _compile_patterns(sub.flatten.deny) if sub.flatten else None
        self._names = names

    def data_filters(self) -> tuple[str, ...]:
        return ("",)

    def route(self, rest: list[str]) -> tuple[int, str, Labels] | None:
        return (1, "", ()) if not rest else None

    def handle(self, route: tuple[int, str, Labels], labels: Labels, text: str, out: Out) -> None:
        doc = load_json(text, out)
        if doc is None:
            return
        if type(doc) is not dict and type(doc) is not list:
            out.bad_value(BadPayload.WRONG_TYPE, "payload", doc)
            return
        vmap = out.value_map
        for f in self._fields:
            raw = _lookup(doc, f.parts)
            if raw is _MISSING:
                out.problem(BadPayload.UNKNOWN_FIELD, f.path, "missing")
                continue
            v = json_value(raw, vmap)
            if type(v) is float:
                out.add_full(
                    f.name, labels, v * f.scale + f.offset, kind=f.kind, help_=f.help, field=f.path
                )
            else:
                out.bad_value(
                    v if isinstance(v, BadPayload) else BadPayload.WRONG_TYPE, f.path, raw
                )
        if self._flatten:
            self._walk(doc, labels, out)

    def _walk(self, doc: object, labels: Labels, out: Out) -> None:
        """Every scalar leaf, depth-first, iteratively: a hostile document can be
        as deep as the JSON parser allows, deeper than this stack could recurse."""
        vmap = out.value_map
        allow, deny = self._allow, self._deny
        leaves = 0
        stack: list[tuple[str, str, object, int]] = [("", "", doc, 0)]
        while stack:
            path, name, node, depth = stack.pop()
            if type(node) is dict or type(node) is list:
                if depth >= FLATTEN_MAX_DEPTH:
                    continue
                items = node.items() if type(node) is dict else enumerate(node)
                children = []
                for key, child in items:
                    key_s = str(key)
                    part = sanitize(key_s, first=not name)
                    if not part:
                        continue
                    children.append(
                        (
                            f"{path}.{key_s}" if path else key_s,
                            f"{name}_{part}" if name else part,
                            child,
                            depth + 1,
                        )
                    )
                stack.extend(reversed(children))
                continue
            if not path:
                continue
            leaves += 1
            if leaves > FLATTEN_MAX_LEAVES:
                return
            if (allow is not None and not allow.match(path)) or (
                deny is not None and deny.match(path)
            ):
                continue
            v = json_value(node, vmap)
            if type(v) is float:
                out.add(name, labels, v, path)


class _NumberProfile(Profile):
    __slots__ = ("_help", "_name", "_offset", "_scale")

    def __init__(self, sub: Subscription) -> None:
        self._name = sub.metric_prefix + (sub.metric or "")
        self._help = sub.help
        self._scale = sub.scale
        self._offset = sub.offset

    def data_filters(self) -> tuple[str, ...]:
        return ("",)

    def route(self, rest: list[str]) -> tuple[int, str, Labels] | None:
        return (1, "", ()) if not rest else None

    def handle(self, route: tuple[int, str, Labels], labels: Labels, text: str, out: Out) -> None:
        stripped = text.strip()
        if stripped[:1] in ("{", "["):
            out.problem(BadPayload.WRONG_TYPE, "payload", "object or array, not a number")
            return
        v = text_value(stripped, out.value_map)
        if isinstance(v, BadPayload):
            out.bad_value(v, "payload", stripped)
            return
        out.add_full(
            self._name,
            labels,
            v * self._scale + self._offset,
            kind="gauge",
            help_=self._help,
            field="payload",
        )


# --------------------------------------------------------------------------- subscription


class CompiledSubscription:
    """One subscription, ready for messages: filters to subscribe, a topic matcher,
    and ``parse``. Built once per config load; holds no per-message state, so one
    instance may serve any number of messages (sequentially or not)."""

    __slots__ = (
        "_max_bytes",
        "_names",
        "_profile",
        "_template",
        "_value_map",
        "filters",
        "name",
        "subscription",
    )

    def __init__(self, sub: Subscription) -> None:
        self.subscription = sub
        self.name = sub.name
        self._names = Names(sub.metric_prefix)
        profile: Profile
        if sub.profile == "json":
            profile = _JsonProfile(sub, self._names)
        elif sub.profile == "number":
            profile = _NumberProfile(sub)
        else:
            profile = PROFILES[sub.profile]()
        builtin = sub.profile in PROFILES
        self._template = _Template(
            sub.topic or DEFAULT_TOPICS.get(sub.profile, ""),
            allow_multi=not builtin,
            reserved=profile.label_names,
        )
        self._profile = profile
        clash = set(sub.labels) & {*self._template.labels, *profile.label_names}
        if clash:
            raise ValueError(
                f"labels {sorted(clash)}: the topic template or the profile already sets them"
            )
        vmap: dict[str, float] = {}
        for key, value in sub.value_map.items():
            if not math.isfinite(value):
                raise ValueError(f"value_map[{key!r}]: must be a finite number")
            vmap[key.strip().lower()] = float(value)
        self._value_map: Mapping[str, float] = vmap
        self._max_bytes = sub.max_payload_bytes
        self.filters = self._build_filters(sub.shared_group, sub.qos)

    def _build_filters(self, group: str | None, qos: int) -> tuple[tuple[str, int], ...]:
        if group is not None and (not group or any(c in group for c in "/+#")):
            raise ValueError(f"shared_group {group!r}: must be non-empty, without / + #")
        base = self._template.filter

        def join(suffix: str) -> str:
            return f"{base}/{suffix}" if suffix else base

        share = f"$share/{group}/" if group is not None else ""
        out = [(share + join(s), qos) for s in self._profile.data_filters()]
        out += [(join(s), qos) for s in self._profile.availability_filters(group is not None)]
        return tuple(out)

    def matches(self, topic: str) -> bool:
        """Whether this subscription maps the topic (ignored topics such as
        Zigbee2MQTT ``bridge/devices`` included: they arrive on its filters)."""
        return self.route(topic) is not None

    def route(self, topic: str) -> Routed | None:
        """What the topic alone says: the template's labels and the profile's route,
        or None when this subscription does not map the topic. Depends on nothing
        but the topic, so a caller may keep it per topic and pass it to
        ``parse_routed`` for every message on that topic."""
        hit = self._template.match(topic.split("/"))
        if hit is None:
            return None
        route = self._profile.route(hit[1])
        return None if route is None else (hit[0], route)

    def parse(self, message: Message) -> ParseOutcome:
        """Readings and problems for one message. Never raises: any input yields
        a ParseOutcome (a bug surfaces as a WRONG_TYPE problem, not a dead task)."""
        try:
            routed = self.route(message.topic)
        except Exception as exc:  # noqa: BLE001 - the contract is "never raises"
            return _problem_outcome(BadPayload.WRONG_TYPE, f"internal: {type(exc).__name__}")
        if routed is None:
            return _problem_outcome(
                BadPayload.TOPIC_MISMATCH, "topic does not fit the subscription"
            )
        return self.parse_routed(message, routed)

    def parse_routed(self, message: Message, routed: Routed) -> ParseOutcome:
        """``parse`` for a message whose topic ``route`` has already answered."""
        try:
            return self._parse(message, routed)
        except Exception as exc:  # noqa: BLE001 - the contract is "never raises"
            return _problem_outcome(BadPayload.WRONG_TYPE, f"internal: {type(exc).__name__}")

    def _parse(self, message: Message, routed: Routed) -> ParseOutcome:
        labels, route = routed
        if route[0] == 0:
            return _NO_OUTCOME
        payload = message.payload
        if len(payload) > self._max_bytes:
            return _problem_outcome(
                BadPayload.TOO_LARGE, f"{len(payload)} bytes > {self._max_bytes}"
            )
        if not payload:
            return _problem_outcome(BadPayload.EMPTY, "empty payload")
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            return _problem_outcome(BadPayload.INVALID_UTF8, f"invalid UTF-8 at byte {exc.start}")
        out = Out(self._names, self._value_map)
        self._profile.handle(route, labels, text, out)
        if not out.problems:
            return ParseOutcome(tuple(out.readings))
        return out.outcome()


def compile_subscription(sub: Subscription) -> CompiledSubscription:
    """Compile a subscription; ValueError (with the reason) for a template or
    setting the mapping cannot use, so the config loader can report it."""
    return CompiledSubscription(sub)
