"""Traps straight to a real Alertmanager (Debian ``prometheus-alertmanager``,
started here on free ports): a UPS's on-battery trap, sent by ``snmptrap`` as an
APC card sends it, becomes an active alert with the target's labels, and the
return-from-battery trap resolves it; a trap with no clearing partner ends by
itself; TLS and basic auth in front of Alertmanager work.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import yaml
from structlog.testing import capture_logs

from commandcentre.daemon import Daemon
from tests.integration.agents import free_tcp_port, free_udp_port
from tests.integration.daemons import running_daemon
from tests.integration.mosquitto import make_pki
from tests.integration.test_traps import (
    MTRAPARGS_STRING_0,
    SECRETS,
    TABLES,
    UPS_COMMUNITY,
    need_net_snmp,
    run,
    write_config,
)

pytestmark = pytest.mark.integration

AM_CONFIG = {"route": {"receiver": "null"}, "receivers": [{"name": "null"}]}
AM_PASSWORD = "am-basic-auth-pass"


@contextmanager
def alertmanager(
    tmp: Path, web_config: dict[str, Any] | None = None, port: int | None = None
) -> Iterator[int]:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.skip("alertmanager not installed (Debian package prometheus-alertmanager)")
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "alertmanager.yml").write_text(yaml.safe_dump(AM_CONFIG), encoding="utf-8")
    args = [
        binary,
        f"--config.file={tmp / 'alertmanager.yml'}",
        f"--storage.path={tmp / 'data'}",
        "--cluster.listen-address=",  # a single instance, no gossip port
    ]
    if web_config is not None:
        (tmp / "web.yml").write_text(yaml.safe_dump(web_config), encoding="utf-8")
        args.append(f"--web.config.file={tmp / 'web.yml'}")
    port = port or free_tcp_port()
    args.append(f"--web.listen-address=127.0.0.1:{port}")
    log_path = tmp / "alertmanager.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while "Listening on" not in log_path.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("alertmanager did not start:\n" + log_path.read_text())
                time.sleep(0.05)
            yield port
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@pytest.fixture
def am_port(tmp_path: Path) -> Iterator[int]:
    with alertmanager(tmp_path / "am") as port:
        yield port


async def active_alerts(base: str, **kwargs: Any) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{base}/api/v2/alerts", params={"active": "true"}, **kwargs) as resp,
    ):
        assert resp.status == 200, await resp.text()
        alerts: list[dict[str, Any]] = await resp.json()
        return alerts


async def wait_alert(
    base: str, alertname: str, present: bool, limit: float = 10.0, **kwargs: Any
) -> dict[str, Any] | None:
    """Poll Alertmanager until an active alert named ``alertname`` is (or is no longer)
    listed; returns it."""
    deadline = time.monotonic() + limit
    while True:
        found = [
            a for a in await active_alerts(base, **kwargs) if a["labels"]["alertname"] == alertname
        ]
        if bool(found) == present:
            return found[0] if found else None
        assert time.monotonic() < deadline, f"{alertname} {'never' if present else 'still'} active"
        await asyncio.sleep(0.02)


@pytest.fixture
async def daemon_with_am(tmp_path: Path, am_port: int) -> AsyncIterator[tuple[str, int]]:
    need_net_snmp()
    port = free_udp_port()
    # An entry of the site's own, with no clearing partner and no resolve_after.
    (tmp_path / "site.yml").write_text(
        yaml.safe_dump(
            {
                "traps": [
                    {
                        "name": "siteDoorOpened",
                        "oid": "1.3.6.1.4.1.99999.0.1",
                        "severity": "warning",
                        "summary": "door {door} opened on {target}",
                        "subject": {"door": "1.3.6.1.4.1.99999.1.1"},
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    config = write_config(
        tmp_path,
        port,
        table_files=[
            TABLES,
            "site.yml",
        ],
        alertmanager={
            "urls": [f"http://127.0.0.1:{am_port}"],
            "resolve_timeout": "2s",
        },
    )
    async with running_daemon(config):
        yield f"http://127.0.0.1:{am_port}", port


async def test_ups_on_battery_fires_and_resolves(daemon_with_am: tuple[str, int]) -> None:
    base, port = daemon_with_am
    dest = f"127.0.0.1:{port}"
    with capture_logs():
        # exactly what an APC Smart-UPS NMC sends: SNMPv1, enterprise apc, specific 5
        start = time.monotonic()
        rc, out = await run(
            "snmptrap", "-v1", "-c", UPS_COMMUNITY, dest, "1.3.6.1.4.1.318", "127.0.0.1",
            "6", "5", "", MTRAPARGS_STRING_0, "s",
            "UPS: On battery power in response to an input power problem.",
        )  # fmt: skip
        sent = time.monotonic()
        assert rc == 0, out
        alert = await wait_alert(base, "upsOnBattery", present=True)
        fired, fired_from_start = time.monotonic() - sent, time.monotonic() - start
        assert alert is not None
        assert alert["labels"] == {
            "alertname": "upsOnBattery",
            "severity": "critical",
            "source": "127.0.0.1",
            "target": "ups-hall",
            "site": "town-hall",
            "room": "basement",
        }
        assert alert["annotations"]["summary"] == "ups-hall is on battery"
        assert "input power problem" in alert["annotations"]["description"]
        assert alert["annotations"]["trap_oid"] == "1.3.6.1.4.1.318.0.5"

        # utility power back: PowerNet-MIB powerRestored (specific 9)
        rc, out = await run(
            "snmptrap", "-v1", "-c", UPS_COMMUNITY, dest, "1.3.6.1.4.1.318", "127.0.0.1",
            "6", "9", "", MTRAPARGS_STRING_0, "s", "UPS: Returned from battery backup power.",
        )  # fmt: skip
        sent = time.monotonic()
        assert rc == 0, out
        await wait_alert(base, "upsOnBattery", present=False)
        resolved = time.monotonic() - sent
    print(
        f"\nsnmptrap exit -> alert active in Alertmanager: {fired * 1000:.1f} ms "
        f"(snmptrap start -> active: {fired_from_start * 1000:.1f} ms); "
        f"clearing snmptrap exit -> resolved: {resolved * 1000:.1f} ms"
    )


async def test_unpaired_trap_ends_by_itself(daemon_with_am: tuple[str, int]) -> None:
    base, port = daemon_with_am
    rc, out = await run(
        "snmptrap", "-v2c", "-c", "sw-c0mmunity-9", f"127.0.0.1:{port}", "",
        "1.3.6.1.4.1.99999.0.1", "1.3.6.1.4.1.99999.1.1.0", "s", "north",
    )  # fmt: skip
    assert rc == 0, out
    alert = await wait_alert(base, "siteDoorOpened", present=True)
    assert alert is not None
    assert alert["labels"]["door"] == "north"
    assert alert["annotations"]["summary"] == "door north opened on ups-hall"
    # resolve_timeout is 2 s: gone after that, with no clearing trap
    await wait_alert(base, "siteDoorOpened", present=False, limit=10)


async def test_tls_and_basic_auth(tmp_path: Path) -> None:
    need_net_snmp()
    pki = make_pki(tmp_path / "pki", ("alertmanager.test",))
    web = {
        "tls_server_config": {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key)},
        "basic_auth_users": {
            "commandcentre": bcrypt.hashpw(AM_PASSWORD.encode(), bcrypt.gensalt(4)).decode()
        },
    }
    (tmp_path / "am-password").write_text(AM_PASSWORD + "\n", encoding="utf-8")
    with alertmanager(tmp_path / "am", web) as am:
        port = free_udp_port()
        config = write_config(
            tmp_path,
            port,
            alertmanager={
                "urls": [f"https://127.0.0.1:{am}"],
                "tls": {"ca_file": str(pki.ca_file), "server_name": "alertmanager.test"},
                "basic_auth": {"username": "commandcentre", "password_file": "am-password"},
            },
        )
        base = f"https://127.0.0.1:{am}"
        import ssl

        ctx = ssl.create_default_context(cafile=str(pki.ca_file))
        ctx.check_hostname = False
        token = base64.b64encode(f"commandcentre:{AM_PASSWORD}".encode()).decode()
        auth = {"Authorization": f"Basic {token}"}
        with capture_logs() as logs:
            async with running_daemon(config) as (_daemon, url):
                rc, out = await run(
                    "snmptrap", "-v1", "-c", UPS_COMMUNITY, f"127.0.0.1:{port}",
                    "1.3.6.1.4.1.318", "127.0.0.1", "6", "7", "", MTRAPARGS_STRING_0, "s",
                    "UPS: The battery power is too low to continue to support the load.",
                )  # fmt: skip
                assert rc == 0, out
                alert = await wait_alert(base, "lowBattery", present=True, ssl=ctx, headers=auth)
                assert alert is not None
                assert alert["labels"]["severity"] == "critical"
                posted = (
                    f'commandcentre_snmp_trap_alerts_posts_total{{url="{base}",result="success"}} 1'
                )
                deadline = time.monotonic() + 5
                text = ""
                while posted not in text and time.monotonic() < deadline:
                    async with aiohttp.ClientSession() as s, s.get(url + "/metrics") as resp:
                        text = await resp.text()
                    await asyncio.sleep(0.05)
        assert posted in text
        assert AM_PASSWORD not in text
        assert AM_PASSWORD not in str(logs)
        for secret in SECRETS:
            assert secret not in str(logs)


async def send_failed_self_test(port: int) -> None:
    """An APC UPS's SNMPv1 "self-test failed" trap, as net-snmp's snmptrap sends it."""
    rc, out = await run(
        "snmptrap", "-v1", "-c", UPS_COMMUNITY, f"127.0.0.1:{port}", "1.3.6.1.4.1.318",
        "127.0.0.1", "6", "3", "", MTRAPARGS_STRING_0, "s", "UPS: Failed self-test.",
    )  # fmt: skip
    assert rc == 0, out


def posts(daemon: Daemon, result: str) -> float:
    """The daemon's POSTs to Alertmanager with that result, all URLs together."""
    poster = daemon.traps._poster
    assert poster is not None
    return sum(
        s.value
        for s in poster.samples()
        if s.name.endswith("_posts_total") and ("result", result) in s.labels
    )


