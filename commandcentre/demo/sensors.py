"""The demo server room's MQTT sensors, simulated: what they publish at a given moment.

Pure and deterministic: ``SensorRoom(seed).messages(t)`` depends only on the seed,
the simulation start and ``t`` (seconds since the start), never on earlier calls,
so tests can sample any moment and the demo publishes ``messages(elapsed)`` every
``REPORT_INTERVAL``. No network here; the demo runner does the publishing.

The devices speak the three dialects met in real server rooms, with the topics and
payloads those ecosystems use:

Zigbee2MQTT (``zigbee2mqtt/<friendly name>``, JSON; availability
``zigbee2mqtt/<friendly name>/availability`` ``{"state":"online"}`` and
``zigbee2mqtt/bridge/state``, retained):

* ``server-room/rack-a1/inlet``, ``server-room/rack-a1/outlet``: Aqara WSDCGQ11LM
  temperature/humidity/pressure sensors
* ``server-room/door``: Aqara MCCGQ11LM door contact (``contact`` true = closed)
* ``server-room/floor-leak``: Aqara SJCGQ11LM water leak sensor
* ``server-room/smoke``: Xiaomi JTYJ-GD-01LM/BW smoke detector

Tasmota (``tele/<topic>/SENSOR``, JSON; ``tele/<topic>/LWT`` ``Online``, retained):

* ``rack-a2-inlet``, ``rack-a2-outlet``: AM2301 temperature/humidity sensors
* ``rack-a1-power``, ``rack-a2-power``, ``rack-a3-power``: energy monitors on the
  racks' feeds (``ENERGY`` object)

ESPHome (``<node>/sensor/<object_id>/state`` plain numbers,
``<node>/binary_sensor/<object_id>/state`` ``ON``/``OFF``, retained as ESPHome
does by default; ``<node>/status`` ``online``, retained):

* ``rack-a3-env``: inlet/outlet temperature and humidity, ``wifi_signal``,
  ``uptime``, and the ``floor_leak`` binary sensor under rack A3

How values move: each quantity is a base value, plus a daily sine (warmest and
busiest mid-afternoon), plus smooth noise (random knots from the seeded RNG,
smoothstep between them), so every value stays inside a fixed band. Rack power is
2-4 kW and the outlet runs 8-12 °C above the inlet, more with more load. Humidity
is 40-55 % at the inlets; the outlet air holds the same water (same dew point)
and is warmer, so its relative humidity is lower, about 20-35 %. Energy totals
are the exact integral of the power curve, so they only ever increase. The door
opens a few times during working hours, for about a minute each time.

Faults (``set_fault``) change what is published, for demonstrating alerts: see
``FAULTS``.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from commandcentre.mqtt.types import Message

# Seconds between two reports of every device. Tasmota's TelePeriod cannot go below
# 10 s, so a faster demo would publish what no real Tasmota device can.
REPORT_INTERVAL = 10.0

# Simulated wall-clock time at t = 0 (Tasmota's "Time", the daily cycle, the door's
# working hours): 2026-11-28 00:00:00 UTC. Pass ``start=time.time()`` to follow the
# real clock.
DEFAULT_START = datetime(2026, 11, 28, tzinfo=UTC).timestamp()

Z2M_BASE = "zigbee2mqtt"
ZIGBEE_DEVICES = (
    "server-room/rack-a1/inlet",
    "server-room/rack-a1/outlet",
    "server-room/door",
    "server-room/floor-leak",
    "server-room/smoke",
)
TASMOTA_DEVICES = (
    "rack-a2-inlet",
    "rack-a2-outlet",
    "rack-a1-power",
    "rack-a2-power",
    "rack-a3-power",
)
ESPHOME_NODES = ("rack-a3-env",)

FAULTS: dict[str, str] = {
    "door_open": "the server-room door is held open (Zigbee2MQTT contact false)",
    "leak": "water under the raised floor (Zigbee2MQTT water_leak true, ESPHome floor_leak ON)",
    "smoke": "the smoke detector alarms (Zigbee2MQTT smoke true)",
    "cooling_failure": "the room's cooling fails: every inlet and outlet runs 6.5 °C warmer",
    "sensor_quiet": "rack A1's inlet sensor (Zigbee2MQTT) stops reporting, as on a flat battery",
    "meter_offline": "rack A2's power meter (Tasmota) drops off: LWT Offline, no SENSOR",
    "node_offline": "the ESPHome node rack-a3-env drops off: status offline, no states",
}

_DAY = 86_400.0
_HOUR = 3_600.0
_COOLING_FAILURE_RISE = 6.5  # °C

_Payload = dict[str, Any]


def _json(obj: _Payload, *, sort: bool = False) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=sort).encode()


def _saturation_hpa(celsius: float) -> float:
    """Saturation vapour pressure over water (Magnus, Sonntag 1990 constants)."""
    return 6.112 * math.exp(17.62 * celsius / (243.12 + celsius))


def _rh_after_heating(rh: float, from_c: float, to_c: float) -> float:
    """Relative humidity of air holding the same water at another temperature."""
    return rh * _saturation_hpa(from_c) / _saturation_hpa(to_c)


def _dew_point(celsius: float, rh: float) -> float:
    gamma = math.log(rh / 100.0) + 17.62 * celsius / (243.12 + celsius)
    return 243.12 * gamma / (17.62 - gamma)


class _Noise:
    """Smooth noise in [-1, 1]: random knots every ``step`` seconds, smoothstep
    between them. The knots repeat after ``count * step`` seconds. Its integral is
    exact, so energy counters built on it are consistent at any ``t``."""

    def __init__(self, rng: random.Random, step: float, count: int) -> None:
        self._step = step
        self._knots = [rng.uniform(-1.0, 1.0) for _ in range(count)]
        cum = [0.0]
        for i in range(count):
            cum.append(cum[-1] + (self._knots[i] + self._knots[(i + 1) % count]) / 2.0)
        self._cum = cum

    def _segment(self, ts: float) -> tuple[int, float, float, float]:
        pos = ts / self._step
        k = math.floor(pos)
        n = len(self._knots)
        return k, pos - k, self._knots[k % n], self._knots[(k + 1) % n]

    def value(self, ts: float) -> float:
        _, x, a, b = self._segment(ts)
        return a + (b - a) * x * x * (3.0 - 2.0 * x)

    def integral(self, ts: float) -> float:
        """The integral from 0 to ``ts`` (in value x seconds)."""
        k, x, a, b = self._segment(ts)
        n = len(self._knots)
        cycles, i = divmod(k, n)
        within = a * x + (b - a) * (x**3 - x**4 / 2.0)  # smoothstep integrated from 0 to x
        return self._step * (cycles * self._cum[n] + self._cum[i] + within)


class _Wave:
    """``base`` + a daily sine peaking at ``peak_hour`` (UTC) + smooth noise; it never
    leaves ``base +- (daily + noise)``."""

    def __init__(
        self,
        seed: int,
        key: str,
        *,
        base: float,
        daily: float,
        noise: float,
        peak_hour: float = 15.0,
        slow_step: float = 600.0,
        fast_step: float = 60.0,
    ) -> None:
        # A simulation, not cryptography; str seeds give the same numbers in every process.
        rng = random.Random(f"{seed}:{key}")  # noqa: S311
        self.base = base
        self.daily = daily
        self.noise = noise
        self._phase = (peak_hour - 6.0) * _HOUR + rng.uniform(-1800.0, 1800.0)
        self._slow = _Noise(rng, slow_step, 512)
        self._fast = _Noise(rng, fast_step, 256)

    def _angle(self, ts: float) -> float:
        return 2.0 * math.pi * (ts - self._phase) / _DAY

    def value(self, ts: float) -> float:
        jitter = 0.7 * self._slow.value(ts) + 0.3 * self._fast.value(ts)
        return self.base + self.daily * math.sin(self._angle(ts)) + self.noise * jitter

    def integral(self, ts: float) -> float:
        daily = -self.daily * _DAY / (2.0 * math.pi) * math.cos(self._angle(ts))
        jitter = 0.7 * self._slow.integral(ts) + 0.3 * self._fast.integral(ts)
        return self.base * ts + daily + self.noise * jitter


@dataclass(frozen=True, slots=True)
class _RackState:
    power: float  # W
    power_factor: float
    inlet_c: float
    outlet_c: float
    inlet_rh: float
    outlet_rh: float


class _Rack:
    def __init__(self, seed: int, name: str, base_power: float, base_inlet: float) -> None:
        self.name = name
        # 2.05-3.95 kW whatever the base (2750-3250 W), so every rack stays in 2-4 kW
        self.power = _Wave(
            seed, f"{name}:power", base=base_power, daily=400.0, noise=300.0, peak_hour=14.0
        )
        self.power_factor = _Wave(seed, f"{name}:pf", base=0.965, daily=0.0, noise=0.012)
        self.inlet = _Wave(
            seed, f"{name}:inlet", base=base_inlet, daily=0.8, noise=0.5, peak_hour=16.0
        )
        self.rise = _Wave(seed, f"{name}:rise", base=0.0, daily=0.0, noise=1.0)
        # Drier in the afternoon, when the air is warmest.
        self.humidity = _Wave(seed, f"{name}:rh", base=47.5, daily=3.0, noise=2.5, peak_hour=4.0)

    def state(self, ts: float, cooling_failure: bool) -> _RackState:
        power = self.power.value(ts)
        inlet = self.inlet.value(ts)
        rh = self.humidity.value(ts)
        if cooling_failure:
            rh = _rh_after_heating(rh, inlet, inlet + _COOLING_FAILURE_RISE)
            inlet += _COOLING_FAILURE_RISE
        # Airflow is fixed, so the temperature rise follows the load: 10 °C at 3 kW.
        outlet = inlet + 10.0 + 1.6 * (power - 3000.0) / 1000.0 + 0.3 * self.rise.value(ts)
        return _RackState(
            power=power,
            power_factor=self.power_factor.value(ts),
            inlet_c=inlet,
            outlet_c=outlet,
            inlet_rh=rh,
            outlet_rh=_rh_after_heating(rh, inlet, outlet),
        )


class _Meter:
    """A Tasmota energy monitor on one rack's feed, installed at ``installed``."""

    def __init__(self, rack_key: str, rack: _Rack, installed: float) -> None:
        self.topic = f"rack-{rack_key}-power"
        self.rack_key = rack_key
        self.rack = rack
        self.installed = installed

    def kwh_between(self, ts0: float, ts1: float) -> float:
        wave = self.rack.power
        return (wave.integral(ts1) - wave.integral(ts0)) / 3.6e6


