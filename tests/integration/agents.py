"""Real and hostile SNMP agents for integration tests.

* ``run_snmpd`` starts net-snmp ``snmpd`` on a free 127.0.0.1 port with a v1/v2c
  community and a set of SNMPv3 users (``SNMPD_USERS``).
* ``run_snmpsim`` starts ``snmpsim-command-responder`` serving a copy of a
  directory of ``.snmprec`` files (the community selects the file).
* ``HostileAgent`` is an in-process asyncio UDP agent that answers v1/v2c
  requests with deliberately broken replies (``HostileMode``).

Each real agent is polled with a real GET until it answers, a failure to start
raises ``AgentStartError`` carrying the agent's output, and the process is
always killed on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from pyasn1.codec.ber import decoder, encoder  # type: ignore[import-untyped]  # pyasn1: no stubs
from pysnmp.proto import api

from commandcentre.demo import simulated_devices
from commandcentre.demo.processes import free_port, stop_process

SNMPD = "/usr/sbin/snmpd"
SNMPSIM = str(Path(sys.executable).with_name("snmpsim-command-responder"))
SYS_UPTIME_0 = (1, 3, 6, 1, 2, 1, 1, 3, 0)
SYS_DESCR_0 = (1, 3, 6, 1, 2, 1, 1, 1, 0)


class AgentStartError(RuntimeError):
    """An agent process did not come up; the message carries its output."""


# --------------------------------------------------------------------------- ports


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that was free a moment ago."""
    return free_port(socket.SOCK_DGRAM)


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return free_port(socket.SOCK_STREAM)


# --------------------------------------------------------------------------- raw SNMP probe


def encode_v2c_get(community: str, oid: tuple[int, ...], request_id: int = 4242) -> bytes:
    """A v2c GetRequest for one OID, BER-encoded."""
    p = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
    pdu = p.GetRequestPDU()
    p.apiPDU.set_defaults(pdu)
    p.apiPDU.set_request_id(pdu, request_id)
    p.apiPDU.set_varbinds(pdu, [(p.ObjectIdentifier(oid), p.Null(""))])
    msg = p.Message()
    p.apiMessage.set_defaults(msg)
    p.apiMessage.set_community(msg, community)
    p.apiMessage.set_pdu(msg, pdu)
    return bytes(encoder.encode(msg))


