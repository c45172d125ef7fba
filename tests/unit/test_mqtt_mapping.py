"""MQTT message -> readings (``commandcentre.mqtt.mapping``), with no broker.

The sample tables replay the real messages in ``tests/data/mqtt/`` (sources in its
README). Every expected value was worked out from the firmware's documentation
(Zigbee2MQTT: battery %, voltage mV on battery devices, pressure hPa, energy kWh,
``contact: true`` = closed; Tasmota: ENERGY in kWh/W/V/A, TempUnit, PressureUnit;
ESPHome: plain values, ``ON``/``OFF``, ``online``/``offline``; Shelly gen1:
energy in watt-minutes; Shelly gen2: ``aenergy.total`` in Wh), and is written as
the conversion (``1001.8 * 100``), not copied from the mapping's output.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commandcentre.mqtt.config import Subscription
from commandcentre.mqtt.mapping import (
    MAX_PROBLEMS,
    CompiledSubscription,
    compile_subscription,
)
from commandcentre.mqtt.profiles import esphome_metric
from commandcentre.mqtt.types import BadPayload, Message, ParseOutcome

DATA = Path(__file__).resolve().parent.parent / "data" / "mqtt"
PREFIX = "commandcentre_sensor_"
KWH = 3.6e6
WH = 3600.0

# --------------------------------------------------------------------------- helpers


def sub(profile: str = "json", **kw: Any) -> CompiledSubscription:
    return compile_subscription(
        Subscription.model_validate({"name": "t", "profile": profile, **kw})
    )


def load(path: Path) -> Message:
    """A sample file: first line the topic, the rest the payload."""
    topic, _, payload = path.read_bytes().partition(b"\n")
    payload = payload.removesuffix(b"\n")
    return Message(topic.decode(), payload)


Key = tuple[str, tuple[tuple[str, str], ...]]


def readings(outcome: ParseOutcome) -> dict[Key, float]:
    """Readings by (name without prefix, labels in the mapping's order)."""
    got: dict[Key, float] = {}
    for r in outcome.readings:
        assert r.name.startswith(PREFIX), r.name
        key = (r.name.removeprefix(PREFIX), r.labels)
        assert key not in got, f"duplicate series {key}"
        got[key] = r.value
    return got


def kinds(outcome: ParseOutcome) -> dict[str, str]:
    return {r.name.removeprefix(PREFIX): r.kind for r in outcome.readings}


def reasons(outcome: ParseOutcome) -> list[BadPayload]:
    return [p.reason for p in outcome.problems]


def assert_readings(outcome: ParseOutcome, expected: dict[Key, float]) -> None:
    got = readings(outcome)
    assert set(got) == set(expected), (
        f"missing {sorted(set(expected) - set(got))}, unexpected {sorted(set(got) - set(expected))}"
    )
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


def L(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(labels.items())


# --------------------------------------------------------------------------- samples

Z2M = "zigbee2mqtt"


def dev(name: str, **more: str) -> tuple[tuple[str, str], ...]:
    return (("device", name), *more.items())


SAMPLES: list[tuple[str, str, dict[str, Any], dict[Key, float]]] = [
    # ------------------------------------------------------------ zigbee2mqtt
    (
        Z2M,
        "aqara_weather",
        {},
        {
            ("battery_ratio", dev("humidity_xiaomi_bad_stefan")): 97 / 100,
            ("humidity_ratio", dev("humidity_xiaomi_bad_stefan")): 58.5 / 100,
            ("link_quality", dev("humidity_xiaomi_bad_stefan")): 72,
            ("power_outage_count", dev("humidity_xiaomi_bad_stefan")): 11574,
            ("pressure_pascals", dev("humidity_xiaomi_bad_stefan")): 1001.8 * 100,
            ("temperature_celsius", dev("humidity_xiaomi_bad_stefan")): 22.4,
            ("voltage_volts", dev("humidity_xiaomi_bad_stefan")): 2995 / 1000,  # mV
        },
    ),
    (
        Z2M,
        "water_leak_legacy",
        {"topic": "zigbee"},
        {
            ("battery_ratio", dev("czujnikzalania1")): 100.00 / 100,  # "100.00", a string
            ("voltage_volts", dev("czujnikzalania1")): 3045 / 1000,
            ("link_quality", dev("czujnikzalania1")): 99,
            ("water_leak", dev("czujnikzalania1")): 0,
        },
    ),
    (
        Z2M,
        "contact_closed",
        {"topic": "zigbee"},
        {
            ("door_open", dev("czujnikokna2")): 0,  # contact: true = closed
            ("link_quality", dev("czujnikokna2")): 128,
        },
    ),
    (
        Z2M,
        "plug_ts011f",
        {},
        {
            ("child_lock", dev("z1")): 0,  # "UNLOCK"
            ("countdown", dev("z1")): 0,
            ("current_amperes", dev("z1")): 0,
            ("energy_joules_total", dev("z1")): 12.05 * KWH,
            ("link_quality", dev("z1")): 43,
            ("power_watts", dev("z1")): 0,
            ("power_outage_memory", dev("z1")): 0,  # "off"
            ("relay_on", dev("z1")): 0,  # state OFF
            ("voltage_volts", dev("z1")): 243,  # a metering plug reports volts
        },
    ),
    (Z2M, "plug_attribute_output", {}, {}),
    (
        Z2M,
        "smoke_develco",
        {},
        {
            ("ac_status", dev("0x0015bc00310095bd")): 0,
            ("battery_ratio", dev("0x0015bc00310095bd")): 100 / 100,
            ("battery_low", dev("0x0015bc00310095bd")): 0,
            ("link_quality", dev("0x0015bc00310095bd")): 30,
            ("restore_reports", dev("0x0015bc00310095bd")): 1,
            ("smoke", dev("0x0015bc00310095bd")): 0,
            ("supervision_reports", dev("0x0015bc00310095bd")): 1,
            ("tamper", dev("0x0015bc00310095bd")): 0,
            ("temperature_celsius", dev("0x0015bc00310095bd")): 24.06,
            ("test", dev("0x0015bc00310095bd")): 1,
            ("trouble", dev("0x0015bc00310095bd")): 0,
            ("voltage_volts", dev("0x0015bc00310095bd")): 3100 / 1000,
        },
    ),
    (
        Z2M,
        "smoke_xiaomi_device_object",
        {},
        {
            ("battery_ratio", dev("Smoke")): 1.0,
            ("voltage_volts", dev("Smoke")): 3075 / 1000,
            ("link_quality", dev("Smoke")): 81,
            ("smoke", dev("Smoke")): 0,
        },
    ),
    (
        Z2M,
        "air_quality",
        {},
        {
            ("co2_ppm", dev("Air Quality Sensor")): 363,
            ("formaldehyd", dev("Air Quality Sensor")): 1,
            ("humidity_ratio", dev("Air Quality Sensor")): 50 / 100,
            ("link_quality", dev("Air Quality Sensor")): 255,
            ("temperature_celsius", dev("Air Quality Sensor")): 21,
            ("voc", dev("Air Quality Sensor")): 2,
        },
    ),
    (
        Z2M,
        "motion_illuminance",
        {},
        {
            ("illuminance_lux", dev("0x00158d0002b43af8")): 1000,
            ("link_quality", dev("0x00158d0002b43af8")): 68,
            ("occupancy", dev("0x00158d0002b43af8")): 1,
        },
    ),
    (Z2M, "bridge_state_legacy", {}, {("up", dev("bridge")): 1}),
    (Z2M, "bridge_state_json", {}, {("up", dev("bridge")): 1}),
    (Z2M, "bridge_config", {}, {}),
    (Z2M, "availability_json_nested_name", {}, {("up", dev("kitchen/floor_light")): 0}),
    (Z2M, "availability_legacy", {}, {("up", dev("0xa4c1389d9b178ece")): 1}),
    (Z2M, "set_command", {}, {}),
    # ------------------------------------------------------------ tasmota
    (
        "tasmota",
        "si7021_bme280",
        {},
        {
            ("temperature_celsius", dev("sonoff-test", sensor="SI7021")): 7.5,
            ("humidity_ratio", dev("sonoff-test", sensor="SI7021")): 81.5 / 100,
            ("temperature_celsius", dev("sonoff-test", sensor="BME280")): 8.2,
            ("humidity_ratio", dev("sonoff-test", sensor="BME280")): 76.7 / 100,
            ("pressure_pascals", dev("sonoff-test", sensor="BME280")): 993.2 * 100,
        },
    ),
    (
        "tasmota",
        "dht11_dewpoint",
        {},
        {
            ("temperature_celsius", dev("tasmota_C57651", sensor="DHT11")): 20.0,
            ("humidity_ratio", dev("tasmota_C57651", sensor="DHT11")): 60.0 / 100,
            ("dew_point_celsius", dev("tasmota_C57651", sensor="DHT11")): 12.0,
        },
    ),
    (
        "tasmota",
        "dht11_fahrenheit",
        {},
        {
            ("temperature_celsius", dev("tasmota_C57651", sensor="DHT11")): (68.0 - 32) * 5 / 9,
            ("humidity_ratio", dev("tasmota_C57651", sensor="DHT11")): 60.0 / 100,
            ("dew_point_celsius", dev("tasmota_C57651", sensor="DHT11")): (53.6 - 32) * 5 / 9,
        },
    ),
    (
        "tasmota",
        "bme680",
        {},
        {
            ("temperature_celsius", dev("sonoff", sensor="BME680")): 23.2,
            ("humidity_ratio", dev("sonoff", sensor="BME680")): 53.7 / 100,
            ("pressure_pascals", dev("sonoff", sensor="BME680")): 1018.1 * 100,
            ("gas", dev("sonoff", sensor="BME680")): 39.10,
        },
    ),
    (
        "tasmota",
        "ds18b20_bmp280_mmhg",
        {},
        {
            ("temperature_celsius", dev("tasmota_794BE8", sensor="DS18B20-1")): 21.125,
            ("temperature_celsius", dev("tasmota_794BE8", sensor="DS18B20-2")): 20.438,
            ("temperature_celsius", dev("tasmota_794BE8", sensor="BMP280")): 28.520,
            # conventional millimetre of mercury (NIST SP 811): 133.322387415 Pa
            ("pressure_pascals", dev("tasmota_794BE8", sensor="BMP280")): 753.3 * 133.322387415,
            ("position", dev("tasmota_794BE8", sensor="Shutter1")): 50,
            ("direction", dev("tasmota_794BE8", sensor="Shutter1")): 0,
            ("target", dev("tasmota_794BE8", sensor="Shutter1")): 50,
            ("tilt", dev("tasmota_794BE8", sensor="Shutter1")): 0,
            ("top", dev("tasmota_794BE8", sensor="TERMOSENSORS")): 21.125,
            ("bottom", dev("tasmota_794BE8", sensor="TERMOSENSORS")): 20.438,
        },
    ),
    (
        "tasmota",
        "energy_pow",
        {},
        {
            ("energy_joules_total", dev("pow1", sensor="ENERGY")): 235.743 * KWH,
            ("energy_yesterday_joules", dev("pow1", sensor="ENERGY")): 0.037 * KWH,
            ("energy_today_joules", dev("pow1", sensor="ENERGY")): 0.002 * KWH,
            ("power_watts", dev("pow1", sensor="ENERGY")): 1,
            ("apparent_power_voltamperes", dev("pow1", sensor="ENERGY")): 16,
            ("reactive_power_voltamperes_reactive", dev("pow1", sensor="ENERGY")): 16,
            ("power_factor_ratio", dev("pow1", sensor="ENERGY")): 0.06,
            ("voltage_volts", dev("pow1", sensor="ENERGY")): 121,
            ("current_amperes", dev("pow1", sensor="ENERGY")): 0.136,
        },
    ),
    (
        "tasmota",
        "energy_two_channels",
        {},
        {
            ("switch1", dev("shelly25")): 0,  # "OFF"
            ("switch2", dev("shelly25")): 0,
            ("temperature_celsius", dev("shelly25", sensor="ANALOG")): 52.5,
            ("energy_joules_total", dev("shelly25", sensor="ENERGY")): 3.262 * KWH,
            ("energy_yesterday_joules", dev("shelly25", sensor="ENERGY")): 0.0,
            ("energy_today_joules", dev("shelly25", sensor="ENERGY")): 0.005 * KWH,
            ("power_watts", dev("shelly25", sensor="ENERGY", channel="1")): 23.63,
            ("power_watts", dev("shelly25", sensor="ENERGY", channel="2")): 67.17,
            ("apparent_power_voltamperes", dev("shelly25", sensor="ENERGY", channel="1")): 23.63,
            ("apparent_power_voltamperes", dev("shelly25", sensor="ENERGY", channel="2")): 67.17,
            (
                "reactive_power_voltamperes_reactive",
                dev("shelly25", sensor="ENERGY", channel="1"),
            ): 0,
            (
                "reactive_power_voltamperes_reactive",
                dev("shelly25", sensor="ENERGY", channel="2"),
            ): 0,
            ("power_factor_ratio", dev("shelly25", sensor="ENERGY", channel="1")): 1.0,
            ("power_factor_ratio", dev("shelly25", sensor="ENERGY", channel="2")): 1.0,
            ("voltage_volts", dev("shelly25", sensor="ENERGY")): 229.3,
            ("current_amperes", dev("shelly25", sensor="ENERGY", channel="1")): 0.103,
            ("current_amperes", dev("shelly25", sensor="ENERGY", channel="2")): 0.293,
        },
    ),
    (
        "tasmota",
        "state",
        {},
        {
            ("uptime_seconds", dev("tasmota_228C3D")): 2437300,
            ("relay_on", dev("tasmota_228C3D", channel="1")): 0,
            ("relay_on", dev("tasmota_228C3D", channel="2")): 0,
            ("signal_strength_dbm", dev("tasmota_228C3D")): -58,  # Signal, not RSSI (84 %)
        },
    ),
    (
        "tasmota",
        "state_single_relay",
        {},
        {
            ("uptime_seconds", dev("winkel")): 743,
            ("relay_on", dev("winkel", channel="1")): 1,  # POWER is channel 1
            ("signal_strength_dbm", dev("winkel")): -48,
        },
    ),
    (
        "tasmota",
        "state_old_firmware",
        {},
        {("relay_on", dev("42", channel=str(n))): 0 for n in range(1, 5)},
    ),
    ("tasmota", "lwt_online", {}, {("up", dev("plug001")): 1}),
    ("tasmota", "lwt_offline", {}, {("up", dev("plug001")): 0}),
    # ------------------------------------------------------------ esphome
    (
        "esphome",
        "temperature",
        {},
        {("temperature_celsius", dev("weather-sensor", sensor="temperature")): 21.4},
    ),
    (
        "esphome",
        "pressure",
        {},
        {("pressure_pascals", dev("weather-sensor", sensor="pressure")): 1013.2 * 100},
    ),
    (
        "esphome",
        "humidity",
        {},
        {("humidity_ratio", dev("weather-sensor", sensor="humidity")): 45.7 / 100},
    ),
    (
        "esphome",
        "wifi_signal",
        {},
        {("signal_strength_dbm", dev("heater", sensor="heater_wifi_signal")): -67},
    ),
    ("esphome", "pir_on", {}, {("occupancy", dev("esp_spisebord", sensor="spisebord_pir")): 1}),
    ("esphome", "status_online", {}, {("up", dev("weather-sensor")): 1}),
    ("esphome", "status_offline", {}, {("up", dev("esp_spisebord")): 0}),
    # ------------------------------------------------------------ shelly gen1
    (
        "shelly_gen1",
        "plug_power",
        {},
        {("power_watts", dev("shellyplug-s-XXYYYY", channel="0")): 5.56},
    ),
    ("shelly_gen1", "relay_on", {}, {("relay_on", dev("shelly1-XXXXXX", channel="0")): 1}),
    (
        "shelly_gen1",
        "relay_energy",
        {},
        {("energy_joules_total", dev("shelly1pm-BA1936", channel="0")): 1200 * 60},  # W·min
    ),
    ("shelly_gen1", "online_true", {}, {("up", dev("shelly1-XXXXXX")): 1}),
    ("shelly_gen1", "online_false", {}, {("up", dev("shellyswitch-YYYYYY")): 0}),
    (
        "shelly_gen1",
        "device_temperature",
        {},
        {("device_temperature_celsius", dev("shellydimmer2-XXX")): 52.13},
    ),
    ("shelly_gen1", "dw_state_open", {}, {("door_open", dev("shellydw2-A4CF12F43189")): 1}),
    ("shelly_gen1", "dw_state_close", {}, {("door_open", dev("shellydw2-A4CF12F43189")): 0}),
    ("shelly_gen1", "dw_lux", {}, {("illuminance_lux", dev("shellydw2-A4CF12F43189")): 380}),
    ("shelly_gen1", "ht_humidity", {}, {("humidity_ratio", dev("shellyht-bedroom")): 0.60}),
    ("shelly_gen1", "ht_temperature", {}, {("temperature_celsius", dev("shellyht-bedroom")): 22.0}),
    ("shelly_gen1", "ht_battery", {}, {("battery_ratio", dev("shellyht-bedroom")): 1.0}),
    # ------------------------------------------------------------ shelly gen2
    (
        "shelly_gen2",
        "switch_status",
        {},
        {
            ("relay_on", dev("shelly1pmmini-Solarthermie", component="switch:0")): 1,
            ("power_watts", dev("shelly1pmmini-Solarthermie", component="switch:0")): 3.8,
            ("voltage_volts", dev("shelly1pmmini-Solarthermie", component="switch:0")): 230.9,
            ("current_amperes", dev("shelly1pmmini-Solarthermie", component="switch:0")): 0.029,
            ("frequency_hertz", dev("shelly1pmmini-Solarthermie", component="switch:0")): 50.1,
            ("energy_joules_total", dev("shelly1pmmini-Solarthermie", component="switch:0")): (
                26064.252 * WH
            ),
            (
                "device_temperature_celsius",
                dev("shelly1pmmini-Solarthermie", component="switch:0"),
            ): (42.3),
        },
    ),
    (
        "shelly_gen2",
        "temperature",
        {},
        {
            (
                "temperature_celsius",
                dev("shellyplusht-b8d61a8b17cc", component="temperature:0"),
            ): 19.8
        },
    ),
    (
        "shelly_gen2",
        "humidity",
        {},
        {("humidity_ratio", dev("shellyplusht-b8d61a8b17cc", component="humidity:0")): 0.422},
    ),
    (
        "shelly_gen2",
        "devicepower",
        {},
        {
            ("battery_ratio", dev("shellyplusht-b8d61a8b17cc", component="devicepower:0")): 0.0,
            ("voltage_volts", dev("shellyplusht-b8d61a8b17cc", component="devicepower:0")): 0.43,
        },
    ),
    (
        "shelly_gen2",
        "em_three_phase",
        {},
        {
            (name, dev("shellypro3em-office", component="em:0", phase=phase)): value
            for phase, values in {
                "a": (0.252, 240.3, 5.8, 60.5, 0.52, 49.9),
                "b": (0.207, 233.3, 0.0, 48.4, 0.51, 49.9),
                "c": (0.522, 243.0, 76.0, 126.8, 0.71, 49.9),
            }.items()
            for name, value in zip(
                (
                    "current_amperes",
                    "voltage_volts",
                    "power_watts",
                    "apparent_power_voltamperes",
                    "power_factor_ratio",
                    "frequency_hertz",
                ),
                values,
                strict=True,
            )
        },
    ),
    (
        "shelly_gen2",
        "em1",
        {},
        {
            ("current_amperes", dev("shellyproem50-office", component="em1:0")): 0.08,
            ("voltage_volts", dev("shellyproem50-office", component="em1:0")): 234.9,
            ("power_watts", dev("shellyproem50-office", component="em1:0")): 0,
            ("apparent_power_voltamperes", dev("shellyproem50-office", component="em1:0")): 18.7,
            ("power_factor_ratio", dev("shellyproem50-office", component="em1:0")): 0,
            ("frequency_hertz", dev("shellyproem50-office", component="em1:0")): 50,
        },
    ),
    (
        "shelly_gen2",
        "wifi",
        {},
        {("signal_strength_dbm", dev("shellyplus1pm-WaMaTrockner", component="wifi")): -88},
    ),
    ("shelly_gen2", "online", {}, {("up", dev("shellyplus1pm-WaMaTrockner")): 1}),
    ("shelly_gen2", "online_false", {}, {("up", dev("shelly1pmmini-Solarthermie")): 0}),
]


@pytest.mark.parametrize(
    ("profile", "sample", "settings_", "expected"),
    SAMPLES,
    ids=[f"{p}/{s}" for p, s, _, _ in SAMPLES],
)
def test_real_samples(
    profile: str, sample: str, settings_: dict[str, Any], expected: dict[Key, float]
) -> None:
    compiled = sub(profile, **settings_)
    message = load(DATA / profile / f"{sample}.msg")
    assert compiled.matches(message.topic)
    outcome = compiled.parse(message)
    assert outcome.problems == ()
    assert_readings(outcome, expected)


def test_every_sample_file_is_in_a_table() -> None:
    tabled = {(p, s) for p, s, _, _ in SAMPLES} | {
        ("esphome", "gas_nan"),
        ("shelly_gen1", "announce"),
    }
    on_disk = {(f.parent.name, f.stem) for f in DATA.glob("*/*.msg")}
    assert on_disk == tabled


def test_esphome_nan_is_a_problem_not_a_reading() -> None:
    outcome = sub("esphome").parse(load(DATA / "esphome" / "gas_nan.msg"))
    assert outcome.readings == ()
    assert reasons(outcome) == [BadPayload.NOT_FINITE]
    assert "bedroom_gas" in outcome.problems[0].detail


def test_shelly_gen1_announce_is_not_subscribed() -> None:
    compiled = sub("shelly_gen1")
    message = load(DATA / "shelly_gen1" / "announce.msg")
    assert not compiled.matches(message.topic)
    assert reasons(compiled.parse(message)) == [BadPayload.TOPIC_MISMATCH]


def test_energy_is_a_counter_and_the_rest_gauges() -> None:
    outcome = sub(Z2M).parse(load(DATA / Z2M / "plug_ts011f.msg"))
    k = kinds(outcome)
    assert k.pop("energy_joules_total") == "counter"
    assert set(k.values()) == {"gauge"}
    outcome = sub("shelly_gen2").parse(load(DATA / "shelly_gen2" / "switch_status.msg"))
    assert kinds(outcome)["energy_joules_total"] == "counter"


def test_vocabulary_help_is_the_same_for_every_profile() -> None:
    seen: dict[str, str] = {}
    for profile, sample, settings_, _ in SAMPLES:
        for r in sub(profile, **settings_).parse(load(DATA / profile / f"{sample}.msg")).readings:
            assert r.help, r.name
            assert seen.setdefault(r.name, r.help) == r.help, r.name


# --------------------------------------------------------------------------- profile details


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        # battery device: mV; a plug (power/current/energy present): V
        ('{"voltage": 3000}', {("voltage_volts", dev("d")): 3.0}),
        ('{"voltage": 230.5, "power": 10}', {
            ("voltage_volts", dev("d")): 230.5, ("power_watts", dev("d")): 10}),
        ('{"contact": false}', {("door_open", dev("d")): 1}),
        ('{"water_leak": true, "smoke": true, "tamper": true, "battery_low": true}', {
            ("water_leak", dev("d")): 1, ("smoke", dev("d")): 1,
            ("tamper", dev("d")): 1, ("battery_low", dev("d")): 1}),
        # 1.x: illuminance raw, illuminance_lux in lx -> only the latter
        ('{"illuminance": 25000, "illuminance_lux": 316}', {("illuminance_lux", dev("d")): 316}),
        ('{"device_temperature": 31, "local_temperature": 20.5}', {
            ("device_temperature_celsius", dev("d")): 31,
            ("local_temperature_celsius", dev("d")): 20.5}),
        # cover state is not a relay; ON/OFF is
        ('{"state": "OPEN", "position": 40}', {("position", dev("d")): 40}),
        ('{"state": "on"}', {("relay_on", dev("d")): 1}),
        ('{"last_seen": 1765292604979, "elapsed": 156, "action": "single"}', {}),
    ],
)  # fmt: skip
def test_zigbee2mqtt_fields(payload: str, expected: dict[Key, float]) -> None:
    outcome = sub(Z2M).parse(Message("zigbee2mqtt/d", payload.encode()))
    assert outcome.problems == ()
    assert_readings(outcome, expected)


