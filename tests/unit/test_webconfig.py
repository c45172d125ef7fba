"""The web config file format (exporter-toolkit's): validation, key-path errors,
secrets kept out of messages, paths, TLS contexts; and the basic-auth check."""

from __future__ import annotations

import asyncio
import base64
import ssl
from pathlib import Path

import bcrypt
import pytest

from commandcentre.configbase import ConfigError
from commandcentre.webauth import BasicAuthVerifier, parse_basic_auth
from commandcentre.webconfig import CIPHER_SUITES, load_web_config
from tests.integration.mosquitto import make_pki

HASH = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "web.yml"
    path.write_text(text)
    return load_web_config(path)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load(tmp_path, text)
    return [str(p) for p in e.value.problems]


def test_an_empty_file_means_plain_http_without_auth(tmp_path: Path) -> None:
    cfg = load_web_config(_write(tmp_path, ""))
    assert cfg.ssl_context is None
    assert not cfg.users
    assert not cfg.requires_auth


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "web.yml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("colour: blue\n", "colour: unknown key"),
        ("tls_server_config: {cert_file: a.pem}\n", "tls_server_config: cert_file and key_file"),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_auth_type: Sometimes}\n",
            "tls_server_config.client_auth_type: Input should be 'NoClientCert'",
        ),
        (
            "tls_server_config:\n  {cert_file: a, key_file: b,"
            " client_auth_type: RequireAndVerifyClientCert}\n",
            "needs client_ca_file",
        ),
        (
            "tls_server_config:\n  {cert_file: a, key_file: b,"
            " client_auth_type: RequireAnyClientCert}\n",
            "RequireAnyClientCert (a certificate required but not verified) is not supported",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_ca_file: ca.pem}\n",
            "client_ca_file is given but client_auth_type does not verify",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, min_version: TLS13,"
            " max_version: TLS12}\n",
            "min_version TLS13 is above max_version TLS12",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, min_version: SSL3}\n",
            "tls_server_config.min_version: Input should be 'TLS10'",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, cipher_suites: [TLS_NULL]}\n",
            "unknown cipher suite 'TLS_NULL'",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_allowed_sans: [x]}\n",
            "client_allowed_sans needs client_auth_type RequireAndVerifyClientCert",
        ),
        ("http_server_config: {headers: {Server: x}}\n", "header 'Server' cannot be set"),
        (
            "http_server_config: {headers: {X-Frame-Options: allow}}\n",
            "header X-Frame-Options must be one of deny, sameorigin",
        ),
        ("basic_auth_users: {'a:b': x}\n", "user name 'a:b' must be non-empty and without ':'"),
        ("- a list\n", "must be a YAML mapping at the top level"),
        ("basic_auth_users: {a: [\n", "invalid YAML"),
    ],
)
def test_problems_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(tmp_path, text)
    assert any(expected in p for p in found), found
    assert all(p.startswith(str(tmp_path / "web.yml")) for p in found)


def test_a_hash_or_password_given_where_a_hash_belongs_never_appears(tmp_path: Path) -> None:
    text = "\n".join(problems(tmp_path, "basic_auth_users:\n  alice: hunter2-plaintext\n"))
    assert "basic_auth_users: user 'alice': not a bcrypt hash" in text
    assert "hunter2-plaintext" not in text
    text = "\n".join(problems(tmp_path, "basic_auth_users:\n  bob: [1, 2]\n  carol: 4242\n"))
    assert "basic_auth_users.bob" in text
    assert "basic_auth_users.carol: Input should be a valid string (given: <secret>)" in text
    assert "4242" not in text


