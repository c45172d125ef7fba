"""Both SnmpClient implementations (PysnmpClient, FastSnmpClient) against real agents
(net-snmp snmpd, snmpsim) and a hostile one: the very same assertions for each."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import os
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from commandcentre.config import Auth, Endpoint, Secret
from commandcentre.snmp.fast_client import FastSnmpClient
from commandcentre.snmp.pysnmp_client import PysnmpClient
from commandcentre.snmp.types import ErrorReason, Oid, RequestOptions, SnmpError, SnmpType
from tests.integration.agents import (
    SNMPD_COMMUNITY,
    SNMPD_USERS,
    AgentProcess,
    HostileAgent,
    HostileMode,
    free_udp_port,
    run_snmpsim,
)

pytestmark = pytest.mark.integration

SYSTEM: Oid = (1, 3, 6, 1, 2, 1, 1)
IF_TABLE: Oid = (1, 3, 6, 1, 2, 1, 2, 2)
SYS_DESCR: Oid = (*SYSTEM, 1, 0)
SYS_UPTIME: Oid = (*SYSTEM, 3, 0)
FAST = RequestOptions(timeout=1.0, retries=1)
QUICK = RequestOptions(timeout=0.3, retries=1)  # hostile agents: budget 0.6 s

V2 = Auth(version=2, community=Secret(SNMPD_COMMUNITY))
V1 = Auth(version=1, community=Secret(SNMPD_COMMUNITY))


def v3(user: str, password: str | None = None, priv_password: str | None = None) -> Auth:
    u = SNMPD_USERS[user]
    return Auth(
        version=3,
        username=u.name,
        security_level=u.level,  # type: ignore[arg-type]
        auth_protocol=u.auth_protocol,  # type: ignore[arg-type]
        password=Secret(password or u.auth_password) if u.level != "noAuthNoPriv" else None,
        priv_protocol=u.priv_protocol,  # type: ignore[arg-type]
        priv_password=Secret(priv_password or u.priv_password) if u.level == "authPriv" else None,
    )


def udp(agent: AgentProcess | HostileAgent) -> Endpoint:
    return Endpoint("udp", agent.host, agent.port)


AnyClient = PysnmpClient | FastSnmpClient
CLIENTS: dict[str, type[AnyClient]] = {
    "pysnmp": PysnmpClient,
    "fast": FastSnmpClient,
}


@pytest.fixture(params=list(CLIENTS))
async def client(request: pytest.FixtureRequest) -> AsyncIterator[AnyClient]:
    c = CLIENTS[request.param]()
    yield c
    await c.close()


def netsnmp_walk(agent: AgentProcess, root: Oid, version: str = "2c") -> list[Oid]:
    """The OIDs net-snmp's own walker returns for the same subtree."""
    tool = "snmpbulkwalk" if version == "2c" else "snmpwalk"
    out = subprocess.run(
        [
            *(tool, f"-v{version}", "-c", SNMPD_COMMUNITY, "-On", "-Cc", "-t", "2", "-r", "1"),
            f"{agent.host}:{agent.port}",
            ".".join(map(str, root)),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MIBS": ""},
    ).stdout
    return [
        tuple(int(p) for p in line.split(" = ")[0].lstrip(".").split("."))
        for line in out.splitlines()
        if " = " in line
    ]


# --------------------------------------------------------------------------- snmpd: v1/v2c


@pytest.mark.parametrize(("auth", "version"), [(V2, "2c"), (V1, "1")], ids=["v2c", "v1"])
async def test_get_and_walk_match_net_snmp(
    client: AnyClient, snmpd_agent: AgentProcess, auth: Auth, version: str
) -> None:
    got = await client.get(udp(snmpd_agent), auth, [SYS_DESCR, SYS_UPTIME], FAST)
    assert [vb.oid for vb in got] == [SYS_DESCR, SYS_UPTIME]
    assert got[0].type is SnmpType.OCTET_STRING
    assert isinstance(got[0].value, bytes)
    assert got[0].value.startswith(b"Linux")
    assert got[1].type is SnmpType.TIMETICKS
    assert isinstance(got[1].value, int)

    for root in (SYSTEM, IF_TABLE):
        walked = await client.walk(udp(snmpd_agent), auth, root, FAST)
        expected = netsnmp_walk(snmpd_agent, root, version)
        assert [vb.oid for vb in walked] == expected
        assert all(vb.oid[: len(root)] == root for vb in walked)
    # ifTable: ifIndex is an Integer, ifDescr an OctetString, ifInOctets a Counter32
    by_column = {vb.oid[len(IF_TABLE) + 1]: vb.type for vb in walked}
    assert by_column[1] is SnmpType.INTEGER
    assert by_column[2] is SnmpType.OCTET_STRING
    assert by_column[10] is SnmpType.COUNTER32


async def test_walk_is_bounded_to_its_subtree(client: AnyClient, snmpd_agent: AgentProcess) -> None:
    # sysORTable's sibling subtrees follow directly: a bulk of 25 overshoots the
    # subtree, and the client must drop what lies beyond it.
    root = (*SYSTEM, 4)  # sysContact: one instance, then sysName, sysLocation, ...
    walked = await client.walk(udp(snmpd_agent), V2, root, FAST)
    assert [vb.oid for vb in walked] == [(*root, 0)] == netsnmp_walk(snmpd_agent, root)


async def test_walk_of_an_instance_returns_the_instance(
    client: AnyClient, snmpd_agent: AgentProcess
) -> None:
    walked = await client.walk(udp(snmpd_agent), V2, SYS_UPTIME, FAST)
    assert [vb.oid for vb in walked] == [SYS_UPTIME]


async def test_get_returns_exception_values_as_varbinds(
    client: AnyClient, snmpd_agent: AgentProcess
) -> None:
    missing = (*SYSTEM, 99, 0)
    got = await client.get(udp(snmpd_agent), V2, [SYS_UPTIME, missing], FAST)
    assert got[1].oid == missing
    assert got[1].type is SnmpType.NO_SUCH_OBJECT
    assert got[1].value is None


async def test_v1_get_of_a_missing_oid_is_an_agent_error(
    client: AnyClient, snmpd_agent: AgentProcess
) -> None:
    with pytest.raises(SnmpError) as e:
        await client.get(udp(snmpd_agent), V1, [SYS_UPTIME, (*SYSTEM, 99, 0)], FAST)
    assert e.value.reason is ErrorReason.AGENT_ERROR
    assert "noSuchName" in e.value.detail


async def test_get_splits_many_oids_into_several_pdus(
    client: AnyClient, snmpd_agent: AgentProcess
) -> None:
    oids = [(*IF_TABLE, 1, col, 1) for col in range(1, 23)] * 7  # 154 OIDs > 60 per PDU
    got = await client.get(udp(snmpd_agent), V2, oids, FAST)
    assert [vb.oid for vb in got] == oids


# --------------------------------------------------------------------------- snmpd: v3


@pytest.mark.parametrize("user", list(SNMPD_USERS))
async def test_v3_get_and_walk(client: AnyClient, snmpd_agent: AgentProcess, user: str) -> None:
    auth = v3(user)
    got = await client.get(udp(snmpd_agent), auth, [SYS_DESCR], FAST)
    assert got[0].type is SnmpType.OCTET_STRING
    walked = await client.walk(udp(snmpd_agent), auth, IF_TABLE, FAST)
    assert [vb.oid for vb in walked] == netsnmp_walk(snmpd_agent, IF_TABLE)


@pytest.mark.parametrize(
    ("auth", "reason"),
    [
        (v3("shaaes", password="wrong-auth-pass"), ErrorReason.AUTH),
        (v3("md5only", password="wrong-auth-pass"), ErrorReason.AUTH),
        (Auth(version=3, username="nosuchuser", security_level="noAuthNoPriv"), ErrorReason.AUTH),
        # a user that exists, asking for more security than it has
        (
            Auth(
                version=3,
                username="noauth",
                security_level="authNoPriv",
                password=Secret("whatever-pass"),
            ),
            ErrorReason.AUTH,
        ),
        # snmpd authenticates the request, fails to decrypt it and drops it
        # silently: no report comes back, so this one can only be a timeout.
        (v3("shaaes", priv_password="wrong-priv-pass"), ErrorReason.TIMEOUT),
    ],
    ids=["wrong-auth-key", "wrong-md5-key", "unknown-user", "level-too-high", "wrong-priv-key"],
)
async def test_v3_bad_credentials(
    client: AnyClient, snmpd_agent: AgentProcess, auth: Auth, reason: ErrorReason
) -> None:
    started = time.monotonic()
    with pytest.raises(SnmpError) as e:
        await client.get(udp(snmpd_agent), auth, [SYS_DESCR], QUICK)
    assert e.value.reason is reason, e.value
    assert time.monotonic() - started < 2.0
    for secret in ("wrong-auth-pass", "wrong-priv-pass", "whatever-pass", "priv-pass-1"):
        assert secret not in str(e.value)


async def test_same_v3_user_with_different_keys_does_not_interfere(
    client: AnyClient, snmpd_agent: AgentProcess
) -> None:
    good, bad = v3("shaaes"), v3("shaaes", password="wrong-auth-pass")
    results = await asyncio.gather(
        *[client.get(udp(snmpd_agent), a, [SYS_UPTIME], QUICK) for a in [good, bad] * 5],
        return_exceptions=True,
    )
    assert all(isinstance(r, list) for r in results[0::2]), results
    assert all(isinstance(r, SnmpError) and r.reason is ErrorReason.AUTH for r in results[1::2])


# --------------------------------------------------------------------------- no answer / transport


async def test_wrong_community_times_out_quickly(
    client: AnyClient, snmpd_agent: AgentProcess
) -> None:
    started = time.monotonic()
    with pytest.raises(SnmpError) as e:
        await client.get(
            udp(snmpd_agent),
            Auth(version=2, community=Secret("not-the-community")),
            [SYS_DESCR],
            RequestOptions(timeout=0.5, retries=0),
        )
    assert e.value.reason is ErrorReason.TIMEOUT
    assert time.monotonic() - started < 1.0
    assert "not-the-community" not in str(e.value)


async def test_dead_port_times_out(client: AnyClient) -> None:
    started = time.monotonic()
    with pytest.raises(SnmpError) as e:
        await client.walk(Endpoint("udp", "127.0.0.1", free_udp_port()), V2, IF_TABLE, QUICK)
    assert e.value.reason is ErrorReason.TIMEOUT
    assert time.monotonic() - started < 1.2


async def test_unresolvable_name_is_a_transport_error(client: AnyClient) -> None:
    with pytest.raises(SnmpError) as e:
        await client.get(Endpoint("udp", "no-such-host.invalid", 161), V2, [SYS_DESCR], QUICK)
    assert e.value.reason is ErrorReason.TRANSPORT


async def test_tcp_is_refused_clearly(client: AnyClient, snmpd_agent: AgentProcess) -> None:
    assert snmpd_agent.tcp_port is not None
    with pytest.raises(SnmpError) as e:
        await client.get(Endpoint("tcp", "127.0.0.1", snmpd_agent.tcp_port), V2, [SYS_DESCR], FAST)
    assert e.value.reason is ErrorReason.TRANSPORT
    assert "tcp transport not supported" in e.value.detail


# --------------------------------------------------------------------------- hostile agent


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        (HostileMode.GARBAGE, ErrorReason.DECODE),
        (HostileMode.TRUNCATED, ErrorReason.DECODE),
        (HostileMode.BAD_VALUE_TYPE, ErrorReason.DECODE),
        (HostileMode.WRONG_REQUEST_ID, ErrorReason.TIMEOUT),
        (HostileMode.WRONG_COMMUNITY, ErrorReason.TIMEOUT),
        (HostileMode.SLOW, ErrorReason.TIMEOUT),
        (HostileMode.SILENT, ErrorReason.TIMEOUT),
        (HostileMode.GEN_ERR, ErrorReason.AGENT_ERROR),
        (HostileMode.TOO_BIG, ErrorReason.AGENT_ERROR),
    ],
    ids=lambda v: v.value if isinstance(v, HostileMode) else None,
)
@pytest.mark.parametrize("auth", [V2, V1], ids=["v2c", "v1"])
async def test_hostile_get(
    client: AnyClient, hostile: HostileAgent, auth: Auth, mode: HostileMode, reason: ErrorReason
) -> None:
    hostile.mode = mode
    hostile.delay = 1.0  # SLOW: after the last retry gave up
    started = time.monotonic()
    with pytest.raises(SnmpError) as e:
        await client.get(udp(hostile), auth, [SYS_DESCR], QUICK)
    elapsed = time.monotonic() - started
    assert e.value.reason is reason, e.value
    # It gave up within its budget rather than waiting for the SLOW answer (1 s after the
    # last retry) or retrying on: the request count below pins the retries, this bound the
    # waiting. pysnmp's timer ticks every 0.1 s; the rest is slack for a loaded machine.
    assert elapsed < QUICK.timeout * (QUICK.retries + 1) + 1.2, (elapsed, hostile.requests)
    if reason is ErrorReason.AGENT_ERROR:
        assert ("genErr" if mode is HostileMode.GEN_ERR else "tooBig") in e.value.detail
    if reason in (ErrorReason.TIMEOUT, ErrorReason.DECODE):
        assert hostile.requests == QUICK.retries + 1  # it retried, then gave up


