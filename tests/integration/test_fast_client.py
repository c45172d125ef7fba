"""FastSnmpClient beyond the assertions it shares with PysnmpClient
(test_pysnmp_client.py runs those against both): more SNMPv3 protocols against
net-snmp snmpd and snmpsim (pysnmp's USM), engine re-discovery when an agent
restarts or is replaced, late answers, IPv6 and names, one socket per agent, close()."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog.testing

from commandcentre.config import Auth, ConfigError, Endpoint, Secret, load_config
from commandcentre.daemon import Daemon, _default_client
from commandcentre.demo.processes import stop_process
from commandcentre.snmp import fast_client
from commandcentre.snmp.fast_client import FastSnmpClient
from commandcentre.snmp.pysnmp_client import PysnmpClient
from commandcentre.snmp.types import ErrorReason, RequestOptions, SnmpError, SnmpType
from commandcentre.snmp.usm import EngineClock
from tests.integration.agents import (
    SNMPD,
    SNMPD_COMMUNITY,
    SNMPD_USERS,
    SNMPSIM,
    AgentProcess,
    HostileAgent,
    HostileMode,
    V3User,
    free_udp_port,
    probe,
    run_snmpd,
    snmpd_config,
)
from tests.integration.test_pysnmp_client import (
    FAST,
    IF_TABLE,
    SYS_DESCR,
    SYS_UPTIME,
    SYSTEM,
    netsnmp_walk,
)

pytestmark = pytest.mark.integration

V2 = Auth(version=2, community=Secret(SNMPD_COMMUNITY))

# Protocols the shared tests' snmpd users do not cover (net-snmp: AES-192/256 are
# the Blumenthal key extension).
EXTRA_USERS = {
    u.name: u
    for u in (
        V3User("sha224aes192", "authPriv", "SHA224", "auth-pass-6", "AES192", "priv-pass-6"),
        V3User("sha384aes256", "authPriv", "SHA384", "auth-pass-7", "AES256", "priv-pass-7"),
        V3User("sha256des", "authPriv", "SHA256", "auth-pass-8", "DES", "priv-pass-8"),
        V3User("sha512only", "authNoPriv", "SHA512", "auth-pass-9"),
    )
}


def v3(u: V3User, context: str = "") -> Auth:
    return Auth(
        version=3,
        username=u.name,
        security_level=u.level,  # type: ignore[arg-type]
        auth_protocol=u.auth_protocol,  # type: ignore[arg-type]
        password=Secret(u.auth_password) if u.level != "noAuthNoPriv" else None,
        priv_protocol=u.priv_protocol,  # type: ignore[arg-type]
        priv_password=Secret(u.priv_password) if u.level == "authPriv" else None,
        context_name=context,
    )


def udp(agent: AgentProcess | HostileAgent) -> Endpoint:
    return Endpoint("udp", agent.host, agent.port)


@pytest.fixture
async def client() -> AsyncIterator[FastSnmpClient]:
    c = FastSnmpClient()
    yield c
    await c.close()


def my_sockets() -> set[str]:
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/self/fd/{fd}")
            if link.startswith("socket:"):
                found.add(link)
    return found


# --------------------------------------------------------------------------- snmpd, more v3


@pytest.fixture(scope="module")
def snmpd_extra() -> Iterator[AgentProcess]:
    with run_snmpd(users=EXTRA_USERS, tcp=False) as agent:
        yield agent


@pytest.mark.parametrize("user", list(EXTRA_USERS))
async def test_more_v3_protocols_against_net_snmp(
    client: FastSnmpClient, snmpd_extra: AgentProcess, user: str
) -> None:
    auth = v3(EXTRA_USERS[user])
    got = await client.get(udp(snmpd_extra), auth, [SYS_DESCR, SYS_UPTIME], FAST)
    assert [vb.type for vb in got] == [SnmpType.OCTET_STRING, SnmpType.TIMETICKS]
    walked = await client.walk(udp(snmpd_extra), auth, IF_TABLE, FAST)
    assert [vb.oid for vb in walked] == netsnmp_walk(snmpd_extra, IF_TABLE)


async def test_wrong_priv_password_with_blumenthal_key_is_not_answered(
    client: FastSnmpClient, snmpd_extra: AgentProcess
) -> None:
    u = EXTRA_USERS["sha224aes192"]
    bad = V3User(u.name, u.level, u.auth_protocol, u.auth_password, u.priv_protocol, "nope-nope")
    with pytest.raises(SnmpError) as e:
        await client.get(udp(snmpd_extra), v3(bad), [SYS_DESCR], RequestOptions(0.3, 0))
    assert e.value.reason is ErrorReason.TIMEOUT
    assert "nope-nope" not in str(e.value)


# --------------------------------------------------------------------------- snmpsim (pysnmp's USM)

SIM_USERS = {
    u.name: u
    for u in (
        # snmpsim's AES192/AES256 are the Reeder (Cisco) key extension: our AES192C/AES256C
        V3User("reeder192", "authPriv", "SHA", "auth-pass-10", "AES192C", "priv-pass-10"),
        V3User("reeder256", "authPriv", "SHA256", "auth-pass-11", "AES256C", "priv-pass-11"),
        V3User("blmt256", "authPriv", "SHA512", "auth-pass-12", "AES256", "priv-pass-12"),
        V3User("md5des", "authPriv", "MD5", "auth-pass-13", "DES", "priv-pass-13"),
        V3User("shaaes", "authPriv", "SHA", "auth-pass-14", "AES", "priv-pass-14"),
    )
}
_SIM_PRIV = {
    "AES192C": "AES192",
    "AES256C": "AES256",
    "AES192": "AES192BLMT",
    "AES256": "AES256BLMT",
    "DES": "DES",
    "AES": "AES",
}
SIM_DATA = """\
1.3.6.1.2.1.1.1.0|4|simulated by snmpsim
1.3.6.1.2.1.1.3.0|67|4242
1.3.6.1.4.1.99999.1.1.0|2|-42
1.3.6.1.4.1.99999.1.2.0|70|18446744073709551615
1.3.6.1.4.1.99999.1.3.0|64x|c0a80101
"""


@pytest.fixture(scope="module")
def snmpsim_v3() -> Iterator[AgentProcess]:
    """snmpsim with v3 users; the context name ``types`` selects ``types.snmprec``."""
    workdir = Path(tempfile.mkdtemp(prefix="cc-snmpsim-v3-"))
    try:
        (workdir / "data").mkdir()
        (workdir / "cache").mkdir()
        (workdir / "data" / "types.snmprec").write_text(SIM_DATA)
        port = free_udp_port()
        args = [SNMPSIM, f"--cache-dir={workdir / 'cache'}", "--logging-method=stderr"]
        args += ["--v3-engine-id", "auto", f"--data-dir={workdir / 'data'}"]
        args += [f"--agent-udpv4-endpoint=127.0.0.1:{port}"]
        for u in SIM_USERS.values():
            args += [f"--v3-user={u.name}", f"--v3-auth-key={u.auth_password}"]
            args += [f"--v3-auth-proto={u.auth_protocol}", f"--v3-priv-key={u.priv_password}"]
            args += [f"--v3-priv-proto={_SIM_PRIV[u.priv_protocol]}"]
        log_path = workdir / "snmpsim.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "SNMPSIM_ALLOW_ROOT": "true"},
                cwd=workdir,
            )
        agent = AgentProcess("127.0.0.1", port, proc, log_path, workdir)
        try:
            deadline = time.monotonic() + 60
            while not probe(agent.host, agent.port, "types"):
                assert proc.poll() is None, agent.output()
                assert time.monotonic() < deadline, agent.output()
                time.sleep(0.1)
            yield agent
        finally:
            stop_process(proc)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.parametrize("user", list(SIM_USERS))
async def test_v3_against_snmpsim(
    client: FastSnmpClient, snmpsim_v3: AgentProcess, user: str
) -> None:
    auth = v3(SIM_USERS[user], context="types")
    walked = await client.walk(udp(snmpsim_v3), auth, (1, 3, 6, 1), FAST)
    assert [(vb.oid, vb.type, vb.value) for vb in walked] == [
        (SYS_DESCR, SnmpType.OCTET_STRING, b"simulated by snmpsim"),
        (SYS_UPTIME, SnmpType.TIMETICKS, 4242),
        ((1, 3, 6, 1, 4, 1, 99999, 1, 1, 0), SnmpType.INTEGER, -42),
        ((1, 3, 6, 1, 4, 1, 99999, 1, 2, 0), SnmpType.COUNTER64, 2**64 - 1),
        ((1, 3, 6, 1, 4, 1, 99999, 1, 3, 0), SnmpType.IP_ADDRESS, bytes([192, 168, 1, 1])),
    ]


async def test_blumenthal_and_reeder_are_not_interchangeable(
    client: FastSnmpClient, snmpsim_v3: AgentProcess
) -> None:
    """The control for the test above: the wrong AES-256 key extension gets no answer."""
    # SHA-1 keys (20 octets) need extending to 24; the extensions differ
    u = SIM_USERS["reeder192"]
    swapped = V3User(u.name, u.level, u.auth_protocol, u.auth_password, "AES192", u.priv_password)
    with pytest.raises(SnmpError) as e:
        await client.get(
            udp(snmpsim_v3), v3(swapped, context="types"), [SYS_DESCR], RequestOptions(0.5, 0)
        )
    assert e.value.reason in (ErrorReason.TIMEOUT, ErrorReason.AUTH)


# --------------------------------------------------------------------------- engine changes


@contextlib.contextmanager
def snmpd_at(port: int, persistent: Path) -> Iterator[AgentProcess]:
    """snmpd on a given port with a given persistent directory (engine ID and boots)."""
    workdir = Path(tempfile.mkdtemp(prefix="cc-snmpd-fixed-"))
    conf = workdir / "snmpd.conf"
    conf.write_text(snmpd_config({"shaaes": SNMPD_USERS["shaaes"]}, SNMPD_COMMUNITY))
    log_path = workdir / "snmpd.log"
    env = {**os.environ, "SNMP_PERSISTENT_DIR": str(persistent), "MIBS": ""}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [SNMPD, "-f", "-Le", "-C", "-r", "-c", str(conf), f"udp:127.0.0.1:{port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    agent = AgentProcess("127.0.0.1", port, proc, log_path, workdir)
    try:
        deadline = time.monotonic() + 15
        while not probe(agent.host, port, SNMPD_COMMUNITY):
            assert proc.poll() is None, agent.output()
            assert time.monotonic() < deadline, agent.output()
            time.sleep(0.05)
        yield agent
    finally:
        stop_process(proc)
        shutil.rmtree(workdir, ignore_errors=True)


async def test_v3_rediscovers_a_restarted_agent(client: FastSnmpClient) -> None:
    """A restarted snmpd (a new engine ID: it answers with an unknownEngineID report):
    the next request still succeeds, after the client learnt the new engine."""
    port = free_udp_port()
    persist = Path(tempfile.mkdtemp(prefix="cc-snmpd-persist-"))
    try:
        auth = v3(SNMPD_USERS["shaaes"])
        ep = Endpoint("udp", "127.0.0.1", port)
        with snmpd_at(port, persist):
            first = await client.get(ep, auth, [SYS_UPTIME], FAST)
        engines = {ch.clock.engine_id for ch in client._channels.values() if ch.clock}
        with snmpd_at(port, persist):
            second = await client.get(ep, auth, [SYS_UPTIME], FAST)
            walked = await client.walk(ep, auth, SYSTEM, FAST)
        assert first[0].oid == second[0].oid == SYS_UPTIME
        assert walked
        learnt = {ch.clock.engine_id for ch in client._channels.values() if ch.clock}
        assert learnt.isdisjoint(engines)
    finally:
        shutil.rmtree(persist, ignore_errors=True)


async def test_v3_relearns_the_clock_after_not_in_time_window(
    client: FastSnmpClient, snmpd_agent: AgentProcess
) -> None:
    """What the client believes of the agent's clock goes wrong (as after the agent
    rebooted, or the client's host slept): the agent's notInTimeWindow report carries
    its real boots and time, and the request goes on with them."""
    auth = v3(SNMPD_USERS["sha256aes256"])
    await client.get(udp(snmpd_agent), auth, [SYS_UPTIME], FAST)
    for ch in client._channels.values():
        assert ch.clock is not None
        real = ch.clock
        ch.clock = EngineClock(real.engine_id, real.boots + 5, real.time, real.learnt_at)
    walked = await client.walk(udp(snmpd_agent), auth, SYSTEM, FAST)
    assert [vb.oid for vb in walked] == netsnmp_walk(snmpd_agent, SYSTEM)
    assert all(ch.clock and ch.clock.boots == real.boots for ch in client._channels.values())


async def test_v3_requests_to_a_silent_agent_share_one_discovery(
    client: FastSnmpClient, hostile: HostileAgent
) -> None:
    hostile.mode = HostileMode.SILENT
    opts = RequestOptions(timeout=0.3, retries=1)
    started = time.monotonic()
    results = await asyncio.gather(
        *[client.get(udp(hostile), v3(SNMPD_USERS["shaaes"]), [SYS_DESCR], opts) for _ in range(8)],
        return_exceptions=True,
    )
    assert all(isinstance(r, SnmpError) and r.reason is ErrorReason.TIMEOUT for r in results)
    assert hostile.requests == 2  # one discovery, retried once; not eight
    assert time.monotonic() - started < 2.0


# --------------------------------------------------------------------------- retries, late answers


async def test_a_late_answer_to_the_first_try_counts(
    client: FastSnmpClient, hostile: HostileAgent
) -> None:
    hostile.mode = HostileMode.SLOW
    hostile.delay = 0.45  # after the first try's timeout, before the second's
    got = await client.get(udp(hostile), V2, [SYS_DESCR], RequestOptions(timeout=0.3, retries=1))
    assert [vb.value for vb in got] == [b"ok"]
    assert hostile.requests == 2


@pytest.mark.parametrize("retries", [0, 2])
async def test_retries_then_timeout(
    client: FastSnmpClient, hostile: HostileAgent, retries: int
) -> None:
    hostile.mode = HostileMode.SILENT
    with pytest.raises(SnmpError) as e:
        await client.walk(udp(hostile), V2, SYSTEM, RequestOptions(timeout=0.2, retries=retries))
    assert e.value.reason is ErrorReason.TIMEOUT
    assert hostile.requests == retries + 1


async def test_garbage_then_a_good_answer_is_a_success(
    client: FastSnmpClient, hostile: HostileAgent
) -> None:
    """An undecodable datagram does not end the request: the retry's answer counts."""
    hostile.mode = HostileMode.GARBAGE
    task = asyncio.create_task(
        client.get(udp(hostile), V2, [SYS_DESCR], RequestOptions(timeout=0.4, retries=2))
    )
    while hostile.requests < 1:  # noqa: ASYNC110 - the agent's counter, no event to wait on
        await asyncio.sleep(0.01)
    hostile.mode = HostileMode.CORRECT
    got = await task
    assert [vb.value for vb in got] == [b"ok"]