async def failed_posts(daemon: Daemon) -> float:
    """Wait for a failed POST (Alertmanager being down) and return how many failed."""
    deadline = time.monotonic() + 10
    while posts(daemon, "failure") == 0:
        assert time.monotonic() < deadline, "no failed post"
        await asyncio.sleep(0.05)
    return posts(daemon, "failure")


async def test_posts_are_retried_until_alertmanager_is_up(tmp_path: Path) -> None:
    """Alertmanager down when the trap comes: the post fails, is retried with backoff,
    and the alert arrives once Alertmanager is up; the receiver meanwhile serves."""
    need_net_snmp()
    am_port = free_tcp_port()
    port = free_udp_port()
    config = write_config(tmp_path, port, alertmanager={"urls": [f"http://127.0.0.1:{am_port}"]})
    async with running_daemon(config) as (daemon, _):
        await send_failed_self_test(port)
        await failed_posts(daemon)
        # a trap from elsewhere is still taken while posts fail
        rc, out = await run(
            "snmpinform", "-v2c", "-c", "sw-c0mmunity-9", "-r", "0", "-t", "3",
            f"127.0.0.1:{port}", "", "1.3.6.1.6.3.1.1.5.2",
        )  # fmt: skip
        assert rc == 0, out
        with alertmanager(tmp_path / "am", port=am_port):
            alert = await wait_alert(
                f"http://127.0.0.1:{am_port}", "upsDiagnosticsFailed", present=True, limit=40
            )
            assert alert is not None
            assert alert["labels"]["target"] == "ups-hall"
            deadline = time.monotonic() + 5
            while posts(daemon, "success") == 0:
                assert time.monotonic() < deadline, "the post that delivered it is not counted"
                await asyncio.sleep(0.02)


async def test_alerts_waiting_for_alertmanager_survive_a_reload(tmp_path: Path) -> None:
    """Alertmanager down, an alert waiting for it, and a reload that changes the
    Alertmanager settings but keeps its URL: the waiting alert is delivered once
    Alertmanager is up, and the post counters go on rather than start again."""
    need_net_snmp()
    am_port = free_tcp_port()
    port = free_udp_port()
    url = f"http://127.0.0.1:{am_port}"
    config = write_config(tmp_path, port, alertmanager={"urls": [url]})
    async with running_daemon(config) as (daemon, _):
        await send_failed_self_test(port)
        before = daemon.traps._poster
        assert before is not None
        failed = await failed_posts(daemon)
        write_config(tmp_path, port, alertmanager={"urls": [url], "resend_interval": "2m"})
        assert await daemon.reload() == []
        assert daemon.traps._poster is not before, "the reload made a new poster"
        assert posts(daemon, "failure") >= failed
        with alertmanager(tmp_path / "am", port=am_port):
            alert = await wait_alert(url, "upsDiagnosticsFailed", present=True, limit=40)
            assert alert is not None
            assert alert["labels"]["target"] == "ups-hall"
