"""Config loading: messages, secrets, snmp_exporter module files, defaults, fuzzing.

No network, no files outside ``tmp_path`` and ``tests/data``.
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commandcentre.config import (
    DEFAULT_AUTH_NAME,
    Auth,
    Config,
    ConfigError,
    ConfigProblem,
    Endpoint,
    Secret,
    build_config,
    load_config,
    parse_duration,
    parse_endpoint,
    parse_listen,
    parse_oid,
)

UPSTREAM_SNMP_YML = Path(__file__).resolve().parent.parent / "data" / "snmp_exporter" / "snmp.yml"
MARKER = "s3cr3t-MARKER"
DURATION_HELP = "must be a duration like 30s, 5m, 1h30m or 500ms"

# An inline module that is valid on its own: most cases below only need "a module m".
MODULE_M = """
  modules:
    m:
      walk: [1.3.6.1.2.1.1]
      metrics:
        - {name: sysUpTime, oid: 1.3.6.1.2.1.1.3, type: gauge}
"""


# --------------------------------------------------------------------------- helpers


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def config_file(tmp_path: Path, text: str) -> Path:
    return write(tmp_path / "commandcentre.yml", text)


def load(tmp_path: Path, text: str) -> Config:
    return load_config(config_file(tmp_path, text))


def problems(tmp_path: Path, text: str) -> list[ConfigProblem]:
    path = config_file(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == "\n".join(str(p) for p in info.value.problems)
    return info.value.problems


def snmp(body: str, *, module: bool = True) -> str:
    """A config whose ``snmp:`` section is ``body`` (indented two spaces), plus module m."""
    return "snmp:\n" + (MODULE_M if module else "") + textwrap.indent(textwrap.dedent(body), "  ")


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1h30m15s", 5415.0),
        ("500ms", 0.5),
        ("2.5s", 2.5),  # decided: fractions allowed, as Go's time.ParseDuration
        ("1d", 86400.0),
        ("1w", 604800.0),
        (" 30s ", 30.0),
        ("30", 30.0),  # a plain number is seconds
        ("0.25", 0.25),
        (30, 30.0),
        (2.5, 2.5),
    ],
    ids=repr,
)
def test_parse_duration_accepts(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [
        "30x",
        "",
        "s",
        "30 s",
        "1h30",
        "-5",
        "-5s",
        "0",
        "0s",
        "1e3",
        "nan",
        "inf",
        "1_000",
        "\u0663s",  # ARABIC-INDIC DIGIT THREE: not an ASCII digit
        "9" * 400,
        0,
        -1,
        True,
        None,
        [30],
        float("nan"),
        float("inf"),
        10**400,
    ],
    ids=lambda v: repr(v)[:20],
)
def test_parse_duration_rejects_with_value_error_only(value: object) -> None:
    with pytest.raises(ValueError, match=r"duration"):
        parse_duration(value)


@settings(max_examples=200, deadline=None)
@given(
    h=st.integers(0, 99),
    m=st.integers(0, 59),
    s=st.integers(0, 59),
)
def test_parse_duration_round_trips_hms(h: int, m: int, s: int) -> None:
    text = "".join(f"{n}{unit}" for n, unit in ((h, "h"), (m, "m"), (s, "s")) if n)
    expected = h * 3600 + m * 60 + s
    if expected == 0:
        with pytest.raises(ValueError, match="duration"):
            parse_duration(text or "0s")
    else:
        assert parse_duration(text) == expected


# --------------------------------------------------------------------------- endpoints


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("10.0.0.1", Endpoint("udp", "10.0.0.1", 161)),
        ("switch-1.example.org", Endpoint("udp", "switch-1.example.org", 161)),
        ("switch-1:1161", Endpoint("udp", "switch-1", 1161)),
        ("udp://h:162", Endpoint("udp", "h", 162)),
        ("tcp://h", Endpoint("tcp", "h", 161)),
        ("tcp://10.0.0.1:1161", Endpoint("tcp", "10.0.0.1", 1161)),
        ("[2001:db8::1]:1161", Endpoint("udp", "2001:db8::1", 1161)),
        ("[2001:db8::1]", Endpoint("udp", "2001:db8::1", 161)),
        ("2001:db8::1", Endpoint("udp", "2001:db8::1", 161)),  # bare IPv6: no port
        ("tcp://[::1]:1161", Endpoint("tcp", "::1", 1161)),
        ("udp6://[::1]", Endpoint("udp", "::1", 161)),
        ("h:65535", Endpoint("udp", "h", 65535)),
    ],
    ids=str,
)
def test_parse_endpoint_accepts(text: str, endpoint: Endpoint) -> None:
    assert parse_endpoint(text) == endpoint
    assert parse_endpoint(str(endpoint)) == endpoint


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("udp://:161", "host name is empty"),
        (":161", "host name is empty"),
        ("", r"must be \[udp\|tcp://\]host\[:port\]"),
        ("host:99999", "port must be a number from 1 to 65535"),
        ("host:0", "port must be a number from 1 to 65535"),
        ("host:", "port must be a number from 1 to 65535"),
        ("host:-1", "port must be a number from 1 to 65535"),
        ("host:\u0663", "port must be a number from 1 to 65535"),
        ("[2001:db8::1]:99999", "port must be a number from 1 to 65535"),
        ("[2001:db8::1", "needs a closing ]"),
        ("[2001:db8::1]x", r"must be \[udp\|tcp://\]host\[:port\]"),
        ("[switch-1]:161", "not a valid IPv6 address"),
        ("2001:db8::zz", "not a valid IPv6 address"),
        ("snmp://host", "transport must be udp:// or tcp://"),
        ("a b", "host name"),
        ("host/path", "host name"),
        ("user@host", "host name"),
        ("1.2.3.999", "not a valid IPv4 address"),
    ],
    ids=repr,
)
def test_parse_endpoint_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_endpoint(text)


@settings(max_examples=150, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(list("ab1.:[]/@%")) | st.characters(), max_size=30)
    | st.from_regex(r"(tcp://|udp://)?\[?[0-9a-f:.]{0,20}\]?(:[0-9]{0,6})?", fullmatch=True)
)
def test_parse_endpoint_raises_only_value_error(text: str) -> None:
    try:
        endpoint = parse_endpoint(text)
    except ValueError:
        return
    assert 0 < endpoint.port < 65536
    assert parse_endpoint(str(endpoint)) == endpoint


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8116", ("127.0.0.1", 8116)),
        (":8116", ("0.0.0.0", 8116)),
        ("[::1]:8116", ("::1", 8116)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["8116", "host:x", "host:70000"])
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"host:port|port must be"):
        parse_listen(text)


@pytest.mark.parametrize(
    ("text", "oid"),
    [("1.3.6.1", (1, 3, 6, 1)), (".1.3.6.1.2", (1, 3, 6, 1, 2)), ("1", (1,))],
)
def test_parse_oid(text: str, oid: tuple[int, ...]) -> None:
    assert parse_oid(text) == oid


@pytest.mark.parametrize("text", ["", "1..3", "1.3.", "ifDescr", "1.3.x"])
def test_parse_oid_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="numeric OID"):
        parse_oid(text)


# --------------------------------------------------------------------------- error messages

# (id, config text, the expected problem as (path, message, given)); the file is the
# config file. Each config has exactly this one problem.
MESSAGE_CASES: list[tuple[str, str, tuple[str, str, str | None]]] = [
    ("unknown key at top level", "bogus: 1\n", ("bogus", "unknown key", None)),
    (
        "unknown key in a target",
        snmp("targets: [{name: a, address: h, modules: [m], colour: red}]"),
        ("snmp.targets[0].colour", "unknown key", None),
    ),
    (
        "unknown key in a module metric",
        snmp(
            """
            modules:
              x:
                walk: [1.3.6.1]
                metrics: [{name: a, oid: 1.3.6.1, type: gauge, colour: red}]
            """,
            module=False,
        ),
        ("snmp.modules.x.metrics[0].colour", "unknown key", None),
    ),
    (
        "bad duration",
        snmp("targets: [{name: a, address: h, modules: [m], interval: 30x}]"),
        ("snmp.targets[0].interval", DURATION_HELP, "'30x'"),
    ),
    (
        "non-positive duration in defaults",
        snmp("defaults: {timeout: 0s}"),
        ("snmp.defaults.timeout", "must be a positive duration", "'0s'"),
    ),
    (
        "v3 authPriv without priv password",
        snmp(
            """
            auths:
              v3: {version: 3, username: u, security_level: authPriv, password: pw123456}
            """
        ),
        (
            "snmp.auths.v3",
            "security_level authPriv needs priv_password (or priv_password_file)",
            None,
        ),
    ),
    (
        "v3 without username",
        snmp("auths: {v3: {version: 3}}"),
        ("snmp.auths.v3", "SNMPv3 needs a username", None),
    ),
    (
        "v3 authNoPriv without password",
        snmp("auths: {v3: {version: 3, username: u, security_level: authNoPriv}}"),
        ("snmp.auths.v3", "security_level authNoPriv needs password (or password_file)", None),
    ),
    (
        "unknown security level",
        snmp("auths: {v3: {version: 3, username: u, security_level: authpriv}}"),
        (
            "snmp.auths.v3.security_level",
            "Input should be 'noAuthNoPriv', 'authNoPriv' or 'authPriv'",
            "'authpriv'",
        ),
    ),
    (
        "target names a module that does not exist",
        snmp("targets: [{name: a, address: h, modules: [m, nope]}]"),
        ("snmp.targets[0].modules[1]", "module does not exist; known: m", "'nope'"),
    ),
    (
        "target names an auth that does not exist",
        snmp("targets: [{name: a, address: h, modules: [m], auth: nope}]"),
        ("snmp.targets[0].auth", "auth does not exist; known: public_v2", "'nope'"),
    ),
    (
        "duplicate target names",
        snmp(
            """
            targets:
              - {name: a, address: h1, modules: [m]}
              - {name: b, address: h2, modules: [m]}
              - {name: a, address: h3, modules: [m]}
            """
        ),
        ("snmp.targets[2].name", "duplicate target name (also snmp.targets[0])", "'a'"),
    ),
    (
        "module listed twice",
        snmp("targets: [{name: a, address: h, modules: [m, m]}]"),
        ("snmp.targets[0].modules[1]", "module listed twice", "'m'"),
    ),
    (
        "target without modules",
        snmp("targets: [{name: a, address: h}]"),
        (
            "snmp.targets[0].modules",
            "no modules: name at least one (here or in snmp.defaults.modules)",
            None,
        ),
    ),
    (
        "address without host",
        snmp("targets: [{name: a, address: 'udp://:161', modules: [m]}]"),
        (
            "snmp.targets[0].address",
            "host name is empty or has characters a host name cannot have",
            "'udp://:161'",
        ),
    ),
    (
        "address with port out of range",
        snmp("targets: [{name: a, address: 'host:99999', modules: [m]}]"),
        ("snmp.targets[0].address", "port must be a number from 1 to 65535", "'host:99999'"),
    ),
    (
        "invalid label name",
        snmp("targets: [{name: a, address: h, modules: [m], labels: {9rack: x}}]"),
        ("snmp.targets[0].labels", "label name '9rack' is not a valid Prometheus label name", None),
    ),
    (
        "label name with reserved prefix",
        snmp("defaults: {labels: {__meta: x}}"),
        ("snmp.defaults.labels", "label name '__meta' is not a valid Prometheus label name", None),
    ),
    (
        "reserved label target",
        snmp("targets: [{name: a, address: h, modules: [m], labels: {target: x}}]"),
        ("snmp.targets[0].labels", "label name 'target' is reserved: commandcentre sets it", None),
    ),
    (
        "reserved label module",
        snmp("defaults: {labels: {module: x}}"),
        ("snmp.defaults.labels", "label name 'module' is reserved: commandcentre sets it", None),
    ),
    (
        "defaults auth does not exist",
        snmp(
            """
            defaults: {auth: nope, modules: [m]}
            targets: [{name: a, address: h1}, {name: b, address: h2}]
            """
        ),
        ("snmp.defaults.auth", "auth does not exist; known: public_v2", "'nope'"),
    ),
    (
        "defaults module does not exist",
        snmp("defaults: {modules: [nope]}"),
        ("snmp.defaults.modules[0]", "module does not exist; known: m", "'nope'"),
    ),
    (
        "module without OIDs",
        snmp("modules: {x: {metrics: []}}", module=False),
        ("snmp.modules.x", "module has neither walk nor get OIDs", None),
    ),
    (
        "bad OID in walk",
        snmp("modules: {x: {walk: [ifTable]}}", module=False),
        ("snmp.modules.x.walk[0]", "must be a numeric OID like 1.3.6.1.2.1.1", "'ifTable'"),
    ),
    (
        "lookup label that is no index",
        snmp(
            """
            modules:
              x:
                walk: [1.3.6.1]
                metrics:
                  - name: a
                    oid: 1.3.6.1.1
                    type: gauge
                    indexes: [{labelname: ifIndex, type: gauge}]
                    lookups: [{labels: [other], labelname: l, oid: 1.3.6.1.2, type: gauge}]
            """,
            module=False,
        ),
        (
            "snmp.modules.x.metrics[0].lookups[0].labels",
            "lookup uses label 'other', which is neither one of this metric's indexes "
            "nor produced by an earlier lookup",
            None,
        ),
    ),
    (
        "lookup with labels but no oid",
        snmp(
            """
            modules:
              x:
                walk: [1.3.6.1]
                metrics:
                  - name: a
                    oid: 1.3.6.1.1
                    type: gauge
                    indexes: [{labelname: ifIndex, type: gauge}]
                    lookups: [{labels: [ifIndex], labelname: l}]
            """,
            module=False,
        ),
        ("snmp.modules.x.metrics[0].lookups[0]", "a lookup with labels needs oid and type", None),
    ),
    (
        "enum key that is no integer",
        snmp(
            """
            modules:
              x:
                walk: [1.3.6.1]
                metrics: [{name: a, oid: 1.3.6.1, type: gauge, enum_values: {up: '1'}}]
            """,
            module=False,
        ),
        (
            "snmp.modules.x.metrics[0].enum_values.up",
            "Input should be a valid integer, unable to parse string as an integer",
            "'up'",
        ),
    ),
    (
        "invalid listen address",
        "http: {listen: 'localhost:99999'}\n",
        ("http.listen", "port must be a number from 1 to 65535", "'localhost:99999'"),
    ),
    (
        "log level",
        "log: {level: verbose}\n",
        ("log.level", "Input should be 'debug', 'info', 'warning' or 'error'", "'verbose'"),
    ),
    (
        "legacy module with an invalid version: one problem, not two",
        snmp("modules: {x: {walk: [1.3.6.1], version: 4}}", module=False),
        ("snmp.modules.x.version", "Input should be 1, 2 or 3", "4"),
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [pytest.param(text, expected, id=name) for name, text, expected in MESSAGE_CASES],
)
def test_error_message(tmp_path: Path, text: str, expected: tuple[str, str, str | None]) -> None:
    shown = str(tmp_path / "commandcentre.yml")
    assert problems(tmp_path, text) == [ConfigProblem(shown, *expected)]


def test_problem_text_names_file_path_message_and_given() -> None:
    p = ConfigProblem("/etc/cc.yml", "snmp.targets[3].interval", DURATION_HELP, "'30x'")
    assert str(p) == f"/etc/cc.yml: snmp.targets[3].interval: {DURATION_HELP} (given: '30x')"
    assert str(ConfigProblem("/etc/cc.yml", "", "oops")) == "/etc/cc.yml: oops"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "snmp:\n  targets: [\n    - name: a\n",
            ("line 3, column 5", "invalid YAML: expected the node content, but found '-'", None),
            id="invalid YAML",
        ),
        pytest.param(
            "snmp:\n  max_in_flight: 3\n  max_in_flight: 4\n",
            ("line 3, column 3", "invalid YAML: found duplicate key 'max_in_flight'", None),
            id="duplicate key",
        ),
        pytest.param(
            "- a\n- b\n", ("", "must be a YAML mapping at the top level", "list"), id="list"
        ),
        pytest.param(
            "just text\n", ("", "must be a YAML mapping at the top level", "str"), id="scalar"
        ),
        pytest.param(
            "snmp: {defaults: {interval: 2024-02-30}}\n",
            ("", "invalid YAML: day is out of range for month", None),
            id="impossible date",
        ),
    ],
)
def test_unreadable_yaml(tmp_path: Path, text: str, expected: tuple[str, str, str | None]) -> None:
    shown = str(tmp_path / "commandcentre.yml")
    assert problems(tmp_path, text) == [ConfigProblem(shown, *expected)]


def test_yaml_merge_keys_may_override(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        snmp(
            """
            targets:
              - &base {name: a, address: h1, modules: [m], interval: 10s}
              - {<<: *base, name: b, address: h2}
            """
        ),
    )
    assert [(t.name, t.endpoint.host, t.interval) for t in config.snmp.targets] == [
        ("a", "h1", 10.0),
        ("b", "h2", 10.0),
    ]


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yml")
    assert info.value.problems == [
        ConfigProblem(str(tmp_path / "nope.yml"), "", "cannot read file: No such file or directory")
    ]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        bogus: 1
        http: {listen: 'nohost'}
        snmp:
          modules:
            x: {walk: [1.3.6.1], metrics: [{name: a, oid: 1.3.6.1, type: gauge, colour: red}]}
          targets:
            - {name: a, address: 'udp://:161', modules: [nope1]}
            - {name: b, address: h, modules: [x], interval: 30x, auth: nope2}
            - {name: a, address: 'host:99999', modules: [x], typo: 1}
            - {name: d, address: h, modules: [x, x], labels: {target: t}}
        """,
    )
    assert [(p.path, p.message) for p in found] == [
        ("http.listen", "must be host:port, e.g. 0.0.0.0:8116"),
        ("snmp.modules.x.metrics[0].colour", "unknown key"),
        ("bogus", "unknown key"),  # pydantic lists unknown keys after the known ones
        ("snmp.targets[0].address", "host name is empty or has characters a host name cannot have"),
        ("snmp.targets[1].interval", DURATION_HELP),
        ("snmp.targets[2].address", "port must be a number from 1 to 65535"),
        ("snmp.targets[2].typo", "unknown key"),
        ("snmp.targets[3].labels", "label name 'target' is reserved: commandcentre sets it"),
        # cross-reference problems come too, even though the schema had problems
        ("snmp.targets[0].modules[0]", "module does not exist; known: x"),
        ("snmp.targets[1].auth", "auth does not exist; known: public_v2"),
        ("snmp.targets[2].name", "duplicate target name (also snmp.targets[0])"),
        ("snmp.targets[3].modules[1]", "module listed twice"),
    ]


