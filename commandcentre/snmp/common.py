"""What both SNMP clients (``fast_client``, ``pysnmp_client``) share: the limits they
apply alike, the socket set-up, and how an agent's error-status is reported."""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Sequence

from commandcentre.snmp.types import ErrorReason, Oid, SnmpError

MAX_OIDS_PER_GET = 60  # as snmp_exporter: larger GETs risk tooBig on small agents
RECV_BUFFER_BYTES = 8 * 1024 * 1024
NAME_TTL_SECONDS = 300.0  # host names are resolved again after this long
NO_SUCH_NAME = 2  # v1's error-status for "past the end" in a GETNEXT walk

# Linux's SO_RCVBUFFORCE (not exported by the socket module).
_SO_RCVBUFFORCE = 33 if sys.platform.startswith("linux") else None

# RFC 3416 error-status names, by value
_ERROR_STATUS = (
    "noError",
    "tooBig",
    "noSuchName",
    "badValue",
    "readOnly",
    "genErr",
    "noAccess",
    "wrongType",
    "wrongLength",
    "wrongEncoding",
    "wrongValue",
    "noCreation",
    "inconsistentValue",
    "resourceUnavailable",
    "commitFailed",
    "undoFailed",
    "authorizationError",
    "notWritable",
    "inconsistentName",
)


def enlarge_receive_buffer(sock: socket.socket, size: int) -> None:
    """Past net.core.rmem_max needs CAP_NET_ADMIN (SO_RCVBUFFORCE); else take the capped size."""
    if _SO_RCVBUFFORCE is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, size)
        except OSError:
            pass
        else:
            return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def is_literal(host: str) -> bool:
    """An IP address (no name resolution needed)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def status_error(status: int, index: int, oids: Sequence[Oid]) -> SnmpError:
    """An error-status in a response, as the AGENT_ERROR the error counter records."""
    name = _ERROR_STATUS[status] if 0 <= status < len(_ERROR_STATUS) else f"error {status}"
    where = f" at {dotted(oids[index - 1])}" if 0 < index <= len(oids) else ""
    return SnmpError(ErrorReason.AGENT_ERROR, f"{name}{where}")


def dotted(oid: Oid) -> str:
    return ".".join(map(str, oid))