# --------------------------------------------------------------------------- addressing, sockets


class _HostileV6(HostileAgent):
    async def start(self) -> HostileAgent:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=("::1", 0))
        self._transport = transport
        self.host = "::1"
        self.port = int(transport.get_extra_info("sockname")[1])
        return self


async def test_ipv6(client: FastSnmpClient) -> None:
    try:
        agent = await _HostileV6(HostileMode.CORRECT).start()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        got = await client.get(Endpoint("udp", "::1", agent.port), V2, [SYS_DESCR], FAST)
        assert [vb.value for vb in got] == [b"ok"]
        agent.mode = HostileMode.SILENT
        with pytest.raises(SnmpError) as e:
            await client.get(
                Endpoint("udp", "::1", agent.port), V2, [SYS_DESCR], RequestOptions(0.2, 0)
            )
        assert f"[::1]:{agent.port}" in e.value.detail
    finally:
        await agent.stop()


async def test_names_are_resolved(client: FastSnmpClient, snmpd_agent: AgentProcess) -> None:
    got = await client.get(Endpoint("udp", "localhost", snmpd_agent.port), V2, [SYS_DESCR], FAST)
    assert got[0].type is SnmpType.OCTET_STRING


async def test_one_socket_per_agent(snmpd_agent: AgentProcess) -> None:
    before = my_sockets()
    c = FastSnmpClient()
    async with HostileAgent(HostileMode.CORRECT) as other:
        own = my_sockets() - before
        await asyncio.gather(
            *[
                c.get(udp(snmpd_agent), a, [SYS_DESCR], FAST)
                for a in (V2, v3(SNMPD_USERS["md5des"]))
            ],
            *[c.get(udp(other), V2, [SYS_DESCR], FAST) for _ in range(5)],
        )
        assert len(my_sockets() - before - own) == 2
        assert c.recv_buffer_bytes >= 200_000
        await c.close()
        assert my_sockets() - before == own


