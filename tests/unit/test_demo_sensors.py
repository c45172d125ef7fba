"""The demo's simulated MQTT sensors: deterministic, plausible, in each ecosystem's format,
and covered by the demo's subscriptions."""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commandcentre.demo.sensors import (
    ESPHOME_NODES,
    FAULTS,
    REPORT_INTERVAL,
    TASMOTA_DEVICES,
    ZIGBEE_DEVICES,
    SensorRoom,
    demo_subscriptions,
)
from commandcentre.mqtt.config import MqttSpec, Subscription
from commandcentre.mqtt.types import Message

DAY = 86_400.0
HOUR = 3_600.0
# Every 7 minutes for a day: not a divisor of any knot spacing, so it lands all over.
DAY_SAMPLES = [i * 420.0 for i in range(int(DAY // 420))]


def by_topic(messages: Iterable[Message]) -> dict[str, Message]:
    out: dict[str, Message] = {}
    for m in messages:
        assert m.topic not in out, f"{m.topic} published twice in one report"
        out[m.topic] = m
    return out


def as_json(m: Message) -> dict[str, Any]:
    obj = json.loads(m.payload)
    assert isinstance(obj, dict)
    return obj


def payload_digest(room: SensorRoom, times: Iterable[float]) -> str:
    h = hashlib.sha256()
    for t in times:
        for m in room.messages(t):
            h.update(f"{m.topic}\0{m.retain}\0".encode() + m.payload + b"\0")
    return h.hexdigest()


# --------------------------------------------------------------------------- determinism


def test_same_seed_and_time_give_the_same_messages_whatever_was_asked_before() -> None:
    times = [0.0, 10.0, 3 * HOUR + 5.0, 13.5 * HOUR, DAY - 10.0, 5 * DAY]
    forward = SensorRoom(seed=5)
    backward = SensorRoom(seed=5)
    first = [forward.messages(t) for t in times]
    second = [backward.messages(t) for t in reversed(times)][::-1]
    assert first == second
    assert forward.birth_messages() == backward.birth_messages()


def test_another_seed_gives_other_values() -> None:
    assert SensorRoom(seed=1).messages(HOUR) != SensorRoom(seed=2).messages(HOUR)


def test_deterministic_across_processes_and_hash_seeds() -> None:
    times = [0.0, 1234.5, 9 * HOUR]
    code = (
        "from commandcentre.demo.sensors import SensorRoom\n"
        "from tests.unit.test_demo_sensors import payload_digest\n"
        f"print(payload_digest(SensorRoom(seed=3), {times!r}))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    repo = Path(__file__).resolve().parents[2]  # `-c` puts the cwd on sys.path
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=repo, check=True
    )
    assert out.stdout.strip() == payload_digest(SensorRoom(seed=3), times)


def test_start_moves_the_clock() -> None:
    room = SensorRoom(start=datetime.fromisoformat("2027-01-02T03:04:05+00:00").timestamp())
    sensor = as_json(by_topic(room.messages(10.0))["tele/rack-a2-inlet/SENSOR"])
    assert sensor["Time"] == "2027-01-02T03:04:15"


# --------------------------------------------------------------------------- plausible values


def check_environment(inlet_c: float, inlet_rh: float, outlet_c: float, outlet_rh: float) -> None:
    assert 20.0 <= inlet_c <= 24.0
    assert 8.0 <= outlet_c - inlet_c <= 12.0
    assert 40.0 <= inlet_rh <= 55.0
    # The outlet air holds the same water, warmer: lower relative humidity.
    assert 15.0 <= outlet_rh < inlet_rh


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_value_stays_in_its_band_over_a_day(seed: int) -> None:
    room = SensorRoom(seed=seed)
    totals: dict[str, float] = {}
    uptime = -1
    for t in DAY_SAMPLES:
        msgs = by_topic(room.messages(t))

        # Zigbee2MQTT, rack A1
        zin = as_json(msgs["zigbee2mqtt/server-room/rack-a1/inlet"])
        zout = as_json(msgs["zigbee2mqtt/server-room/rack-a1/outlet"])
        check_environment(
            zin["temperature"], zin["humidity"], zout["temperature"], zout["humidity"]
        )
        for name in ZIGBEE_DEVICES:
            z = as_json(msgs[f"zigbee2mqtt/{name}"])
            assert 0 <= z["linkquality"] <= 255
            assert 0 <= z["battery"] <= 100
            assert 2700 <= z["voltage"] <= 3200
        assert 995.0 <= zin["pressure"] <= 1030.0
        assert as_json(msgs["zigbee2mqtt/server-room/floor-leak"])["water_leak"] is False
        smoke = as_json(msgs["zigbee2mqtt/server-room/smoke"])
        assert smoke["smoke"] is False
        assert smoke["smoke_density"] == 0

        # Tasmota AM2301, rack A2: same air, same dew point in and out
        tin = as_json(msgs["tele/rack-a2-inlet/SENSOR"])["AM2301"]
        tout = as_json(msgs["tele/rack-a2-outlet/SENSOR"])["AM2301"]
        check_environment(
            tin["Temperature"], tin["Humidity"], tout["Temperature"], tout["Humidity"]
        )
        assert 0.0 < tin["DewPoint"] < tin["Temperature"]
        assert abs(tin["DewPoint"] - tout["DewPoint"]) <= 0.3

        # Tasmota energy monitors
        for rack in ("a1", "a2", "a3"):
            sensor = as_json(msgs[f"tele/rack-{rack}-power/SENSOR"])
            e = sensor["ENERGY"]
            assert 2000 <= e["Power"] <= 4000
            assert 0.9 <= e["Factor"] <= 1.0
            assert 220 <= e["Voltage"] <= 240
            assert e["Power"] <= e["ApparentPower"] <= e["Power"] / 0.9
            assert e["Current"] == pytest.approx(e["ApparentPower"] / e["Voltage"], rel=0.01)
            assert e["ReactivePower"] == pytest.approx(
                math.sqrt(e["ApparentPower"] ** 2 - e["Power"] ** 2), abs=40
            )
            # Wh in the last report interval, at about the current power
            assert e["Period"] == pytest.approx(e["Power"] * REPORT_INTERVAL / HOUR, abs=1.5)
            assert 48.0 <= e["Yesterday"] <= 96.0  # 2-4 kW for 24 h
            assert 0.0 <= e["Today"] <= e["Total"]
            assert e["Total"] > totals.get(rack, 0.0)
            totals[rack] = e["Total"]

        # ESPHome, rack A3
        node = "rack-a3-env/sensor"
        check_environment(
            float(msgs[f"{node}/inlet_temperature/state"].payload),
            float(msgs[f"{node}/inlet_humidity/state"].payload),
            float(msgs[f"{node}/outlet_temperature/state"].payload),
            float(msgs[f"{node}/outlet_humidity/state"].payload),
        )
        assert -90 <= int(msgs[f"{node}/wifi_signal/state"].payload) <= -30
        now_up = int(msgs[f"{node}/uptime/state"].payload)
        assert now_up > uptime
        uptime = now_up
        assert msgs["rack-a3-env/binary_sensor/floor_leak/state"].payload == b"OFF"


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), t=st.floats(0.0, 3 * 365 * DAY))
def test_bands_hold_for_any_seed_and_time(seed: int, t: float) -> None:
    msgs = by_topic(SensorRoom(seed=seed).messages(t))
    zin = as_json(msgs["zigbee2mqtt/server-room/rack-a1/inlet"])
    zout = as_json(msgs["zigbee2mqtt/server-room/rack-a1/outlet"])
    check_environment(zin["temperature"], zin["humidity"], zout["temperature"], zout["humidity"])
    tin = as_json(msgs["tele/rack-a2-inlet/SENSOR"])["AM2301"]
    tout = as_json(msgs["tele/rack-a2-outlet/SENSOR"])["AM2301"]
    check_environment(tin["Temperature"], tin["Humidity"], tout["Temperature"], tout["Humidity"])
    for rack in ("a1", "a2", "a3"):
        energy = as_json(msgs[f"tele/rack-{rack}-power/SENSOR"])["ENERGY"]
        assert 2000 <= energy["Power"] <= 4000
        assert energy["Total"] > 0


def test_values_move_smoothly_and_follow_the_day() -> None:
    room = SensorRoom(seed=1)

    def inlet_and_power(t: float) -> tuple[float, float]:
        msgs = by_topic(room.messages(t))
        inlet = float(msgs["rack-a3-env/sensor/inlet_temperature/state"].payload)
        power = as_json(msgs["tele/rack-a3-power/SENSOR"])["ENERGY"]["Power"]
        return inlet, float(power)

    # one report interval apart, through two hours
    series = [inlet_and_power(13 * HOUR + i * REPORT_INTERVAL) for i in range(720)]
    for (t0, p0), (t1, p1) in itertools.pairwise(series):
        assert abs(t1 - t0) <= 0.2
        assert abs(p1 - p0) <= 150
    assert len({t for t, _ in series}) > 5, "the temperature should move"
    # warmer and busier mid-afternoon than before dawn, on average over an hour
    afternoon = [inlet_and_power(15 * HOUR + i * 300.0) for i in range(12)]
    night = [inlet_and_power(3 * HOUR + i * 300.0) for i in range(12)]
    assert sum(t for t, _ in afternoon) > sum(t for t, _ in night)
    assert sum(p for _, p in afternoon) > sum(p for _, p in night)


def test_energy_counters_roll_over_at_midnight() -> None:
    room = SensorRoom(seed=1)

    def energy(t: float) -> dict[str, Any]:
        e = as_json(by_topic(room.messages(t))["tele/rack-a1-power/SENSOR"])["ENERGY"]
        assert isinstance(e, dict)
        return e

    before, after = energy(DAY - REPORT_INTERVAL), energy(DAY + REPORT_INTERVAL)
    assert before["Today"] > 40.0
    assert after["Today"] < 0.05
    assert after["Yesterday"] == pytest.approx(before["Today"], abs=0.05)
    assert after["Total"] - before["Total"] == pytest.approx(
        2 * REPORT_INTERVAL * before["Power"] / HOUR / 1000, abs=0.002
    )
    assert datetime.fromisoformat(after["TotalStartTime"]) < datetime(2026, 11, 28)


# --------------------------------------------------------------------------- formats


def test_birth_messages_are_retained_online_availability_for_every_device() -> None:
    birth = by_topic(SensorRoom().birth_messages())
    assert all(m.retain for m in birth.values())
    assert as_json(birth["zigbee2mqtt/bridge/state"]) == {"state": "online"}
    for name in ZIGBEE_DEVICES:
        assert as_json(birth[f"zigbee2mqtt/{name}/availability"]) == {"state": "online"}
    for topic in TASMOTA_DEVICES:
        assert birth[f"tele/{topic}/LWT"].payload == b"Online"
    for node in ESPHOME_NODES:
        assert birth[f"{node}/status"].payload == b"online"
    assert len(birth) == 1 + len(ZIGBEE_DEVICES) + len(TASMOTA_DEVICES) + len(ESPHOME_NODES)


def test_zigbee2mqtt_payloads() -> None:
    msgs = by_topic(SensorRoom().messages(HOUR))
    aqara = as_json(msgs["zigbee2mqtt/server-room/rack-a1/inlet"])
    assert set(aqara) == {
        "battery",
        "humidity",
        "linkquality",
        "pressure",
        "temperature",
        "voltage",
    }
    for key in ("battery", "linkquality", "voltage"):
        assert type(aqara[key]) is int
    for key in ("humidity", "pressure", "temperature"):
        assert type(aqara[key]) is float
    door = as_json(msgs["zigbee2mqtt/server-room/door"])
    assert type(door["contact"]) is bool
    assert type(as_json(msgs["zigbee2mqtt/server-room/floor-leak"])["water_leak"]) is bool
    assert type(as_json(msgs["zigbee2mqtt/server-room/smoke"])["smoke"]) is bool
    for name in ZIGBEE_DEVICES:
        m = msgs[f"zigbee2mqtt/{name}"]
        assert not m.retain  # Zigbee2MQTT's default
        # compact, keys sorted, as Zigbee2MQTT writes them
        obj = json.loads(m.payload)
        assert m.payload == json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def test_tasmota_payloads() -> None:
    msgs = by_topic(SensorRoom().messages(10 * HOUR))
    am = as_json(msgs["tele/rack-a2-inlet/SENSOR"])
    assert list(am) == ["Time", "AM2301", "TempUnit"]
    assert am["Time"] == "2026-11-28T10:00:00"  # local time, no zone, as Tasmota writes it
    assert am["TempUnit"] == "C"
    assert set(am["AM2301"]) == {"Temperature", "Humidity", "DewPoint"}
    power = as_json(msgs["tele/rack-a1-power/SENSOR"])
    assert list(power) == ["Time", "ENERGY"]
    assert list(power["ENERGY"]) == [
        "TotalStartTime",
        "Total",
        "Yesterday",
        "Today",
        "Period",
        "Power",
        "ApparentPower",
        "ReactivePower",
        "Factor",
        "Voltage",
        "Current",
    ]
    for key in ("Period", "Power", "ApparentPower", "ReactivePower", "Voltage"):
        assert type(power["ENERGY"][key]) is int
    datetime.fromisoformat(power["ENERGY"]["TotalStartTime"])
    for topic in TASMOTA_DEVICES:
        assert not msgs[f"tele/{topic}/SENSOR"].retain


def test_esphome_payloads_are_plain_text() -> None:
    msgs = SensorRoom().messages(HOUR)
    states = [m for m in msgs if m.topic.startswith("rack-a3-env/")]
    assert {m.topic for m in states} == {
        "rack-a3-env/sensor/inlet_temperature/state",
        "rack-a3-env/sensor/inlet_humidity/state",
        "rack-a3-env/sensor/outlet_temperature/state",
        "rack-a3-env/sensor/outlet_humidity/state",
        "rack-a3-env/sensor/wifi_signal/state",
        "rack-a3-env/sensor/uptime/state",
        "rack-a3-env/binary_sensor/floor_leak/state",
    }
    for m in states:
        assert m.retain  # ESPHome retains state messages by default
        text = m.payload.decode("ascii")
        if "/binary_sensor/" in m.topic:
            assert text in ("ON", "OFF")
        else:
            float(text)
            assert text == text.strip()
            assert not text.startswith(("{", '"'))
    temperature = next(m for m in states if m.topic.endswith("/inlet_temperature/state"))
    assert len(temperature.payload.split(b".")[1]) == 1  # accuracy_decimals: 1


# --------------------------------------------------------------------------- the door


def test_door_contact_true_means_closed_and_opens_for_about_a_minute_in_working_hours() -> None:
    room = SensorRoom(seed=4)
    for day in range(3):
        base = day * DAY
        opened = [t for t in range(0, int(DAY), 5) if room.door_open(base + t)]
        assert opened, "the door should open at least once a day"
        # group into openings
        spans: list[list[int]] = []
        for t in opened:
            if spans and t - spans[-1][1] <= 5:
                spans[-1][1] = t
            else:
                spans.append([t, t])
        assert 1 <= len(spans) <= 5
        for begin, end in spans:
            assert begin >= 7.5 * HOUR
            assert end <= 18.5 * HOUR + 100
            assert 35 <= end - begin + 5 <= 205  # overlapping visits can merge
    t_open = next(t for t in range(0, int(DAY), 5) if room.door_open(t))
    door_open = as_json(by_topic(room.messages(t_open))["zigbee2mqtt/server-room/door"])
    door_shut = as_json(by_topic(room.messages(2 * HOUR))["zigbee2mqtt/server-room/door"])
    assert door_open["contact"] is False
    assert door_shut["contact"] is True


# --------------------------------------------------------------------------- faults


def test_faults_change_the_output_and_clear_again() -> None:
    room = SensorRoom()
    t = 2 * HOUR  # the door is shut at night
    normal = room.messages(t)
    for name in FAULTS:
        room.set_fault(name, True)
        assert room.faults == {name}
        assert room.messages(t) != normal, name
        room.set_fault(name, False)
        assert room.messages(t) == normal, name


def test_door_leak_smoke_faults() -> None:
    room = SensorRoom()
    room.set_fault("door_open", True)
    room.set_fault("leak", True)
    room.set_fault("smoke", True)
    msgs = by_topic(room.messages(2 * HOUR))
    assert as_json(msgs["zigbee2mqtt/server-room/door"])["contact"] is False
    assert as_json(msgs["zigbee2mqtt/server-room/floor-leak"])["water_leak"] is True
    assert msgs["rack-a3-env/binary_sensor/floor_leak/state"].payload == b"ON"
    smoke = as_json(msgs["zigbee2mqtt/server-room/smoke"])
    assert smoke["smoke"] is True
    assert smoke["smoke_density"] > 0


def test_cooling_failure_warms_the_air_and_keeps_its_water() -> None:
    room = SensorRoom()
    before = as_json(by_topic(room.messages(HOUR))["tele/rack-a2-inlet/SENSOR"])["AM2301"]
    room.set_fault("cooling_failure", True)
    after = as_json(by_topic(room.messages(HOUR))["tele/rack-a2-inlet/SENSOR"])["AM2301"]
    assert after["Temperature"] - before["Temperature"] == pytest.approx(6.5, abs=0.11)
    assert after["Humidity"] < before["Humidity"]
    assert after["DewPoint"] == pytest.approx(before["DewPoint"], abs=0.11)


def test_quiet_sensor_stops_publishing_without_changing_its_availability() -> None:
    room = SensorRoom()
    assert room.set_fault("sensor_quiet", True) == []
    topics = {m.topic for m in room.messages(HOUR)}
    assert "zigbee2mqtt/server-room/rack-a1/inlet" not in topics
    assert "zigbee2mqtt/server-room/rack-a1/outlet" in topics
    assert room.birth_messages() == SensorRoom().birth_messages()


def test_offline_faults_publish_lwt_transitions() -> None:
    room = SensorRoom()
    assert room.set_fault("meter_offline", True) == [
        Message("tele/rack-a2-power/LWT", b"Offline", retain=True)
    ]
    assert room.set_fault("meter_offline", True) == []  # already on: no transition
    assert room.set_fault("node_offline", True) == [
        Message("rack-a3-env/status", b"offline", retain=True)
    ]
    topics = {m.topic for m in room.messages(HOUR)}
    assert "tele/rack-a2-power/SENSOR" not in topics
    assert "tele/rack-a1-power/SENSOR" in topics
    assert not any(t.startswith("rack-a3-env/") for t in topics)
    birth = by_topic(room.birth_messages())
    assert birth["tele/rack-a2-power/LWT"].payload == b"Offline"
    assert birth["rack-a3-env/status"].payload == b"offline"
    assert room.set_fault("meter_offline", False) == [
        Message("tele/rack-a2-power/LWT", b"Online", retain=True)
    ]
    assert room.set_fault("node_offline", False) == [
        Message("rack-a3-env/status", b"online", retain=True)
    ]


def test_unknown_fault_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="door_open"):
        SensorRoom().set_fault("meteor_strike", True)


