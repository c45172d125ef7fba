"""The SNMP agent every SNMP scenario polls: net-snmp ``snmpd`` serving a synthetic
48-port switch.

snmpd answers in ≈ 3-6 µs per varbind, so the client, not the agent, is what a
client benchmark measures (snmpsim costs ≈ 100-150 µs per varbind and, on a
2-core machine, competes with the client for CPU). snmpd reports the host's own
interfaces, so its interface modules are switched off (``-I -interfaces,...``)
and ``override`` lines serve ifNumber, a 48-row ifTable (22 columns) and
ifXTable (19 columns): 1,969 varbinds per if_mib walk, like a 48-port access
switch. ``override`` has no Counter64, so the eight ifHC* columns are served as
Counter32 (the client decodes a 4- instead of a 5-9-byte integer; the work per
varbind is otherwise the same). The same agent can listen on many loopback
addresses (127.0.0.x share ``lo``), to stand in for many devices.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Proc, StartError, started

SNMPD = "/usr/sbin/snmpd"
SNMPGET = "/usr/bin/snmpget"
PORTS = 48
COMMUNITY = "public"


@dataclass(frozen=True)
class V3User:
    """The v3 authPriv user both clients poll with (SHA / AES-128)."""

    name: str = "bench"
    auth_protocol: str = "SHA"
    auth_password: str = "bench-auth-pass"  # noqa: S105 - a loopback test agent's
    priv_protocol: str = "AES"
    priv_password: str = "bench-priv-pass"  # noqa: S105 - a loopback test agent's


V3 = V3User()

# (column, override type, value for port i) for ifTable 1.3.6.1.2.1.2.2.1.<col>.<i>
_IF_TABLE: list[tuple[int, str, str]] = [
    (1, "integer", "{i}"),
    (2, "octet_str", '"GigabitEthernet1/0/{i}"'),
    (3, "integer", "6"),
    (4, "integer", "1500"),
    (5, "unsigned", "1000000000"),
    (6, "octet_str", "0x0011223344{i:02x}"),
    (7, "integer", "1"),
    (8, "integer", "{updown}"),
    (9, "timeticks", "{big}"),
    *[(c, "counter", "{big}") for c in range(10, 21)],
    (21, "unsigned", "0"),
    (22, "object_id", ".0.0"),
]
# ifXTable 1.3.6.1.2.1.31.1.1.1.<col>.<i>
_IFX_TABLE: list[tuple[int, str, str]] = [
    (1, "octet_str", '"Gi1/0/{i}"'),
    *[(c, "counter", "{big}") for c in range(2, 14)],
    (14, "integer", "1"),
    (15, "unsigned", "1000"),
    (16, "integer", "2"),
    (17, "integer", "1"),
    (18, "octet_str", '"desk {i} floor 2"'),
    (19, "timeticks", "0"),
]


def switch_overrides(ports: int = PORTS) -> list[str]:
    """snmpd.conf ``override`` lines for ifNumber, ifTable and ifXTable."""
    lines = [f"override .1.3.6.1.2.1.2.1.0 integer {ports}"]
    for base, table in (("1.3.6.1.2.1.2.2.1", _IF_TABLE), ("1.3.6.1.2.1.31.1.1.1", _IFX_TABLE)):
        for col, kind, value in table:
            for i in range(1, ports + 1):
                v = value.format(i=i, updown=1 if i % 3 else 2, big=1_000_003 * i)
                lines.append(f"override .{base}.{col}.{i} {kind} {v}")
    return lines


def varbinds_per_walk(ports: int = PORTS) -> int:
    return 1 + ports * (len(_IF_TABLE) + len(_IFX_TABLE))


def snmpd_config(ports: int) -> str:
    return "\n".join(
        [
            f"rocommunity {COMMUNITY} 127.0.0.0/8",
            f'createUser {V3.name} {V3.auth_protocol} "{V3.auth_password}" '
            f'{V3.priv_protocol} "{V3.priv_password}"',
            f"rouser {V3.name} priv",
            "dontLogTCPWrappersConnects yes",
            *switch_overrides(ports),
            "",
        ]
    )


@contextlib.contextmanager
def switch_agent(
    workdir: Path, port: int, addresses: list[str], ports: int = PORTS
) -> Iterator[Proc]:
    """snmpd serving the synthetic switch on ``port`` of every address in ``addresses``."""
    if not os.access(SNMPD, os.X_OK):
        raise StartError(f"{SNMPD} is not installed (Debian package snmpd)")
    conf = workdir / "snmpd.conf"
    conf.write_text(snmpd_config(ports))
    persist = workdir / "snmpd-persist"
    persist.mkdir(exist_ok=True)
    listen = ",".join(f"udp:{a}:{port}" for a in addresses)
    argv = [SNMPD, "-f", "-Lf", "/dev/null", "-C", "-r"]
    argv += ["-I", "-interfaces,ifTable,ifXTable", "-c", str(conf), listen]
    env = {"SNMP_PERSISTENT_DIR": str(persist), "MIBS": ""}
    with started("snmpd", argv, workdir, env) as proc:
        _wait_answering(proc, addresses[0], port)
        yield proc


def _wait_answering(proc: Proc, address: str, port: int, limit: float = 20.0) -> None:
    import subprocess

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        proc.check_alive()
        r = subprocess.run(  # noqa: S603 - fixed argv
            [
                *(SNMPGET, "-v2c", "-c", COMMUNITY, "-t", "0.3", "-r", "0", "-On"),
                *(f"{address}:{port}", "1.3.6.1.2.1.2.1.0"),
            ],
            capture_output=True,
            check=False,
            env={**os.environ, "MIBS": ""},
        )
        if r.returncode == 0 and b"INTEGER" in r.stdout:
            return
        time.sleep(0.1)
    raise StartError(f"snmpd did not answer on {address}:{port}:\n{proc.output()}")
