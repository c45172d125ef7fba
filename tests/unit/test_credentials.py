"""Secrets as systemd credentials (``*_credential: NAME`` -> ``$CREDENTIALS_DIRECTORY/NAME``),
beside the inline ``${ENV}`` and ``*_file`` forms: read, refused with clear messages,
never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from commandcentre.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yml"
    path.write_text(text)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_config(path)
    return [f"{p.path}: {p.message}" for p in e.value.problems]


@pytest.fixture
def creds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "credentials"
    directory.mkdir()
    (directory / "switch-auth").write_text("auth-SECRET-1\n")
    (directory / "switch-priv").write_text("priv-SECRET-2")
    (directory / "power-community").write_text("community-SECRET-3\n")
    (directory / "mqtt").write_text("mqtt-SECRET-4\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(directory))
    return directory


def test_credentials_are_read_from_the_credentials_directory(tmp_path: Path, creds: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            "snmp:\n  auths:\n"
            "    v3: {version: 3, username: u, security_level: authPriv,"
            " password_credential: switch-auth, priv_password_credential: switch-priv}\n"
            "    v2: {version: 2, community_credential: power-community}\n"
            "mqtt:\n  brokers:\n"
            "    - {name: m, host: 127.0.0.1, username: u, password_credential: mqtt}\n",
        )
    )
    auths, broker = cfg.snmp.auths, cfg.mqtt.brokers[0]
    secrets = [
        auths["v3"].password,
        auths["v3"].priv_password,
        auths["v2"].community,
        broker.password,
    ]
    assert [s.reveal() if s else None for s in secrets] == [
        "auth-SECRET-1",
        "priv-SECRET-2",
        "community-SECRET-3",
        "mqtt-SECRET-4",
    ]
    assert "SECRET" not in repr(cfg)


def test_credential_problems_are_clear_and_show_no_secret(
    tmp_path: Path, creds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = problems(
        write(
            tmp_path,
            "snmp:\n  auths:\n"
            "    a: {version: 2, community_credential: missing}\n"
            "    b: {version: 2, community_credential: ../power-community}\n"
            "    c: {version: 2, community: x, community_credential: power-community}\n",
        )
    )
    text = "\n".join(found)
    assert f"snmp.auths.a: cannot read community credential file {creds / 'missing'}" in text
    assert "snmp.auths.b: community_credential must be a credential name" in text
    assert "snmp.auths.c: give community or community_credential, not both" in text
    assert "SECRET" not in text

    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    found = problems(
        write(
            tmp_path,
            "snmp:\n  auths:\n    a: {version: 2, community_credential: power-community}\n",
        )
    )
    assert found == [
        "snmp.auths.a: community_credential 'power-community' needs $CREDENTIALS_DIRECTORY, "
        "which systemd sets for a service with LoadCredential=; it is not set"
    ]