@pytest.mark.parametrize(
    ("topic", "routed"),
    [
        ("zigbee2mqtt/bridge/devices", "ignored"),
        ("zigbee2mqtt/bridge/request/permit_join", "ignored"),
        ("zigbee2mqtt/lamp/set", "ignored"),
        ("zigbee2mqtt/lamp/get", "ignored"),
        ("zigbee2mqtt/lamp/set/state", "ignored"),
        ("zigbee2mqtt/lamp/update", "ignored"),
        ("zigbee2mqtt/floor1/kitchen/lamp", "device floor1/kitchen/lamp"),
        ("zigbee2mqtt/floor1/kitchen/lamp/availability", "availability floor1/kitchen/lamp"),
        ("zigbee2mqtt", "mismatch"),
        ("other/lamp", "mismatch"),
    ],
)
def test_zigbee2mqtt_topics(topic: str, routed: str) -> None:
    compiled = sub(Z2M)
    outcome = compiled.parse(Message(topic, b'{"state":"online","temperature":1}'))
    if routed == "ignored":
        assert compiled.matches(topic)
        assert outcome == ParseOutcome()
    elif routed == "mismatch":
        assert not compiled.matches(topic)
        assert reasons(outcome) == [BadPayload.TOPIC_MISMATCH]
    else:
        kind, name = routed.split(" ")
        assert compiled.matches(topic)
        got = readings(outcome)
        metric = "up" if kind == "availability" else "temperature_celsius"
        assert (metric, dev(name)) in got


