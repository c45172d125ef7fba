"""The trap table: the shipped files load and say what they should; table and
``snmp.traps`` problems come with file and key path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from commandcentre.config import ConfigError, load_config
from commandcentre.configbase import ConfigProblem
from commandcentre.traps.table import TrapTable, build_table, parse_trap_file

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "config" / "snmp" / "traps"


def shipped_table() -> TrapTable:
    import yaml

    problems: list[ConfigProblem] = []
    entries = []
    for path in sorted(SHIPPED.glob("*.yml")):
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        entries += parse_trap_file(raw, str(path), problems)
    table = build_table(entries, problems)
    assert problems == []
    return table


# (name, OID, severity, the trap it clears or is cleared by)
SHIPPED_ENTRIES = [
    ("coldStart", "1.3.6.1.6.3.1.1.5.1", "warning", None),
    ("warmStart", "1.3.6.1.6.3.1.1.5.2", "info", None),
    ("authenticationFailure", "1.3.6.1.6.3.1.1.5.5", "warning", None),
    ("linkDown", "1.3.6.1.6.3.1.1.5.3", "warning", "linkUp"),
    ("upsTrapOnBattery", "1.3.6.1.2.1.33.2.0.1", "critical", None),
    ("upsTrapTestCompleted", "1.3.6.1.2.1.33.2.0.2", "info", None),
    ("upsTrapAlarmEntryAdded", "1.3.6.1.2.1.33.2.0.3", "warning", "upsTrapAlarmEntryRemoved"),
    ("communicationLost", "1.3.6.1.4.1.318.0.1", "warning", "communicationEstablished"),
    ("upsOverload", "1.3.6.1.4.1.318.0.2", "critical", "upsOverloadCleared"),
    ("upsDiagnosticsFailed", "1.3.6.1.4.1.318.0.3", "warning", "upsDiagnosticsPassed"),
    ("upsOnBattery", "1.3.6.1.4.1.318.0.5", "critical", "powerRestored"),
    ("lowBattery", "1.3.6.1.4.1.318.0.7", "critical", "returnFromLowBattery"),
]
CLEARING = {
    "linkUp": "1.3.6.1.6.3.1.1.5.4",
    "upsTrapAlarmEntryRemoved": "1.3.6.1.2.1.33.2.0.4",
    "communicationEstablished": "1.3.6.1.4.1.318.0.8",
    "upsOverloadCleared": "1.3.6.1.4.1.318.0.33",
    "upsDiagnosticsPassed": "1.3.6.1.4.1.318.0.10",
    "powerRestored": "1.3.6.1.4.1.318.0.9",
    "returnFromLowBattery": "1.3.6.1.4.1.318.0.11",
}


@pytest.mark.parametrize(("name", "oid", "severity", "partner"), SHIPPED_ENTRIES)
def test_shipped_entry(name: str, oid: str, severity: str, partner: str | None) -> None:
    table = shipped_table()
    d = table.by_name[name]
    assert ".".join(map(str, d.oid)) == oid
    assert d.severity == severity
    assert d.paired == (partner is not None)
    if partner is not None:
        clearing = table.by_name[partner]
        assert ".".join(map(str, clearing.oid)) == CLEARING[partner]
        assert clearing.clears == (name,)
        assert clearing.severity == "none"


def test_shipped_table_is_complete() -> None:
    table = shipped_table()
    assert set(table.by_name) == {e[0] for e in SHIPPED_ENTRIES} | set(CLEARING)
    assert table.by_name["upsTrapOnBattery"].resolve_after == 180.0


def load_table_problems(tmp_path: Path, table_text: str) -> list[str]:
    (tmp_path / "t.yml").write_text(textwrap.dedent(table_text), encoding="utf-8")
    (tmp_path / "c.yml").write_text(
        textwrap.dedent(
            """
            snmp:
              traps:
                listen: 127.0.0.1:0
                table_files: [t.yml]
                accept: [{auth: public_v2}]
            """
        ),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "c.yml")
    return [f"{p.path}: {p.message}" for p in e.value.problems]


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        (
            "traps: [{name: a, oid: 1.3.6.1.4.1.1.0.1, severity: loud}]",
            "traps[0].severity: Input should be",
        ),
        (
            "traps: [{name: a-b, oid: 1.3.6.1.4.1.1.0.1}]",
            "traps[0].name: must be a name like linkDown",
        ),
        ("traps: [{name: a, oid: linkDown}]", "traps[0].oid: must be a numeric OID"),
        ("traps: [{name: a, oid: 1.3.6.1.4.1.1.0.1, colour: red}]", "traps[0].colour: unknown key"),
        (
            "traps: [{name: a, oid: 1.3.6.1.4.1.1.0.1, summary: '{port} down'}]",
            "traps[0]: summary/description uses {port}, which is neither a subject",
        ),
        (
            "traps: [{name: a, oid: 1.3.6.1.4.1.1.0.1}, {name: a, oid: 1.3.6.1.4.1.1.0.2}]",
            "traps[1].name: also defined in",
        ),
        (
            "traps: [{name: a, oid: 1.3.6.1.4.1.1.0.1}, {name: b, oid: 1.3.6.1.4.1.1.0.1}]",
            "traps[1].oid: OID already used by a",
        ),
        (
            "traps: [{name: b, oid: 1.3.6.1.4.1.1.0.2, clears: [nope]}]",
            "traps[0].clears[0]: no trap of this name",
        ),
        (
            """
            traps:
              - {name: a, oid: 1.3.6.1.4.1.1.0.1, subject: {port: 1.3.6.1.4.1.1.1}}
              - {name: b, oid: 1.3.6.1.4.1.1.0.2, clears: [a]}
            """,
            "traps[1].subject: must have the same fields as a's subject (port)",
        ),
        (
            "traps: [{name: b, oid: 1.3.6.1.4.1.1.0.2, severity: warning, clears: [b]}]",
            "traps[0]: a clearing trap (clears:) has no severity of its own",
        ),
        (
            "traps: [{name: a, oid: 1.3.6.1.4.1.1.0.1, subject: {source: 1.3.6.1.4.1.1.1}}]",
            "traps[0].subject: field name 'source' is reserved",
        ),
    ],
)
def test_table_problems(tmp_path: Path, table: str, expected: str) -> None:
    found = load_table_problems(tmp_path, table)
    assert any(p.startswith(expected) for p in found), found


CONFIG_HEAD = """
snmp:
  auths:
    v2: {version: 2, community: c2}
    v3a: {version: 3, username: alice, security_level: authPriv, password: aaaaaaaa,
          priv_password: pppppppp}
    v3b: {version: 3, username: alice, security_level: authNoPriv, password: bbbbbbbb}
  traps:
    listen: 127.0.0.1:0
    table_files: [{tables}]