async def test_idle_sockets_are_closed(
    monkeypatch: pytest.MonkeyPatch, snmpd_agent: AgentProcess
) -> None:
    """Agents no longer polled (a target removed on reload) do not keep a socket."""
    monkeypatch.setattr(fast_client, "IDLE_CLOSE_SECONDS", 0.0)
    monkeypatch.setattr(fast_client, "IDLE_SWEEP_SECONDS", 0.0)
    before = my_sockets()
    c = FastSnmpClient()
    try:
        async with HostileAgent(HostileMode.CORRECT) as other:
            own = my_sockets() - before
            await c.get(udp(other), V2, [SYS_DESCR], FAST)
            assert len(my_sockets() - before - own) == 1
            await c.get(udp(snmpd_agent), V2, [SYS_DESCR], FAST)  # sweeps the other's
            await asyncio.sleep(0)
            assert len(my_sockets() - before - own) == 1
            assert [vb.value for vb in await c.get(udp(other), V2, [SYS_DESCR], FAST)] == [b"ok"]
    finally:
        await c.close()


async def test_close_ends_requests_in_flight(hostile: HostileAgent) -> None:
    hostile.mode = HostileMode.SILENT
    c = FastSnmpClient()
    task = asyncio.create_task(c.walk(udp(hostile), V2, SYSTEM, RequestOptions(5.0, 3)))
    while hostile.requests < 1:  # noqa: ASYNC110 - the agent's counter, no event to wait on
        await asyncio.sleep(0.01)
    started = time.monotonic()
    await c.close()
    with pytest.raises(SnmpError) as e:
        await task
    assert e.value.reason is ErrorReason.TRANSPORT
    assert time.monotonic() - started < 1.0