def test_zigbee2mqtt_ignored_topic_skips_size_and_decoding() -> None:
    compiled = sub(Z2M, max_payload_bytes=16)
    huge = Message("zigbee2mqtt/bridge/devices", b"\xff" * 100_000)
    assert compiled.parse(huge) == ParseOutcome()


def test_tasmota_units() -> None:
    compiled = sub("tasmota")
    inhg = compiled.parse(
        Message("tele/x/SENSOR", b'{"BMP280":{"Pressure":29.92},"PressureUnit":"inHg"}')
    )
    assert readings(inhg)[("pressure_pascals", dev("x", sensor="BMP280"))] == pytest.approx(
        29.92 * 3386.389
    )
    unknown = compiled.parse(
        Message("tele/x/SENSOR", b'{"DS18B20":{"Temperature":300,"Humidity":40},"TempUnit":"K"}')
    )
    assert reasons(unknown) == [BadPayload.UNKNOWN_VALUE]
    assert "TempUnit" in unknown.problems[0].detail
    # the temperature cannot be converted and is left out; humidity is fine
    assert readings(unknown) == {("humidity_ratio", dev("x", sensor="DS18B20")): 0.4}


@pytest.mark.parametrize(
    ("object_id", "binary", "metric", "factor"),
    [
        ("outdoor_temperature", False, "temperature_celsius", 1.0),
        ("cpu-temp", False, "temperature_celsius", 1.0),
        ("living_room_humidity", False, "humidity_ratio", 0.01),
        ("bme280_pressure", False, "pressure_pascals", 100.0),
        ("battery_voltage", False, "voltage_volts", 1.0),  # voltage before battery
        ("battery_level", False, "battery_ratio", 0.01),
        ("pzem_power_factor", False, "power_factor_ratio", 1.0),
        ("pzem_power", False, "power_watts", 1.0),
        ("scd30_co2", False, "co2_ppm", 1.0),
        ("bh1750_illuminance", False, "illuminance_lux", 1.0),
        ("dew_point", False, "dew_point_celsius", 1.0),
        ("template_counter", False, "value", 1.0),  # "template" is not "temp"
        ("front_door", True, "door_open", 1.0),
        ("window_contact", True, "door_open", 1.0),
        ("washer_leak", True, "water_leak", 1.0),
        ("kitchen_smoke", True, "smoke", 1.0),
        ("hall_motion", True, "occupancy", 1.0),
        ("case_tamper", True, "tamper", 1.0),
        ("button_1", True, "state", 1.0),
    ],
)
def test_esphome_object_id_keywords(
    object_id: str, binary: bool, metric: str, factor: float
) -> None:
    assert esphome_metric(object_id, binary) == (metric, factor)


