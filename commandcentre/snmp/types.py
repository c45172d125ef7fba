"""The SNMP domain values and the narrow client interface.

Nothing here imports pysnmp: the mapping code and the poller work on these
plain values, and a faster backend can replace ``pysnmp_client`` by
implementing ``SnmpClient`` without touching anything else.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from commandcentre.config import Auth, Endpoint

Oid = tuple[int, ...]


class SnmpType(enum.Enum):
    """The SMI types a varbind can carry, plus the v2 exception values."""

    INTEGER = "Integer"
    OCTET_STRING = "OctetString"
    OBJECT_IDENTIFIER = "ObjectIdentifier"
    IP_ADDRESS = "IpAddress"
    COUNTER32 = "Counter32"
    GAUGE32 = "Gauge32"  # also Unsigned32
    TIMETICKS = "TimeTicks"
    OPAQUE = "Opaque"
    COUNTER64 = "Counter64"
    NULL = "Null"
    NO_SUCH_OBJECT = "noSuchObject"
    NO_SUCH_INSTANCE = "noSuchInstance"
    END_OF_MIB_VIEW = "endOfMibView"


EXCEPTION_TYPES = frozenset(
    {SnmpType.NULL, SnmpType.NO_SUCH_OBJECT, SnmpType.NO_SUCH_INSTANCE, SnmpType.END_OF_MIB_VIEW}
)


@dataclass(frozen=True, slots=True)
class VarBind:
    """One (OID, typed value) pair as the agent sent it.

    ``value`` is ``int`` for the integer types, ``bytes`` for OctetString,
    IpAddress (4 bytes) and Opaque (the raw inner encoding), an ``Oid`` for
    ObjectIdentifier, and ``None`` for Null and the exception values.
    """

    oid: Oid
    type: SnmpType
    value: int | bytes | Oid | None


class ErrorReason(enum.Enum):
    """Why a poll (or part of one) failed; the ``reason`` label of the error counter."""

    TIMEOUT = "timeout"  # no (valid) answer within timeout x retries
    AUTH = "auth"  # v3 report: unknown user, wrong digest, unsupported level, wrong engine
    DECODE = "decode"  # the answer could not be decoded
    AGENT_ERROR = "agent_error"  # an error-status in the response PDU (genErr, tooBig, ...)
    OID_NOT_INCREASING = "oid_not_increasing"  # a walk that went backwards or stood still
    WALK_TOO_LONG = "walk_too_long"  # more varbinds than a walk may return
    WRONG_TYPE = "wrong_type"  # a value whose type does not fit the module's metric type
    BUDGET = "budget"  # the poll ran out of its time budget
    TRANSPORT = "transport"  # name resolution, connection refused (TCP), socket errors


class SnmpError(Exception):
    """An SNMP request failed. ``reason`` is what the error counter records."""

    def __init__(self, reason: ErrorReason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}")


@dataclass(frozen=True, slots=True)
class RequestOptions:
    timeout: float  # seconds per attempt
    retries: int
    max_repetitions: int = 25
    max_varbinds: int = 100_000  # a walk that returns more is cut off (WALK_TOO_LONG)
    allow_nonincreasing_oids: bool = False


class SnmpClient(Protocol):
    """The only way the daemon talks SNMP. Implementations must be safe to call
    concurrently from many tasks and must never block the event loop."""

    async def get(
        self, endpoint: Endpoint, auth: Auth, oids: Sequence[Oid], options: RequestOptions
    ) -> list[VarBind]:
        """GET the given OIDs (split into several PDUs if needed). Exception values
        (noSuchObject, ...) are returned as varbinds, not raised."""
        ...

    async def walk(
        self, endpoint: Endpoint, auth: Auth, root: Oid, options: RequestOptions
    ) -> list[VarBind]:
        """Walk the subtree under ``root`` (GETBULK for v2c/v3, GETNEXT for v1),
        returning only varbinds inside it, in the order received."""
        ...

    async def close(self) -> None:
        """Release sockets and the engine. Further calls are errors."""
        ...