async def test_hostile_correct_answer_is_accepted(client: AnyClient, hostile: HostileAgent) -> None:
    """The control case: the hostile agent's plumbing itself is sound."""
    hostile.mode = HostileMode.CORRECT
    got = await client.get(udp(hostile), V2, [SYS_DESCR], QUICK)
    assert [(vb.oid, vb.type, vb.value) for vb in got] == [
        (SYS_DESCR, SnmpType.OCTET_STRING, b"ok")
    ]


@pytest.mark.parametrize("auth", [V2, V1], ids=["v2c-bulk", "v1-next"])
async def test_hostile_walk_going_backwards(
    client: AnyClient, hostile: HostileAgent, auth: Auth
) -> None:
    hostile.mode = HostileMode.BACKWARDS
    root = (1, 3, 6, 1, 4, 1, 99999)
    with pytest.raises(SnmpError) as e:
        await client.walk(udp(hostile), auth, root, QUICK)
    assert e.value.reason is ErrorReason.OID_NOT_INCREASING

    # allowed, the same agent loops forever: the varbind cap ends it
    opts = RequestOptions(timeout=0.3, retries=1, max_varbinds=200, allow_nonincreasing_oids=True)
    with pytest.raises(SnmpError) as e:
        await client.walk(udp(hostile), auth, root, opts)
    assert e.value.reason is ErrorReason.WALK_TOO_LONG