def test_a_module_with_problems_still_exists_for_references(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        snmp(
            """
            modules: {x: {walk: [not-an-oid]}}
            targets: [{name: a, address: h, modules: [x]}]
            """,
            module=False,
        ),
    )
    # one problem: no "module does not exist", no "neither walk nor get" after pruning
    assert [p.path for p in found] == ["snmp.modules.x.walk[0]"]


def test_defaults_problems_are_reported_once(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        snmp(
            """
            defaults: {auth: nope, modules: [m, gone]}
            targets: [{name: a, address: h1}, {name: b, address: h2}, {name: c, address: h3}]
            """
        ),
    )
    assert [p.path for p in found] == ["snmp.defaults.modules[1]", "snmp.defaults.auth"]


def test_bad_defaults_modules_do_not_cascade(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        snmp(
            """
            defaults: {modules: m}
            targets: [{name: a, address: h1}]
            """
        ),
    )
    assert [(p.path, p.message) for p in found] == [
        ("snmp.defaults.modules", "Input should be a valid list")
    ]


# --------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("address", "transport", "host", "port"),
    [
        ("10.0.0.1", "udp", "10.0.0.1", 161),
        ("[2001:db8::1]:1161", "udp", "2001:db8::1", 1161),
        ("2001:db8::1", "udp", "2001:db8::1", 161),
        ("[2001:db8::1]", "udp", "2001:db8::1", 161),
        ("udp://switch:1161", "udp", "switch", 1161),
    ],
)
def test_target_addresses(
    tmp_path: Path, address: str, transport: str, host: str, port: int
) -> None:
    config = load(tmp_path, snmp(f"targets: [{{name: a, address: '{address}', modules: [m]}}]"))
    assert config.snmp.targets[0].endpoint == Endpoint(transport, host, port)  # type: ignore[arg-type]


