"""Built-in profiles: how each firmware's topics and payloads become readings.

``commandcentre.mqtt.mapping`` matches the subscription's topic template (the
*base*) and hands the remaining topic levels to a profile here. A profile does
two things: ``route(rest)`` decides from the topic alone what the message is
(device state, availability, something to ignore, or not ours at all), and
``handle(...)`` turns the payload of a routed message into readings. Routing on
the topic alone is what lets ``CompiledSubscription.matches`` answer without a
payload, and lets ignored topics (Zigbee2MQTT's ``bridge/devices``, easily
hundreds of kB) be dropped before the size check or any decoding.

Names use the standard vocabulary documented in ``mapping``; the help text and
kind of each vocabulary name live in ``VOCABULARY`` so that every profile
exposes the same family the same way.

Per-profile decisions
---------------------
zigbee2mqtt (base default ``zigbee2mqtt``; subscribes ``<base>/#``)
    ``<base>/<friendly name>`` -> device state; the friendly name may contain
    ``/`` and becomes label ``device``. ``<base>/<name>/availability`` (JSON
    ``{"state": "online"}`` or legacy plain ``online``) -> ``up{device}``;
    ``<base>/bridge/state`` (both formats) -> ``up{device="bridge"}``. Ignored:
    other ``<base>/bridge/...`` topics, ``.../set``, ``.../get`` (also
    ``.../set/<attr>``), and non-object payloads on device topics (what the
    ``attribute`` output mode publishes on ``<name>/<attr>``: the JSON output
    carries the same values). ``voltage`` is in mV on battery devices and in V
    on metering plugs: it is taken as volts when the payload also has
    ``power``, ``current`` or ``energy``, as millivolts otherwise. ``contact:
    true`` means *closed* and gives ``door_open 0``. ``illuminance_lux`` (1.x)
    wins over ``illuminance`` (raw in 1.x, lux in 2.x). ``state`` counts as
    ``relay_on`` only when it is ``ON``/``OFF``.
tasmota (base default ``tele/{device}``; ``SENSOR``, ``STATE``, ``LWT``)
    Every reading from ``SENSOR`` carries ``sensor`` (the JSON object's name,
    ``ENERGY`` included); values given as arrays (multi-channel ENERGY) add
    ``channel`` = 1-based position, as Tasmota numbers ``POWER1``... .
    ``TempUnit: F`` is converted to Celsius; ``PressureUnit`` hPa/mmHg/inHg to
    pascals. ``ENERGY.Period`` (a per-teleperiod delta) is dropped.
    ``STATE``: ``POWER``/``POWERn`` -> ``relay_on{channel}`` (``POWER`` is
    channel 1), ``Wifi.Signal`` (dBm; ``Wifi.RSSI`` is a 0-100 quality) ->
    ``signal_strength_dbm``, ``UptimeSec`` -> ``uptime_seconds``. ``LWT``
    ``Online``/``Offline`` -> ``up``.
esphome (base default ``{device}``, the node's ``topic_prefix``)
    ``<base>/sensor/<object_id>/state`` and ``<base>/binary_sensor/<object_id>/
    state`` carry plain values and no unit, so the vocabulary name is chosen
    from words of the object id (``ESPHOME_SENSOR_RULES``,
    ``ESPHOME_BINARY_RULES``: e.g. ``..._temperature`` -> ``temperature_celsius``
    assuming ESPHome's default °C, ``..._humidity`` -> ``humidity_ratio``);
    without a match the reading is ``value`` (sensors) or ``state`` (binary
    sensors). Every reading has ``sensor=<object_id>`` so two thermometers on
    one node stay apart. ``<base>/status`` -> ``up``.
shelly_gen1 (base default ``shellies/{device}``)
    ``relay/<n>`` on/off -> ``relay_on{channel}``, ``relay/<n>/power``,
    ``relay/<n>/energy`` (watt-minutes, x60 -> joules), ``emeter/<n>/...``
    (``total`` in Wh), ``temperature`` (the device's own) ->
    ``device_temperature_celsius``, ``sensor/<x>`` (H&T, Door/Window, Flood,
    Motion...; ``sensor/state`` ``open``/``close`` -> ``door_open``),
    ``ext_temperature/<n>``, ``ext_humidity/<n>``, ``input/<n>``,
    ``overtemperature``; ``online`` true/false -> ``up``. Only these topics are
    subscribed, so the large ``info``/``announce`` JSON never arrives.
shelly_gen2 (base default ``{device}``, the device's ``topic_prefix``)
    ``<base>/status/<component>`` JSON (needs "Generic status update over MQTT"
    on the device) -> readings labelled ``component`` (``switch:0``);
    three-phase ``em`` and ``emdata`` readings add ``phase`` (``a``/``b``/``c``,
    and ``n`` for neutral current; the ``total_*`` sums are dropped since they
    are ``sum by (phase)``). ``aenergy.total`` is in Wh. Components not listed in
    ``_GEN2_COMPONENT_KINDS`` are ignored. ``<base>/online`` -> ``up``.

Fields a profile does not know: Zigbee2MQTT top-level fields, Tasmota sensor
fields and Shelly gen1 ``sensor/<x>`` values that are numbers, booleans or
mappable strings become a generic reading named after the field (snake_case;
names ending in ``temperature`` get ``_celsius``, as Zigbee2MQTT and Tasmota
report Celsius); they are never problems. Nested objects, unmappable strings
and ``null`` are skipped silently. Gen2 components' unknown fields are skipped
(their objects are full of ids, timestamps and per-minute arrays).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Final

from commandcentre.mqtt.types import BadPayload, ParseOutcome, Problem, Reading
from commandcentre.samples import Labels, MetricKind

# --------------------------------------------------------------------------- vocabulary

VOCABULARY: Final[Mapping[str, tuple[str, MetricKind]]] = {
    "temperature_celsius": ("Temperature in degrees Celsius.", "gauge"),
    "device_temperature_celsius": (
        "Internal temperature of the device itself, in degrees Celsius.",
        "gauge",
    ),
    "dew_point_celsius": ("Dew point in degrees Celsius.", "gauge"),
    "humidity_ratio": ("Relative humidity, 0-1.", "gauge"),
    "pressure_pascals": ("Air pressure in pascals.", "gauge"),
    "sea_level_pressure_pascals": ("Air pressure reduced to sea level, in pascals.", "gauge"),
    "illuminance_lux": ("Illuminance in lux.", "gauge"),
    "co2_ppm": ("Carbon dioxide concentration in parts per million.", "gauge"),
    "battery_ratio": ("Battery charge, 0-1.", "gauge"),
    "voltage_volts": ("Voltage in volts (mains, or the battery on battery devices).", "gauge"),
    "current_amperes": ("Current in amperes.", "gauge"),
    "power_watts": ("Active power in watts.", "gauge"),
    "apparent_power_voltamperes": ("Apparent power in volt-amperes.", "gauge"),
    "reactive_power_voltamperes_reactive": ("Reactive power in volt-amperes reactive.", "gauge"),
    "power_factor_ratio": ("Power factor, 0-1.", "gauge"),
    "frequency_hertz": ("Mains frequency in hertz.", "gauge"),
    "energy_joules_total": ("Energy consumed, in joules, as counted by the device.", "counter"),
    "energy_returned_joules_total": (
        "Energy returned to the grid, in joules, as counted by the device.",
        "counter",
    ),
    "energy_today_joules": ("Energy consumed since local midnight, in joules.", "gauge"),
    "energy_yesterday_joules": ("Energy consumed yesterday, in joules.", "gauge"),
    "door_open": ("1 if the door or window is open, 0 if closed.", "gauge"),
    "water_leak": ("1 if a water leak is detected.", "gauge"),
    "smoke": ("1 if smoke is detected.", "gauge"),
    "occupancy": ("1 if occupancy or motion is detected.", "gauge"),
    "tamper": ("1 if the device reports tampering.", "gauge"),
    "battery_low": ("1 if the device reports a low battery.", "gauge"),
    "link_quality": ("Zigbee link quality indicator (LQI), 0-255.", "gauge"),
    "signal_strength_dbm": ("Radio signal strength (RSSI) in dBm.", "gauge"),
    "relay_on": ("1 if the relay or switch output is on.", "gauge"),
    "uptime_seconds": ("Time since the device started, in seconds.", "gauge"),
    "up": ("1 if the device (or bridge) reports itself online, 0 if offline.", "gauge"),
    "value": ("Sensor value whose unit the topic does not tell.", "gauge"),
    "state": ("Binary sensor state (1 on, 0 off) whose meaning the topic does not tell.", "gauge"),
}

GENERIC_HELP: Final = (
    "Device field outside the standard vocabulary, named after the field, in the device's unit."
)

PERCENT: Final = 0.01  # marks a % -> ratio conversion, done as an exact division by 100
KWH: Final = 3.6e6  # joules per kilowatt-hour
WH: Final = 3600.0  # joules per watt-hour
WATT_MINUTE: Final = 60.0  # joules per watt-minute

MAX_PROBLEMS: Final = 16  # per message: a hostile payload cannot flood the log
_MAX_NAME: Final = 100  # generic names longer than this are skipped
_MAX_DETAIL_FIELD: Final = 60

# --------------------------------------------------------------------------- values

BUILTIN_VALUES: Final[Mapping[str, float]] = {
    "on": 1.0,
    "off": 0.0,
    "true": 1.0,
    "false": 0.0,
    "yes": 1.0,
    "no": 0.0,
    "open": 1.0,
    "opened": 1.0,
    "close": 0.0,  # Shelly Door/Window
    "closed": 0.0,
    "online": 1.0,
    "offline": 0.0,
    "detected": 1.0,
    "clear": 0.0,
    "wet": 1.0,
    "dry": 0.0,
    "locked": 1.0,
    "unlocked": 0.0,
    "lock": 1.0,
    "unlock": 0.0,
}

# A plain decimal number. float() alone would also take "1_000", "infinity" and
# non-ASCII digits, none of which a device means as a number.
_NUMBER_RE: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NON_FINITE_WORDS: Final = frozenset(
    {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
)

Converted = float | BadPayload | None  # None: JSON null, "no value"


def text_value(text: str, value_map: Mapping[str, float]) -> float | BadPayload:
    """A payload or JSON string as a number: the subscription's map (which wins),
    a decimal number, the built-in words; ``nan``/``inf`` give NaN/inf, which the
    reading step reports as NOT_FINITE."""
    key = text.strip()
    if value_map:
        hit = value_map.get(key.lower())
        if hit is not None:
            return hit
    if _NUMBER_RE.fullmatch(key):
        return float(key)
    low = key.lower()
    hit = BUILTIN_VALUES.get(low)
    if hit is not None:
        return hit
    if low in _NON_FINITE_WORDS:
        return math.nan
    return BadPayload.UNKNOWN_VALUE


def json_value(v: object, value_map: Mapping[str, float]) -> Converted:
    """A decoded JSON value as a number (booleans 1/0, strings via ``text_value``)."""
    if type(v) is float:
        return v
    if type(v) is bool:
        return 1.0 if v else 0.0
    if type(v) is int:
        try:
            return float(v)
        except OverflowError:  # an integer beyond float range
            return math.inf
    if type(v) is str:
        return text_value(v, value_map)
    if v is None:
        return None
    return BadPayload.WRONG_TYPE


_CAMEL_RE: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_NAME_RE: Final = re.compile(r"[^a-z0-9]+")


def sanitize(key: str, *, first: bool = True) -> str:
    """A field name as a snake_case metric name part (``ApparentPower`` ->
    ``apparent_power``, ``PM2.5`` -> ``pm2_5``); ``""`` when nothing usable is left
    or the key is unreasonably long. A name cannot start with a digit, so a
    ``first`` part that does gets a leading ``_``."""
    if len(key) > _MAX_NAME:
        return ""
    s = _NON_NAME_RE.sub("_", _CAMEL_RE.sub("_", key).lower()).strip("_")
    if first and s and s[0].isdigit():
        s = "_" + s
    return s


def generic_name(key: str) -> str:
    """The name of a field outside the vocabulary: sanitized, with ``_celsius``
    when it is a temperature (every firmware here reports Celsius, or is
    converted to it before this point)."""
    s = sanitize(key)
    if s.endswith("temperature"):
        s += "_celsius"
    return s


def scaled(v: float, factor: float) -> float:
    """``v`` times a table factor; percentages are divided by 100 instead, which is
    correctly rounded (81.5 * 0.01 would give 0.8150000000000001)."""
    if factor == PERCENT:
        return v / 100.0
    return v * factor


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _type_name(v: object) -> str:
    if isinstance(v, dict):
        return "object"
    if isinstance(v, list):
        return "array"
    if v is None:
        return "null"
    if isinstance(v, str):
        # the length, not the text: on plain-text topics the text is the payload
        return f"string of {len(v)} chars"
    return type(v).__name__


# --------------------------------------------------------------------------- output


class Names:
    """Full metric names, help and kind for one subscription's prefix, built once:
    the hot path looks names up instead of concatenating strings per reading."""

    __slots__ = ("_cache", "_generic", "prefix")

    _CACHE_LIMIT: Final = 4096  # generic names come from payload keys: keep memory bounded

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._cache: dict[str, tuple[str, str, MetricKind]] = {
            base: (prefix + base, help_, kind) for base, (help_, kind) in VOCABULARY.items()
        }
        self._generic: dict[str, str] = {}

    def generic(self, key: str) -> str:
        """``generic_name(key)``, memoized: the same unknown fields arrive in every
        message of a device, and the regexes cost more than the rest of a field."""
        hit = self._generic.get(key)
        if hit is None:
            hit = generic_name(key)
            if len(self._generic) < self._CACHE_LIMIT:
                self._generic[key] = hit
        return hit

    def get(self, base: str) -> tuple[str, str, MetricKind]:
        hit = self._cache.get(base)
        if hit is not None:
            return hit
        entry: tuple[str, str, MetricKind] = (self.prefix + base, GENERIC_HELP, "gauge")
        if len(self._cache) < self._CACHE_LIMIT:
            self._cache[base] = entry
        return entry


_isfinite: Final = math.isfinite
_new_tuple: Final = tuple.__new__
# Integers below this convert to float without OverflowError (floats end near 1.8e308).
_FLOAT_SAFE_INT: Final = 2**1000


class Out:
    """Readings and problems of one message. ``add`` is the single place a value
    becomes a reading, so the finiteness check cannot be forgotten anywhere."""

    __slots__ = ("names", "problems", "readings", "value_map")

    def __init__(self, names: Names, value_map: Mapping[str, float]) -> None:
        self.names = names
        self.value_map = value_map
        self.readings: list[Reading] = []
        self.problems: list[Problem] = []

    def add(self, base: str, labels: Labels, value: float, field: str) -> None:
        if not _isfinite(value):
            self.problem(BadPayload.NOT_FINITE, field, "not a finite number")
            return
        name, help_, kind = self.names._cache.get(base) or self.names.get(base)
        # tuple.__new__ is what Reading(...) does, minus a Python-level call (~0.15 us)
        self.readings.append(_new_tuple(Reading, (name, labels, value, kind, help_)))

    def add_full(
        self, name: str, labels: Labels, value: float, *, kind: MetricKind, help_: str, field: str
    ) -> None:
        """A reading whose full name the config gives (profiles json and number)."""
        if not math.isfinite(value):
            self.problem(BadPayload.NOT_FINITE, field, "not a finite number")
            return
        self.readings.append(Reading(name, labels, value, kind, help_))

    def problem(self, reason: BadPayload, field: str, what: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            detail = f"{_short(field, _MAX_DETAIL_FIELD)}: {what}" if field else what
            self.problems.append(Problem(reason, detail))

    def bad_value(self, reason: BadPayload, field: str, raw: object) -> None:
        self.problem(reason, field, _type_name(raw))

    def outcome(self) -> ParseOutcome:
        return ParseOutcome(tuple(self.readings), tuple(self.problems))


def load_json(text: str, out: Out) -> object | None:
    """Decoded JSON, or None with a NOT_JSON problem. Catches what ``json.loads``
    raises on hostile input: ValueError (bad syntax, integers over 4300 digits)
    and RecursionError (deep nesting)."""
    try:
        return json.loads(text)  # type: ignore[no-any-return]
    except (ValueError, RecursionError):
        out.problem(BadPayload.NOT_JSON, "", "payload is not valid JSON")
        return None


def load_object(text: str, out: Out) -> dict[str, object] | None:
    """A JSON object payload, or None with NOT_JSON / WRONG_TYPE."""
    doc = load_json(text, out)
    if doc is None:
        return None
    if type(doc) is not dict:
        out.bad_value(BadPayload.WRONG_TYPE, "payload", doc)
        return None
    return doc


def availability(text: str, labels: Labels, out: Out, field: str = "availability") -> None:
    """``online``/``offline``-style payloads (any built-in or configured word) as ``up``."""
    v = text_value(text, out.value_map)
    if isinstance(v, BadPayload):
        out.bad_value(v, field, text)
    else:
        out.add("up", labels, v, field)


# --------------------------------------------------------------------------- profiles

Route = tuple[int, str, Labels]  # (kind, argument, extra labels); kind 0 = ignore
IGNORE: Final[Route] = (0, "", ())


class Profile:
    """Base of the built-in profiles. Filters are relative to the base template's
    filter (``""`` is the base itself)."""

    __slots__ = ()
    #: profile-added label names; the template must not use them
    label_names: tuple[str, ...] = ()

    def data_filters(self) -> tuple[str, ...]:
        raise NotImplementedError

    def availability_filters(self, shared: bool) -> tuple[str, ...]:
        return ()

    def route(self, rest: list[str]) -> Route | None:
        raise NotImplementedError

    def handle(self, route: Route, labels: Labels, text: str, out: Out) -> None:
        raise NotImplementedError


# ----------------------------------------------------------------- zigbee2mqtt

_Z2M_FIELDS: Final[Mapping[str, tuple[str, float]]] = {
    "temperature": ("temperature_celsius", 1.0),
    "device_temperature": ("device_temperature_celsius", 1.0),
    "humidity": ("humidity_ratio", PERCENT),
    "pressure": ("pressure_pascals", 100.0),  # hPa
    "battery": ("battery_ratio", PERCENT),
    "current": ("current_amperes", 1.0),
    "power": ("power_watts", 1.0),
    "energy": ("energy_joules_total", KWH),
    "illuminance_lux": ("illuminance_lux", 1.0),
    "co2": ("co2_ppm", 1.0),
    "water_leak": ("water_leak", 1.0),
    "smoke": ("smoke", 1.0),
    "occupancy": ("occupancy", 1.0),
    "tamper": ("tamper", 1.0),
    "battery_low": ("battery_low", 1.0),
    "linkquality": ("link_quality", 1.0),
    "power_factor": ("power_factor_ratio", 1.0),
    "ac_frequency": ("frequency_hertz", 1.0),
}
# Numbers that are not measurements: timestamps and counters of z2m itself.
_Z2M_SKIP: Final = frozenset({"last_seen", "elapsed"})
# Object-valued attributes that the attribute output mode publishes on
# <name>/<attr>; as JSON objects they would otherwise look like devices.
_Z2M_OBJECT_ATTRS: Final = frozenset({"update", "color", "color_options"})
_Z2M_DEVICE, _Z2M_AVAILABILITY, _Z2M_BRIDGE = 1, 2, 3


class Zigbee2Mqtt(Profile):
    __slots__ = ()
    label_names = ("device",)

    def data_filters(self) -> tuple[str, ...]:
        return ("#",)

    def availability_filters(self, shared: bool) -> tuple[str, ...]:
        if not shared:
            return ()  # "#" already delivers them, retained ones included
        # A plain filter per friendly-name depth; names deeper than 4 levels get
        # their availability only through the shared subscription (no retained).
        return (
            "bridge/state",
            "+/availability",
            "+/+/availability",
            "+/+/+/availability",
            "+/+/+/+/availability",
        )

    def route(self, rest: list[str]) -> Route | None:
        n = len(rest)
        if n == 0:
            return None
        if rest[0] == "bridge":
            if n == 2 and rest[1] == "state":
                return (_Z2M_BRIDGE, "bridge", (("device", "bridge"),))
            return IGNORE
        last = rest[-1]
        if last in ("set", "get") or (n >= 3 and rest[-2] in ("set", "get")):
            return IGNORE
        if n >= 2 and last == "availability":
            name = "/".join(rest[:-1])
            return (_Z2M_AVAILABILITY, name, (("device", name),))
        if n >= 2 and last in _Z2M_OBJECT_ATTRS:
            return IGNORE
        name = rest[0] if n == 1 else "/".join(rest)
        return (_Z2M_DEVICE, name, (("device", name),))

    def handle(self, route: Route, labels: Labels, text: str, out: Out) -> None:
        kind, _, extra = route
        labels = labels + extra
        if kind != _Z2M_DEVICE:
            if text.lstrip().startswith("{"):
                doc = load_object(text, out)
                if doc is None:
                    return
                state = doc.get("state")
                if type(state) is not str:
                    out.bad_value(BadPayload.WRONG_TYPE, "state", state)
                    return
                text = state
            availability(text, labels, out)
            return
        if not text.lstrip().startswith("{"):
            return  # attribute output: a plain value on <name>/<attr>
        doc = load_object(text, out)
        if doc is None:
            return
        vmap = out.value_map
        # metering devices report volts, battery ones millivolts
        millivolts = not ("power" in doc or "current" in doc or "energy" in doc)
        has_lux = "illuminance_lux" in doc
        for key, raw in doc.items():
            known = _Z2M_FIELDS.get(key)
            if known is not None:
                # json_value's answer for the common cases, without the call
                if type(raw) is float:
                    num = raw
                elif type(raw) is int and -_FLOAT_SAFE_INT < raw < _FLOAT_SAFE_INT:
                    num = float(raw)
                else:
                    converted = json_value(raw, vmap)
                    if type(converted) is not float:
                        continue
                    num = converted
                factor = known[1]
                out.add(known[0], labels, num / 100.0 if factor == PERCENT else num * factor, key)
                continue
            if key in _Z2M_SKIP:
                continue
            v = json_value(raw, vmap)
            if type(v) is not float:
                continue
            if key == "contact":  # true = magnet present = closed
                out.add("door_open", labels, 1.0 - v, key)
            elif key == "voltage":
                out.add("voltage_volts", labels, v / 1000.0 if millivolts else v, key)
            elif key == "illuminance":
                if not has_lux:
                    out.add("illuminance_lux", labels, v, key)
            elif key == "state":
                if type(raw) is str and raw.lower() in ("on", "off"):
                    out.add("relay_on", labels, v, key)
            else:
                name = out.names.generic(key)
                if name:
                    out.add(name, labels, v, key)


# ----------------------------------------------------------------- tasmota

_TASMOTA_SENSOR_FIELDS: Final[Mapping[str, tuple[str, float]]] = {
    "Humidity": ("humidity_ratio", PERCENT),
    "Illuminance": ("illuminance_lux", 1.0),
    "CarbonDioxide": ("co2_ppm", 1.0),
}
_TASMOTA_TEMPERATURES: Final[Mapping[str, str]] = {
    "Temperature": "temperature_celsius",
    "DewPoint": "dew_point_celsius",
}
_TASMOTA_PRESSURES: Final[Mapping[str, str]] = {
    "Pressure": "pressure_pascals",
    "SeaPressure": "sea_level_pressure_pascals",
}
_TASMOTA_ENERGY: Final[Mapping[str, tuple[str, float]]] = {
    "Total": ("energy_joules_total", KWH),
    "Today": ("energy_today_joules", KWH),
    "Yesterday": ("energy_yesterday_joules", KWH),
    "Power": ("power_watts", 1.0),
    "ApparentPower": ("apparent_power_voltamperes", 1.0),
    "ReactivePower": ("reactive_power_voltamperes_reactive", 1.0),
    "Factor": ("power_factor_ratio", 1.0),
    "Voltage": ("voltage_volts", 1.0),
    "Current": ("current_amperes", 1.0),
    "Frequency": ("frequency_hertz", 1.0),
}
_TASMOTA_ENERGY_SKIP: Final = frozenset({"Period", "TotalStartTime"})
_PRESSURE_UNITS: Final[Mapping[str, float]] = {
    "hpa": 100.0,
    "mbar": 100.0,
    "mmhg": 133.322387415,
    "inhg": 3386.389,
}
_TASMOTA_SENSOR, _TASMOTA_STATE, _TASMOTA_LWT = 1, 2, 3
_POWER_RE: Final = re.compile(r"POWER(\d{0,2})")


class Tasmota(Profile):
    __slots__ = ()
    label_names = ("sensor", "channel")

    def data_filters(self) -> tuple[str, ...]:
        return ("SENSOR", "STATE")

    def availability_filters(self, shared: bool) -> tuple[str, ...]:
        return ("LWT",)

    def route(self, rest: list[str]) -> Route | None:
        if len(rest) != 1:
            return None
        leaf = rest[0]
        if leaf == "SENSOR":
            return (_TASMOTA_SENSOR, "", ())
        if leaf == "STATE":
            return (_TASMOTA_STATE, "", ())
        if leaf == "LWT":
            return (_TASMOTA_LWT, "", ())
        return None

    def handle(self, route: Route, labels: Labels, text: str, out: Out) -> None:
        kind = route[0]
        if kind == _TASMOTA_LWT:
            availability(text, labels, out, "LWT")
            return
        doc = load_object(text, out)
        if doc is None:
            return
        if kind == _TASMOTA_STATE:
            self._state(doc, labels, out)
        else:
            self._sensor(doc, labels, out)

    @staticmethod
    def _state(doc: dict[str, object], labels: Labels, out: Out) -> None:
        vmap = out.value_map
        for key, raw in doc.items():
            m = _POWER_RE.fullmatch(key)
            if m is not None:
                v = json_value(raw, vmap)
                if type(v) is float:
                    out.add("relay_on", (*labels, ("channel", m.group(1) or "1")), v, key)
            elif key == "UptimeSec":
                v = json_value(raw, vmap)
                if type(v) is float:
                    out.add("uptime_seconds", labels, v, key)
            elif key == "Wifi" and type(raw) is dict:
                v = json_value(raw.get("Signal"), vmap)
                if type(v) is float:
                    out.add("signal_strength_dbm", labels, v, "Wifi.Signal")

    @staticmethod
    def _sensor(doc: dict[str, object], labels: Labels, out: Out) -> None:
        vmap = out.value_map
        temp_unit = doc.get("TempUnit", "C")
        fahrenheit = temp_unit == "F"
        if not fahrenheit and temp_unit != "C":
            out.bad_value(BadPayload.UNKNOWN_VALUE, "TempUnit", temp_unit)
        unit = doc.get("PressureUnit", "hPa")
        pa = _PRESSURE_UNITS.get(unit.lower()) if type(unit) is str else None
        if pa is None:
            out.bad_value(BadPayload.UNKNOWN_VALUE, "PressureUnit", unit)
        for key, raw in doc.items():
            if type(raw) is dict:
                sensor_labels = (*labels, ("sensor", key))
                energy = key == "ENERGY"
                for field, fraw in raw.items():
                    if energy:
                        if field in _TASMOTA_ENERGY_SKIP:
                            continue
                        known = _TASMOTA_ENERGY.get(field)
                        base, factor = (
                            known if known is not None else (out.names.generic(field), 1.0)
                        )
                    elif field in _TASMOTA_TEMPERATURES:
                        if not fahrenheit and temp_unit != "C":
                            continue
                        base, factor = _TASMOTA_TEMPERATURES[field], 1.0
                    elif field in _TASMOTA_PRESSURES:
                        if pa is None:
                            continue
                        base, factor = _TASMOTA_PRESSURES[field], pa
                    else:
                        known = _TASMOTA_SENSOR_FIELDS.get(field)
                        base, factor = (
                            known if known is not None else (out.names.generic(field), 1.0)
                        )
                    if not base:
                        continue
                    celsius = fahrenheit and field in _TASMOTA_TEMPERATURES
                    _tasmota_values(
                        fraw,
                        base=base,
                        factor=factor,
                        fahrenheit=celsius,
                        labels=sensor_labels,
                        field=field,
                        out=out,
                    )
            elif key not in ("Time", "TempUnit", "PressureUnit", "SpeedUnit"):
                v = json_value(raw, vmap)  # top-level scalars such as "Switch1": "ON"
                if type(v) is float:
                    name = out.names.generic(key)
                    if name:
                        out.add(name, labels, v, key)


def _tasmota_values(
    raw: object,
    *,
    base: str,
    factor: float,
    fahrenheit: bool,
    labels: Labels,
    field: str,
    out: Out,
) -> None:
    """One Tasmota sensor field: a value, or an array of per-channel values."""
    if type(raw) is list:
        for i, item in enumerate(raw[:64], start=1):
            _tasmota_values(
                item,
                base=base,
                factor=factor,
                fahrenheit=fahrenheit,
                labels=(*labels, ("channel", str(i))),
                field=field,
                out=out,
            )
        return
    v = json_value(raw, out.value_map)
    if type(v) is not float:
        return
    if fahrenheit:
        v = (v - 32.0) * 5.0 / 9.0
    out.add(base, labels, scaled(v, factor), field)


# ----------------------------------------------------------------- esphome

# Words of the object id (split on "_" and "-") -> vocabulary name and factor.
# The first rule whose words all occur wins, so the specific ones come first.
ESPHOME_SENSOR_RULES: Final[tuple[tuple[frozenset[str], str, float], ...]] = (
    (frozenset({"dew", "point"}), "dew_point_celsius", 1.0),
    (frozenset({"power", "factor"}), "power_factor_ratio", 1.0),
    (frozenset({"apparent", "power"}), "apparent_power_voltamperes", 1.0),
    (frozenset({"voltage"}), "voltage_volts", 1.0),
    (frozenset({"current"}), "current_amperes", 1.0),
    (frozenset({"power"}), "power_watts", 1.0),
    (frozenset({"frequency"}), "frequency_hertz", 1.0),
    (frozenset({"temperature"}), "temperature_celsius", 1.0),
    (frozenset({"temp"}), "temperature_celsius", 1.0),
    (frozenset({"humidity"}), "humidity_ratio", PERCENT),
    (frozenset({"pressure"}), "pressure_pascals", 100.0),  # ESPHome reports hPa
    (frozenset({"illuminance"}), "illuminance_lux", 1.0),
    (frozenset({"lux"}), "illuminance_lux", 1.0),
    (frozenset({"co2"}), "co2_ppm", 1.0),
    (frozenset({"rssi"}), "signal_strength_dbm", 1.0),
    (frozenset({"signal"}), "signal_strength_dbm", 1.0),  # wifi_signal is dBm
    (frozenset({"battery"}), "battery_ratio", PERCENT),
    (frozenset({"uptime"}), "uptime_seconds", 1.0),
)
ESPHOME_BINARY_RULES: Final[tuple[tuple[frozenset[str], str], ...]] = (
    (frozenset({"door"}), "door_open"),
    (frozenset({"window"}), "door_open"),
    (frozenset({"contact"}), "door_open"),
    (frozenset({"leak"}), "water_leak"),
    (frozenset({"water"}), "water_leak"),
    (frozenset({"flood"}), "water_leak"),
    (frozenset({"smoke"}), "smoke"),
    (frozenset({"motion"}), "occupancy"),
    (frozenset({"occupancy"}), "occupancy"),
    (frozenset({"presence"}), "occupancy"),
    (frozenset({"pir"}), "occupancy"),
    (frozenset({"tamper"}), "tamper"),
)
_WORD_SPLIT: Final = re.compile(r"[_\-]+")
_ESPHOME_SENSOR, _ESPHOME_BINARY, _ESPHOME_STATUS = 1, 2, 3


def esphome_metric(object_id: str, binary: bool) -> tuple[str, float]:
    """The vocabulary name (and factor) an ESPHome object id maps to."""
    words = frozenset(_WORD_SPLIT.split(object_id.lower()))
    if binary:
        for need, base in ESPHOME_BINARY_RULES:
            if need <= words:
                return base, 1.0
        return "state", 1.0
    for need, base, factor in ESPHOME_SENSOR_RULES:
        if need <= words:
            return base, factor
    return "value", 1.0


class EspHome(Profile):
    __slots__ = ("_rules",)
    label_names = ("sensor",)

    def __init__(self) -> None:
        # object id -> (name, factor); ids are few and fixed per node
        self._rules: dict[tuple[str, bool], tuple[str, float]] = {}

    def data_filters(self) -> tuple[str, ...]:
        return ("sensor/+/state", "binary_sensor/+/state")

    def availability_filters(self, shared: bool) -> tuple[str, ...]:
        return ("status",)

    def route(self, rest: list[str]) -> Route | None:
        n = len(rest)
        if n == 1 and rest[0] == "status":
            return (_ESPHOME_STATUS, "", ())
        if n == 3 and rest[2] == "state" and rest[1]:
            if rest[0] == "sensor":
                return (_ESPHOME_SENSOR, rest[1], (("sensor", rest[1]),))
            if rest[0] == "binary_sensor":
                return (_ESPHOME_BINARY, rest[1], (("sensor", rest[1]),))
        return None

    def handle(self, route: Route, labels: Labels, text: str, out: Out) -> None:
        kind, object_id, extra = route
        if kind == _ESPHOME_STATUS:
            availability(text, labels, out, "status")
            return
        binary = kind == _ESPHOME_BINARY
        key = (object_id, binary)
        rule = self._rules.get(key)
        if rule is None:
            rule = esphome_metric(object_id, binary)
            if len(self._rules) < 4096:
                self._rules[key] = rule
        v = text_value(text, out.value_map)
        if isinstance(v, BadPayload):
            out.bad_value(v, object_id, text)
            return
        out.add(rule[0], labels + extra, scaled(v, rule[1]), object_id)


# ----------------------------------------------------------------- shelly gen1

_GEN1_SENSORS: Final[Mapping[str, tuple[str, float]]] = {
    "temperature": ("temperature_celsius", 1.0),
    "humidity": ("humidity_ratio", PERCENT),
    "battery": ("battery_ratio", PERCENT),
    "lux": ("illuminance_lux", 1.0),
    "state": ("door_open", 1.0),
    "flood": ("water_leak", 1.0),
    "smoke": ("smoke", 1.0),
    "motion": ("occupancy", 1.0),
}
_GEN1_EMETER: Final[Mapping[str, tuple[str, float]]] = {
    "power": ("power_watts", 1.0),
    "voltage": ("voltage_volts", 1.0),
    "current": ("current_amperes", 1.0),
    "pf": ("power_factor_ratio", 1.0),
    "reactive_power": ("reactive_power_voltamperes_reactive", 1.0),
    "total": ("energy_joules_total", WH),
    "total_returned": ("energy_returned_joules_total", WH),
}
_GEN1_VALUE, _GEN1_RELAY, _GEN1_ONLINE, _GEN1_LOOSE = 1, 2, 3, 4
_GEN1_RELAY_WORDS: Final[Mapping[str, float]] = {"on": 1.0, "off": 0.0, "overpower": 0.0}


class ShellyGen1(Profile):
    __slots__ = ()
    label_names = ("channel",)

    def data_filters(self) -> tuple[str, ...]:
        return (
            "relay/+",
            "relay/+/power",
            "relay/+/energy",
            "emeter/+/+",
            "temperature",
            "overtemperature",
            "sensor/+",
            "ext_temperature/+",
            "ext_humidity/+",
            "input/+",
        )

    def availability_filters(self, shared: bool) -> tuple[str, ...]:
        return ("online",)

    def route(self, rest: list[str]) -> Route | None:
        n = len(rest)
        head = rest[0] if n else ""
        if n == 1:
            if head == "online":
                return (_GEN1_ONLINE, "", ())
            if head == "temperature":
                return (_GEN1_VALUE, "device_temperature_celsius", ())
            if head == "overtemperature":
                return (_GEN1_LOOSE, "overtemperature", ())
            return None
        if n == 2:
            ch = (("channel", rest[1]),)
            if head == "relay":
                return (_GEN1_RELAY, "", ch)
            if head == "sensor":
                return (_GEN1_LOOSE, rest[1], ())
            if head == "ext_temperature":
                return (_GEN1_VALUE, "temperature_celsius", ch)
            if head == "ext_humidity":
                return (_GEN1_VALUE, "humidity_ratio", ch)
            if head == "input":
                return (_GEN1_LOOSE, "input", ch)
            return None
        if n == 3:
            ch = (("channel", rest[1]),)
            if head == "relay":
                if rest[2] == "power":
                    return (_GEN1_VALUE, "power_watts", ch)
                if rest[2] == "energy":
                    return (_GEN1_VALUE, "energy_joules_total", ch)
                return None
            if head == "emeter":
                return (_GEN1_VALUE, "emeter/" + rest[2], ch) if rest[2] in _GEN1_EMETER else IGNORE
        return None

    def handle(self, route: Route, labels: Labels, text: str, out: Out) -> None:
        kind, what, extra = route
        labels = labels + extra
        if kind == _GEN1_ONLINE:
            availability(text, labels, out, "online")
            return
        if kind == _GEN1_RELAY:
            word = _GEN1_RELAY_WORDS.get(text.strip().lower())
            if word is None:
                out.bad_value(BadPayload.UNKNOWN_VALUE, "relay", text)
            else:
                out.add("relay_on", labels, word, "relay")
            return
        v = text_value(text, out.value_map)
        if kind == _GEN1_LOOSE:
            # sensor/<x>, input/<n>, overtemperature: known names map, the rest
            # are generic; values that are not numbers are skipped silently
            if isinstance(v, BadPayload):
                return
            base, factor = _GEN1_SENSORS.get(what) or (out.names.generic(what), 1.0)
            if base:
                out.add(base, labels, scaled(v, factor), what)
            return
        if isinstance(v, BadPayload):
            out.bad_value(v, what, text)
            return
        if what.startswith("emeter/"):
            base, factor = _GEN1_EMETER[what[7:]]
        elif what == "energy_joules_total":
            base, factor = what, WATT_MINUTE
        elif what == "humidity_ratio":
            base, factor = what, PERCENT
        else:
            base, factor = what, 1.0
        out.add(base, labels, scaled(v, factor), what)


# ----------------------------------------------------------------- shelly gen2

_Gen2Fields = tuple[tuple[str, str | None, str, float], ...]  # (key, subkey, base, factor)

_GEN2_METER: Final[_Gen2Fields] = (
    ("output", None, "relay_on", 1.0),
    ("apower", None, "power_watts", 1.0),
    ("voltage", None, "voltage_volts", 1.0),
    ("current", None, "current_amperes", 1.0),
    ("freq", None, "frequency_hertz", 1.0),
    ("pf", None, "power_factor_ratio", 1.0),
    ("aenergy", "total", "energy_joules_total", WH),
    ("ret_aenergy", "total", "energy_returned_joules_total", WH),
    ("temperature", "tC", "device_temperature_celsius", 1.0),
)
_GEN2_COMPONENT_KINDS: Final[Mapping[str, _Gen2Fields]] = {
    "switch": _GEN2_METER,
    "pm1": _GEN2_METER,
    "cover": _GEN2_METER,
    "light": _GEN2_METER,
    "em1": (
        ("current", None, "current_amperes", 1.0),
        ("voltage", None, "voltage_volts", 1.0),
        ("act_power", None, "power_watts", 1.0),
        ("aprt_power", None, "apparent_power_voltamperes", 1.0),
        ("pf", None, "power_factor_ratio", 1.0),
        ("freq", None, "frequency_hertz", 1.0),
    ),
    "em1data": (
        ("total_act_energy", None, "energy_joules_total", WH),
        ("total_act_ret_energy", None, "energy_returned_joules_total", WH),
    ),
    "temperature": (("tC", None, "temperature_celsius", 1.0),),
    "humidity": (("rh", None, "humidity_ratio", PERCENT),),
    "illuminance": (("lux", None, "illuminance_lux", 1.0),),
    "devicepower": (
        ("battery", "percent", "battery_ratio", PERCENT),
        ("battery", "V", "voltage_volts", 1.0),
    ),
    "voltmeter": (("voltage", None, "voltage_volts", 1.0),),
    "smoke": (("alarm", None, "smoke", 1.0),),
    "input": (("state", None, "input", 1.0),),
    "wifi": (("rssi", None, "signal_strength_dbm", 1.0),),
    "sys": (("uptime", None, "uptime_seconds", 1.0),),
}
_GEN2_PHASE_FIELDS: Final[Mapping[str, tuple[str, float]]] = {
    "current": ("current_amperes", 1.0),
    "voltage": ("voltage_volts", 1.0),
    "act_power": ("power_watts", 1.0),
    "aprt_power": ("apparent_power_voltamperes", 1.0),
    "pf": ("power_factor_ratio", 1.0),
    "freq": ("frequency_hertz", 1.0),
    "total_act_energy": ("energy_joules_total", WH),
    "total_act_ret_energy": ("energy_returned_joules_total", WH),
}
_GEN2_STATUS, _GEN2_ONLINE = 1, 2


class ShellyGen2(Profile):
    __slots__ = ()
    label_names = ("component", "phase")

    def data_filters(self) -> tuple[str, ...]:
        return ("status/+",)

    def availability_filters(self, shared: bool) -> tuple[str, ...]:
        return ("online",)

    def route(self, rest: list[str]) -> Route | None:
        n = len(rest)
        if n == 1 and rest[0] == "online":
            return (_GEN2_ONLINE, "", ())
        if n == 2 and rest[0] == "status" and rest[1]:
            component = rest[1]
            kind = component.partition(":")[0]
            if kind in _GEN2_COMPONENT_KINDS or kind in ("em", "emdata"):
                return (_GEN2_STATUS, kind, (("component", component),))
            return IGNORE
        return None

    def handle(self, route: Route, labels: Labels, text: str, out: Out) -> None:
        kind, ckind, extra = route
        labels = labels + extra
        if kind == _GEN2_ONLINE:
            availability(text, labels, out, "online")
            return
        doc = load_object(text, out)
        if doc is None:
            return
        vmap = out.value_map
        if ckind in ("em", "emdata"):
            # a_current, b_act_power, n_current, a_total_act_energy, ...
            for key, raw in doc.items():
                phase, sep, field = key.partition("_")
                if not sep or phase not in ("a", "b", "c", "n"):
                    continue
                known = _GEN2_PHASE_FIELDS.get(field)
                if known is None:
                    continue
                v = json_value(raw, vmap)
                if type(v) is float:
                    out.add(known[0], (*labels, ("phase", phase)), scaled(v, known[1]), key)
            return
        for key, sub, base, factor in _GEN2_COMPONENT_KINDS[ckind]:
            raw = doc.get(key)
            field = key
            if sub is not None:
                if type(raw) is not dict:
                    continue
                raw = raw.get(sub)
                field = key + "." + sub
            v = json_value(raw, vmap)
            if type(v) is float:
                out.add(base, labels, scaled(v, factor), field)


PROFILES: Final[Mapping[str, Callable[[], Profile]]] = {
    "zigbee2mqtt": Zigbee2Mqtt,
    "tasmota": Tasmota,
    "esphome": EspHome,
    "shelly_gen1": ShellyGen1,
    "shelly_gen2": ShellyGen2,
}
DEFAULT_TOPICS: Final[Mapping[str, str]] = {
    "zigbee2mqtt": "zigbee2mqtt",
    "tasmota": "tele/{device}",
    "esphome": "{device}",
    "shelly_gen1": "shellies/{device}",
    "shelly_gen2": "{device}",
}