def test_esphome_generic_sensor_keeps_its_object_id() -> None:
    compiled = sub("esphome")
    outcome = compiled.parse(Message("node1/sensor/template_counter/state", b"17"))
    assert readings(outcome) == {("value", dev("node1", sensor="template_counter")): 17}
    outcome = compiled.parse(Message("node1/binary_sensor/button_1/state", b"OFF"))
    assert readings(outcome) == {("state", dev("node1", sensor="button_1")): 0}


@pytest.mark.parametrize(
    ("topic", "payload", "expected"),
    [
        ("shellies/em/emeter/1/total", b"1000.5", {
            ("energy_joules_total", dev("em", channel="1")): 1000.5 * WH}),
        ("shellies/em/emeter/0/pf", b"0.93", {
            ("power_factor_ratio", dev("em", channel="0")): 0.93}),
        ("shellies/em/emeter/0/energy", b"60", {}),  # W·min since boot; `total` is the counter
        ("shellies/s1/ext_temperature/2", b"19.25", {
            ("temperature_celsius", dev("s1", channel="2")): 19.25}),
        ("shellies/s1/ext_humidity/0", b"55", {("humidity_ratio", dev("s1", channel="0")): 0.55}),
        ("shellies/s1/input/0", b"1", {("input", dev("s1", channel="0")): 1}),
        ("shellies/s1/relay/0", b"overpower", {("relay_on", dev("s1", channel="0")): 0}),
        ("shellies/flood/sensor/flood", b"true", {("water_leak", dev("flood")): 1}),
        ("shellies/motion/sensor/motion", b"false", {("occupancy", dev("motion")): 0}),
        ("shellies/dw/sensor/tilt", b"15", {("tilt", dev("dw")): 15}),
        ("shellies/ht/sensor/act_reasons", b'["sensor"]', {}),  # not a value: skipped silently
    ],
)  # fmt: skip
def test_shelly_gen1_topics(topic: str, payload: bytes, expected: dict[Key, float]) -> None:
    outcome = sub("shelly_gen1").parse(Message(topic, payload))
    assert outcome.problems == ()
    assert_readings(outcome, expected)


