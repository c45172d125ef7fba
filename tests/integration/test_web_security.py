"""The HTTP server with a web config file: real TLS (certificates made here), client
certificates, basic auth, lifecycle endpoints, the file changing under a running
daemon, and the warnings logged at start. Every request is a new connection, so each
sees the listener's current TLS context."""

from __future__ import annotations

import asyncio
import base64
import datetime
import signal
import ssl
import subprocess
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from structlog.testing import capture_logs

from commandcentre.daemon import Daemon
from commandcentre.webconfig import WebConfigWatcher, load_web_config
from tests.integration.daemons import running_daemon
from tests.integration.mosquitto import Pki, make_pki

pytestmark = pytest.mark.integration

SERVER_NAME = "commandcentre.test"
USER = "prometheus"
PASSWORD = "correct horse battery staple"
POLL = 0.1  # the watcher's poll interval in these tests


def bcrypt_hash(password: str) -> str:
    # cost 4: the cheapest bcrypt allows, so the tests stay fast; the check is the same
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()


def write_web_config(path: Path, **sections: Any) -> Path:
    path.write_text(yaml.safe_dump(sections))
    return path


def tls_section(pki: Pki, **extra: Any) -> dict[str, Any]:
    return {"cert_file": pki.server_cert.name, "key_file": pki.server_key.name, **extra}


def daemon_config(tmp_path: Path) -> Path:
    path = tmp_path / "commandcentre.yml"
    path.write_text("http: {listen: '127.0.0.1:0'}\n")
    return path


def client_context(
    pki: Pki,
    *,
    cert: tuple[Path, Path] | None = None,
    version: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_file))
    if cert is not None:
        ctx.load_cert_chain(*cert)
    if version is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1, on purpose
            ctx.minimum_version = ctx.maximum_version = version
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Reply:
    def __init__(self, status: int, headers: dict[str, str], text: str) -> None:
        self.status, self.headers, self.text = status, headers, text