"""


@pytest.mark.parametrize(
    ("traps", "expected"),
    [
        ("    accept: [{auth: nope}]", "snmp.traps.accept[0].auth: auth does not exist; known:"),
        (
            "    accept: [{auth: v2, engine_id: '8000000001'}]",
            "snmp.traps.accept[0].engine_id: only SNMPv3",
        ),
        (
            "    accept: [{auth: v3a, engine_id: 0x8000000001}]",
            "snmp.traps.accept[0].engine_id: must be quoted",
        ),
        (
            "    accept: [{auth: v3a, engine_id: xyz}]",
            "snmp.traps.accept[0].engine_id: must be 5-32 bytes",
        ),
        ("    accept: [{auth: v2, networks: [10.0.0.0/33]}]", "snmp.traps.accept[0].networks: "),
        (
            "    accept: [{auth: v3a}, {auth: v3b}]",
            "snmp.traps.accept[1].auth: SNMPv3 user 'alice' is already accepted",
        ),
        ("    accept: []", "snmp.traps.accept: List should have at least 1 item"),
        ("    listen: nowhere\n    accept: [{auth: v2}]", "snmp.traps.listen: must be host:port"),
        (
            "    accept: [{auth: v2}]\n    alertmanager: {urls: ['ftp://am']}",
            "snmp.traps.alertmanager.urls: ",
        ),
        (
            "    accept: [{auth: v2}]\n"
            "    alertmanager: {urls: ['http://am:9093'], basic_auth: {username: u}}",
            "snmp.traps.alertmanager.basic_auth: basic_auth needs password",
        ),
    ],
)
def test_traps_config_problems(tmp_path: Path, traps: str, expected: str) -> None:
    text = CONFIG_HEAD.replace("{tables}", str(SHIPPED / "*.yml")).replace(
        "    listen: 127.0.0.1:0\n", "    listen: 127.0.0.1:0\n" if "listen" not in traps else ""
    )
    (tmp_path / "c.yml").write_text(text + traps + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "c.yml")
    found = [f"{p.path}: {p.message}" for p in e.value.problems]
    assert any(p.startswith(expected) for p in found), found


def test_traps_config_loads_with_secrets_hidden(tmp_path: Path) -> None:
    text = CONFIG_HEAD.replace("{tables}", str(SHIPPED / "*.yml"))
    text += (
        "    accept: [{auth: v2, networks: [10.0.0.0/8]},"
        " {auth: v3a, engine_id: '80001f8880aabbccdd'}]\n"
        "    alertmanager: {urls: ['http://am:9093/'],"
        " basic_auth: {username: u, password: s3cr3t-am}}\n"
    )
    (tmp_path / "c.yml").write_text(text, encoding="utf-8")
    cfg = load_config(tmp_path / "c.yml")
    traps = cfg.snmp.traps
    assert traps is not None
    assert [c.auth for c in traps.credentials.communities] == ["v2"]
    assert [(u.auth, u.engine_id) for u in traps.credentials.users] == [
        ("v3a", bytes.fromhex("80001f8880aabbccdd"))
    ]
    assert traps.spec.alertmanager is not None
    assert traps.spec.alertmanager.urls == ["http://am:9093"]
    assert len(traps.table) >= 19
    assert "s3cr3t-am" not in repr(traps)
    assert "c2" not in repr(traps.credentials)
    assert traps.spec.accept[0].allows("10.1.2.3")
    assert not traps.spec.accept[0].allows("192.0.2.1")


def test_default_table_is_relative_to_the_config(tmp_path: Path) -> None:
    """No table_files: ``snmp/traps/*.yml`` beside the config; none there is no error."""
    (tmp_path / "c.yml").write_text(
        "snmp: {traps: {accept: [{auth: public_v2}]}}\n", encoding="utf-8"
    )
    cfg = load_config(tmp_path / "c.yml")
    assert cfg.snmp.traps is not None
    assert len(cfg.snmp.traps.table) == 0
    assert cfg.snmp.traps.spec.listen == "0.0.0.0:162"


def test_readme_examples_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """README's snmp.traps example is a config the daemon accepts, and its table
    example a table it loads (beside the shipped one)."""
    import re

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    [config] = [b for b in blocks if b.startswith("snmp:") and "  traps:" in b]
    [table] = [b for b in blocks if b.startswith("traps:")]
    for name in ("trap-auth", "trap-priv"):
        (tmp_path / name).write_text(f"{name}-MARK-9931\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    monkeypatch.setenv("UPS_TRAP_COMMUNITY", "c0mm-MARK-1")
    (tmp_path / "snmp" / "traps").mkdir(parents=True)
    for f in SHIPPED.glob("*.yml"):
        (tmp_path / "snmp" / "traps" / f.name).write_text(f.read_text("utf-8"), "utf-8")
    (tmp_path / "snmp" / "traps.d").mkdir()
    (tmp_path / "snmp" / "traps.d" / "site.yml").write_text(table, encoding="utf-8")
    (tmp_path / "c.yml").write_text(config, encoding="utf-8")
    traps = load_config(tmp_path / "c.yml").snmp.traps
    assert traps is not None
    assert traps.table.by_name["pduBreakerTripped"].paired
    assert traps.table.by_name["pduBreakerReset"].clears == ("pduBreakerTripped",)
    assert [u.auth for u in traps.credentials.users] == ["switches_v3"]


def test_check_config_summarises_traps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from commandcentre.cli import check_config

    text = CONFIG_HEAD.replace("{tables}", str(SHIPPED / "*.yml"))
    text += "    accept: [{auth: v2}, {auth: v3a}]\n"
    text += "    alertmanager: {urls: ['http://am:9093']}\n"
    (tmp_path / "c.yml").write_text(text, encoding="utf-8")
    assert check_config(str(tmp_path / "c.yml")) == 0
    out = capsys.readouterr().out
    assert (
        "  traps:       127.0.0.1:0, accepting v2, v3a; 19 trap types from 4 table file(s);"
        " alerts to http://am:9093\n"
    ) in out
    for secret in ("c2", "aaaaaaaa", "pppppppp"):
        assert secret not in out.replace("commandcentre", "")