@pytest.mark.parametrize("address", ["tcp://switch:1161", "tcp://[2001:db8::2]"])
def test_tcp_targets_are_refused_until_a_backend_supports_them(
    tmp_path: Path, address: str
) -> None:
    found = problems(tmp_path, snmp(f"targets: [{{name: a, address: '{address}', modules: [m]}}]"))
    assert [(p.path, p.message, p.given) for p in found] == [
        (
            "snmp.targets[0].address",
            "tcp:// is not supported yet: the SNMP backend (pysnmp 7) has no TCP client; use UDP",
            repr(address),
        )
    ]


# --------------------------------------------------------------------------- secrets


def test_env_vars_are_expanded_in_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC_COMMUNITY", "c0mm")
    monkeypatch.setenv("CC_AUTH", "authpass1")
    monkeypatch.setenv("CC_PRIV", "privpass1")
    config = load(
        tmp_path,
        snmp(
            """
            auths:
              v2: {community: 'pre-${CC_COMMUNITY}-post'}
              v3:
                version: 3
                username: u
                security_level: authPriv
                password: ${CC_AUTH}
                priv_password: ${CC_PRIV}
            """
        ),
    )
    v2, v3 = config.snmp.auths["v2"], config.snmp.auths["v3"]
    assert v2.community is not None
    assert v2.community.reveal() == "pre-c0mm-post"
    assert v3.password is not None
    assert v3.priv_password is not None
    assert (v3.password.reveal(), v3.priv_password.reveal()) == ("authpass1", "privpass1")