# --------------------------------------------------------------------------- subscriptions


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT 3.1.1 section 4.7 topic filter matching."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    f_levels, t_levels = topic_filter.split("/"), topic.split("/")
    for i, f in enumerate(f_levels):
        if f == "#":
            return True  # also matches the parent level itself
        if i >= len(t_levels) or (f not in ("+", t_levels[i])):
            return False
    return len(f_levels) == len(t_levels)


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("+/status", "node/status", True),
        ("+/status", "$SYS/status", False),
        ("a/b", "a/b/c", False),
        ("a/b/c", "a/b", False),
    ],
)
def test_topic_matches(topic_filter: str, topic: str, matches: bool) -> None:
    assert topic_matches(topic_filter, topic) is matches


# How each built-in profile subscribes below its ``topic`` base (template levels
# ``{name}`` become ``+``), as those ecosystems publish.
PROFILE_FILTERS = {
    "zigbee2mqtt": ["{base}/#"],  # friendly names may have slashes
    "tasmota": ["{base}/SENSOR", "{base}/STATE", "{base}/LWT"],
    "esphome": ["{base}/sensor/+/state", "{base}/binary_sensor/+/state", "{base}/status"],
}


def subscription_filters(sub: dict[str, Any]) -> list[str]:
    base = "/".join(
        "+" if level.startswith("{") and level.endswith("}") else level
        for level in sub["topic"].split("/")
    )
    return [f.format(base=base) for f in PROFILE_FILTERS[sub["profile"]]]