async def request(
    url: str,
    *,
    ctx: ssl.SSLContext | None = None,
    auth: tuple[str, str] | None = None,
    method: str = "GET",
) -> Reply:
    """One request on a new connection."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s,
        s.request(
            method,
            url,
            ssl=ctx if ctx is not None else False,
            server_hostname=SERVER_NAME if ctx is not None else None,
            headers={"Authorization": basic(*auth)} if auth else None,
            timeout=aiohttp.ClientTimeout(total=10),
        ) as r,
    ):
        return Reply(r.status, dict(r.headers), await r.text())


async def eventually(check: Callable[[], Awaitable[bool]], what: str, limit: float = 10) -> None:
    deadline = time.monotonic() + limit
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def https(base: str) -> str:
    return base.replace("http://", "https://")


def start(
    tmp_path: Path, web_path: Path, *, enable_lifecycle: bool = False
) -> AbstractAsyncContextManager[tuple[Daemon, str]]:
    watcher = WebConfigWatcher(load_web_config(web_path), poll_seconds=POLL)
    return running_daemon(daemon_config(tmp_path), web=watcher, enable_lifecycle=enable_lifecycle)


def metric(text: str, line_start: str) -> float:
    values = [
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start)
    ]
    assert len(values) == 1, (line_start, values)
    return values[0]


# --------------------------------------------------------------------------- TLS + basic auth


async def test_tls_with_basic_auth_guards_every_endpoint_but_healthy(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, (SERVER_NAME,))
    web = write_web_config(
        tmp_path / "web.yml",
        tls_server_config=tls_section(pki),
        basic_auth_users={USER: bcrypt_hash(PASSWORD)},
        http_server_config={"headers": {"Strict-Transport-Security": "max-age=31536000"}},
    )
    ctx = client_context(pki)
    daemon: Daemon
    async with start(tmp_path, web) as (daemon, base):
        url = https(base)
        with capture_logs() as logs:
            for path in ("/metrics", "/", "/snmp?target=x", "/-/ready", "/no-such-page"):
                r = await request(url + path, ctx=ctx)
                assert r.status == 401, path
                assert r.headers["WWW-Authenticate"].startswith('Basic realm="commandcentre"')
                assert "default-src 'none'" in r.headers["Content-Security-Policy"]
                assert r.headers["Strict-Transport-Security"] == "max-age=31536000"
                r = await request(url + path, ctx=ctx, auth=(USER, "wrong password"))
                assert r.status == 401, path
                r = await request(url + path, ctx=ctx, auth=("nobody", PASSWORD))
                assert r.status == 401, path
        # ten wrong guesses from one address: one warning, not ten, and without the
        # user name or password sent (none of the five requests without any)
        refused = [e for e in logs if e["event"] == "http_request_refused"]
        assert [(e["remote"], e["reason"], e["path"]) for e in refused] == [
            ("127.0.0.1", "wrong_credentials", "/metrics")
        ]
        assert "wrong password" not in str(logs)
        assert "nobody" not in str(logs)
        healthy = await request(url + "/-/healthy", ctx=ctx)
        assert (healthy.status, healthy.text) == (200, "Healthy.\n")

        checks_before = daemon.auth.verifier.checks
        for _ in range(3):
            ok = await request(url + "/metrics", ctx=ctx, auth=(USER, PASSWORD))
            assert ok.status == 200
            assert ok.headers["Strict-Transport-Security"] == "max-age=31536000"
        # bcrypt ran once for three good requests: the rest came from the cache
        assert daemon.auth.verifier.checks == checks_before + 1
        assert (
            metric(ok.text, 'commandcentre_http_requests_refused_total{reason="wrong_credentials"}')
            == 10
        )
        assert (
            metric(
                ok.text, 'commandcentre_http_requests_refused_total{reason="missing_credentials"}'
            )
            == 5
        )
        assert metric(ok.text, "commandcentre_web_config_last_reload_successful") == 1

        # the TLS port speaks no plain HTTP
        with pytest.raises(aiohttp.ClientError):
            await request(base + "/-/healthy")


async def test_reload_only_by_post_and_only_with_the_lifecycle_flag(tmp_path: Path) -> None:
    web = write_web_config(tmp_path / "web.yml", basic_auth_users={USER: bcrypt_hash(PASSWORD)})
    creds = (USER, PASSWORD)
    async with start(tmp_path, web) as (_, base):
        r = await request(base + "/-/reload", method="POST", auth=creds)
        assert (r.status, r.text) == (403, "Lifecycle API is not enabled.\n")
    async with start(tmp_path, web, enable_lifecycle=True) as (_, base):
        assert (await request(base + "/-/reload", method="POST")).status == 401
        r = await request(base + "/-/reload", method="POST", auth=creds)
        assert (r.status, r.text) == (200, "config reloaded\n")
        assert (await request(base + "/-/reload", auth=creds)).status == 405


# --------------------------------------------------------------------------- client certificates


def client_cert_with_san(pki: Pki, directory: Path, san: str) -> tuple[Path, Path]:
    """A client certificate for ``san`` signed by the PKI's CA (make_pki's has no SAN)."""
    ca_key = serialization.load_pem_private_key(
        (pki.ca_file.parent / "ca.key").read_bytes(), password=None
    )
    ca = x509.load_pem_x509_certificate(pki.ca_file.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, san)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    cert_path, key_path = directory / f"{san}.pem", directory / f"{san}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def pki_with_ca_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Pki:
    """make_pki, keeping the CA key (written beside ca.pem) to sign more certificates."""
    from tests.integration import mosquitto

    keys: list[ec.EllipticCurvePrivateKey] = []
    real_key = mosquitto._key

    def remembering_key() -> ec.EllipticCurvePrivateKey:
        keys.append(real_key())
        return keys[-1]

    monkeypatch.setattr(mosquitto, "_key", remembering_key)
    pki = make_pki(tmp_path / "pki", (SERVER_NAME,))
    mosquitto._write_key(keys[0], pki.ca_file.parent / "ca.key")  # the first key is the CA's
    return pki


async def test_client_certificate_required_verified_and_matched_against_sans(
    tmp_path: Path, pki_with_ca_key: Pki
) -> None:
    pki = pki_with_ca_key
    allowed = client_cert_with_san(pki, tmp_path, "prometheus.test")
    other = client_cert_with_san(pki, tmp_path, "intruder.test")
    web = write_web_config(
        pki.ca_file.parent / "web.yml",
        tls_server_config=tls_section(
            pki,
            client_auth_type="RequireAndVerifyClientCert",
            client_ca_file="ca.pem",
            client_allowed_sans=["prometheus.test"],
        ),
    )
    async with start(tmp_path, web) as (_, base):
        url = https(base) + "/metrics"
        with pytest.raises(aiohttp.ClientError):  # no certificate: the handshake fails
            await request(url, ctx=client_context(pki))
        assert (await request(url, ctx=client_context(pki, cert=allowed))).status == 200
        refused = await request(url, ctx=client_context(pki, cert=other))
        assert (refused.status, refused.text) == (403, "client certificate not allowed\n")
        # make_pki's own client certificate is signed by the CA but has no SAN
        no_san = (pki.client_cert, pki.client_key)
        assert (await request(url, ctx=client_context(pki, cert=no_san))).status == 403


async def test_min_version_tls12_refuses_tls11_and_tls11_is_possible_when_allowed(
    tmp_path: Path,
) -> None:
    pki = make_pki(tmp_path, (SERVER_NAME,))
    tls11 = client_context(pki, version=ssl.TLSVersion.TLSv1_1)
    web = write_web_config(tmp_path / "web.yml", tls_server_config=tls_section(pki))
    async with start(tmp_path, web) as (_, base):
        with pytest.raises(aiohttp.ClientError):
            await request(https(base) + "/-/healthy", ctx=tls11)
        modern = await request(https(base) + "/-/healthy", ctx=client_context(pki))
        assert modern.status == 200
    # control: the same client gets through when the config allows TLS 1.1, so the
    # refusal above is the server's min_version, not the client's own limits
    web = write_web_config(
        tmp_path / "web.yml", tls_server_config=tls_section(pki, min_version="TLS11")
    )
    async with start(tmp_path, web) as (_, base):
        assert (await request(https(base) + "/-/healthy", ctx=tls11)).status == 200


# --------------------------------------------------------------------------- changes while running


async def test_web_config_changes_apply_without_restart_and_broken_ones_keep_the_old(
    tmp_path: Path,
) -> None:
    old_pw, new_pw = "first password", "second password"
    web = write_web_config(tmp_path / "web.yml", basic_auth_users={USER: bcrypt_hash(old_pw)})
    pki = make_pki(tmp_path, (SERVER_NAME,))
    async with start(tmp_path, web, enable_lifecycle=True) as (daemon, base):
        assert (await request(base + "/metrics", auth=(USER, old_pw))).status == 200

        # 1. a new password, picked up by the poll
        write_web_config(web, basic_auth_users={USER: bcrypt_hash(new_pw)})

        async def new_password_works() -> bool:
            return (await request(base + "/metrics", auth=(USER, new_pw))).status == 200

        await eventually(new_password_works, "the new password to be accepted")
        assert (await request(base + "/metrics", auth=(USER, old_pw))).status == 401

        # 2. TLS switched on: the same port now speaks HTTPS, no restart
        write_web_config(
            web, tls_server_config=tls_section(pki), basic_auth_users={USER: bcrypt_hash(new_pw)}
        )
        ctx = client_context(pki)

        def serves_tls_with(password: str) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                try:
                    r = await request(https(base) + "/metrics", ctx=ctx, auth=(USER, password))
                except aiohttp.ClientError:
                    return False
                return r.status == 200

            return check

        await eventually(serves_tls_with(new_pw), "the listener to serve TLS")

        # 3. a broken file: logged and counted once, the running config stays
        failures = daemon.web.record.reloads["failure"] if daemon.web else -1
        web.write_text("basic_auth_users:\n  prometheus: not-a-bcrypt-hash\n")

        async def failure_counted() -> bool:
            return daemon.web is not None and daemon.web.record.reloads["failure"] == failures + 1

        await eventually(failure_counted, "the broken file to be noticed")
        r = await request(https(base) + "/metrics", ctx=ctx, auth=(USER, new_pw))
        assert r.status == 200, "the previous web config (TLS and password) still applies"
        assert metric(r.text, "commandcentre_web_config_last_reload_successful") == 0
        assert metric(r.text, 'commandcentre_web_config_reloads_total{result="failure"}') == 1
        await asyncio.sleep(5 * POLL)
        assert daemon.web is not None
        assert daemon.web.record.reloads["failure"] == failures + 1, (
            "an unchanged broken file: once"
        )

        # /-/reload says why, without the hash
        r = await request(https(base) + "/-/reload", ctx=ctx, method="POST", auth=(USER, new_pw))
        assert r.status == 500
        assert f"{web}: basic_auth_users: user 'prometheus': not a bcrypt hash" in r.text
        assert "not-a-bcrypt-hash" not in r.text

        # 4. fixed again
        write_web_config(
            web, tls_server_config=tls_section(pki), basic_auth_users={USER: bcrypt_hash(old_pw)}
        )
        await eventually(serves_tls_with(old_pw), "the repaired file to apply")


async def test_a_renewed_certificate_is_served_to_new_connections(tmp_path: Path) -> None:
    first = make_pki(tmp_path / "a", (SERVER_NAME,))
    second = make_pki(tmp_path / "b", (SERVER_NAME,))
    web = write_web_config(tmp_path / "a" / "web.yml", tls_server_config=tls_section(first))
    async with start(tmp_path, web) as (_, base):
        url = https(base) + "/-/healthy"
        assert (await request(url, ctx=client_context(first))).status == 200
        # renewal in place: same file names, new content (another CA, so it is visible)
        for name in ("server.pem", "server.key"):
            (tmp_path / "a" / name).write_bytes((tmp_path / "b" / name).read_bytes())

        async def second_served() -> bool:
            try:
                return (await request(url, ctx=client_context(second))).status == 200
            except aiohttp.ClientError:
                return False

        await eventually(second_served, "the renewed certificate")
        with pytest.raises(aiohttp.ClientError):
            await request(url, ctx=client_context(first))


def test_the_daemon_logs_config_warnings_at_start(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text(
        "http: {listen: '0.0.0.0:0'}\n"
        "snmp:\n  auths: {lab: {version: 2, community: private}}\n"
        "  targets: [{name: sw, address: 127.0.0.1:9, auth: lab, modules: [system]}]\n"
        f"  module_files: [{Path(__file__).resolve().parents[2] / 'config/snmp/system.yml'}]\n"
    )
    cli = str(Path(sys.executable).with_name("commandcentre"))
    err = tmp_path / "stderr"
    with err.open("wb") as f:
        proc = subprocess.Popen([cli, "run", "--config", str(config)], stderr=f, stdout=f)
    try:
        deadline = time.monotonic() + 20
        while '"listening"' not in err.read_text():
            assert proc.poll() is None, err.read_text()
            assert time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    lines = [line for line in err.read_text().splitlines() if '"config_warning"' in line]
    assert len(lines) == 2, err.read_text()
    assert '"key": "snmp.auths.lab"' in lines[0]
    assert "well-known default 'private'" in lines[0]
    assert '"key": "http.listen"' in lines[1]
