"""The trap receiver inside a real daemon, fed by net-snmp's ``snmptrap`` and
``snmpinform`` (Debian package ``snmp``): SNMPv1, v2c and v3 authPriv with two
users of different protocols, informs answered, counters, state gauges and log
events; then what must be refused (garbage, wrong community, wrong keys, other
networks, a flood from one address) counted by reason while the daemon serves.

``test_traps_alertmanager.py`` carries the hand-off to a real Alertmanager.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from commandcentre.config import load_config
from commandcentre.daemon import Daemon
from commandcentre.snmp import codec
from commandcentre.snmp.codec import Pdu, PduType
from commandcentre.snmp.types import SnmpType, VarBind
from tests.integration.agents import free_udp_port
from tests.integration.daemons import running_daemon

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TABLES = str(REPO / "config" / "snmp" / "traps" / "*.yml")

# Secrets: none of these may appear in a log event or on /metrics.
UPS_COMMUNITY = "ups-c0mmunity-7"
SWITCH_COMMUNITY = "sw-c0mmunity-9"
LAB_COMMUNITY = "lab-only-c0mm"
ALICE = ("alice", "SHA", "alice-auth-pass", "AES", "alice-priv-pass")
BOB = ("bob", "SHA256", "bob-auth-pass-256", "AES256", "bob-priv-pass-256")
BOB_ENGINE = "0x80001f8880aabbccdd01020304"
SECRETS = [UPS_COMMUNITY, SWITCH_COMMUNITY, LAB_COMMUNITY, *ALICE[2::2], *BOB[2::2]]

NET_SNMP_AUTH = {"SHA": "SHA", "SHA256": "SHA-256"}
NET_SNMP_PRIV = {"AES": "AES", "AES256": "AES-256"}

MTRAPARGS_STRING_0 = "1.3.6.1.4.1.318.2.3.3.0"
IF_INDEX = "1.3.6.1.2.1.2.2.1.1"


def write_config(tmp: Path, port: int, **traps: Any) -> Path:
    def v3(user: tuple[str, str, str, str, str]) -> dict[str, Any]:
        name, auth, auth_pass, priv, priv_pass = user
        return {
            "version": 3,
            "username": name,
            "security_level": "authPriv",
            "auth_protocol": auth,
            "password": auth_pass,
            "priv_protocol": priv,
            "priv_password": priv_pass,
        }

    config = {
        "http": {"listen": "127.0.0.1:0"},
        "log": {"level": "debug"},
        "snmp": {
            "auths": {
                "ups_v1": {"version": 1, "community": UPS_COMMUNITY},
                "switch_v2": {"version": 2, "community": SWITCH_COMMUNITY},
                "lab_v2": {"version": 2, "community": LAB_COMMUNITY},
                "alice_v3": v3(ALICE),
                "bob_v3": v3(BOB),
            },
            "modules": {"system": {"get": ["1.3.6.1.2.1.1.3.0"]}},
            # The senders below all come from 127.0.0.1: this target names them.
            "targets": [
                {
                    "name": "ups-hall",
                    "address": "127.0.0.1:9",
                    "modules": ["system"],
                    "interval": "1h",
                    "labels": {"site": "town-hall", "room": "basement"},
                }
            ],
            "traps": {
                "listen": f"127.0.0.1:{port}",
                "table_files": [TABLES],
                "accept": [
                    {"auth": "ups_v1"},
                    {"auth": "switch_v2"},
                    {"auth": "lab_v2", "networks": ["192.0.2.0/24"]},
                    {"auth": "alice_v3"},
                    {"auth": "bob_v3", "engine_id": BOB_ENGINE},
                ],
                **traps,
            },
        },
    }
    path = tmp / "commandcentre.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


async def run(*argv: str) -> tuple[int, str]:
    """A net-snmp tool as a subprocess, without blocking the daemon's event loop."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    async with asyncio.timeout(30):
        out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