def everything_published() -> list[Message]:
    room = SensorRoom()
    out = room.birth_messages()
    for name in FAULTS:
        out += room.set_fault(name, True)
    out += room.messages(HOUR) + room.birth_messages()
    for name in FAULTS:
        out += room.set_fault(name, False)
    return out + room.messages(HOUR)


def test_demo_subscriptions_are_valid_config() -> None:
    subs = demo_subscriptions("demo")
    spec = MqttSpec.model_validate(
        {"brokers": [{"name": "demo", "host": "127.0.0.1", "port": 1883}], "subscriptions": subs}
    )
    assert {s.profile for s in spec.subscriptions} == {"zigbee2mqtt", "tasmota", "esphome"}
    for s in spec.subscriptions:
        assert s.broker == "demo"
        assert s.labels == {"site": "demo", "room": "server-room"}


def test_every_published_topic_is_read_by_exactly_one_demo_subscription() -> None:
    subs = demo_subscriptions("demo")
    for m in everything_published():
        readers = [
            s["name"]
            for s in subs
            if any(topic_matches(f, m.topic) for f in subscription_filters(s))
        ]
        assert len(readers) == 1, f"{m.topic} is read by {readers}"


def test_demo_subscriptions_through_the_real_mapping() -> None:
    mapping = pytest.importorskip(
        "commandcentre.mqtt.mapping",
        reason="commandcentre.mqtt.mapping (being written separately) does not exist yet",
    )
    compile_subscription = getattr(mapping, "compile_subscription", None)
    if compile_subscription is None:
        pytest.skip("commandcentre.mqtt.mapping has no compile_subscription yet")
    required = [
        p
        for p in inspect.signature(compile_subscription).parameters.values()
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(required) != 1:
        pytest.skip(f"compile_subscription{inspect.signature(compile_subscription)}: not (sub)")
    compiled = [
        compile_subscription(Subscription.model_validate(s)) for s in demo_subscriptions("demo")
    ]
    if not all(hasattr(c, "matches") for c in compiled):
        pytest.skip("compiled subscriptions have no matches(topic) yet")
    for m in everything_published():
        readers = [c for c in compiled if c.matches(m.topic)]
        assert len(readers) == 1, f"{m.topic} is read by {len(readers)} subscriptions"
        if hasattr(readers[0], "parse"):
            outcome = readers[0].parse(m)
            assert outcome.problems == (), f"{m.topic} {m.payload!r}: {outcome.problems}"
            assert outcome.readings, f"{m.topic} {m.payload!r} gave no reading"