async def test_hostile_endless_walk_is_capped(client: AnyClient, hostile: HostileAgent) -> None:
    hostile.mode = HostileMode.ENDLESS
    opts = RequestOptions(timeout=0.3, retries=1, max_repetitions=10, max_varbinds=500)
    started = time.monotonic()
    with pytest.raises(SnmpError) as e:
        await client.walk(udp(hostile), V2, (1, 3, 6, 1, 4, 1, 99999), opts)
    assert e.value.reason is ErrorReason.WALK_TOO_LONG
    assert "500" in e.value.detail
    assert hostile.requests <= 52  # ~10 per request: it stopped asking
    assert time.monotonic() - started < 3


async def test_hostile_walk_error_status(client: AnyClient, hostile: HostileAgent) -> None:
    hostile.mode = HostileMode.GEN_ERR
    with pytest.raises(SnmpError) as e:
        await client.walk(udp(hostile), V2, (1, 3, 6, 1, 4, 1, 99999), QUICK)
    assert e.value.reason is ErrorReason.AGENT_ERROR


async def test_decode_error_is_attributed_to_the_peer_only(
    client: AnyClient, hostile: HostileAgent
) -> None:
    """Garbage from one agent must not turn another agent's timeout into DECODE."""
    hostile.mode = HostileMode.GARBAGE
    async with HostileAgent(HostileMode.SILENT) as silent:
        results = await asyncio.gather(
            client.get(udp(hostile), V2, [SYS_DESCR], QUICK),
            client.get(udp(silent), V2, [SYS_DESCR], QUICK),
            return_exceptions=True,
        )
    reasons = [r.reason if isinstance(r, SnmpError) else r for r in results]
    assert reasons == [ErrorReason.DECODE, ErrorReason.TIMEOUT]