@pytest.mark.parametrize("key", ["community", "password", "priv_password"])
def test_missing_env_var_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.delenv("CC_MISSING", raising=False)
    monkeypatch.setenv("CC_OTHER", MARKER)
    auth = {"version": 3, "username": "u", "security_level": "authPriv"}
    auth |= dict.fromkeys(("community", "password", "priv_password"), "x")
    auth[key] = "${CC_OTHER}${CC_MISSING}"
    found = problems(tmp_path, yaml.safe_dump({"snmp": {"auths": {"a": auth}}}))
    assert [(p.path, p.message, p.given) for p in found] == [
        ("snmp.auths.a", f"{key} refers to environment variable CC_MISSING, which is not set", None)
    ]
    assert MARKER not in str(found[0])


@pytest.mark.parametrize(
    ("key", "content", "expected"),
    [
        ("community", "filed\n", "filed"),
        ("community", "filed\r\n", "filed"),
        ("community", "no-newline", "no-newline"),
        ("community", "  spaces kept  \n", "  spaces kept  "),
        ("password", "authpass1\n", "authpass1"),
        ("priv_password", "privpass1\n", "privpass1"),
    ],
)
def test_secret_files_relative_to_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, content: str, expected: str
) -> None:
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "secret").write_text(content, encoding="utf-8")
    monkeypatch.chdir("/")  # relative to the config file, not the working directory
    others = {"password": "authpass0", "priv_password": "privpass0"}
    others.pop(key, None)
    inline = ", ".join(f"{k}: {v}" for k, v in others.items())
    config = load(
        tmp_path,
        snmp(
            f"""
            auths:
              a: {{version: 3, username: u, security_level: authPriv, {inline},
                  {key}_file: creds/secret}}
            """
        ),
    )
    secret = getattr(config.snmp.auths["a"], key)
    assert isinstance(secret, Secret)
    assert secret.reveal() == expected


def test_credentials_directory_is_expanded_in_secret_file_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "run-creds"
    creds.mkdir()
    (creds / "community").write_text("from-systemd\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    config = load(
        tmp_path,
        snmp("auths: {a: {community_file: '${CREDENTIALS_DIRECTORY}/community'}}"),
    )
    community = config.snmp.auths["a"].community
    assert community is not None
    assert community.reveal() == "from-systemd"