async def test_cancelled_request_leaves_nothing_pending(
    client: FastSnmpClient, hostile: HostileAgent
) -> None:
    hostile.mode = HostileMode.SILENT
    task = asyncio.create_task(client.get(udp(hostile), V2, [SYS_DESCR], RequestOptions(5.0, 0)))
    while hostile.requests < 1:  # noqa: ASYNC110 - the agent's counter, no event to wait on
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert all(not ch.pending for ch in client._channels.values())
    hostile.mode = HostileMode.CORRECT  # the channel still works
    assert await client.get(udp(hostile), V2, [SYS_DESCR], RequestOptions(1.0, 0))


# --------------------------------------------------------------------------- selection


def test_snmp_client_config_key(tmp_path: Path) -> None:
    for value, cls in (("fast", FastSnmpClient), ("pysnmp", PysnmpClient), (None, FastSnmpClient)):
        cfg = tmp_path / f"c-{value}.yml"
        cfg.write_text("snmp:\n  targets: []\n" + (f"  client: {value}\n" if value else ""))
        config = load_config(cfg)
        assert config.snmp.client == (value or "fast")
        assert isinstance(_default_client(config.snmp.client), cls)
    bad = tmp_path / "bad.yml"
    bad.write_text("snmp:\n  client: netsnmp\n")
    with pytest.raises(ConfigError, match=r"snmp\.client"):
        load_config(bad)


async def test_a_reload_keeps_the_running_client(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text("snmp:\n  targets: []\n")
    daemon = Daemon(load_config(cfg))
    try:
        assert isinstance(daemon.client, FastSnmpClient)
        cfg.write_text("snmp:\n  targets: []\n  client: pysnmp\n")
        with structlog.testing.capture_logs() as logs:
            assert await daemon.reload() == []
            assert await daemon.reload() == []
        assert isinstance(daemon.client, FastSnmpClient)
        warned = [e for e in logs if e["event"] == "config_snmp_client_change_needs_restart"]
        assert len(warned) == 2  # every reload says so, not just the first
        assert (warned[0]["running"], warned[0]["configured"]) == ("fast", "pysnmp")
    finally:
        await daemon.client.close()