def test_certificate_paths_are_relative_to_the_file_and_expand_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pki = make_pki(tmp_path / "pki", ("cc.test",))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(pki.server_key.parent))
    cfg = load_web_config(
        _write(
            tmp_path / "pki",
            "tls_server_config:\n"
            "  cert_file: server.pem\n"
            "  key_file: ${CREDENTIALS_DIRECTORY}/server.key\n"
            "  client_auth_type: VerifyClientCertIfGiven\n"
            "  client_ca_file: ca.pem\n"
            "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n"
            f"basic_auth_users: {{prometheus: '{HASH}'}}\n",
        )
    )
    ctx = cfg.ssl_context
    assert ctx is not None
    assert ctx.verify_mode == ssl.CERT_OPTIONAL
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    tls12 = {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 == {CIPHER_SUITES["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]}
    assert cfg.requires_auth
    assert cfg.users == {"prometheus": HASH.encode()}


def test_unreadable_or_mismatched_key_files_are_problems_naming_the_files(tmp_path: Path) -> None:
    a = make_pki(tmp_path / "a", ("cc.test",))
    b = make_pki(tmp_path / "b", ("cc.test",))
    found = problems(
        tmp_path, f"tls_server_config: {{cert_file: {a.server_cert}, key_file: {b.server_key}}}\n"
    )
    assert len(found) == 1
    assert f"{a.server_cert}" in found[0]
    assert "BEGIN" not in found[0]
    found = problems(tmp_path, "tls_server_config: {cert_file: nope.pem, key_file: nope.key}\n")
    assert "tls_server_config: cannot use the certificate" in found[0]
    assert str(tmp_path / "nope.pem") in found[0]


def test_required_client_certificates_count_as_authentication(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, ("cc.test",))
    cfg = load_web_config(
        _write(
            tmp_path,
            "tls_server_config: {cert_file: server.pem, key_file: server.key,"
            " client_auth_type: RequireAndVerifyClientCert, client_ca_file: ca.pem}\n",
        )
    )
    assert cfg.ssl_context is not None
    assert cfg.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert cfg.requires_auth
    assert pki.ca_file.exists()


# --------------------------------------------------------------------------- basic auth


def _header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_parse_basic_auth() -> None:
    assert parse_basic_auth(_header("u", "p:w")) == ("u", "p:w")
    assert parse_basic_auth(_header("ü", "")) == ("ü", "")
    assert parse_basic_auth("Bearer abc") is None
    assert parse_basic_auth("Basic !!!") is None
    assert parse_basic_auth("Basic " + base64.b64encode(b"no-colon").decode()) is None
    assert parse_basic_auth("Basic " + base64.b64encode(b"\xff:x").decode()) is None


def test_verifier_caches_successes_only_and_a_new_hash_misses_the_cache() -> None:
    async def go() -> None:
        v = BasicAuthVerifier()
        users = {"u": HASH.encode()}
        assert await v.verify(users, "u", "pw")
        assert await v.verify(users, "u", "pw")
        assert v.checks == 1
        assert not await v.verify(users, "u", "wrong")
        assert not await v.verify(users, "u", "wrong")
        assert v.checks == 3, "failures are not cached"
        assert not await v.verify(users, "nobody", "pw")
        assert v.checks == 4, "an unknown user costs a bcrypt check too"
        assert not await v.verify(users, "u", "x" * 100), "over bcrypt's 72 bytes: refused"
        other = {"u": bcrypt.hashpw(b"pw", bcrypt.gensalt(4))}
        assert await v.verify(other, "u", "pw")
        assert v.checks == 6, "a changed hash is checked again"

    asyncio.run(go())


def test_verifier_cache_holds_no_password() -> None:
    async def go() -> BasicAuthVerifier:
        v = BasicAuthVerifier()
        assert await v.verify({"u": HASH.encode()}, "u", "pw")
        return v

    v = asyncio.run(go())
    keys = list(v._cache)
    assert len(keys) == 1
    assert b"pw" not in keys[0]
    assert len(keys[0]) == 32


def test_the_readme_web_config_example_is_valid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import re

    import yaml

    from commandcentre.webconfig import WebConfigSpec

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("**TLS and basic auth: `--web.config.file`.**", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert block is not None
    data = yaml.safe_load(block.group(1))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert {"tls_server_config", "http_server_config", "basic_auth_users"} <= set(data)
    spec = WebConfigSpec.model_validate(data, context={"base_dir": str(tmp_path)}, strict=False)
    assert spec.tls_server_config is not None
    assert spec.tls_server_config.client_auth_type == "RequireAndVerifyClientCert"