# --------------------------------------------------------------------------- load and lifecycle


async def test_fifty_concurrent_walks(client: AnyClient, snmpd_agent: AgentProcess) -> None:
    expected = netsnmp_walk(snmpd_agent, IF_TABLE)
    auths = [V2, V1, v3("shaaes"), v3("sha256aes256"), v3("md5only")]
    results = await asyncio.gather(
        *[client.walk(udp(snmpd_agent), auths[i % len(auths)], IF_TABLE, FAST) for i in range(50)]
    )
    assert all([vb.oid for vb in r] == expected for r in results)


@pytest.mark.parametrize("client_cls", list(CLIENTS.values()), ids=list(CLIENTS))
async def test_close_releases_the_socket(
    snmpd_agent: AgentProcess, client_cls: type[AnyClient]
) -> None:
    def sockets() -> set[str]:
        found = set()
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):  # the fd listdir itself used, gone by now
                link = os.readlink(f"/proc/self/fd/{fd}")
                if link.startswith("socket:"):
                    found.add(link)
        return found

    before = sockets()
    c = client_cls()
    await c.get(udp(snmpd_agent), V2, [SYS_DESCR], FAST)
    await c.walk(udp(snmpd_agent), V1, SYSTEM, FAST)
    mine = sockets() - before
    assert len(mine) == 1  # one UDP socket for all requests
    assert c.recv_buffer_bytes >= 200_000
    await c.close()
    await c.close()  # idempotent
    assert not mine & sockets()
    with pytest.raises(SnmpError):
        await c.get(udp(snmpd_agent), V2, [SYS_DESCR], FAST)
    del c
    gc.collect()  # a ResourceWarning here would fail the test (warnings are errors)