def probe(host: str, port: int, community: str, timeout: float = 0.2) -> bool:
    """True if a v2c GET of sysUpTime.0 is answered with a decodable response."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(encode_v2c_get(community, SYS_UPTIME_0), (host, port))
            data = s.recv(65535)
        except OSError:
            return False
    try:
        p = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
        msg, _ = decoder.decode(data, asn1Spec=p.Message())
        return int(p.apiPDU.get_request_id(p.apiMessage.get_pdu(msg))) == 4242
    except Exception:
        return False


# --------------------------------------------------------------------------- processes


@dataclass
class AgentProcess:
    """A running agent: where it listens and how to reach its output."""

    host: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    workdir: Path
    tcp_port: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def _wait_until_answering(agent: AgentProcess, community: str, what: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if agent.proc.poll() is not None:
            raise AgentStartError(
                f"{what} exited with status {agent.proc.returncode} before answering:\n"
                + agent.output()
            )
        if probe(agent.host, agent.port, community):
            return
        time.sleep(0.05)
    raise AgentStartError(
        f"{what} did not answer a GET on {agent.host}:{agent.port} within {limit:.0f} s:\n"
        + agent.output()
    )


# --------------------------------------------------------------------------- snmpd


@dataclass(frozen=True)
class V3User:
    name: str
    level: str  # noAuthNoPriv | authNoPriv | authPriv
    auth_protocol: str = "MD5"  # commandcentre spelling: MD5, SHA, SHA256, ...
    auth_password: str = ""
    priv_protocol: str = "DES"  # DES, AES, AES256, ...
    priv_password: str = ""


# net-snmp spells the protocols with dashes.
_NETSNMP_AUTH = {
    "MD5": "MD5",
    "SHA": "SHA",
    "SHA224": "SHA-224",
    "SHA256": "SHA-256",
    "SHA384": "SHA-384",
    "SHA512": "SHA-512",
}
_NETSNMP_PRIV = {"DES": "DES", "AES": "AES", "AES192": "AES-192", "AES256": "AES-256"}

SNMPD_COMMUNITY = "public"  # answers v1 and v2c
SNMPD_USERS = {
    u.name: u
    for u in (
        V3User("shaaes", "authPriv", "SHA", "auth-pass-1", "AES", "priv-pass-1"),
        V3User("sha256aes256", "authPriv", "SHA256", "auth-pass-2", "AES256", "priv-pass-2"),
        V3User("sha512aes", "authPriv", "SHA512", "auth-pass-5", "AES", "priv-pass-5"),
        V3User("md5des", "authPriv", "MD5", "auth-pass-3", "DES", "priv-pass-3"),
        V3User("md5only", "authNoPriv", "MD5", "auth-pass-4"),
        V3User("noauth", "noAuthNoPriv"),
    )
}
_SNMPD_LEVEL = {"noAuthNoPriv": "noauth", "authNoPriv": "auth", "authPriv": "priv"}


def snmpd_config(users: dict[str, V3User], community: str) -> str:
    lines = [
        f"rocommunity {community} 127.0.0.1",
        "sysLocation commandcentre integration test",
        "sysContact nobody@example.invalid",
        # Do not let snmpd write into /var/lib/snmp or look for other config files.
        "dontLogTCPWrappersConnects yes",
    ]
    for u in users.values():
        create = f"createUser {u.name}"
        if u.level != "noAuthNoPriv":
            create += f' {_NETSNMP_AUTH[u.auth_protocol]} "{u.auth_password}"'
            if u.level == "authPriv":
                create += f' {_NETSNMP_PRIV[u.priv_protocol]} "{u.priv_password}"'
        lines.append(create)
        lines.append(f"rouser {u.name} {_SNMPD_LEVEL[u.level]}")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def run_snmpd(
    users: dict[str, V3User] | None = None,
    community: str = SNMPD_COMMUNITY,
    tcp: bool = True,
    start_timeout: float = 15.0,
) -> Iterator[AgentProcess]:
    """Start net-snmp snmpd on free 127.0.0.1 UDP (and TCP) ports; kill it on exit."""
    if not os.access(SNMPD, os.X_OK):
        raise AgentStartError(f"{SNMPD} is not installed (Debian package snmpd)")
    users = SNMPD_USERS if users is None else users
    workdir = Path(tempfile.mkdtemp(prefix="cc-snmpd-"))
    try:
        conf = workdir / "snmpd.conf"
        conf.write_text(snmpd_config(users, community))
        persistent = workdir / "persist"
        persistent.mkdir()
        log_path = workdir / "snmpd.log"
        port = free_udp_port()
        tcp_port = free_tcp_port() if tcp else None
        listen = f"udp:127.0.0.1:{port}" + (f",tcp:127.0.0.1:{tcp_port}" if tcp else "")
        env = {**os.environ, "SNMP_PERSISTENT_DIR": str(persistent), "MIBS": ""}
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                # -f foreground, -Le log to stderr, -C only our config, -c our config,
                # -r do not fail on unreadable /proc files; the listen address is
                # given here only (giving it in the config too makes snmpd fail).
                [SNMPD, "-f", "-Le", "-C", "-r", "-c", str(conf), listen],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        agent = AgentProcess("127.0.0.1", port, proc, log_path, workdir, tcp_port)
        try:
            _wait_until_answering(agent, community, "snmpd", start_timeout)
            yield agent
        finally:
            stop_process(proc)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- snmpsim


@contextlib.contextmanager
def run_snmpsim(
    data_dir: str | os.PathLike[str],
    probe_community: str | None = None,
    start_timeout: float = 30.0,
) -> Iterator[AgentProcess]:
    """Start snmpsim serving a private copy of ``data_dir``; kill it on exit.

    Run as root, snmpsim insists on dropping privileges to a ``--process-user``,
    and ``nobody`` cannot read a Python that lives under ``/root`` (mode 0700),
    so the responder dies on import. snmpsim skips the privilege drop when
    ``SNMPSIM_ALLOW_ROOT=true`` is in its environment, and as a normal user it
    never switches users unless told to: setting that variable and passing no
    ``--process-user`` works in both cases. The data and the index cache are
    copied into a fresh temporary directory so that runs never share state.
    """
    src = Path(data_dir)
    files = sorted(p for p in src.iterdir() if p.name.endswith((".snmprec", ".snmprec.bz2")))
    if not files:
        raise AgentStartError(f"no .snmprec files in {src}")
    community = probe_community or files[0].name.split(".snmprec")[0]
    workdir = Path(tempfile.mkdtemp(prefix="cc-snmpsim-"))
    try:
        # the demo's own launcher: the same command line the demo runs
        with simulated_devices(workdir, src) as (port, proc):
            agent = AgentProcess("127.0.0.1", port, proc, workdir / "snmpsim.log", workdir)
            _wait_until_answering(agent, community, "snmpsim", start_timeout)
            yield agent
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- hostile agent


class HostileMode(enum.Enum):
    """How the hostile agent misbehaves."""

    GARBAGE = "garbage"  # bytes that are not BER at all
    TRUNCATED = "truncated"  # a valid response cut in half
    WRONG_REQUEST_ID = "wrong_request_id"  # a valid response to some other request
    WRONG_COMMUNITY = "wrong_community"  # a valid response carrying another community
    BACKWARDS = "backwards"  # GETNEXT/GETBULK answers whose OIDs go backwards
    ENDLESS = "endless"  # every answer is a new, larger OID inside the subtree
    BAD_VALUE_TYPE = "bad_value_type"  # a value tagged with a type SNMP does not have
    SLOW = "slow"  # a correct answer, but only after ``delay`` seconds
    GEN_ERR = "gen_err"  # error-status genErr(5)
    TOO_BIG = "too_big"  # error-status tooBig(1)
    NO_SUCH_NAME = "no_such_name"  # error-status noSuchName(2) (meaningful for v1)
    SILENT = "silent"  # never answers
    CORRECT = "correct"  # a well-formed answer (OctetString "ok"), for control tests


_BAD_TYPE_MARKER = b"\x04\x04\xde\xad\xbe\xef"


class HostileAgent(asyncio.DatagramProtocol):
    """An asyncio UDP agent answering v1/v2c requests with broken replies.

    ``requests`` counts the datagrams received, so tests can check that a
    client gave up (no further retries) or retried as often as it should.
    """

    def __init__(self, mode: HostileMode, delay: float = 2.0) -> None:
        self.mode = mode
        self.delay = delay
        self.requests = 0
        self.host = "127.0.0.1"
        self.port = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._first_oid: tuple[int, ...] | None = None

    # asyncio plumbing
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport
        # on 3.11, so an isinstance assert would fail inside the loop's callback.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.requests += 1
        try:
            reply = self.reply_to(data)
        except Exception:  # a request we cannot parse: stay silent, like a real agent
            return
        if reply is None:
            return
        if self.mode is HostileMode.SLOW:
            task = asyncio.get_running_loop().create_task(self._send_later(reply, addr))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif self._transport is not None:
            self._transport.sendto(reply, addr)

    async def _send_later(self, reply: bytes, addr: tuple[str | Any, int]) -> None:
        await asyncio.sleep(self.delay)
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(reply, addr)

    async def start(self) -> HostileAgent:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=("127.0.0.1", 0)
        )
        self._transport = transport
        self.port = int(self._transport.get_extra_info("sockname")[1])
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def __aenter__(self) -> HostileAgent:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # the misbehaviour
    def reply_to(self, data: bytes) -> bytes | None:
        mode = self.mode
        if mode is HostileMode.SILENT:
            return None
        if mode is HostileMode.GARBAGE:
            return b"\xde\xad\xbe\xef this is not BER \x00\x01"
        version = int(api.decodeMessageVersion(data))
        p = api.PROTOCOL_MODULES[version]
        msg, _ = decoder.decode(data, asn1Spec=p.Message())
        req = p.apiMessage.get_pdu(msg)
        rsp_msg = p.apiMessage.get_response(msg)
        rsp = p.apiMessage.get_pdu(rsp_msg)
        oids = [tuple(o) for o, _ in p.apiPDU.get_varbinds(req)]
        is_next = req.isSameTypeWith(p.GetNextRequestPDU())
        is_bulk = version == api.SNMP_VERSION_2C and req.isSameTypeWith(p.GetBulkRequestPDU())
        reps = int(p.apiBulkPDU.get_max_repetitions(req)) if is_bulk else 1
        out: list[tuple[tuple[int, ...], Any]] = []

        if mode is HostileMode.BACKWARDS and (is_next or is_bulk):
            # Always the same answer, inside the walked subtree: a GETNEXT for
            # base.5 gets base.5 again (stood still) and a GETBULK response
            # lists base.5 then base.3 (went backwards).
            if self._first_oid is None:
                self._first_oid = oids[0]
            base = self._first_oid
            out = [((*base, 5), p.Integer(1))]
            if is_bulk:
                out.append(((*base, 3), p.Integer(2)))
        elif mode is HostileMode.ENDLESS and (is_next or is_bulk):
            # Each answer is strictly after the request and inside its subtree.
            for o in oids:
                cur = o
                for _ in range(reps):
                    cur = (*cur, 1) if len(cur) < 12 else (*cur[:-1], cur[-1] + 1)
                    out.append((cur, p.Integer(cur[-1])))
        elif mode is HostileMode.BAD_VALUE_TYPE:
            out = [(o, p.OctetString(_BAD_TYPE_MARKER[2:])) for o in oids]
        else:
            out = [(o if not (is_next or is_bulk) else (*o, 0), p.OctetString(b"ok")) for o in oids]

        p.apiPDU.set_varbinds(rsp, out)
        if mode is HostileMode.GEN_ERR:
            p.apiPDU.set_error_status(rsp, 5)
            p.apiPDU.set_error_index(rsp, 1)
        elif mode is HostileMode.TOO_BIG:
            p.apiPDU.set_error_status(rsp, 1)
            p.apiPDU.set_error_index(rsp, 0)
        elif mode is HostileMode.NO_SUCH_NAME:
            p.apiPDU.set_error_status(rsp, 2)
            p.apiPDU.set_error_index(rsp, 1)
        elif mode is HostileMode.WRONG_REQUEST_ID:
            p.apiPDU.set_request_id(rsp, int(p.apiPDU.get_request_id(req)) ^ 0x5A5A)
        elif mode is HostileMode.WRONG_COMMUNITY:
            p.apiMessage.set_community(rsp_msg, "not-the-community-you-sent")
        wire = bytes(encoder.encode(rsp_msg))
        if mode is HostileMode.TRUNCATED:
            return wire[: len(wire) // 2]
        if mode is HostileMode.BAD_VALUE_TYPE:
            # 0x0c (UTF8String) is no SNMP ObjectSyntax: the agent "sent a type SNMP
            # does not have". Same length, so the outer BER stays consistent.
            return wire.replace(_BAD_TYPE_MARKER, b"\x0c" + _BAD_TYPE_MARKER[1:])
        return wire
