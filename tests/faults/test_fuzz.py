"""Property-based tests and a bounded fuzzing run over everything that parses
untrusted input: the config loader, every MQTT payload parser, the SNMP decoder and
the varbind mapping. No exception escapes but the documented ones:

* ``load_config``: a ``Config`` or ``ConfigError``, for any YAML structure and any
  mutation of the shipped example config;
* ``CompiledSubscription.parse`` (every profile): a ``ParseOutcome`` whose problems
  are the documented ``BadPayload`` reasons; it catches internal errors itself and
  reports them as ``internal: <type>``, so such a detail counts as a failure here;
* ``codec.decode_*``: a value or ``DecodeError``, for arbitrary bytes and for
  byte mutations of captured real datagrams (``tests/data/traps``);
* ``varbinds_to_samples`` (every shipped module): never raises for device data.

Each run is bounded: fixed ``max_examples`` (derandomized, so CI runs the same
inputs every time) and mutation loops with a fixed seed and count. The number of
inputs tried per target is printed at the end of the module (``pytest -s``).
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commandcentre.config import Config, ConfigError, load_config
from commandcentre.mqtt.config import Subscription
from commandcentre.mqtt.mapping import CompiledSubscription, compile_subscription
from commandcentre.mqtt.types import BadPayload, Message, ParseOutcome
from commandcentre.snmp import codec
from commandcentre.snmp.mapping import compile_module, varbinds_to_samples
from commandcentre.snmp.types import SnmpType, VarBind
from tests.faults.helpers import REPO
from tests.integration.agents import SYS_DESCR_0, encode_v2c_get

TRIED: Counter[str] = Counter()
FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
MUTATIONS = 3000  # byte mutations per seed corpus (fixed seed)
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


@pytest.fixture(scope="module", autouse=True)
def report_counts() -> Iterator[None]:
    yield
    print("\nfuzz inputs tried: " + ", ".join(f"{k} {v}" for k, v in sorted(TRIED.items())))


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four random edits: flip, set, insert or delete bytes, or truncate."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            i = min(pos, len(buf) - 1)
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[min(pos, len(buf) - 1)] = rng.choice((0, 0x7F, 0x80, 0x81, 0x84, 0xFF, 0x30))
        elif op == 2:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 3 and buf:
            del buf[pos : pos + rng.randint(1, 8)]
        else:
            del buf[pos:]
    return bytes(buf)


# --------------------------------------------------------------------------- config loader

_KEYS = (
    "http",
    "log",
    "snmp",
    "mqtt",
    "listen",
    "level",
    "format",
    "max_in_flight",
    "module_files",
    "auths",
    "defaults",
    "targets",
    "name",
    "address",
    "auth",
    "modules",
    "interval",
    "timeout",
    "retries",
    "labels",
    "version",
    "community",
    "community_file",
    "username",
    "security_level",
    "auth_protocol",
    "password",
    "priv_protocol",
    "priv_password",
    "priv_password_file",
    "stale_after_failures",
    "allow_unconfigured_targets",
    "brokers",
    "subscriptions",
    "host",
    "port",
    "protocol",
    "client_id",
    "keepalive",
    "tls",
    "ca_file",
    "cert_file",
    "key_file",
    "max_queued_messages",
    "reconnect",
    "initial",
    "max",
    "profile",
    "topic",
    "qos",
    "shared_group",
    "ttl",
    "max_series",
    "max_series_total",
    "fields",
    "path",
    "metric",
    "scale",
    "offset",
    "type",
    "flatten",
    "allow",
    "deny",
    "value_map",
    "max_payload_bytes",
    "metric_prefix",
    "help",
    "broker",
    "walk",
    "get",
    "metrics",
    "oid",
    "indexes",
    "lookups",
)
_TEXTS = [
    "1s",
    "-5s",
    "0",
    "1h30m",
    "500ms",
    "nan",
    "127.0.0.1:161",
    "[::1]:161",
    "tcp://x:1",
    "udp://h",
    "${NOPE}",
    "${CREDENTIALS_DIRECTORY}/x",
    "/nonexistent",
    "public",
    "3",
    "authPriv",
    "SHA512",
    "AES256",
    "json",
    "number",
    "zigbee2mqtt",
    "{device}",
    "a/{x*}",
    "a/+/#",
    "$share/g/t",
    "",
    " ",
    "\x00",
    "é",
    "system",
    "if_mib",
    "2.5",
    "3.1.1",
]
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(_TEXTS)
    | st.text(max_size=12)
)
_keys = st.sampled_from(_KEYS) | st.text(max_size=8)
_yaml_docs = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=6),
    max_leaves=40,
)


def _base_config() -> dict[str, Any]:
    return {
        "snmp": {
            "module_files": [str(REPO / "config" / "snmp" / "system.yml")],
            "auths": {"v2": {"version": 2, "community": "public"}},
            "defaults": {"interval": "10s", "modules": ["system"]},
            "targets": [{"name": "t", "address": "127.0.0.1:161", "auth": "v2"}],
        },
        "mqtt": {
            "brokers": [{"name": "b", "host": "127.0.0.1"}],
            "subscriptions": [{"name": "s", "profile": "zigbee2mqtt"}],
        },
    }


def _graft(doc: Any, path: list[int], value: Any) -> Any:
    """Replace the subtree that ``path`` (indices into keys/items) leads to."""
    if not path or not isinstance(doc, dict | list) or not doc:
        return value
    if isinstance(doc, dict):
        key = sorted(doc)[path[0] % len(doc)]
        return {**doc, key: _graft(doc[key], path[1:], value)}
    i = path[0] % len(doc)
    return [*doc[:i], _graft(doc[i], path[1:], value), *doc[i + 1 :]]


_TMP = Path(tempfile.mkdtemp(prefix="cc-fuzz-"))


def _load(text: str | bytes) -> None:
    path = _TMP / "cc.yml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    try:
        loaded: Config | None = load_config(path)
    except ConfigError as e:
        loaded = None
        problems = e.problems
    if loaded is None:
        assert problems, "a ConfigError must list its problems"


@FUZZ
@given(doc=_yaml_docs)
def test_config_loader_any_yaml_structure(doc: Any) -> None:
    TRIED["config: arbitrary YAML"] += 1
    _load(yaml.safe_dump(doc, allow_unicode=True))


@FUZZ
@given(path=st.lists(st.integers(min_value=0, max_value=50), max_size=6), value=_yaml_docs)
def test_config_loader_valid_config_with_one_subtree_replaced(path: list[int], value: Any) -> None:
    TRIED["config: grafted valid config"] += 1
    _load(yaml.safe_dump(_graft(_base_config(), path, value), allow_unicode=True))


def test_config_loader_byte_mutations_of_the_example_config() -> None:
    # next to the module files the example names (relative to the config file)
    (_TMP / "snmp").unlink(missing_ok=True)
    (_TMP / "snmp").symlink_to(REPO / "config" / "snmp")
    seed = (REPO / "config" / "commandcentre.example.yml").read_bytes()
    rng = random.Random(20261129)
    for _ in range(MUTATIONS // 10):  # each load reads module files: slower per input
        _load(mutate(seed, rng))
        TRIED["config: mutated example"] += 1


# --------------------------------------------------------------------------- MQTT parsers

DATA = REPO / "tests" / "data" / "mqtt"


def _samples() -> list[tuple[str, Message]]:
    out = []
    for f in sorted(DATA.glob("*/*.msg")):
        topic, _, payload = f.read_bytes().partition(b"\n")
        out.append((f.parent.name, Message(topic.decode(), payload.removesuffix(b"\n"))))
    return out


SAMPLES = _samples()


def _subscription(profile: str, **kw: Any) -> CompiledSubscription:
    return compile_subscription(
        Subscription.model_validate({"name": "fuzz", "profile": profile, **kw})
    )


# profile name -> subscription; the built-in profiles on their default topics (the
# samples' base topics differ in places, so each is also compiled on its sample's base)
SUBSCRIPTIONS: dict[str, CompiledSubscription] = {
    p: _subscription(p) for p in ("zigbee2mqtt", "tasmota", "esphome", "shelly_gen1", "shelly_gen2")
}
SUBSCRIPTIONS["json_fields"] = _subscription(
    "json",
    topic="j/{device}",
    fields=[
        {"path": "temp", "metric": "temperature_celsius"},
        {"path": "a.b.0.c", "metric": "power_watts", "scale": 0.5},
    ],
    value_map={"HOT": 1},
)
SUBSCRIPTIONS["json_flatten"] = _subscription(
    "json", topic="f/{site}/{device*}", flatten={"allow": [], "deny": ["*.raw"]}
)
SUBSCRIPTIONS["number"] = _subscription(
    "number", topic="n/{room}/temperature", metric="temperature_celsius"
)
SEED_TOPICS = {
    "json_fields": "j/dev1",
    "json_flatten": "f/hq/rack/a1",
    "number": "n/r1/temperature",
}


def _check(outcome: ParseOutcome) -> None:
    assert isinstance(outcome, ParseOutcome)
    for p in outcome.problems:
        assert isinstance(p.reason, BadPayload)
        assert not p.detail.startswith("internal:"), p
    for r in outcome.readings:
        assert METRIC_NAME.match(r.name), r
        assert isinstance(r.value, float | int), r
        assert math.isfinite(r.value), r
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in r.labels), r


def _parse_everywhere(topic: str, payload: bytes) -> None:
    # every subscription, matching or not: a mismatch is an outcome to check too
    for c in SUBSCRIPTIONS.values():
        _check(c.parse(Message(topic, payload)))


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False)
    | st.sampled_from(["ON", "OFF", "open", "true", "online", "offline", "21.5", "1e999", "HOT"])
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "temperature",
                    "humidity",
                    "ENERGY",
                    "Power",
                    "contact",
                    "battery",
                    "temp",
                    "a",
                    "b",
                    "c",
                    "0",
                    "raw",
                    "tC",
                    "apower",
                    "voltage",
                    "state",
                    "StatusSNS",
                    "aenergy",
                ]
            )
            | st.text(max_size=6),
            inner,
            max_size=6,
        )
    ),
    max_leaves=25,
)


def _topics() -> st.SearchStrategy[str]:
    seeds = [m.topic for _, m in SAMPLES] + list(SEED_TOPICS.values())
    levels = st.sampled_from(
        [
            "",
            "+",
            "#",
            "availability",
            "SENSOR",
            "STATE",
            "LWT",
            "state",
            "sensor",
            "status",
            "switch:0",
            "relay",
            "0",
            "bridge",
            "é",
        ]
    )
    return st.sampled_from(seeds) | st.builds(
        lambda seed, extra: "/".join([*seed.split("/")[:-1], *extra]),
        st.sampled_from(seeds),
        st.lists(levels | st.text(max_size=5), min_size=1, max_size=3),
    )


@FUZZ
@given(topic=_topics(), doc=_json_values)
def test_mqtt_parsers_json_documents(topic: str, doc: Any) -> None:
    TRIED["mqtt: JSON documents x every profile"] += 1
    _parse_everywhere(topic, json.dumps(doc).encode())


@FUZZ
@given(
    topic=_topics(),
    payload=st.binary(max_size=200)
    | st.text(max_size=50).map(str.encode)
    | st.sampled_from([b"nan", b"NaN", b"Infinity", b"-inf", b"1e400", b'{"a":1e400}', b"[]"]),
)
def test_mqtt_parsers_arbitrary_payloads(topic: str, payload: bytes) -> None:
    TRIED["mqtt: arbitrary payloads x every profile"] += 1
    _parse_everywhere(topic, payload)


def test_mqtt_parsers_byte_mutations_of_real_payloads() -> None:
    rng = random.Random(1129)
    for _ in range(MUTATIONS):
        profile, msg = rng.choice(SAMPLES)
        payload = mutate(msg.payload, rng)
        _check(SUBSCRIPTIONS[profile].parse(Message(msg.topic, payload)))
        TRIED["mqtt: mutated real payloads"] += 1


# --------------------------------------------------------------------------- SNMP decode


def _seed_datagrams() -> list[bytes]:
    seeds = [
        bytes.fromhex(f.read_text().split()[0])
        for f in sorted((REPO / "tests" / "data" / "traps").glob("*.hex"))
    ]
    seeds.append(encode_v2c_get("public", SYS_DESCR_0))
    return seeds


SEEDS = _seed_datagrams()
DECODERS: list[tuple[str, Callable[[bytes], object]]] = [
    ("decode_message", codec.decode_message),
    ("decode_usm_parameters", codec.decode_usm_parameters),
    ("decode_scoped_pdu", codec.decode_scoped_pdu),
    ("message_version", codec.message_version),
]


def _decode_all(data: bytes) -> None:
    for _, decode in DECODERS:
        with contextlib.suppress(codec.DecodeError):
            decode(data)


def test_seed_datagrams_decode() -> None:
    """The corpus is real: every seed decodes (so mutations start from valid input)."""
    for s in SEEDS:
        codec.decode_message(s)


@FUZZ
@given(data=st.binary(max_size=300))
def test_snmp_decoders_arbitrary_bytes(data: bytes) -> None:
    TRIED["snmp: arbitrary bytes x 4 decoders"] += 1
    _decode_all(data)


@FUZZ
@given(seed=st.sampled_from(SEEDS), cut=st.integers(min_value=0), insert=st.binary(max_size=9))
def test_snmp_decoders_spliced_datagrams(seed: bytes, cut: int, insert: bytes) -> None:
    TRIED["snmp: spliced datagrams x 4 decoders"] += 1
    i = cut % (len(seed) + 1)
    _decode_all(seed[:i] + insert + seed[i + len(insert) :])


def test_snmp_decoders_byte_mutations_of_captured_datagrams() -> None:
    rng = random.Random(161162)
    for _ in range(MUTATIONS * 5):
        _decode_all(mutate(rng.choice(SEEDS), rng))
        TRIED["snmp: mutated captured datagrams x 4 decoders"] += 1


# --------------------------------------------------------------------------- SNMP mapping


def _modules() -> list[tuple[str, Any]]:
    out = []
    for f in sorted((REPO / "config" / "snmp").glob("*.yml")):
        cfg = _TMP / f"m-{f.stem}.yml"
        cfg.write_text(yaml.safe_dump({"snmp": {"module_files": [str(f)]}}))
        for name, module in load_config(cfg).snmp.modules.items():
            out.append((name, compile_module(module)))
    return out


MODULES = _modules()
_METRIC_OIDS = sorted(
    {
        tuple(int(x) for x in m["oid"].split("."))
        for f in (REPO / "config" / "snmp").glob("*.yml")
        for mod in (yaml.safe_load(f.read_text()) or {}).get("modules", {}).values()
        for m in mod.get("metrics", [])
    }
)
_values_for: dict[SnmpType, st.SearchStrategy[Any]] = {
    SnmpType.INTEGER: st.integers(min_value=-(2**31), max_value=2**31 - 1),
    SnmpType.OCTET_STRING: st.binary(max_size=24),
    SnmpType.OBJECT_IDENTIFIER: st.lists(
        st.integers(min_value=0, max_value=2**32), max_size=12
    ).map(tuple),
    SnmpType.IP_ADDRESS: st.binary(min_size=0, max_size=6),
    SnmpType.COUNTER32: st.integers(min_value=0, max_value=2**32 - 1),
    SnmpType.GAUGE32: st.integers(min_value=0, max_value=2**32 - 1),
    SnmpType.TIMETICKS: st.integers(min_value=0, max_value=2**32 - 1),
    SnmpType.OPAQUE: st.binary(max_size=12)
    | st.sampled_from([b"\x9f\x78\x04\x41\xc8\x00\x00", b"\x9f\x79\x08" + b"\x7f\xf8" + b"\0" * 6]),
    SnmpType.COUNTER64: st.integers(min_value=0, max_value=2**64 - 1),
    SnmpType.NULL: st.none(),
    SnmpType.NO_SUCH_OBJECT: st.none(),
    SnmpType.NO_SUCH_INSTANCE: st.none(),
    SnmpType.END_OF_MIB_VIEW: st.none(),
}
_varbind = st.builds(
    lambda base, index, typ, data: VarBind((*base, *index), typ, data.draw(_values_for[typ])),
    st.sampled_from(_METRIC_OIDS),
    st.lists(st.integers(min_value=0, max_value=300), min_size=0, max_size=6),
    st.sampled_from(list(SnmpType)),
    st.data(),
)


@FUZZ
@given(module=st.sampled_from(MODULES), varbinds=st.lists(_varbind, max_size=30))
def test_varbind_mapping_never_raises(module: tuple[str, Any], varbinds: list[VarBind]) -> None:
    TRIED["snmp: varbind lists x shipped modules"] += 1
    result = varbinds_to_samples(module[1], varbinds)
    assert result.wrong_type >= 0
    for s in result.samples:
        assert METRIC_NAME.match(s.name), s