def test_unset_credentials_directory_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    found = problems(
        tmp_path, snmp("auths: {a: {community_file: '${CREDENTIALS_DIRECTORY}/community'}}")
    )
    assert [(p.path, p.message) for p in found] == [
        (
            "snmp.auths.a",
            "community file path refers to environment variable CREDENTIALS_DIRECTORY,"
            " which is not set",
        )
    ]


def test_missing_secret_file(tmp_path: Path) -> None:
    found = problems(tmp_path, snmp("auths: {a: {community_file: nope.txt}}"))
    assert [(p.path, p.message) for p in found] == [
        (
            "snmp.auths.a",
            f"cannot read community file {tmp_path / 'nope.txt'}: No such file or directory",
        )
    ]


def test_secret_and_secret_file_together(tmp_path: Path) -> None:
    (tmp_path / "c").write_text("x", encoding="utf-8")
    found = problems(tmp_path, snmp("auths: {a: {community: x, community_file: c}}"))
    assert [(p.path, p.message) for p in found] == [
        ("snmp.auths.a", "give community or community_file, not both")
    ]


def test_secret_prints_masked() -> None:
    s = Secret(MARKER)
    assert repr(s) == str(s) == f"{s}" == "<secret>"
    assert s.reveal() == MARKER
    assert s == Secret(MARKER)
    assert s != Secret("other")
    assert hash(s) == hash(Secret(MARKER))


def test_secrets_never_show_in_a_loaded_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "priv").write_text(MARKER + "-priv\n", encoding="utf-8")
    monkeypatch.setenv("CC_PASS", MARKER + "-auth")
    config = load(
        tmp_path,
        snmp(
            f"""
            auths:
              v2: {{community: {MARKER}}}
              v3:
                version: 3
                username: u
                security_level: authPriv
                password: ${{CC_PASS}}
                priv_password_file: priv
            targets: [{{name: a, address: h, modules: [m], auth: v3}}]
            """
        ),
    )
    v3 = config.snmp.auths["v3"]
    assert v3.password is not None
    assert v3.password.reveal() == MARKER + "-auth"  # it is there, just never printed
    shown = [
        repr(config),
        str(config),
        repr(config.snmp),
        repr(config.snmp.auths),
        *(repr(t) for t in config.snmp.targets),
        *(str(t) for t in config.snmp.targets),
    ]
    for auth in config.snmp.auths.values():
        shown += [repr(auth), str(auth), repr(auth.model_dump()), auth.model_dump_json()]
        shown.append(json.dumps(auth.model_dump(mode="json")))
    for text in shown:
        assert MARKER not in text
    assert config.snmp.auths["v2"].model_dump()["community"] == "<secret>"
    assert json.loads(v3.model_dump_json())["priv_password"] == "<secret>"


BROKEN_WITH_SECRET = [
    pytest.param(f"auths: {{a: {{community: {MARKER}, version: 7}}}}", id="other field wrong"),
    pytest.param(f"auths: {{a: {MARKER}}}", id="auth is a scalar"),
    pytest.param(f"auths: {{a: {{community: [{MARKER}]}}}}", id="community is a list"),
    pytest.param(f"auths: {{a: {{community: {{x: {MARKER}}}}}}}", id="community is a mapping"),
    pytest.param(f"auths: {{a: {{comunity: {MARKER}}}}}", id="misspelled key"),
    pytest.param(
        f"auths: {{a: {{version: 3, security_level: authPriv, password: {MARKER},"
        f" priv_password: {MARKER}}}}}",
        id="v3 without username",
    ),
    pytest.param(
        f"auths: {{a: {{version: 3, username: u, security_level: authPriv, password: {MARKER},"
        f" priv_password: {MARKER}, priv_protocol: ROT13}}}}",
        id="bad priv protocol",
    ),
    pytest.param(
        f"auths: {{a: {{community: {MARKER}, community_file: {MARKER}}}}}",
        id="both inline and file",
    ),
    pytest.param(
        f"modules: {{legacy: {{walk: [1.3.6.1], version: 2, auth: {MARKER}}}}}",
        id="legacy module auth is a scalar",
    ),
    pytest.param(
        f"modules: {{legacy: {{walk: [1.3.6.1], version: 3, auth: {{password: {MARKER}}}}}}}",
        id="legacy v3 without username",
    ),
    pytest.param(
        f"auths: {{a: {{version: 3, username: u, security_level: authPriv,"
        f" password: {MARKER}, priv_password: 12.5}}}}",
        id="numeric secret beside a secret",
    ),
]