# --------------------------------------------------------------------------- value types (snmpsim)

TYPES_SNMPREC = """\
1.3.6.1.2.1.1.1.0|4|commandcentre types
1.3.6.1.2.1.1.3.0|67|123456
1.3.6.1.4.1.99999.1.1.0|2|-42
1.3.6.1.4.1.99999.1.2.0|4x|00ff10
1.3.6.1.4.1.99999.1.3.0|64x|c0a80101
1.3.6.1.4.1.99999.1.4.0|65|4294967295
1.3.6.1.4.1.99999.1.5.0|66|7
1.3.6.1.4.1.99999.1.6.0|68x|9f780442f60000
1.3.6.1.4.1.99999.1.7.0|70|18446744073709551615
1.3.6.1.4.1.99999.1.8.0|6|1.3.6.1.2.1.2
"""


@pytest.mark.skipif(
    importlib.util.find_spec("pysmi") is None,
    reason="snmpsim 1.2 imports pysmi but does not declare it: install pysmi to run snmpsim",
)
async def test_value_types_from_snmpsim(client: AnyClient, tmp_path: Path) -> None:
    (tmp_path / "types.snmprec").write_text(TYPES_SNMPREC)
    with run_snmpsim(tmp_path, probe_community="types") as sim:
        auth = Auth(version=2, community=Secret("types"))
        walked = await client.walk(udp(sim), auth, (1, 3, 6, 1, 4, 1, 99999), FAST)
    assert [(vb.oid[-2], vb.type, vb.value) for vb in walked] == [
        (1, SnmpType.INTEGER, -42),
        (2, SnmpType.OCTET_STRING, b"\x00\xff\x10"),
        (3, SnmpType.IP_ADDRESS, bytes([192, 168, 1, 1])),
        (4, SnmpType.COUNTER32, 4294967295),
        (5, SnmpType.GAUGE32, 7),
        (6, SnmpType.OPAQUE, bytes.fromhex("9f780442f60000")),
        (7, SnmpType.COUNTER64, 18446744073709551615),
        (8, SnmpType.OBJECT_IDENTIFIER, (1, 3, 6, 1, 2, 1, 2)),
    ]
