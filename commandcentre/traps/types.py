"""Value types of the trap path: what the decoder yields and what the mapping makes of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Oid = tuple[int, ...]
Severity = Literal["critical", "warning", "info", "none"]
SnmpVersion = Literal["v1", "v2c", "v3"]

# Why a datagram was dropped: the label values of commandcentre_snmp_traps_dropped_total.
DROP_REASONS = (
    "rate_limited",
    "rate_limited_all_sources",
    "malformed",
    "unsupported",
    "unknown_community",
    "unknown_user",
    "unknown_engine_id",
    "wrong_digest",
    "not_in_time_window",
    "decryption",
    "unsupported_security_level",
    "source_not_allowed",
)


def oid_text(oid: Oid) -> str:
    return ".".join(map(str, oid))


@dataclass(frozen=True, slots=True)
class Varbind:
    """One variable binding. ``value`` is already plain Python: int, str (text or a
    dotted OID or an IP address), bytes (octets that are not text) or None (NULL,
    noSuchObject and friends); ``type`` names the SMI type for the log."""

    oid: Oid
    value: int | str | bytes | None
    type: str = ""

    def text(self) -> str:
        """The value as the log and alert annotations show it."""
        if isinstance(self.value, bytes):
            return self.value.hex(":")
        if self.value is None:
            return ""
        return str(self.value)


@dataclass(frozen=True, slots=True)
class Notification:
    """A decoded, authenticated trap or inform, in SNMPv2 form.

    SNMPv1 traps are converted (RFC 3584 section 3.1) before they get here, so
    the trap table only ever sees ``snmpTrapOID.0`` values. ``principal`` is the
    name of the ``snmp.auths`` entry the sender matched (never the community or
    a key); ``varbinds`` exclude ``sysUpTime.0`` and ``snmpTrapOID.0``.
    """

    version: SnmpVersion
    principal: str
    trap_oid: Oid
    varbinds: tuple[Varbind, ...] = ()
    uptime: int | None = None  # hundredths of a second since the sender's restart
    inform: bool = False
    request_id: int | None = None  # informs: a retransmission repeats it


@dataclass(frozen=True, slots=True)
class TrapEvent:
    """What a notification means: the trap table applied to it.

    ``subject`` identifies the thing the trap is about on the source (an
    interface, an alarm), as ``(label, value)`` pairs from the varbinds, so that
    a clearing trap finds the state it clears. ``clears`` names the traps it
    resolves; ``paired`` is True for a trap some other trap clears.
    """

    name: str
    oid: Oid
    severity: Severity
    source: str
    subject: tuple[tuple[str, str], ...]
    details: tuple[tuple[str, str], ...]
    summary: str
    description: str
    clears: tuple[str, ...] = ()
    paired: bool = False
    known: bool = True
    resolve_after: float | None = None
    cleared_severity: dict[str, Severity] = field(default_factory=dict)

    @property
    def subject_text(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.subject)