@pytest.mark.parametrize("body", BROKEN_WITH_SECRET)
def test_secrets_never_show_in_errors(tmp_path: Path, body: str) -> None:
    path = config_file(
        tmp_path, snmp(body + "\n" + "targets: [{name: a, address: h, modules: [m]}]")
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    texts = [str(info.value), repr(info.value), *(repr(p) for p in info.value.problems)]
    for text in texts:
        assert MARKER not in text
    assert info.value.problems  # and something was reported


# --------------------------------------------------------------------------- module files

UPSTREAM_METRIC_COUNTS = {
    "system": 12,
    "if_mib": 39,
    "ip_mib": 4,
    "hrSystem": 7,
    "hrStorage": 5,
    "ups_mib": 59,
    "apcups": 302,
}


def test_upstream_snmp_yml_loads_unchanged(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        f"""
        snmp:
          module_files: ['{UPSTREAM_SNMP_YML}']
          targets:
            - {{name: ups, address: 10.0.0.1, modules: [apcups, ups_mib], auth: public_v1}}
            - {{name: sw, address: 10.0.0.2, modules: [if_mib, system], auth: public_v2}}
            - {{name: dflt, address: 10.0.0.3, modules: [hrSystem, hrStorage, ip_mib]}}
        """,
    )
    modules = config.snmp.modules
    assert {name: len(m.metrics) for name, m in modules.items()} == UPSTREAM_METRIC_COUNTS
    assert set(config.snmp.module_sources.values()) == {str(UPSTREAM_SNMP_YML)}
    v1, v2 = config.snmp.auths["public_v1"], config.snmp.auths["public_v2"]
    assert (v1.version, v2.version) == (1, 2)
    assert v1.community is not None
    assert v1.community.reveal() == "public"
    assert [t.auth_name for t in config.snmp.targets] == ["public_v1", "public_v2", "public_v2"]
    # the generator's drop-lookups (labels: [], no oid/type) load as such
    drops = [lk for m in modules["apcups"].metrics for lk in m.lookups if lk.drops_label]
    assert drops
    assert all(lk.oid == "" and lk.type == "" for lk in drops)
    if_descr = next(m for m in modules["if_mib"].metrics if m.name == "ifHCInOctets")
    assert [lk.labelname for lk in if_descr.lookups] == ["ifAlias", "ifDescr", "ifName"]


def test_upstream_snmp_yml_is_the_unmodified_copy() -> None:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    raw = yaml.load(UPSTREAM_SNMP_YML.read_text(encoding="utf-8"), Loader=loader)
    assert {k: len(v["metrics"]) for k, v in raw["modules"].items()} == UPSTREAM_METRIC_COUNTS
    assert set(raw["auths"]) == {"public_v1", "public_v2"}


LEGACY_V3 = """
    modules:
      legacy:
        walk: [1.3.6.1.2.1.1]
        metrics:
          - {name: sysUpTime, oid: 1.3.6.1.2.1.1.3, type: gauge}
        version: 3
        max_repetitions: 10
        retries: 2
        timeout: 10s
        auth:
          username: monitor
          security_level: authPriv
          password: authpass1
          priv_password: privpass1
          auth_protocol: SHA
          priv_protocol: AES
"""


def test_legacy_layout_module_credentials_are_used(tmp_path: Path) -> None:
    write(tmp_path / "legacy.yml", LEGACY_V3)
    config = load(
        tmp_path,
        """
        snmp:
          module_files: [legacy.yml]
          targets:
            - {name: a, address: h1, modules: [legacy]}
            - {name: b, address: h2, modules: [legacy], auth: public_v2}
        """,
    )
    a, b = config.snmp.targets
    auth = config.snmp.auths[a.auth_name]
    assert a.auth_name == "module:legacy"
    assert (auth.version, auth.username, auth.security_level) == (3, "monitor", "authPriv")
    assert (auth.auth_protocol, auth.priv_protocol) == ("SHA", "AES")
    assert auth.password is not None
    assert auth.priv_password is not None
    assert (auth.password.reveal(), auth.priv_password.reveal()) == ("authpass1", "privpass1")
    assert b.auth_name == "public_v2"  # a target's own auth wins
    module = config.snmp.modules["legacy"]
    assert (module.max_repetitions, module.retries, module.timeout) == (10, 2, 10.0)
    assert module.legacy_auth == auth


def test_legacy_v2_module_community(tmp_path: Path) -> None:
    write(
        tmp_path / "legacy.yml",
        """
        modules:
          legacy2: {walk: [1.3.6.1], version: 1, auth: {community: private}}
        """,
    )
    config = load(
        tmp_path,
        "snmp: {module_files: [legacy.yml], targets: [{name: a, address: h, modules: [legacy2]}]}",
    )
    auth = config.snmp.auths[config.snmp.targets[0].auth_name]
    assert auth.version == 1
    assert auth.community == Secret("private")


def test_legacy_v3_module_without_priv_password(tmp_path: Path) -> None:
    mfile = write(tmp_path / "legacy.yml", LEGACY_V3.replace("priv_password: privpass1", ""))
    found = problems(
        tmp_path,
        "snmp: {module_files: [legacy.yml], targets: [{name: a, address: h, modules: [legacy]}]}",
    )
    assert found == [
        ConfigProblem(
            str(mfile.resolve()),
            "modules.legacy.auth",
            "security_level authPriv needs priv_password (or priv_password_file)",
        )
    ]


def test_legacy_modules_with_different_credentials_need_an_auth(tmp_path: Path) -> None:
    write(
        tmp_path / "legacy.yml",
        """
        modules:
          one: {walk: [1.3.6.1.1], version: 2, auth: {community: c1}}
          two: {walk: [1.3.6.1.2], version: 2, auth: {community: c2}}
          same: {walk: [1.3.6.1.3], version: 2, auth: {community: c1}}
        """,
    )
    text = """
        snmp:
          module_files: [legacy.yml]
          auths: {x: {community: cx}}
          targets:
            - {name: a, address: h1, modules: [one, same]}
            - {name: b, address: h2, modules: [one, two]}
    """
    found = problems(tmp_path, text)
    assert [(p.path, p.message) for p in found] == [
        (
            "snmp.targets[1].auth",
            "modules one and two carry different credentials (legacy layout):"
            " name an auth for this target",
        )
    ]
    config = load(tmp_path, text.replace("modules: [one, two]}", "modules: [one, two], auth: x}"))
    assert [t.auth_name for t in config.snmp.targets] == ["module:one", "x"]


def test_module_file_error_paths_name_the_module_file(tmp_path: Path) -> None:
    mfile = write(
        tmp_path / "mods.yml",
        """
        modules:
          x:
            walk: [1.3.6.1]
            metrics: [{name: a, oid: 1.3.6.1, type: gauge, colour: red}]
        """,
    )
    found = problems(
        tmp_path,
        """
        snmp:
          module_files: [mods.yml]
          modules:
            y:
              walk: [1.3.6.1]
              metrics: [{name: a, oid: 1.3.6.1, type: gauge, colour: red}]
          targets: [{name: a, address: h, modules: [x, y]}]
        """,
    )
    shown = str(tmp_path / "commandcentre.yml")
    assert found == [
        ConfigProblem(shown, "snmp.modules.y.metrics[0].colour", "unknown key"),
        ConfigProblem(str(mfile.resolve()), "modules.x.metrics[0].colour", "unknown key"),
    ]


def test_module_file_cross_check_paths(tmp_path: Path) -> None:
    mfile = write(tmp_path / "mods.yml", "modules: {x: {metrics: []}}\n")
    found = problems(tmp_path, "snmp: {module_files: [mods.yml]}\n")
    assert found == [
        ConfigProblem(str(mfile.resolve()), "modules.x", "module has neither walk nor get OIDs")
    ]


def test_module_file_that_does_not_exist(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        snmp:
          module_files: [nope.yml]
          targets: [{name: a, address: h, modules: [if_mib], auth: public_v1}]
        """,
    )
    # only the file: the module and auth may well be defined in it
    assert found == [
        ConfigProblem(
            str(tmp_path / "commandcentre.yml"),
            "snmp.module_files[0]",
            "module file does not exist",
            str(tmp_path.resolve() / "nope.yml"),
        )
    ]


@pytest.mark.parametrize(
    ("content", "path", "message"),
    [
        ("modules: [\n", "line 2, column 1", "invalid YAML: expected the node content, but found"),
        ("- a\n", "", "must be a YAML mapping at the top level"),
        ("modules: {x: {walk: [1.3.6.1]}}\nbogus: 1\n", "bogus", "unknown key"),
    ],
    ids=["invalid YAML", "not a mapping", "unknown key"],
)
def test_broken_module_file(tmp_path: Path, content: str, path: str, message: str) -> None:
    mfile = write(tmp_path / "mods.yml", content)
    found = problems(
        tmp_path,
        "snmp: {module_files: [mods.yml], targets: [{name: a, address: h, modules: [x]}]}\n",
    )
    assert [(p.file, p.path) for p in found] == [(str(mfile.resolve()), path)]
    assert found[0].message.startswith(message)


def test_module_defined_twice(tmp_path: Path) -> None:
    write(tmp_path / "a.yml", "modules: {x: {walk: [1.3.6.1]}}\n")
    write(tmp_path / "b.yml", "modules: {x: {walk: [1.3.6.1]}}\n")
    found = problems(
        tmp_path,
        """
        snmp:
          module_files: [a.yml, b.yml]
          modules: {x: {walk: [1.3.6.1]}}
        """,
    )
    a, b = (str((tmp_path / n).resolve()) for n in ("a.yml", "b.yml"))
    assert found == [
        ConfigProblem(b, "modules.x", f"module already defined in {a}"),
        ConfigProblem(
            str(tmp_path / "commandcentre.yml"), "snmp.modules.x", f"module already defined in {a}"
        ),
    ]


def test_secret_files_in_a_module_file_are_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "community").write_text("modfile-community\n", encoding="utf-8")
    write(
        tmp_path / "mods" / "snmp.yml",
        """
        auths: {c: {community_file: community}}
        modules: {x: {walk: [1.3.6.1]}}
        """,
    )
    config = load(
        tmp_path,
        "snmp: {module_files: [mods/snmp.yml], targets: [{name: a, address: h, modules: [x],"
        " auth: c}]}",
    )
    assert config.snmp.auths["c"].community == Secret("modfile-community")


# --------------------------------------------------------------------------- defaults


def test_defaults_apply_and_targets_win(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        snmp(
            """
            auths: {mine: {community: c}, other: {community: d}}
            modules:
              m: {walk: [1.3.6.1.1]}
              n: {walk: [1.3.6.1.2]}
            defaults:
              auth: mine
              modules: [m]
              interval: 1m
              timeout: 2s
              retries: 1
              stale_after_failures: 5
              labels: {site: hq, room: a}
            targets:
              - {name: plain, address: h1}
              - name: own
                address: h2
                auth: other
                modules: [n, m]
                interval: 15s
                timeout: 500ms
                retries: 0
                stale_after_failures: 1
                labels: {room: b, rack: '7'}
            """,
            module=False,
        ),
    )
    plain, own = config.snmp.targets
    assert plain.auth_name == "mine"
    assert plain.modules == ("m",)
    assert (plain.interval, plain.timeout, plain.retries) == (60.0, 2.0, 1)
    assert plain.stale_after_failures == 5
    assert plain.labels == (("room", "a"), ("site", "hq"))
    assert own.auth_name == "other"
    assert own.modules == ("n", "m")
    assert (own.interval, own.timeout, own.retries) == (15.0, 0.5, 0)
    assert own.stale_after_failures == 1
    assert own.labels == (("rack", "7"), ("room", "b"), ("site", "hq"))
    assert own.budget == pytest.approx(13.5)
    assert config.target("own") is own
    assert config.target("nope") is None


def test_built_in_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, snmp("targets: [{name: a, address: h, modules: [m]}]"))
    (t,) = config.snmp.targets
    assert t.auth_name == DEFAULT_AUTH_NAME == "public_v2"
    assert (t.interval, t.timeout, t.retries, t.stale_after_failures) == (30.0, None, None, 3)
    auth = config.snmp.auths[DEFAULT_AUTH_NAME]
    assert (auth.version, auth.community) == (2, Secret("public"))
    assert config.http.listen == "127.0.0.1:8116"
    assert (config.log.level, config.log.format) == ("info", "auto")
    assert config.snmp.allow_unconfigured_targets is False
    assert config.snmp.module_sources == {"m": str(tmp_path / "commandcentre.yml")}


def test_empty_file_is_an_empty_config(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config.snmp.targets == ()
    assert config.source == str(tmp_path / "commandcentre.yml")


def test_v2_auth_without_community_gets_public() -> None:
    assert Auth(version=2).community == Secret("public")


def test_build_config_resolves_a_spec(tmp_path: Path) -> None:
    from commandcentre.config import ConfigSpec

    spec = ConfigSpec.model_validate(
        yaml.safe_load(snmp("targets: [{name: a, address: h, modules: [m], auth: nope}]"))
    )
    with pytest.raises(ConfigError) as info:
        build_config(spec, "x.yml", tmp_path)
    assert [(p.file, p.path) for p in info.value.problems] == [("x.yml", "snmp.targets[0].auth")]


# --------------------------------------------------------------------------- fuzzing


def outcome(path: Path) -> Config | ConfigError:
    try:
        return load_config(path)
    except ConfigError as e:
        return e


KEYS = [
    "http", "log", "snmp", "listen", "level", "format", "auths", "modules", "module_files",
    "targets", "defaults", "name", "address", "auth", "interval", "timeout", "retries",
    "labels", "version", "community", "community_file", "security_level", "username",
    "password", "priv_password", "walk", "get", "metrics", "oid", "type", "indexes",
    "lookups", "labelname", "enum_values", "max_in_flight", "stale_after_failures", "x",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        ["30s", "1.3.6.1", "m", "h:161", "udp://:161", "${NOPE}", "v3", "authPriv", "gauge", ""]
    ),
    st.text(max_size=8),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(KEYS) | st.integers(0, 3), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4))
def test_load_config_raises_only_config_error(tmp_path: Path, data: dict[str, Any]) -> None:
    if "snmp" in data and isinstance(data["snmp"], dict) and data.get("x"):
        # sometimes nest the fuzz where the interesting models are
        data = {"snmp": {"targets": [data["snmp"]], "modules": {"m": data["x"]}}}
    path = tmp_path / "fuzz.yml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    config = outcome(path)  # anything but ConfigError propagates and fails the test
    if isinstance(config, ConfigError):
        assert config.problems
        assert all(p.file and p.message for p in config.problems)
        return
    for t in config.snmp.targets:
        assert t.auth_name in config.snmp.auths
        assert all(m in config.snmp.modules for m in t.modules)
        assert t.interval > 0
        assert math.isfinite(t.interval)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.text(alphabet=st.sampled_from(list("snmp:{}[]-,'\"&*!<>|\n #1")), max_size=40))
def test_load_config_on_arbitrary_text_raises_only_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yml"
    path.write_text(text, encoding="utf-8")
    result = outcome(path)
    assert isinstance(result, Config) or result.problems


def test_chained_lookup_may_use_an_earlier_lookups_label(tmp_path: Path) -> None:
    # snmp_exporter resolves lookups in order, so a later lookup can be keyed by
    # a label an earlier one produced (e.g. index -> ifIndex -> ifName).
    path = tmp_path / "c.yml"
    path.write_text(
        textwrap.dedent(
            """
            snmp:
              modules:
                x:
                  walk: [1.3.6.1]
                  metrics:
                    - name: a
                      oid: 1.3.6.1.1
                      type: gauge
                      indexes: [{labelname: portIndex, type: gauge}]
                      lookups:
                        - {labels: [portIndex], labelname: ifIndex, oid: 1.3.6.1.2, type: gauge}
                        - labels: [ifIndex]
                          labelname: ifName
                          oid: 1.3.6.1.3
                          type: DisplayString
            """
        )
    )
    cfg = load_config(path)
    assert [lk.labelname for lk in cfg.snmp.modules["x"].metrics[0].lookups] == [
        "ifIndex",
        "ifName",
    ]


@pytest.mark.parametrize(
    ("text", "want"), [("127.0.0.1:0", ("127.0.0.1", 0)), (":8116", ("0.0.0.0", 8116))]
)
def test_listen_port_zero_means_any_free_port(text: str, want: tuple[str, int]) -> None:
    assert parse_listen(text) == want


MQTT_BROKER = "  brokers: [{name: main, host: mqtt.example.org}]\n"


@pytest.mark.parametrize(
    ("subs", "path", "message", "given"),
    [
        pytest.param(
            '    - {name: s, profile: zigbee2mqtt, topic: "zig/{device"}\n',
            "mqtt.subscriptions[0]",
            "topic level '{device': a level is either literal text or one {placeholder}; "
            "MQTT wildcards are written as placeholders",
            None,
            id="bad template",
        ),
        pytest.param(
            '    - {name: t, profile: number, topic: "x/{room}", metric: m, labels: {room: y}}\n',
            "mqtt.subscriptions[0]",
            "labels ['room']: the topic template or the profile already sets them",
            None,
            id="static label clashes with template",
        ),
        pytest.param(
            '    - {name: u, broker: nope, profile: number, topic: "x/{d}", metric: m}\n',
            "mqtt.subscriptions[0].broker",
            "broker does not exist; known: main",
            "'nope'",
            id="unknown broker",
        ),
        pytest.param(
            '    - {name: v, profile: number, topic: "x/{d}"}\n',
            "mqtt.subscriptions[0]",
            "profile number needs metric (the metric name for the value)",
            None,
            id="number without metric",
        ),
        pytest.param(
            '    - {name: w, profile: json, topic: "x/{d}",'
            ' fields: [{path: a, metric: "bad name"}]}\n',
            "mqtt.subscriptions[0].fields[0].metric",
            "must be a valid Prometheus metric name",
            "'bad name'",
            id="bad metric name",
        ),
        pytest.param(
            '    - {name: x, profile: number, topic: "x/{d}", metric: m}\n'
            '    - {name: x, profile: number, topic: "y/{d}", metric: m}\n',
            "mqtt.subscriptions[1].name",
            "duplicate subscription name (also mqtt.subscriptions[0])",
            "'x'",
            id="duplicate subscription",
        ),
    ],
)
def test_mqtt_config_problems(
    tmp_path: Path, subs: str, path: str, message: str, given: str | None
) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text("mqtt:\n" + MQTT_BROKER + "  subscriptions:\n" + subs)
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert [(p.path, p.message, p.given) for p in e.value.problems] == [(path, message, given)]


def test_mqtt_config_loads_with_password_file_and_defaults(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cr3t-MQTT\n")
    cfg = tmp_path / "c.yml"
    cfg.write_text(
        "mqtt:\n"
        "  brokers: [{name: main, host: h, username: cc, password_file: pw,"
        " tls: {ca_file: ca.pem}}]\n"
        "  subscriptions: [{name: z, profile: zigbee2mqtt}]\n"
    )
    loaded = load_config(cfg)
    broker = loaded.mqtt.brokers[0]
    assert broker.password is not None
    assert broker.password.reveal() == "s3cr3t-MQTT"
    assert broker.effective_port == 8883  # TLS default
    assert broker.tls is not None
    assert broker.tls.ca_file == str(tmp_path / "ca.pem")  # relative to the config file
    assert "s3cr3t-MQTT" not in repr(loaded)
    assert loaded.mqtt.broker_of(loaded.mqtt.subscriptions[0]) is broker


def test_mqtt_password_without_username_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text("mqtt:\n  brokers: [{name: main, host: h, password: hunter2-MARK}]\n")
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert [(p.path, p.message) for p in e.value.problems] == [
        ("mqtt.brokers[0]", "password (or password_file) needs username")
    ]
    assert "hunter2-MARK" not in str(e.value)
