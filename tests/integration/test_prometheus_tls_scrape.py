"""A real Prometheus scrapes the daemon over TLS with basic auth, as the README's
security section tells operators to set it up (``scheme: https``, ``tls_config``
with the CA, ``basic_auth`` with a ``password_file``); a second job with a wrong
password is refused, so the first job's success is the credentials' doing."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from commandcentre.demo.processes import stop_process
from commandcentre.webconfig import WebConfigWatcher, load_web_config
from tests.integration.daemons import running_daemon
from tests.integration.mosquitto import make_pki
from tests.integration.prometheus import PROMETHEUS, run_prometheus
from tests.integration.test_web_security import SERVER_NAME, bcrypt_hash, daemon_config

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(PROMETHEUS is None, reason="needs prometheus (Debian package prometheus)"),
]

PASSWORD = "scrape-password-for-the-test"


def job(name: str, address: str, pki_dir: Path, password_file: Path) -> dict[str, Any]:
    return {
        "job_name": name,
        "scheme": "https",
        "tls_config": {"ca_file": str(pki_dir / "ca.pem"), "server_name": SERVER_NAME},
        "basic_auth": {"username": "prometheus", "password_file": str(password_file)},
        "static_configs": [{"targets": [address]}],
    }


async def targets(session: aiohttp.ClientSession, prom: str) -> dict[str, dict[str, Any]]:
    async with session.get(prom + "/api/v1/targets") as r:
        body = json.loads(await r.text())
    return {t["labels"]["job"]: t for t in body["data"]["activeTargets"]}


async def test_prometheus_scrapes_over_tls_with_basic_auth(tmp_path: Path) -> None:
    assert PROMETHEUS is not None
    pki = make_pki(tmp_path / "pki", (SERVER_NAME,))
    web = tmp_path / "pki" / "web.yml"
    web.write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {"cert_file": "server.pem", "key_file": "server.key"},
                "basic_auth_users": {"prometheus": bcrypt_hash(PASSWORD)},
            }
        )
    )
    good, bad = tmp_path / "good-password", tmp_path / "bad-password"
    good.write_text(PASSWORD + "\n")
    bad.write_text("not-the-password\n")
    watcher = WebConfigWatcher(load_web_config(web))
    async with running_daemon(daemon_config(tmp_path), web=watcher) as (_, base):
        address = base.removeprefix("http://")
        conf = tmp_path / "prometheus.yml"
        conf.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                    "scrape_configs": [
                        job("commandcentre", address, pki.ca_file.parent, good),
                        job("wrong-password", address, pki.ca_file.parent, bad),
                    ],
                }
            )
        )
        proc, prom = run_prometheus(conf, tmp_path)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
                deadline = time.monotonic() + 60
                seen: dict[str, dict[str, Any]] = {}
                while time.monotonic() < deadline:
                    assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
                    try:
                        seen = await targets(s, prom)
                    except (aiohttp.ClientError, KeyError, ValueError):
                        seen = {}
                    if {t.get("health") for t in seen.values()} == {"up", "down"}:
                        break
                    await asyncio.sleep(0.25)
                assert seen["commandcentre"]["health"] == "up", seen
                assert seen["wrong-password"]["health"] == "down", seen
                assert "401" in seen["wrong-password"]["lastError"], seen
                async with s.get(
                    prom + "/api/v1/query", params={"query": "commandcentre_build_info"}
                ) as r:
                    result = json.loads(await r.text())["data"]["result"]
                assert [x["metric"]["job"] for x in result] == ["commandcentre"]
        finally:
            stop_process(proc)