@dataclass(frozen=True, slots=True)
class _Zigbee:
    name: str
    battery: int
    voltage: int  # mV
    link: _Wave


class SensorRoom:
    """The server room's sensors. ``messages(t)`` is what they publish ``t`` seconds
    after ``start`` (Unix time); ``birth_messages()`` the retained availability
    messages; ``set_fault`` switches a fault (``FAULTS``) on or off."""

    def __init__(self, seed: int = 1, *, start: float = DEFAULT_START) -> None:
        self.seed = seed
        self.start = start
        self._faults: set[str] = set()
        self._racks = {
            name: _Rack(seed, f"rack-{name}", power, inlet)
            for name, power, inlet in (
                ("a1", 2750.0, 21.8),
                ("a2", 3250.0, 22.2),
                ("a3", 3000.0, 22.0),
            )
        }
        rng = random.Random(f"{seed}:room")  # noqa: S311 - a simulation, see _Wave
        self._meters = [
            _Meter(name, rack, start - round(rng.uniform(200, 600) * _DAY))
            for name, rack in self._racks.items()
        ]
        self._mains = _Wave(seed, "mains", base=230.0, daily=1.5, noise=2.0, peak_hour=3.0)
        self._pressure = _Wave(
            seed, "pressure", base=1013.0, daily=0.8, noise=5.0, slow_step=3 * _HOUR
        )
        self._zigbee = {
            name: _Zigbee(
                name,
                battery,
                voltage,
                _Wave(
                    seed,
                    f"{name}:lqi",
                    base=rng.uniform(90, 150),
                    daily=0.0,
                    noise=25.0,
                    fast_step=20.0,
                ),
            )
            for name, battery, voltage in (
                ("server-room/rack-a1/inlet", 97, 3005),
                ("server-room/rack-a1/outlet", 91, 2985),
                ("server-room/door", 100, 3035),
                ("server-room/floor-leak", 94, 3015),
                ("server-room/smoke", 100, 3055),
            )
        }
        self._wifi = _Wave(
            seed, "rack-a3-env:wifi", base=-62.0, daily=0.0, noise=6.0, fast_step=20.0
        )
        self._node_booted = start - round(rng.uniform(2, 20) * _DAY)
        self._door_visits: dict[int, tuple[tuple[float, float], ...]] = {}

    # ------------------------------------------------------------------ faults

    @property
    def faults(self) -> frozenset[str]:
        return frozenset(self._faults)

    def set_fault(self, name: str, on: bool) -> list[Message]:
        """Switch a fault on or off. Returns the messages the change itself publishes
        at once (a device's LWT when it drops off or comes back); the rest shows in
        the following ``messages(t)``."""
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
        if on == (name in self._faults):
            return []
        if on:
            self._faults.add(name)
        else:
            self._faults.discard(name)
        if name == "meter_offline":
            return [self._tasmota_lwt("rack-a2-power")]
        if name == "node_offline":
            return [self._esphome_status("rack-a3-env")]
        return []

    # ------------------------------------------------------------------ messages

    def birth_messages(self) -> list[Message]:
        """Every device's availability as it stands (``online`` unless a fault took
        it off), retained: what a subscriber should find on connecting."""
        out = [Message(f"{Z2M_BASE}/bridge/state", _json({"state": "online"}), retain=True)]
        out += [
            Message(f"{Z2M_BASE}/{name}/availability", _json({"state": "online"}), retain=True)
            for name in ZIGBEE_DEVICES
        ]
        out += [self._tasmota_lwt(topic) for topic in TASMOTA_DEVICES]
        out += [self._esphome_status(node) for node in ESPHOME_NODES]
        return out

    def messages(self, t: float) -> list[Message]:
        """What the sensors publish ``t`` seconds after the start."""
        ts = self.start + t
        cooling_failure = "cooling_failure" in self._faults
        racks = {name: rack.state(ts, cooling_failure) for name, rack in self._racks.items()}
        return [
            *self._zigbee_messages(ts, racks),
            *self._tasmota_messages(ts, racks),
            *self._esphome_messages(ts, racks["a3"]),
        ]

    def door_open(self, t: float) -> bool:
        """Whether the door is open ``t`` seconds after the start (schedule or fault)."""
        return self._door_open_at(self.start + t)

    def _door_open_at(self, ts: float) -> bool:
        if "door_open" in self._faults:
            return True
        day = math.floor(ts / _DAY)
        return any(begin <= ts < end for begin, end in self._visits(day))

    def _visits(self, day: int) -> tuple[tuple[float, float], ...]:
        """The door's openings on one (UTC) day: a few, in working hours, ~1 min each."""
        visits = self._door_visits.get(day)
        if visits is None:
            rng = random.Random(f"{self.seed}:door:{day}")  # noqa: S311 - a simulation
            begins = sorted(
                day * _DAY + rng.uniform(7.5 * _HOUR, 18.5 * _HOUR)
                for _ in range(rng.randint(2, 5))
            )
            visits = tuple((b, b + rng.uniform(40.0, 100.0)) for b in begins)
            self._door_visits[day] = visits
        return visits

    # ------------------------------------------------------------------ Zigbee2MQTT

    def _zigbee_state(self, name: str, ts: float, extra: _Payload) -> Message:
        dev = self._zigbee[name]
        payload: _Payload = {
            "battery": dev.battery,
            "linkquality": round(min(255.0, max(0.0, dev.link.value(ts)))),
            "voltage": dev.voltage,
            **extra,
        }
        return Message(f"{Z2M_BASE}/{name}", _json(payload, sort=True))

    def _zigbee_messages(self, ts: float, racks: dict[str, _RackState]) -> list[Message]:
        a1 = racks["a1"]
        pressure = round(self._pressure.value(ts), 1)
        out: list[Message] = []
        for side, celsius, rh in (
            ("inlet", a1.inlet_c, a1.inlet_rh),
            ("outlet", a1.outlet_c, a1.outlet_rh),
        ):
            name = f"server-room/rack-a1/{side}"
            if side == "inlet" and "sensor_quiet" in self._faults:
                continue
            reading = {
                "temperature": round(celsius, 2),
                "humidity": round(rh, 2),
                "pressure": pressure,
            }
            out.append(self._zigbee_state(name, ts, reading))
        out.append(
            self._zigbee_state("server-room/door", ts, {"contact": not self._door_open_at(ts)})
        )
        leak = "leak" in self._faults
        out.append(
            self._zigbee_state(
                "server-room/floor-leak", ts, {"water_leak": leak, "battery_low": False}
            )
        )
        smoke = "smoke" in self._faults
        out.append(
            self._zigbee_state(
                "server-room/smoke",
                ts,
                {
                    "smoke": smoke,
                    "smoke_density": 7 if smoke else 0,
                    "battery_low": False,
                    "tamper": False,
                },
            )
        )
        return out

    # ------------------------------------------------------------------ Tasmota

    def _tasmota_lwt(self, topic: str) -> Message:
        offline = topic == "rack-a2-power" and "meter_offline" in self._faults
        return Message(f"tele/{topic}/LWT", b"Offline" if offline else b"Online", retain=True)

    def _tasmota_messages(self, ts: float, racks: dict[str, _RackState]) -> list[Message]:
        when = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        out: list[Message] = []
        a2 = racks["a2"]
        for side, celsius, rh in (
            ("inlet", a2.inlet_c, a2.inlet_rh),
            ("outlet", a2.outlet_c, a2.outlet_rh),
        ):
            payload: _Payload = {
                "Time": when,
                "AM2301": {
                    "Temperature": round(celsius, 1),
                    "Humidity": round(rh, 1),
                    "DewPoint": round(_dew_point(celsius, rh), 1),
                },
                "TempUnit": "C",
            }
            out.append(Message(f"tele/rack-a2-{side}/SENSOR", _json(payload)))
        midnight = math.floor(ts / _DAY) * _DAY
        volts = self._mains.value(ts)
        for meter in self._meters:
            if meter.topic == "rack-a2-power" and "meter_offline" in self._faults:
                continue
            rack = racks[meter.rack_key]
            apparent = rack.power / rack.power_factor
            energy: _Payload = {
                "TotalStartTime": datetime.fromtimestamp(meter.installed, UTC).strftime(
                    "%Y-%m-%dT%H:%M:%S"
                ),
                "Total": round(meter.kwh_between(meter.installed, ts), 3),
                "Yesterday": round(meter.kwh_between(midnight - _DAY, midnight), 3),
                "Today": round(meter.kwh_between(midnight, ts), 3),
                "Period": round(meter.kwh_between(ts - REPORT_INTERVAL, ts) * 1000.0),
                "Power": round(rack.power),
                "ApparentPower": round(apparent),
                "ReactivePower": round(math.sqrt(apparent**2 - rack.power**2)),
                "Factor": round(rack.power_factor, 2),
                "Voltage": round(volts),
                "Current": round(apparent / volts, 3),
            }
            # An ESP8266 meter: no chip temperature, so no TempUnit either.
            payload = {"Time": when, "ENERGY": energy}
            out.append(Message(f"tele/{meter.topic}/SENSOR", _json(payload)))
        return out

    # ------------------------------------------------------------------ ESPHome

    def _esphome_status(self, node: str) -> Message:
        offline = "node_offline" in self._faults
        return Message(f"{node}/status", b"offline" if offline else b"online", retain=True)

    def _esphome_messages(self, ts: float, a3: _RackState) -> list[Message]:
        if "node_offline" in self._faults:
            return []
        node = "rack-a3-env"
        sensors = {
            "inlet_temperature": f"{a3.inlet_c:.1f}",
            "inlet_humidity": f"{a3.inlet_rh:.1f}",
            "outlet_temperature": f"{a3.outlet_c:.1f}",
            "outlet_humidity": f"{a3.outlet_rh:.1f}",
            "wifi_signal": f"{self._wifi.value(ts):.0f}",
            "uptime": f"{ts - self._node_booted:.0f}",
        }
        out = [
            Message(f"{node}/sensor/{oid}/state", value.encode(), retain=True)
            for oid, value in sensors.items()
        ]
        leak = "leak" in self._faults
        out.append(
            Message(
                f"{node}/binary_sensor/floor_leak/state", b"ON" if leak else b"OFF", retain=True
            )
        )
        return out


def demo_subscriptions(broker_name: str) -> list[dict[str, Any]]:
    """The ``mqtt.subscriptions`` entries that read everything ``SensorRoom``
    publishes, for a config with a broker called ``broker_name``.

    Each built-in profile hangs its own topics from ``topic``: Zigbee2MQTT from the
    base topic (``zigbee2mqtt/<friendly name>[/availability]``, ``bridge/state``),
    Tasmota from ``tele/<topic>`` (``/SENSOR``, ``/LWT``), ESPHome from the node's
    topic prefix (``/sensor/<id>/state``, ``/binary_sensor/<id>/state``, ``/status``).
    """
    labels = {"site": "demo", "room": "server-room"}
    return [
        {
            "name": "demo-zigbee2mqtt",
            "broker": broker_name,
            "profile": "zigbee2mqtt",
            "topic": Z2M_BASE,
            "labels": dict(labels),
        },
        {
            "name": "demo-tasmota",
            "broker": broker_name,
            "profile": "tasmota",
            "topic": "tele/{device}",
            "labels": dict(labels),
        },
        {
            "name": "demo-esphome",
            "broker": broker_name,
            "profile": "esphome",
            "topic": "{device}",
            "labels": dict(labels),
        },
    ]