def test_shelly_gen2_unknown_components_are_ignored() -> None:
    compiled = sub("shelly_gen2")
    assert compiled.parse(Message("dev/status/ble", b"{}")) == ParseOutcome()
    assert compiled.parse(Message("dev/status/script:1", b'{"running":true}')) == ParseOutcome()
    outcome = compiled.parse(
        Message("dev/status/emdata:0", b'{"id":0,"a_total_act_energy":10.5,"total_act":30}')
    )
    assert readings(outcome) == {
        ("energy_joules_total", dev("dev", component="emdata:0", phase="a")): 10.5 * WH
    }


# --------------------------------------------------------------------------- templates


@pytest.mark.parametrize(
    ("profile", "topic", "group", "filters"),
    [
        (Z2M, None, None, [("zigbee2mqtt/#", 1)]),
        (Z2M, "site1/z2m", "cc", [
            ("$share/cc/site1/z2m/#", 1),
            ("site1/z2m/bridge/state", 1),
            ("site1/z2m/+/availability", 1),
            ("site1/z2m/+/+/availability", 1),
            ("site1/z2m/+/+/+/availability", 1),
            ("site1/z2m/+/+/+/+/availability", 1),
        ]),
        ("tasmota", None, "cc", [
            ("$share/cc/tele/+/SENSOR", 1), ("$share/cc/tele/+/STATE", 1), ("tele/+/LWT", 1)]),
        ("tasmota", "{site}/tasmota/{device}/tele", None, [
            ("+/tasmota/+/tele/SENSOR", 1), ("+/tasmota/+/tele/STATE", 1),
            ("+/tasmota/+/tele/LWT", 1)]),
        ("esphome", None, "g", [
            ("$share/g/+/sensor/+/state", 1), ("$share/g/+/binary_sensor/+/state", 1),
            ("+/status", 1)]),
        ("shelly_gen2", "office/{device}", "g", [
            ("$share/g/office/+/status/+", 1), ("office/+/online", 1)]),
        ("json", "sensors/{room}/{path*}", "g", [("$share/g/sensors/+/#", 1)]),
        ("number", "plant/boiler/temp", None, [("plant/boiler/temp", 1)]),
    ],
)  # fmt: skip
def test_filters(
    profile: str, topic: str | None, group: str | None, filters: list[tuple[str, int]]
) -> None:
    kw: dict[str, Any] = {"qos": 1, "shared_group": group}
    if topic is not None:
        kw["topic"] = topic
    if profile == "json":
        kw["flatten"] = {}
    if profile == "number":
        kw["metric"] = "boiler_temperature_celsius"
    assert list(sub(profile, **kw).filters) == filters


def test_shelly_gen1_filters_keep_online_plain() -> None:
    filters = dict(sub("shelly_gen1", shared_group="g").filters)
    assert "shellies/+/online" in filters
    assert "$share/g/shellies/+/relay/+/power" in filters
    assert all(f.startswith("$share/g/") for f in filters if not f.endswith("/online"))


@pytest.mark.parametrize(
    ("template", "topic", "labels"),
    [
        ("sensors/{site}/{room}/temp", "sensors/hq/server-room/temp",
         L(site="hq", room="server-room")),
        ("sensors/{path*}", "sensors/a/b/c", L(path="a/b/c")),
        ("{site}/{path*}", "hq/rack1/pdu/a", L(site="hq", path="rack1/pdu/a")),
        ("sensors/{path*}", "sensors/a//c", L(path="a//c")),
        ("sensors/{room}/temp", "sensors/hq/humidity", None),
        ("sensors/{room}/temp", "sensors//temp", None),  # empty identity level
        ("sensors/{path*}", "sensors", None),  # at least one level
        ("sensors/{room}", "sensors/a/b", None),
        ("{site}/temp", "$SYS/temp", None),  # wildcards never match $ topics
        ("$SYS/{stat}", "$SYS/uptime", L(stat="uptime")),
    ],
)  # fmt: skip
def test_template_labels(
    template: str, topic: str, labels: tuple[tuple[str, str], ...] | None
) -> None:
    compiled = sub("number", topic=template, metric="v", value_map={})
    outcome = compiled.parse(Message(topic, b"1"))
    if labels is None:
        assert not compiled.matches(topic)
        assert reasons(outcome) == [BadPayload.TOPIC_MISMATCH]
    else:
        assert compiled.matches(topic)
        assert [(r.name, r.labels) for r in outcome.readings] == [(PREFIX + "v", labels)]


def test_template_labels_come_before_profile_labels() -> None:
    compiled = sub("tasmota", topic="{site}/tele/{device}")
    outcome = compiled.parse(Message("hq/tele/plug/STATE", b'{"POWER":"ON"}'))
    assert outcome.readings[0].labels == (("site", "hq"), ("device", "plug"), ("channel", "1"))