def need_net_snmp() -> None:
    if shutil.which("snmptrap") is None or shutil.which("snmpinform") is None:
        pytest.skip("net-snmp tools not installed (Debian package snmp)")


def v3_args(user: tuple[str, str, str, str, str], auth_pass: str | None = None) -> list[str]:
    name, auth, auth_password, priv, priv_password = user
    return [
        "-v3",
        "-u",
        name,
        "-l",
        "authPriv",
        "-a",
        NET_SNMP_AUTH[auth],
        "-A",
        auth_pass or auth_password,
        "-x",
        NET_SNMP_PRIV[priv],
        "-X",
        priv_password,
    ]


async def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with aiohttp.ClientSession() as s, s.get(url + "/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    for secret in SECRETS:
        assert secret not in text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for fam in text_string_to_metric_families(text)
        for sample in fam.samples
    }


def value(
    metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """The one series of ``name`` whose labels include ``labels`` (0 if none)."""
    found = [v for (n, ls), v in metrics.items() if n == name and set(labels.items()) <= ls]
    assert len(found) <= 1, f"{name}{labels} matches {len(found)} series"
    return found[0] if found else 0.0


async def wait_for(url: str, name: str, expected: float, **labels: str) -> dict[Any, float]:
    """Scrape until the series has the value (the store is refreshed within 0.2 s)."""
    deadline = time.monotonic() + 10
    while True:
        metrics = await scrape(url)
        if value(metrics, name, **labels) == expected or time.monotonic() > deadline:
            assert value(metrics, name, **labels) == expected, (name, labels)
            return metrics
        await asyncio.sleep(0.05)


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[tuple[Daemon, str, int]]:
    need_net_snmp()
    port = free_udp_port()
    async with running_daemon(write_config(tmp_path, port)) as (d, url):
        yield d, url, port


async def test_v1_v2c_v3_traps_and_informs(daemon: tuple[Daemon, str, int]) -> None:
    _, url, port = daemon
    dest = f"127.0.0.1:{port}"
    with capture_logs() as logs:
        # SNMPv1, as an APC Network Management Card sends "on battery"
        rc, out = await run(
            "snmptrap", "-v1", "-c", UPS_COMMUNITY, dest, "1.3.6.1.4.1.318", "127.0.0.1",
            "6", "5", "", MTRAPARGS_STRING_0, "s",
            "UPS: On battery power in response to an input power problem.",
        )  # fmt: skip
        assert rc == 0, out
        # SNMPv2c linkDown, then linkUp as an inform (answered, or snmpinform fails)
        rc, out = await run(
            "snmptrap", "-v2c", "-c", SWITCH_COMMUNITY, dest, "", "1.3.6.1.6.3.1.1.5.3",
            f"{IF_INDEX}.7", "i", "7", "1.3.6.1.2.1.2.2.1.2.7", "s", "GigabitEthernet0/7",
            "1.3.6.1.2.1.2.2.1.7.7", "i", "1", "1.3.6.1.2.1.2.2.1.8.7", "i", "2",
        )  # fmt: skip
        assert rc == 0, out
        linkdown = await wait_for(
            url, "commandcentre_snmp_trap_state", 1, trap="linkDown", subject="ifIndex=7"
        )
        rc, out = await run(
            "snmpinform", "-v2c", "-c", SWITCH_COMMUNITY, "-r", "0", "-t", "3", dest, "",
            "1.3.6.1.6.3.1.1.5.4", f"{IF_INDEX}.7", "i", "7",
        )  # fmt: skip
        assert rc == 0, f"v2c inform not answered: {out}"
        # SNMPv3 authPriv, two users with different protocols: informs and a trap
        for user in (ALICE, BOB):
            rc, out = await run(
                "snmpinform", *v3_args(user), "-r", "0", "-t", "3", dest, "",
                "1.3.6.1.6.3.1.1.5.1",
            )  # fmt: skip
            assert rc == 0, f"v3 inform from {user[0]} not answered: {out}"
        rc, out = await run(
            "snmptrap", *v3_args(BOB), "-e", BOB_ENGINE, dest, "", "1.3.6.1.6.3.1.1.5.2",
        )  # fmt: skip
        assert rc == 0, out
        metrics = await wait_for(
            url, "commandcentre_snmp_traps_received_total", 1, trap="warmStart", version="v3"
        )

    assert value(linkdown, "commandcentre_snmp_trap_state", trap="linkDown") == 1
    received = "commandcentre_snmp_traps_received_total"
    where = {"source": "127.0.0.1", "target": "ups-hall", "site": "town-hall", "room": "basement"}
    assert value(metrics, received, trap="upsOnBattery", version="v1", **where) == 1
    assert value(metrics, received, trap="linkDown", version="v2c", **where) == 1
    assert value(metrics, received, trap="linkUp", version="v2c", **where) == 1
    assert value(metrics, received, trap="coldStart", version="v3", **where) == 2
    assert value(metrics, received, trap="warmStart", version="v3", **where) == 1
    assert value(metrics, "commandcentre_snmp_traps_informs_answered_total") == 3
    state = "commandcentre_snmp_trap_state"
    assert value(metrics, state, trap="linkDown", subject="ifIndex=7", severity="warning") == 0
    assert value(metrics, state, trap="upsOnBattery", severity="critical", **where) == 1
    dropped = [v for (n, _), v in metrics.items() if n == "commandcentre_snmp_traps_dropped_total"]
    assert dropped, "the drop counters are exported"
    assert not any(dropped), "nothing was refused"
    assert value(metrics, "commandcentre_snmp_traps_receiver_up") == 1

    events = [e for e in logs if e["event"] == "snmp_trap"]
    assert [(e["trap"], e["version"], e["auth"], e["inform"]) for e in events] == [
        ("upsOnBattery", "v1", "ups_v1", False),
        ("linkDown", "v2c", "switch_v2", False),
        ("linkUp", "v2c", "switch_v2", True),
        ("coldStart", "v3", "alice_v3", True),
        ("coldStart", "v3", "bob_v3", True),
        ("warmStart", "v3", "bob_v3", False),
    ]
    on_battery, link_down = events[0], events[1]
    assert on_battery["severity"] == "critical"
    assert on_battery["target"] == "ups-hall"
    assert on_battery["varbinds"][MTRAPARGS_STRING_0].startswith("UPS: On battery power")
    # RFC 3584: the v1 trap's enterprise and agent address become varbinds
    assert on_battery["varbinds"]["1.3.6.1.6.3.1.1.4.3.0"] == "1.3.6.1.4.1.318"
    assert link_down["subject"] == "ifIndex=7"
    assert "GigabitEthernet0/7" in link_down["summary"]
    text = json.dumps(logs, default=str)
    for secret in SECRETS:
        assert secret not in text


async def test_refused_datagrams_are_counted_by_reason(daemon: tuple[Daemon, str, int]) -> None:
    d, url, port = daemon
    dest = f"127.0.0.1:{port}"
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for garbage in (b"", b"\x30\x03\x02\x01", b"not snmp at all", bytes(range(256)) * 4):
            sock.sendto(garbage, ("127.0.0.1", port))
        # a v2c GetRequest is no notification
        get = codec.encode_community_message(
            1, SWITCH_COMMUNITY.encode(), codec.encode_request_pdu(PduType.GET, 1, [(1, 3, 6, 1)])
        )
        sock.sendto(get, ("127.0.0.1", port))
    finally:
        sock.close()
    cases = [
        ["snmptrap", "-v2c", "-c", "public", dest, "", "1.3.6.1.6.3.1.1.5.1"],
        # accepted community, but only from 192.0.2.0/24
        ["snmptrap", "-v2c", "-c", LAB_COMMUNITY, dest, "", "1.3.6.1.6.3.1.1.5.1"],
        ["snmptrap", *v3_args(ALICE, auth_pass="not-alices-password"), "-e", BOB_ENGINE,
         dest, "", "1.3.6.1.6.3.1.1.5.1"],
        ["snmptrap", *v3_args(("mallory", "SHA", "mallory-pass", "AES", "mallory-priv")),
         "-e", BOB_ENGINE, dest, "", "1.3.6.1.6.3.1.1.5.1"],
        # right auth key, wrong privacy key: the digest passes, decryption does not
        ["snmptrap", *v3_args((ALICE[0], *ALICE[1:4], "not-alices-priv-key")), "-e",
         BOB_ENGINE, dest, "", "1.3.6.1.6.3.1.1.5.1"],
        # bob is pinned to BOB_ENGINE: his traps from another engine are refused
        ["snmptrap", *v3_args(BOB), "-e", "0x80001f8880000000000000ffff", dest, "",
         "1.3.6.1.6.3.1.1.5.1"],
    ]  # fmt: skip
    for argv in cases:
        rc, out = await run(*argv)
        assert rc == 0, out
    # an inform with a wrong key is refused too: no answer, so snmpinform fails
    rc, _ = await run(
        "snmpinform", *v3_args(BOB, auth_pass="not-bobs-password"), "-r", "0", "-t", "1",
        dest, "", "1.3.6.1.6.3.1.1.5.1",
    )  # fmt: skip
    assert rc != 0
    dropped = "commandcentre_snmp_traps_dropped_total"
    # the inform's wrong digest came last: once it is counted, everything is
    metrics = await wait_for(url, dropped, 2, reason="wrong_digest")
    assert value(metrics, dropped, reason="unknown_engine_id") == 1
    assert value(metrics, dropped, reason="malformed") == 4
    assert value(metrics, dropped, reason="unsupported") == 1
    assert value(metrics, dropped, reason="unknown_community") == 1
    assert value(metrics, dropped, reason="source_not_allowed") == 1
    assert value(metrics, dropped, reason="unknown_user") == 1
    assert value(metrics, dropped, reason="decryption") == 1
    assert value(metrics, "commandcentre_snmp_traps_received_total") == 0
    # ... and the receiver still takes a good trap
    rc, out = await run(
        "snmpinform", "-v2c", "-c", SWITCH_COMMUNITY, "-r", "0", "-t", "3", dest, "",
        "1.3.6.1.6.3.1.1.5.1",
    )  # fmt: skip
    assert rc == 0, out
    assert d.traps.stats.received


def v2c_trap(community: str, trap_oid: tuple[int, ...], request_id: int) -> bytes:
    pdu = Pdu(
        PduType.TRAP_V2,
        request_id,
        0,
        0,
        (
            VarBind((1, 3, 6, 1, 2, 1, 1, 3, 0), SnmpType.TIMETICKS, 12345),
            VarBind((1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0), SnmpType.OBJECT_IDENTIFIER, trap_oid),
            VarBind((1, 3, 6, 1, 2, 1, 2, 2, 1, 1, 3), SnmpType.INTEGER, 3),
        ),
    )
    return codec.encode_community_message(1, community.encode(), pdu)


FLOODER = """
import socket, sys, time
port, count, packet = int(sys.argv[1]), int(sys.argv[2]), bytes.fromhex(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
start = time.monotonic()
for _ in range(count):
    s.sendto(packet, ("127.0.0.1", port))
print(time.monotonic() - start)
"""


async def test_flood_from_one_source_is_rate_limited(tmp_path: Path) -> None:
    """A separate process sends 50,000 linkDown traps from 127.0.0.1 as fast as it
    can while 127.0.0.2 sends a trap every 20 ms: the flood is cut to the configured
    rate before decoding, and the daemon keeps serving and answering informs."""
    need_net_snmp()
    port = free_udp_port()
    rate, burst, count = 100.0, 50, 50_000
    config = write_config(tmp_path, port, rate_limit={"per_source": rate, "burst": burst})
    packet = v2c_trap(SWITCH_COMMUNITY, (1, 3, 6, 1, 6, 3, 1, 1, 5, 3), 1)
    async with running_daemon(config) as (d, url):
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        other.bind(("127.0.0.2", 0))
        with capture_logs() as logs:
            started = time.monotonic()
            flooder = await asyncio.create_subprocess_exec(
                sys.executable, "-c", FLOODER, str(port), str(count), packet.hex(),
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            other_sent = 0
            while flooder.returncode is None:
                other.sendto(
                    v2c_trap(SWITCH_COMMUNITY, (1, 3, 6, 1, 6, 3, 1, 1, 5, 1), other_sent),
                    ("127.0.0.1", port),
                )
                other_sent += 1
                await asyncio.sleep(0.02)
            out, _ = await flooder.communicate()
            elapsed = time.monotonic() - started
            other.close()
            # after the flood: an inform from the flooding address is answered again
            await asyncio.sleep(1.0)
            rc, text = await run(
                "snmpinform", "-v2c", "-c", SWITCH_COMMUNITY, "-r", "2", "-t", "1",
                f"127.0.0.1:{port}", "", "1.3.6.1.6.3.1.1.5.2",
            )  # fmt: skip
            assert rc == 0, text
        metrics = await wait_for(
            url, "commandcentre_snmp_traps_received_total", 1, trap="warmStart"
        )
        received = "commandcentre_snmp_traps_received_total"
        accepted = value(metrics, received, source="127.0.0.1", trap="linkDown")
        limited = value(metrics, "commandcentre_snmp_traps_dropped_total", reason="rate_limited")
        from_other = value(metrics, received, source="127.0.0.2", trap="coldStart")
        print(
            f"\nflood: {count} datagrams sent in {float(out):.3f} s by the flooder; "
            f"accepted {accepted:.0f}, rate_limited {limited:.0f}, "
            f"lost in the kernel's socket buffer {count - accepted - limited:.0f}; "
            f"the other sender got {from_other:.0f} of {other_sent} through "
            f"({elapsed:.2f} s in all)"
        )
        assert limited > 0
        assert accepted <= burst + rate * (elapsed + 1.0)
        assert from_other >= 1
        rate_logs = [e for e in logs if e["event"] == "snmp_trap_rate_limited"]
        assert len(rate_logs) == 1, "one warning per sender per minute, not one per datagram"
        assert d.ready


MANY_FLOODERS = """
import socket, sys, time
port, senders, each = (int(a) for a in sys.argv[1:4])
packet = bytes.fromhex(sys.argv[4])
socks = []
for i in range(senders):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((f"127.0.{1 + i // 250}.{1 + i % 250}", 0))  # all of 127/8 is loopback
    socks.append(s)
start = time.monotonic()
for _ in range(each):
    for s in socks:
        s.sendto(packet, ("127.0.0.1", port))
print(time.monotonic() - start)
"""


async def test_flood_from_many_sources_is_cut_by_the_limit_of_all_senders(
    tmp_path: Path,
) -> None:
    """300 addresses, each well under its own limit, together send 30,000 traps as
    fast as they can (a spoofed flood looks like this): the limit of all senders
    together cuts them to its rate before decoding, and warns once."""
    port = free_udp_port()
    senders, each = 300, 100
    rate, burst = 200.0, 100
    config = write_config(
        tmp_path,
        port,
        rate_limit={
            "per_source": 1000,
            "burst": 1000,
            "all_sources": rate,
            "all_sources_burst": burst,
        },
    )
    packet = v2c_trap(SWITCH_COMMUNITY, (1, 3, 6, 1, 6, 3, 1, 1, 5, 3), 1)
    async with running_daemon(config) as (d, url):
        with capture_logs() as logs:
            started = time.monotonic()
            flood = await asyncio.create_subprocess_exec(
                sys.executable, "-c", MANY_FLOODERS, str(port), str(senders), str(each),
                packet.hex(), stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, _ = await flood.communicate()
            assert flood.returncode == 0
            await asyncio.sleep(0.5)  # the socket's backlog read
            elapsed = time.monotonic() - started
        dropped = "commandcentre_snmp_traps_dropped_total"
        metrics = await scrape(url)
        deadline = time.monotonic() + 5
        while value(metrics, dropped, reason="rate_limited_all_sources") == 0:
            assert time.monotonic() < deadline, "nothing was cut by the limit of all senders"
            await asyncio.sleep(0.1)
            metrics = await scrape(url)
        await asyncio.sleep(0.3)  # the store's refresh
        metrics = await scrape(url)
        accepted = sum(
            v for (n, _), v in metrics.items() if n == "commandcentre_snmp_traps_received_total"
        )
        cut = value(metrics, dropped, reason="rate_limited_all_sources")
        print(
            f"\nflood from {senders} addresses: {senders * each} datagrams sent in "
            f"{float(out):.3f} s; accepted {accepted:.0f}, cut by the all-senders limit "
            f"{cut:.0f}, lost in the kernel's socket buffer {senders * each - accepted - cut:.0f}"
        )
        assert value(metrics, dropped, reason="rate_limited") == 0, "each sender was under its own"
        assert accepted >= burst, "the burst passes"
        assert accepted <= burst + rate * (elapsed + 1.0)
        assert cut > 0
        warned = [e for e in logs if e["event"] == "snmp_trap_rate_limited_all_sources"]
        assert len(warned) == 1, "one warning a minute, not one per datagram"
        assert d.ready


async def test_reload_keeps_socket_and_states(tmp_path: Path) -> None:
    """A reload with the same listen address keeps the socket and the trap states;
    a new address rebinds, and the states still survive."""
    need_net_snmp()
    port = free_udp_port()
    config = write_config(tmp_path, port)
    async with running_daemon(config) as (d, url):
        transport = d.traps._transport
        rc, out = await run(
            "snmptrap", "-v2c", "-c", SWITCH_COMMUNITY, f"127.0.0.1:{port}", "",
            "1.3.6.1.6.3.1.1.5.3", f"{IF_INDEX}.2", "i", "2",
        )  # fmt: skip
        assert rc == 0, out
        await wait_for(url, "commandcentre_snmp_trap_state", 1, subject="ifIndex=2")
        write_config(tmp_path, port, rate_limit={"per_source": 5})
        assert await d.reload() == []
        assert d.traps._transport is transport
        new_port = free_udp_port()
        write_config(tmp_path, new_port)
        assert await d.reload() == []
        deadline = time.monotonic() + 5
        while d.traps.bound is None or d.traps.bound[1] != new_port:
            assert time.monotonic() < deadline, "did not rebind"
            await asyncio.sleep(0.02)
        rc, out = await run(
            "snmpinform", "-v2c", "-c", SWITCH_COMMUNITY, "-r", "0", "-t", "3",
            f"127.0.0.1:{new_port}", "", "1.3.6.1.6.3.1.1.5.4", f"{IF_INDEX}.2", "i", "2",
        )  # fmt: skip
        assert rc == 0, out
        metrics = await wait_for(url, "commandcentre_snmp_trap_state", 0, subject="ifIndex=2")
        assert value(metrics, "commandcentre_snmp_traps_received_total", trap="linkDown") == 1


async def test_trap_port_in_use_stops_the_start(tmp_path: Path) -> None:
    """A receiver that cannot bind is no receiver: the daemon says why and exits 1."""
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    try:
        config = load_config(write_config(tmp_path, taken.getsockname()[1]))
        with capture_logs() as logs:
            assert await asyncio.wait_for(Daemon(config).run(), 15) == 1
    finally:
        taken.close()
    [failed] = [e for e in logs if e["event"] == "snmp_trap_listen_failed"]
    assert failed["error"] == "Address already in use"


async def test_a_retransmitted_inform_is_answered_but_counted_once(
    daemon: tuple[Daemon, str, int],
) -> None:
    """snmpinform's own datagram (tests/data/traps), sent twice as a sender whose
    first answer was lost would: two answers, one trap."""
    _, url, port = daemon
    data = bytes.fromhex(
        (REPO / "tests/data/traps/v2c-inform-linkup.hex").read_text(encoding="ascii")
    )
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        sock.connect(("127.0.0.1", port))
        answers = []
        for _ in range(2):
            await loop.sock_sendall(sock, data)
            async with asyncio.timeout(5):
                answers.append(await loop.sock_recv(sock, 65535))
    finally:
        sock.close()
    assert answers[0] == answers[1]
    response = codec.decode_message(answers[0])
    assert isinstance(response, codec.CommunityMessage)
    assert isinstance(response.pdu, Pdu)
    assert response.pdu.type is PduType.RESPONSE
    metrics = await wait_for(url, "commandcentre_snmp_traps_informs_answered_total", 2)
    assert value(metrics, "commandcentre_snmp_traps_received_total", trap="linkUp") == 1


async def test_a_target_given_by_host_name_is_known_as_the_sender(tmp_path: Path) -> None:
    """Targets are usually configured by name (``ups-hall.example``, here
    ``localhost``): its traps carry the target's name and labels, found by looking the
    name up; a name that does not resolve is counted and logged once, and is no
    reason to refuse the trap."""
    need_net_snmp()
    port = free_udp_port()
    path = write_config(tmp_path, port)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    hall = config["snmp"]["targets"][0]
    hall["address"] = "localhost:9"
    gone = {**hall, "name": "ups-gone", "address": "ups-gone.invalid:161", "labels": {}}
    config["snmp"]["targets"].append(gone)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    received = "commandcentre_snmp_traps_received_total"
    with capture_logs() as logs:
        async with running_daemon(path) as (d, url):
            # the lookups run beside the receiver: wait until they are done
            deadline = time.monotonic() + 15
            while not d.traps._looked_up or not d.traps.stats.sender_lookup_errors:
                assert time.monotonic() < deadline, "the host names were not looked up"
                await asyncio.sleep(0.05)
            rc, out = await run(
                "snmptrap", "-v2c", "-c", SWITCH_COMMUNITY, f"127.0.0.1:{port}", "",
                "1.3.6.1.6.3.1.1.5.3", f"{IF_INDEX}.3", "i", "3",
            )  # fmt: skip
            assert rc == 0, out
            metrics = await wait_for(
                url, "commandcentre_snmp_trap_state", 1, trap="linkDown", subject="ifIndex=3"
            )
            # a reload that drops the named target forgets its address
            del config["snmp"]["targets"][0]
            path.write_text(yaml.safe_dump(config), encoding="utf-8")
            assert await d.reload() == []
            after = await wait_for(url, received, 0, target="ups-hall")
    where = {"source": "127.0.0.1", "target": "ups-hall", "site": "town-hall", "room": "basement"}
    assert value(metrics, received, trap="linkDown", version="v2c", **where) == 1
    assert value(metrics, "commandcentre_snmp_trap_state", trap="linkDown", **where) == 1
    assert value(metrics, "commandcentre_snmp_traps_sender_lookup_errors_total") >= 1
    failed = [e for e in logs if e["event"] == "snmp_trap_sender_lookup_failed"]
    assert [(e["target"], e["host"]) for e in failed] == [("ups-gone", "ups-gone.invalid")]
    assert value(after, received, trap="linkDown", version="v2c", source="127.0.0.1") == 1
