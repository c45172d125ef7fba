"""Pure functions: SNMPv1 trap -> SNMPv2 form, notification -> event, event -> alert.

No I/O here; ``tests/unit/test_traps_mapping.py`` feeds captured varbind lists.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from commandcentre.traps.table import TrapDef, TrapTable
from commandcentre.traps.types import Notification, Oid, TrapEvent, Varbind, oid_text

SNMP_TRAPS: Oid = (1, 3, 6, 1, 6, 3, 1, 1, 5)  # snmpTraps: coldStart is snmpTraps.1
SYS_UPTIME_0: Oid = (1, 3, 6, 1, 2, 1, 1, 3, 0)
SNMP_TRAP_OID_0: Oid = (1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0)
SNMP_TRAP_ENTERPRISE_0: Oid = (1, 3, 6, 1, 6, 3, 1, 1, 4, 3, 0)
SNMP_TRAP_ADDRESS_0: Oid = (1, 3, 6, 1, 6, 3, 18, 1, 3, 0)  # SNMP-COMMUNITY-MIB
_ENTERPRISE_SPECIFIC = 6


def v1_trap_oid(enterprise: Oid, generic: int, specific: int) -> Oid:
    """RFC 3584 section 3.1.1: the snmpTrapOID.0 of an SNMPv1 Trap-PDU.

    Generic traps 0-5 (coldStart .. egpNeighborLoss) become snmpTraps.(generic+1);
    enterprise-specific ones become enterprise.0.specific, e.g. APC's
    upsOnBattery (enterprise 1.3.6.1.4.1.318, specific 5) is 1.3.6.1.4.1.318.0.5.
    """
    if generic == _ENTERPRISE_SPECIFIC:
        return (*enterprise, 0, specific)
    return (*SNMP_TRAPS, generic + 1)


def v1_varbinds(
    varbinds: tuple[Varbind, ...], enterprise: Oid, agent_addr: str
) -> tuple[Varbind, ...]:
    """RFC 3584 3.1.1 (4): the v1 varbinds followed by snmpTrapAddress.0 and
    snmpTrapEnterprise.0 (unless the trap already carries them)."""
    have = {vb.oid for vb in varbinds}
    extra = []
    if SNMP_TRAP_ADDRESS_0 not in have:
        extra.append(Varbind(SNMP_TRAP_ADDRESS_0, agent_addr, "IpAddress"))
    if SNMP_TRAP_ENTERPRISE_0 not in have:
        extra.append(Varbind(SNMP_TRAP_ENTERPRISE_0, oid_text(enterprise), "ObjectIdentifier"))
    return (*varbinds, *extra)


def _under(oid: Oid, prefix: Oid) -> bool:
    return oid[: len(prefix)] == prefix


def _pick(
    varbinds: tuple[Varbind, ...],
    fields: tuple[tuple[str, Oid], ...],
    values: Mapping[str, Mapping[str, str]],
) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, prefix in fields:
        for vb in varbinds:
            if _under(vb.oid, prefix):
                text = vb.text()
                out[name] = values.get(name, {}).get(text, text)
                break
    return out


class _Blank(dict[str, str]):
    """Template values where a field the trap did not carry renders empty."""

    def __missing__(self, key: str) -> str:
        return ""


def _render(template: str, values: Mapping[str, str]) -> str:
    return " ".join(string.Formatter().vformat(template, (), _Blank(values)).split())


def varbinds_text(varbinds: tuple[Varbind, ...], limit: int = 2000) -> str:
    text = "\n".join(f"{oid_text(vb.oid)} = {vb.text()}" for vb in varbinds)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def to_event(
    n: Notification, source: str, table: TrapTable, target: str | None = None
) -> TrapEvent:
    """What the table says about ``n``; an OID it does not know becomes an event
    named after the OID, with no severity (counted and logged, never alerted)."""
    d = table.by_oid.get(n.trap_oid)
    if d is None:
        return TrapEvent(
            name=oid_text(n.trap_oid),
            oid=n.trap_oid,
            severity="none",
            source=source,
            subject=(),
            details=(),
            summary=f"SNMP notification {oid_text(n.trap_oid)} from {target or source}",
            description=varbinds_text(n.varbinds),
            known=False,
        )
    subject = _pick(n.varbinds, d.subject, d.values)
    details = _pick(n.varbinds, d.details, d.values)
    # A subject field the trap did not carry is still part of the key: "?" on both sides.
    subject_items = tuple((k, subject.get(k, "?")) for k, _ in d.subject)
    values = {
        **details,
        **dict(subject_items),
        "source": source,
        "target": target or source,
        "trap": d.name,
        "oid": oid_text(d.oid),
    }
    return TrapEvent(
        name=d.name,
        oid=d.oid,
        severity=d.severity,
        source=source,
        subject=subject_items,
        details=tuple(details.items()),
        summary=_render(d.summary, values) if d.summary else f"{d.name} from {target or source}",
        description=_render(d.description, values) if d.description else varbinds_text(n.varbinds),
        clears=d.clears,
        paired=d.paired,
        resolve_after=d.resolve_after,
        cleared_severity={c: table.by_name[c].severity for c in d.clears if c in table.by_name},
    )


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alert_labels(
    trap: TrapDef | str,
    severity: str,
    event: TrapEvent,
    target: str | None,
    target_labels: tuple[tuple[str, str], ...],
) -> dict[str, str]:
    """The alert's identity: Alertmanager matches a resolving post to the firing
    one by these labels, so they come only from the trap, source and subject."""
    name = trap if isinstance(trap, str) else trap.name
    labels = {**dict(target_labels)}
    labels.update({"alertname": name, "severity": severity, "source": event.source})
    if target is not None:
        labels["target"] = target
    labels.update(event.subject)
    return labels


def event_alerts(
    event: TrapEvent,
    now: datetime,
    *,
    target: str | None,
    target_labels: tuple[tuple[str, str], ...],
    resolve_timeout: float,
    active_for: float,
    generator_url: str = "",
) -> list[dict[str, Any]]:
    """Alertmanager v2 ``postableAlert`` objects for one event.

    A trap with a severity fires: a paired one until its clearing trap (the
    daemon re-posts it while the state lasts, ``active_for`` ahead), an unpaired
    one for ``resolve_after``/``resolve_timeout``. A clearing trap posts the
    alerts it clears with ``endsAt`` now, which resolves them.
    """
    out: list[dict[str, Any]] = []
    if event.severity != "none":
        ahead = active_for if event.paired else (event.resolve_after or resolve_timeout)
        out.append(
            {
                "labels": alert_labels(event.name, event.severity, event, target, target_labels),
                "annotations": {
                    "summary": event.summary,
                    "description": event.description,
                    "trap_oid": oid_text(event.oid),
                },
                "startsAt": _iso(now),
                "endsAt": _iso(now + timedelta(seconds=ahead)),
                "generatorURL": generator_url,
            }
        )
    for cleared in event.clears:
        severity = event.cleared_severity.get(cleared, "none")
        if severity == "none":
            continue
        out.append(
            {
                "labels": alert_labels(cleared, severity, event, target, target_labels),
                "annotations": {"summary": event.summary, "resolved_by": event.name},
                "endsAt": _iso(now),
                "generatorURL": generator_url,
            }
        )
    return out
