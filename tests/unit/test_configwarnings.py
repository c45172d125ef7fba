"""check-config's warnings about weak choices: each one fires on the weak choice,
and not on the strong one next to it."""

from __future__ import annotations

from pathlib import Path

import bcrypt
import pytest

from commandcentre.config import load_config
from commandcentre.configwarnings import config_warnings, is_loopback
from commandcentre.webconfig import load_web_config
from tests.integration.mosquitto import make_pki

MODULE = Path(__file__).resolve().parents[2] / "config" / "snmp" / "system.yml"


def warnings_for(
    tmp_path: Path, text: str, web: str | None = None, listen: str | None = None
) -> list[str]:
    path = tmp_path / "c.yml"
    path.write_text(f"snmp:\n  module_files: [{MODULE}]\n" + text if "snmp:" not in text else text)
    web_cfg = None
    if web is not None:
        (tmp_path / "web.yml").write_text(web)
        web_cfg = load_web_config(tmp_path / "web.yml")
    return [str(w) for w in config_warnings(load_config(path), web_cfg, listen)]


def snmp(auths: str, targets: str) -> str:
    return (
        f"snmp:\n  module_files: [{MODULE}]\n  defaults: {{modules: [system]}}\n"
        f"  auths:\n{auths}  targets:\n{targets}"
    )


def test_well_known_communities_warn_and_unique_ones_do_not(tmp_path: Path) -> None:
    found = warnings_for(
        tmp_path,
        snmp(
            "    a: {version: 2, community: Public}\n"
            "    b: {version: 1, community: private}\n"
            "    c: {version: 2, community: s3cr3t-unique}\n",
            "    - {name: t1, address: 10.0.0.1, auth: a}\n"
            "    - {name: t2, address: 10.0.0.2}\n"
            "    - {name: t3, address: 10.0.0.3, auth: c}\n",
        ),
    )
    text = "\n".join(found)
    assert "snmp.auths.a: SNMPv2c community is the well-known default 'public' (used by t1)" in text
    assert "snmp.auths.b: SNMPv1c community is the well-known default 'private'" in text
    # a target without auth uses the built-in public_v2
    assert (
        "snmp.auths.public_v2: SNMPv2c community is the well-known default 'public' (used by t2)"
        in text
    )
    assert "snmp.auths.c" not in text
    assert "s3cr3t-unique" not in text


def test_v3_without_privacy_and_weak_protocols_warn(tmp_path: Path) -> None:
    found = warnings_for(
        tmp_path,
        snmp(
            "    noauth: {version: 3, username: u}\n"
            "    authonly: {version: 3, username: u, security_level: authNoPriv,"
            " auth_protocol: SHA256, password: pw-one}\n"
            "    des: {version: 3, username: u, security_level: authPriv, auth_protocol: MD5,"
            " password: pw-two, priv_protocol: DES, priv_password: pw-three}\n"
            "    good: {version: 3, username: u, security_level: authPriv, auth_protocol: SHA256,"
            " password: pw-four, priv_protocol: AES, priv_password: pw-five}\n",
            "    - {name: t, address: 10.0.0.1, auth: good}\n",
        ),
    )
    text = "\n".join(found)
    assert "snmp.auths.noauth: SNMPv3 security_level noAuthNoPriv" in text
    assert "snmp.auths.authonly: SNMPv3 security_level authNoPriv" in text
    assert "snmp.auths.des: priv_protocol DES is broken" in text
    assert "snmp.auths.des: auth_protocol MD5 is weak" in text
    assert "snmp.auths.good" not in text
    assert "pw-" not in text


def test_mqtt_without_tls_warns_off_loopback_only(tmp_path: Path) -> None:
    found = warnings_for(
        tmp_path,
        "mqtt:\n  brokers:\n"
        "    - {name: far, host: mqtt.example.org, username: u, password: pw-mqtt}\n"
        "    - {name: near, host: 127.0.0.1}\n"
        "    - {name: tls, host: mqtt.example.org, tls: {}}\n"
        "    - {name: lax, host: mqtt.example.org, tls: {insecure_skip_verify: true}}\n",
    )
    text = "\n".join(found)
    assert "mqtt.brokers[0]: broker far at mqtt.example.org:1883 without tls: the password" in text
    assert "brokers[1]" not in text
    assert "brokers[2]" not in text
    assert "mqtt.brokers[3].tls.insecure_skip_verify" in text
    assert "pw-mqtt" not in text


def test_http_without_auth_off_loopback_warns(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    assert not [w for w in warnings_for(tmp_path, "") if "HTTP" in w], "127.0.0.1 by default"
    exposed = warnings_for(tmp_path, "http: {listen: ':8116'}\n")
    assert any(
        w.startswith("http.listen: HTTP on :8116 (not loopback) without auth") for w in exposed
    )
    via_flag = warnings_for(tmp_path, "", listen="10.1.2.3:8116")
    assert any(w.startswith("--listen: HTTP on 10.1.2.3:8116") for w in via_flag)
    # basic auth without TLS: still a warning, a different one
    plain = warnings_for(
        tmp_path, "http: {listen: ':8116'}\n", web=f"basic_auth_users: {{p: '{hashed}'}}\n"
    )
    assert not any("without authentication" in w for w in plain)
    assert any("basic_auth_users without tls_server_config" in w for w in plain)
    pki = make_pki(tmp_path, ("cc.test",))
    assert pki.server_cert.exists()
    full = warnings_for(
        tmp_path,
        "http: {listen: ':8116'}\n",
        web="tls_server_config: {cert_file: server.pem, key_file: server.key}\n"
        f"basic_auth_users: {{p: '{hashed}'}}\n",
    )
    assert full == []
    old_tls = warnings_for(
        tmp_path,
        "",
        web="tls_server_config:\n"
        "  {cert_file: server.pem, key_file: server.key, min_version: TLS11}\n",
    )
    assert any("min_version TLS11 allows deprecated TLS versions" in w for w in old_tls)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("mqtt.example.org", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_check_config_prints_warnings_and_still_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from commandcentre.cli import main

    config = tmp_path / "c.yml"
    config.write_text(
        f"http: {{listen: '0.0.0.0:8116'}}\nsnmp:\n  module_files: [{MODULE}]\n"
        "  targets: [{name: sw, address: 10.0.0.1, modules: [system]}]\n"
    )
    assert main(["check-config", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{config}: OK\n")
    assert f"{config}: 2 warning(s) (weak choices; the config is valid):" in err
    assert "  WARNING snmp.auths.public_v2: SNMPv2c community is the well-known default" in err
    assert "  WARNING http.listen: HTTP on 0.0.0.0:8116 (not loopback) without auth" in err

    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users: {p: plaintext-not-a-hash}\n")
    assert main(["check-config", "--config", str(config), "--web.config.file", str(web)]) == 1
    out, err = capsys.readouterr()
    assert f"{web}: basic_auth_users: user 'p': not a bcrypt hash" in err
    assert "plaintext-not-a-hash" not in out + err