@pytest.mark.parametrize(
    ("profile", "topic", "group", "message"),
    [
        ("number", "a/{x*}/b", None, "last level"),
        ("tasmota", "tele/{device*}", None, "only for profiles json and number"),
        ("number", "a/{1x}", None, "label name"),
        ("number", "a/{__x}", None, "label name"),
        ("number", "a/{x}/{x}", None, "twice"),
        ("number", "a/+/b", None, "placeholder"),
        ("number", "a/#", None, "placeholder"),
        ("number", "a/dev-{x}", None, "placeholder"),
        ("tasmota", "tele/{sensor}", None, "sets label"),
        (Z2M, "{device}/z2m", None, "sets label"),
        ("number", "a/b", "bad/group", "shared_group"),
        ("number", "a/b", "", "shared_group"),
    ],
)
def test_bad_templates(profile: str, topic: str, group: str | None, message: str) -> None:
    kw: dict[str, Any] = {"topic": topic, "shared_group": group}
    if profile == "number":
        kw["metric"] = "v"
    with pytest.raises(ValueError, match=message):
        sub(profile, **kw)


@pytest.mark.parametrize(
    ("profile", "topic", "label"),
    [("tasmota", None, "device"), ("tasmota", None, "channel"), ("json", "a/{room}", "room")],
)
def test_static_labels_may_not_repeat_mapping_labels(
    profile: str, topic: str | None, label: str
) -> None:
    kw: dict[str, Any] = {"labels": {label: "x"}}
    if topic is not None:
        kw.update(topic=topic, flatten={})
    with pytest.raises(ValueError, match="already sets"):
        sub(profile, **kw)


def test_module_docstring_example() -> None:
    payload = (
        b'{"temperature":4.2,"humidity":61,"battery":90,'
        b'"voltage":2995,"contact":true,"linkquality":72}'
    )
    outcome = sub(Z2M).parse(Message("zigbee2mqtt/kitchen/fridge", payload))
    assert [(r.name, r.labels, r.value) for r in outcome.readings] == [
        (PREFIX + "temperature_celsius", dev("kitchen/fridge"), 4.2),
        (PREFIX + "humidity_ratio", dev("kitchen/fridge"), 0.61),
        (PREFIX + "battery_ratio", dev("kitchen/fridge"), 0.9),
        (PREFIX + "voltage_volts", dev("kitchen/fridge"), 2.995),
        (PREFIX + "door_open", dev("kitchen/fridge"), 0),
        (PREFIX + "link_quality", dev("kitchen/fridge"), 72),
    ]
    outcome = sub("tasmota").parse(
        Message("tele/plug-3/SENSOR", b'{"ENERGY":{"Total":1.5,"Power":40}}')
    )
    assert [(r.name, r.value) for r in outcome.readings] == [
        (PREFIX + "energy_joules_total", 5.4e6),
        (PREFIX + "power_watts", 40),
    ]
    outcome = sub("shelly_gen1").parse(Message("shellies/shellyht-1/online", b"false"))
    assert [(r.name, r.labels, r.value) for r in outcome.readings] == [
        (PREFIX + "up", dev("shellyht-1"), 0)
    ]


def test_non_finite_value_map_is_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        sub("number", topic="a", metric="v", value_map={"broken": math.nan})


# --------------------------------------------------------------------------- values


def number(payload: bytes, **kw: Any) -> ParseOutcome:
    kw.setdefault("metric", "v")
    return sub("number", topic="a/{device}", **kw).parse(Message("a/d", payload))


def value_of(outcome: ParseOutcome) -> float:
    assert outcome.problems == (), outcome.problems
    (reading,) = outcome.readings
    return reading.value


@pytest.mark.parametrize(
    ("payload", "value"),
    [
        (b"21.5", 21.5),
        (b" -3 \n", -3.0),
        (b"1e3", 1000.0),
        (b".5", 0.5),
        (b"ON", 1.0),
        (b"off", 0.0),
        (b"True", 1.0),
        (b"FALSE", 0.0),
        (b"Open", 1.0),
        (b"opened", 1.0),
        (b"CLOSED", 0.0),
        (b"close", 0.0),
        (b"online", 1.0),
        (b"Offline", 0.0),
        (b"yes", 1.0),
        (b"NO", 0.0),
        (b"detected", 1.0),
        (b"clear", 0.0),
        (b"wet", 1.0),
        (b"dry", 0.0),
        (b"locked", 1.0),
        (b"UNLOCKED", 0.0),
    ],
)
def test_builtin_values(payload: bytes, value: float) -> None:
    assert value_of(number(payload)) == value


def test_value_map_is_case_insensitive_and_wins() -> None:
    vmap = {"Heating": 2, "ON": 5}
    assert value_of(number(b"heating", value_map=vmap)) == 2
    assert value_of(number(b"HEATING", value_map=vmap)) == 2
    assert value_of(number(b"on", value_map=vmap)) == 5  # over the built-in 1
    assert value_of(number(b"off", value_map=vmap)) == 0  # built-ins still apply


def test_value_map_applies_inside_profiles() -> None:
    compiled = sub("esphome", value_map={"idle": 0, "running": 1})
    outcome = compiled.parse(Message("pump/binary_sensor/pump_state/state", b"Running"))
    assert readings(outcome) == {("state", dev("pump", sensor="pump_state")): 1}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"maybe", BadPayload.UNKNOWN_VALUE),
        (b"1_000", BadPayload.UNKNOWN_VALUE),  # float() would take it
        ("\u0661\u0662".encode(), BadPayload.UNKNOWN_VALUE),  # Arabic-Indic digits
        (b"null", BadPayload.UNKNOWN_VALUE),
        (b"nan", BadPayload.NOT_FINITE),
        (b"-Infinity", BadPayload.NOT_FINITE),
        (b"1e999", BadPayload.NOT_FINITE),
        (b'{"v": 1}', BadPayload.WRONG_TYPE),
        (b"[1]", BadPayload.WRONG_TYPE),
    ],
)
def test_number_problems(payload: bytes, reason: BadPayload) -> None:
    outcome = number(payload)
    assert outcome.readings == ()
    assert reasons(outcome) == [reason]


def test_scale_then_offset() -> None:
    assert value_of(number(b"250", scale=0.1, offset=-40)) == pytest.approx(-15.0)
    assert value_of(number(b"on", scale=10, offset=1)) == 11
    assert reasons(number(b"1e300", scale=1e300)) == [BadPayload.NOT_FINITE]


# --------------------------------------------------------------------------- json profile


def json_sub(**kw: Any) -> CompiledSubscription:
    return sub("json", topic="rack/{device}", **kw)


def test_json_fields() -> None:
    compiled = json_sub(
        fields=[
            {"path": "ENERGY.Power", "metric": "power_watts"},
            {"path": "ENERGY.Total", "metric": "energy_joules_total", "type": "counter",
             "scale": KWH, "help": "Energy."},
            {"path": "sensors.1.t", "metric": "inlet_temperature_celsius",
             "scale": 0.1, "offset": -1},
            {"path": "door", "metric": "door_open"},
        ],
    )  # fmt: skip
    payload = {
        "ENERGY": {"Power": 120, "Total": 2.5},
        "sensors": [{"t": 200}, {"t": 215}],
        "door": "Closed",
    }
    outcome = compiled.parse(Message("rack/r1", json.dumps(payload).encode()))
    assert outcome.problems == ()
    assert_readings(
        outcome,
        {
            ("power_watts", L(device="r1")): 120,
            ("energy_joules_total", L(device="r1")): 2.5 * KWH,
            ("inlet_temperature_celsius", L(device="r1")): 215 * 0.1 - 1,
            ("door_open", L(device="r1")): 0,
        },
    )
    energy = next(r for r in outcome.readings if r.name.endswith("energy_joules_total"))
    assert (energy.kind, energy.help) == ("counter", "Energy.")


@pytest.mark.parametrize(
    ("payload", "reason", "detail"),
    [
        (b'{"a": 1}', BadPayload.UNKNOWN_FIELD, "x.y: missing"),
        (b'{"x": {"z": 1}}', BadPayload.UNKNOWN_FIELD, "x.y: missing"),
        (b'{"x": 5}', BadPayload.UNKNOWN_FIELD, "x.y: missing"),
        (b'{"x": {"y": {"z": 1}}}', BadPayload.WRONG_TYPE, "x.y: object"),
        (b'{"x": {"y": [1, 2]}}', BadPayload.WRONG_TYPE, "x.y: array"),
        (b'{"x": {"y": null}}', BadPayload.WRONG_TYPE, "x.y: null"),
        (b'{"x": {"y": "maybe"}}', BadPayload.UNKNOWN_VALUE, "x.y: string of 5 chars"),
        (b'{"x": {"y": NaN}}', BadPayload.NOT_FINITE, "x.y"),
        (b'{"x": {"y": 1e400}}', BadPayload.NOT_FINITE, "x.y"),
        (b'{"x": {"y": ' + b"9" * 400 + b"}}", BadPayload.NOT_FINITE, "x.y"),  # int > float
        (b"42", BadPayload.WRONG_TYPE, "payload: int"),
        (b"not json", BadPayload.NOT_JSON, "not valid JSON"),
        (b"[" * 100_000, BadPayload.NOT_JSON, "not valid JSON"),  # RecursionError inside json
        (b"1" * 5000, BadPayload.NOT_JSON, "not valid JSON"),  # over int digit limit
    ],
)
def test_json_field_problems(payload: bytes, reason: BadPayload, detail: str) -> None:
    compiled = json_sub(fields=[{"path": "x.y", "metric": "v"}], max_payload_bytes=1_000_000)
    outcome = compiled.parse(Message("rack/r1", payload))
    assert outcome.readings == ()
    assert reasons(outcome) == [reason]
    assert detail in outcome.problems[0].detail


def test_json_good_and_bad_fields_together() -> None:
    compiled = json_sub(
        fields=[{"path": "a", "metric": "a"}, {"path": "b", "metric": "b"}],
    )
    outcome = compiled.parse(Message("rack/r1", b'{"a": 1, "b": "??"}'))
    assert readings(outcome) == {("a", L(device="r1")): 1}
    assert reasons(outcome) == [BadPayload.UNKNOWN_VALUE]


def test_json_flatten() -> None:
    payload = {
        "Time": "2024-01-01T00:00:00",
        "ENERGY": {"Power": 40, "Voltage": 231.5, "Total": 1.2},
        "Wifi": {"RSSI": 80, "SSId": "office"},
        "POWER": "ON",
        "sensors": [{"t": 21.5}, {"t": None}],
        "weird key!": 3,
    }
    compiled = json_sub(flatten={"deny": ["ENERGY.Total", "Wifi.*"]})
    outcome = compiled.parse(Message("rack/r1", json.dumps(payload).encode()))
    assert outcome.problems == ()
    assert_readings(
        outcome,
        {
            ("energy_power", L(device="r1")): 40,
            ("energy_voltage", L(device="r1")): 231.5,
            ("power", L(device="r1")): 1,
            ("sensors_0_t", L(device="r1")): 21.5,
            ("weird_key", L(device="r1")): 3,
        },
    )
    allow = json_sub(flatten={"allow": ["ENERGY.*"], "deny": ["*.Voltage"]})
    outcome = allow.parse(Message("rack/r1", json.dumps(payload).encode()))
    assert set(readings(outcome)) == {
        ("energy_power", L(device="r1")),
        ("energy_total", L(device="r1")),
    }


def test_json_flatten_is_bounded_in_depth() -> None:
    deep: Any = 1
    for _ in range(200):
        deep = {"a": deep}
    outcome = json_sub(flatten={}).parse(Message("rack/r1", json.dumps(deep).encode()))
    assert outcome == ParseOutcome()


def test_json_fields_and_flatten_together() -> None:
    compiled = json_sub(fields=[{"path": "t", "metric": "temperature_celsius"}], flatten={})
    outcome = compiled.parse(Message("rack/r1", b'{"t": 20, "h": 40}'))
    assert set(readings(outcome)) == {
        ("temperature_celsius", L(device="r1")),
        ("t", L(device="r1")),
        ("h", L(device="r1")),
    }


# --------------------------------------------------------------------------- message-level problems


@pytest.mark.parametrize("profile", [Z2M, "tasmota", "esphome", "shelly_gen1", "shelly_gen2"])
def test_message_level_problems(profile: str) -> None:
    compiled = sub(profile, max_payload_bytes=64)
    topic = {
        Z2M: "zigbee2mqtt/dev",
        "tasmota": "tele/dev/SENSOR",
        "esphome": "dev/sensor/temperature/state",
        "shelly_gen1": "shellies/dev/relay/0/power",
        "shelly_gen2": "dev/status/switch:0",
    }[profile]
    assert reasons(compiled.parse(Message(topic, b""))) == [BadPayload.EMPTY]
    assert reasons(compiled.parse(Message(topic, b"{" + b"\xff" * 10))) == [BadPayload.INVALID_UTF8]
    # size is checked before anything is decoded
    assert reasons(compiled.parse(Message(topic, b"\xff" * 65))) == [BadPayload.TOO_LARGE]
    assert reasons(compiled.parse(Message(topic, b"1" * 64))) != [BadPayload.TOO_LARGE]
    assert reasons(compiled.parse(Message("nowhere/at/all/x/y/z", b"1"))) == [
        BadPayload.TOPIC_MISMATCH
    ]


@pytest.mark.parametrize(
    ("profile", "topic", "payload", "reason"),
    [
        (Z2M, "zigbee2mqtt/dev", b"{not json", BadPayload.NOT_JSON),
        (Z2M, "zigbee2mqtt/dev/availability", b"{not json", BadPayload.NOT_JSON),
        (Z2M, "zigbee2mqtt/dev/availability", b"sleeping", BadPayload.UNKNOWN_VALUE),
        (Z2M, "zigbee2mqtt/dev/availability", b'{"state": 1}', BadPayload.WRONG_TYPE),
        ("tasmota", "tele/dev/SENSOR", b"[1, 2]", BadPayload.WRONG_TYPE),
        ("tasmota", "tele/dev/STATE", b"POWER ON", BadPayload.NOT_JSON),
        ("tasmota", "tele/dev/LWT", b"Restarting", BadPayload.UNKNOWN_VALUE),
        ("esphome", "dev/sensor/temperature/state", b"unknown", BadPayload.UNKNOWN_VALUE),
        ("esphome", "dev/status", b"rebooting", BadPayload.UNKNOWN_VALUE),
        ("shelly_gen1", "shellies/dev/relay/0", b"maybe", BadPayload.UNKNOWN_VALUE),
        ("shelly_gen1", "shellies/dev/relay/0/power", b"-", BadPayload.UNKNOWN_VALUE),
        ("shelly_gen1", "shellies/dev/online", b"perhaps", BadPayload.UNKNOWN_VALUE),
        ("shelly_gen2", "dev/status/switch:0", b'"x"', BadPayload.WRONG_TYPE),
        ("shelly_gen2", "dev/status/switch:0", b'{"apower": NaN}', BadPayload.NOT_FINITE),
    ],
)
def test_profile_problems(profile: str, topic: str, payload: bytes, reason: BadPayload) -> None:
    outcome = sub(profile).parse(Message(topic, payload))
    assert reasons(outcome) == [reason]
    assert outcome.readings == ()


def test_z2m_bridge_legacy_payload_that_looks_like_json() -> None:
    # "[]" is not an object, so it is read as the plain legacy payload
    outcome = sub(Z2M).parse(Message("zigbee2mqtt/bridge/state", b"[]"))
    assert reasons(outcome) == [BadPayload.UNKNOWN_VALUE]


def test_problem_details_are_short_and_bounded() -> None:
    long_key = "k" * 10_000
    long_value = "v" * 10_000
    compiled = json_sub(
        fields=[{"path": f"f{i}", "metric": f"m{i}"} for i in range(40)]
        + [{"path": "s", "metric": "s"}]
    )
    payload = json.dumps({"s": long_value, long_key: 1}).encode()
    outcome = compiled.parse(Message("rack/r1", payload))
    assert len(outcome.problems) == MAX_PROBLEMS
    assert all(len(p.detail) <= 120 for p in outcome.problems)
    assert long_value not in str(outcome.problems)


def test_problem_details_never_carry_the_payload() -> None:
    secret = b"supersecretvalue123"
    for payload in (b"{" + secret, b"\xff" + secret, secret):
        outcome = sub(Z2M).parse(Message("zigbee2mqtt/dev/availability", payload))
        assert secret.decode(errors="ignore") not in str(outcome.problems)


# --------------------------------------------------------------------------- properties

PROFILE_SUBS: dict[str, dict[str, Any]] = {
    Z2M: {},
    "tasmota": {},
    "esphome": {},
    "shelly_gen1": {},
    "shelly_gen2": {"shared_group": "g"},
    "json": {"topic": "s/{device}/{rest*}", "fields": [{"path": "a.0.b", "metric": "x"}],
             "flatten": {"deny": ["z*"]}},
    "number": {"topic": "{a}/n/{b}", "metric": "n", "value_map": {"hi": 1}},
}  # fmt: skip
COMPILED = {p: sub(p, max_payload_bytes=4096, **kw) for p, kw in PROFILE_SUBS.items()}

LEVELS = st.sampled_from(
    [
        "zigbee2mqtt", "tele", "shellies", "s", "n", "bridge", "state", "availability", "set",
        "SENSOR", "STATE", "LWT", "sensor", "binary_sensor", "status", "online", "relay", "0",
        "power", "energy", "emeter", "total", "input", "temperature", "status", "switch:0",
        "em:0", "wifi", "", "$SYS", "+", "#", "dev", "x y", "ü",
    ]
)  # fmt: skip
TOPICS = st.one_of(st.lists(LEVELS, min_size=1, max_size=6).map("/".join), st.text(max_size=40))
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.sampled_from(["ON", "off", "Online", "21.5", "nan", "x", "F", "mmHg"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(
        st.sampled_from(
            ["temperature", "contact", "voltage", "power", "ENERGY", "Total", "Power",
             "TempUnit", "PressureUnit", "DS18B20", "Temperature", "state", "a", "b", "0",
             "aenergy", "tC", "a_current", "battery", "Wifi", "Signal", "POWER2", "z"]
        ),
        children,
        max_size=5,
    ),
    max_leaves=20,
)  # fmt: skip
PAYLOADS = st.one_of(
    st.binary(max_size=64),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b"", b"nan", b"ON", b"{", b"\xff\xfe", b"1e999", b"[" * 2000]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profile=st.sampled_from(sorted(COMPILED)), topic=TOPICS, payload=PAYLOADS)
def test_parse_never_raises(profile: str, topic: str, payload: bytes) -> None:
    compiled = COMPILED[profile]
    outcome = compiled.parse(Message(topic, payload))
    assert isinstance(outcome, ParseOutcome)
    assert len(outcome.problems) <= MAX_PROBLEMS
    for problem in outcome.problems:
        assert not problem.detail.startswith("internal"), problem
        assert len(problem.detail) <= 120
    for reading in outcome.readings:
        assert math.isfinite(reading.value)
    if not compiled.matches(topic):
        assert reasons(outcome) == [BadPayload.TOPIC_MISMATCH]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profile=st.sampled_from(sorted(COMPILED)), topic=TOPICS, payload=PAYLOADS)
def test_route_then_parse_routed_is_parse(profile: str, topic: str, payload: bytes) -> None:
    """The service routes a topic once and reuses the route for every message on it:
    that must give exactly what ``parse`` gives, and ``route`` must agree with ``matches``."""
    compiled = COMPILED[profile]
    message = Message(topic, payload)
    routed = compiled.route(topic)
    assert (routed is not None) == compiled.matches(topic)
    if routed is not None:
        assert compiled.parse_routed(message, routed) == compiled.parse(message)
        # the same route again, for another payload on the topic
        other = Message(topic, b'{"temperature": 1}')
        assert compiled.parse_routed(other, compiled.route(topic) or routed) == compiled.parse(
            other
        )


def _mqtt_match(filter_: str, topic: str) -> bool:
    """MQTT 3.1.1 section 4.7 topic matching, written out for the test."""
    if filter_.startswith("$share/"):
        filter_ = filter_.split("/", 2)[2]
    f, t = filter_.split("/"), topic.split("/")
    if t[0].startswith("$") and f[0] in ("+", "#"):
        return False
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(f) == len(t)


@settings(max_examples=300, deadline=None)
@given(profile=st.sampled_from(sorted(COMPILED)), topic=TOPICS)
def test_matches_agrees_with_the_filters(profile: str, topic: str) -> None:
    """Whatever ``matches`` accepts arrives through a filter; whatever a filter
    delivers is accepted, except what a placeholder cannot take (empty levels,
    the base alone under ``#``)."""
    compiled = COMPILED[profile]
    delivered = any(_mqtt_match(f, topic) for f, _ in compiled.filters)
    if compiled.matches(topic):
        assert delivered
    elif delivered:
        empty_level = "" in topic.split("/")
        parent_of_hash = any(
            _mqtt_match(f.removesuffix("/#"), topic)
            for f, _ in compiled.filters
            if f.endswith("/#")
        )
        assert empty_level or parent_of_hash, topic


# --------------------------------------------------------------------------- speed (informative)


def test_parse_is_fast_enough() -> None:
    """Not a benchmark (see the final report for µs/message): a guard against an
    accidental quadratic or a regex compiled per message. 2,000 z2m messages must
    take well under a second even on a loaded CI machine."""
    import time

    compiled = COMPILED[Z2M]
    message = load(DATA / Z2M / "aqara_weather.msg")
    start = time.perf_counter()
    for _ in range(2000):
        compiled.parse(message)
    assert time.perf_counter() - start < 1.0
