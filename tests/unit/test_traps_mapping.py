"""Trap -> event -> Alertmanager alert, from varbind lists as devices send them;
the state gauges and the per-sender rate limit. Pure functions, no network."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from commandcentre.traps.mapping import event_alerts, to_event, v1_trap_oid
from commandcentre.traps.ratelimit import RateLimiter
from commandcentre.traps.state import TrapStats
from commandcentre.traps.types import Notification, Varbind
from tests.unit.test_traps_table import shipped_table

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
TABLE = shipped_table()


def oid(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def notification(trap: str, *varbinds: tuple[str, int | str | bytes | None]) -> Notification:
    return Notification(
        "v2c", "switch_v2", oid(trap), tuple(Varbind(oid(o), v) for o, v in varbinds)
    )


# What a Cisco Catalyst sends for linkDown (v2c): ifIndex, ifDescr, ifType, locIfReason.
CISCO_LINK_DOWN = notification(
    "1.3.6.1.6.3.1.1.5.3",
    ("1.3.6.1.2.1.2.2.1.1.10112", 10112),
    ("1.3.6.1.2.1.2.2.1.2.10112", "GigabitEthernet1/0/12"),
    ("1.3.6.1.2.1.2.2.1.3.10112", 6),
    ("1.3.6.1.4.1.9.2.2.1.1.20.10112", "administratively down"),
)
# IF-MIB's own objects (net-snmp snmpd, Linux): ifIndex, ifAdminStatus, ifOperStatus.
LINUX_LINK_UP = notification(
    "1.3.6.1.6.3.1.1.5.4",
    ("1.3.6.1.2.1.2.2.1.1.10112", 10112),
    ("1.3.6.1.2.1.2.2.1.7.10112", 1),
    ("1.3.6.1.2.1.2.2.1.8.10112", 1),
)
APC_ON_BATTERY = notification(
    "1.3.6.1.4.1.318.0.5",
    ("1.3.6.1.4.1.318.2.3.3.0", "UPS: On battery power in response to an input power problem."),
    ("1.3.6.1.6.3.1.1.4.3.0", "1.3.6.1.4.1.318"),
)
APC_POWER_RESTORED = notification(
    "1.3.6.1.4.1.318.0.9",
    ("1.3.6.1.4.1.318.2.3.3.0", "UPS: Returned from battery backup power."),
)
RFC1628_ON_BATTERY = notification(
    "1.3.6.1.2.1.33.2.0.1",
    ("1.3.6.1.2.1.33.1.2.3.0", 42),
    ("1.3.6.1.2.1.33.1.2.2.0", 17),
    ("1.3.6.1.2.1.33.1.9.7.0", 2),
)
ALARM_ADDED = notification(
    "1.3.6.1.2.1.33.2.0.3",
    ("1.3.6.1.2.1.33.1.6.2.1.1.4", 4),
    ("1.3.6.1.2.1.33.1.6.2.1.2.4", "1.3.6.1.2.1.33.1.6.3.2"),
)
ALARM_REMOVED = notification(
    "1.3.6.1.2.1.33.2.0.4",
    ("1.3.6.1.2.1.33.1.6.2.1.1.4", 4),
    ("1.3.6.1.2.1.33.1.6.2.1.2.4", "1.3.6.1.2.1.33.1.6.3.2"),
)


@pytest.mark.parametrize(
    ("enterprise", "generic", "specific", "expected"),
    [
        ("1.3.6.1.4.1.318", 6, 5, "1.3.6.1.4.1.318.0.5"),  # APC upsOnBattery
        ("1.3.6.1.2.1.33.2", 6, 1, "1.3.6.1.2.1.33.2.0.1"),  # RFC 1628 as SNMPv1
        ("1.3.6.1.4.1.9.1.516", 0, 0, "1.3.6.1.6.3.1.1.5.1"),  # coldStart
        ("1.3.6.1.4.1.9.1.516", 2, 0, "1.3.6.1.6.3.1.1.5.3"),  # linkDown
        ("1.3.6.1.4.1.9.1.516", 4, 0, "1.3.6.1.6.3.1.1.5.5"),  # authenticationFailure
    ],
)
def test_rfc3584_v1_to_v2(enterprise: str, generic: int, specific: int, expected: str) -> None:
    assert v1_trap_oid(oid(enterprise), generic, specific) == oid(expected)


@pytest.mark.parametrize(
    ("n", "name", "severity", "subject", "summary"),
    [
        (
            CISCO_LINK_DOWN,
            "linkDown",
            "warning",
            (("ifIndex", "10112"),),
            "sw-1: link down on ifIndex 10112 GigabitEthernet1/0/12",
        ),
        (
            LINUX_LINK_UP,
            "linkUp",
            "none",
            (("ifIndex", "10112"),),
            "sw-1: link up on ifIndex 10112",
        ),
        (APC_ON_BATTERY, "upsOnBattery", "critical", (), "sw-1 is on battery"),
        (
            RFC1628_ON_BATTERY,
            "upsTrapOnBattery",
            "critical",
            (),
            "sw-1 is on battery: 42 min remaining",
        ),
        (
            ALARM_ADDED,
            "upsTrapAlarmEntryAdded",
            "warning",
            (("upsAlarmDescr", "upsAlarmOnBattery"),),
            "sw-1: UPS alarm upsAlarmOnBattery",
        ),
    ],
)
def test_event(
    n: Notification, name: str, severity: str, subject: tuple[tuple[str, str], ...], summary: str
) -> None:
    e = to_event(n, "10.0.0.2", TABLE, "sw-1")
    assert (e.name, e.severity, e.subject, e.summary) == (name, severity, subject, summary)


def test_link_down_details_name_the_status() -> None:
    n = notification(
        "1.3.6.1.6.3.1.1.5.3",
        ("1.3.6.1.2.1.2.2.1.1.3", 3),
        ("1.3.6.1.2.1.2.2.1.7.3", 1),
        ("1.3.6.1.2.1.2.2.1.8.3", 7),
    )
    e = to_event(n, "10.0.0.2", TABLE)
    assert dict(e.details) == {"ifAdminStatus": "up", "ifOperStatus": "lowerLayerDown"}
    assert "admin status up, operational status lowerLayerDown" in e.description
    assert e.summary == "10.0.0.2: link down on ifIndex 3"


def test_unknown_trap_is_named_by_its_oid_and_never_alerts() -> None:
    e = to_event(
        notification("1.3.6.1.4.1.99999.0.7", ("1.3.6.1.4.1.99999.1", "x")), "10.0.0.9", TABLE
    )
    assert (e.name, e.severity, e.known) == ("1.3.6.1.4.1.99999.0.7", "none", False)
    assert "1.3.6.1.4.1.99999.1 = x" in e.description
    assert (
        event_alerts(e, NOW, target=None, target_labels=(), resolve_timeout=60, active_for=240)
        == []
    )


def test_paired_alert_fires_until_cleared_then_resolves() -> None:
    labels = (("room", "basement"), ("site", "town-hall"))
    fire = to_event(APC_ON_BATTERY, "10.0.0.5", TABLE, "ups-1")
    [alert] = event_alerts(
        fire, NOW, target="ups-1", target_labels=labels, resolve_timeout=3600, active_for=240
    )
    assert alert["labels"] == {
        "alertname": "upsOnBattery",
        "severity": "critical",
        "source": "10.0.0.5",
        "target": "ups-1",
        "room": "basement",
        "site": "town-hall",
    }
    assert alert["startsAt"] == "2026-11-29T12:00:00.000Z"
    # paired: kept alive by re-posting, not by a long endsAt
    assert alert["endsAt"] == "2026-11-29T12:04:00.000Z"
    assert alert["annotations"]["description"].endswith("input power problem.")
    clear = to_event(APC_POWER_RESTORED, "10.0.0.5", TABLE, "ups-1")
    [resolve] = event_alerts(
        clear, NOW, target="ups-1", target_labels=labels, resolve_timeout=3600, active_for=240
    )
    assert resolve["labels"] == alert["labels"], "the same labels, or Alertmanager keeps both"
    assert resolve["endsAt"] == "2026-11-29T12:00:00.000Z"


def test_unpaired_alert_ends_after_resolve_after_or_timeout() -> None:
    rfc = to_event(RFC1628_ON_BATTERY, "10.0.0.6", TABLE)
    [a] = event_alerts(
        rfc, NOW, target=None, target_labels=(), resolve_timeout=3600, active_for=240
    )
    assert a["endsAt"] == "2026-11-29T12:03:00.000Z"  # the entry's resolve_after: 3m
    assert "target" not in a["labels"]
    custom = to_event(notification("1.3.6.1.6.3.1.1.5.5"), "10.0.0.6", TABLE)
    [b] = event_alerts(
        custom, NOW, target=None, target_labels=(), resolve_timeout=60, active_for=240
    )
    assert b["endsAt"] == "2026-11-29T12:15:00.000Z"  # authenticationFailure: resolve_after 15m


def test_subject_labels_pair_alarm_added_and_removed() -> None:
    added = event_alerts(
        to_event(ALARM_ADDED, "10.0.0.7", TABLE), NOW, target=None, target_labels=(),
        resolve_timeout=60, active_for=240,
    )  # fmt: skip
    removed = event_alerts(
        to_event(ALARM_REMOVED, "10.0.0.7", TABLE), NOW, target=None, target_labels=(),
        resolve_timeout=60, active_for=240,
    )  # fmt: skip
    assert added[0]["labels"]["upsAlarmDescr"] == "upsAlarmOnBattery"
    assert removed[0]["labels"] == added[0]["labels"]
    assert removed[0]["endsAt"] == "2026-11-29T12:00:00.000Z"


def test_state_gauge_follows_pairs_per_subject() -> None:
    stats = TrapStats(clock=lambda: 1000.0)
    stats.record(to_event(CISCO_LINK_DOWN, "10.0.0.2", TABLE), "v2c")
    stats.record(to_event(APC_ON_BATTERY, "10.0.0.5", TABLE), "v1")
    stats.record(to_event(RFC1628_ON_BATTERY, "10.0.0.6", TABLE), "v1")  # unpaired: no state
    assert {k: s.value for k, s in stats.states.items()} == {
        ("linkDown", "10.0.0.2", "ifIndex=10112"): 1,
        ("upsOnBattery", "10.0.0.5", ""): 1,
    }
    # linkUp for another interface leaves ifIndex 10112 down
    other = notification("1.3.6.1.6.3.1.1.5.4", ("1.3.6.1.2.1.2.2.1.1.5", 5))
    stats.record(to_event(other, "10.0.0.2", TABLE), "v2c")
    assert stats.states["linkDown", "10.0.0.2", "ifIndex=10112"].value == 1
    assert stats.states["linkDown", "10.0.0.2", "ifIndex=5"].value == 0
    stats.record(to_event(LINUX_LINK_UP, "10.0.0.2", TABLE), "v2c")
    assert stats.states["linkDown", "10.0.0.2", "ifIndex=10112"].value == 0
    assert [s.event.name for s in stats.active()] == ["upsOnBattery"]
    samples = {
        (s.name, s.labels): s.value
        for s in stats.samples(lambda src: (("target", "ups-1"),) if src == "10.0.0.5" else ())
    }
    battery = (
        ("source", "10.0.0.5"), ("trap", "upsOnBattery"), ("subject", ""),
        ("severity", "critical"), ("target", "ups-1"),
    )  # fmt: skip
    assert samples["commandcentre_snmp_trap_state", battery] == 1
    cleared = (
        ("source", "10.0.0.2"), ("trap", "linkDown"), ("subject", "ifIndex=10112"),
        ("severity", "warning"),
    )  # fmt: skip
    assert samples["commandcentre_snmp_trap_state", cleared] == 0
    received = (("source", "10.0.0.2"), ("trap", "linkUp"), ("version", "v2c"))
    assert samples["commandcentre_snmp_traps_received_total", received] == 2


def test_states_are_capped_forgetting_cleared_ones_first() -> None:
    stats = TrapStats(max_states=2)
    for i in (1, 2):
        n = notification("1.3.6.1.6.3.1.1.5.3", ("1.3.6.1.2.1.2.2.1.1.1", i))
        stats.record(to_event(n, "10.0.0.2", TABLE), "v2c")
    up = notification("1.3.6.1.6.3.1.1.5.4", ("1.3.6.1.2.1.2.2.1.1.1", 1))
    stats.record(to_event(up, "10.0.0.2", TABLE), "v2c")
    third = notification("1.3.6.1.6.3.1.1.5.3", ("1.3.6.1.2.1.2.2.1.1.1", 3))
    stats.record(to_event(third, "10.0.0.2", TABLE), "v2c")  # replaces the cleared ifIndex 1
    assert sorted(k[2] for k in stats.states) == ["ifIndex=2", "ifIndex=3"]
    fourth = notification("1.3.6.1.6.3.1.1.5.3", ("1.3.6.1.2.1.2.2.1.1.1", 4))
    stats.record(to_event(fourth, "10.0.0.2", TABLE), "v2c")  # all active: refused
    assert stats.states_refused == 1
    assert len(stats.states) == 2


def test_rate_limit_per_source() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=10, burst=5, max_sources=2, clock=lambda: now[0])
    assert [limiter.allow("a") for _ in range(7)] == [True] * 5 + [False] * 2
    assert limiter.allow("b"), "another sender has its own bucket"
    now[0] = 0.1  # one token back
    assert limiter.allow("a")
    assert not limiter.allow("a")
    limiter.allow("c")  # a third sender: the least recently seen ("b") is forgotten
    assert len(limiter) == 2


def test_unknown_traps_and_many_senders_do_not_grow_series() -> None:
    stats = TrapStats(max_states=3)
    for i in range(10):
        n = notification(f"1.3.6.1.4.1.99999.0.{i}")
        stats.record(to_event(n, f"10.0.0.{i}", TABLE), "v2c")
    assert {k[1] for k in stats.received} == {"unknown"}
    assert sorted(stats.last_seen) == ["10.0.0.7", "10.0.0.8", "10.0.0.9"]
    assert len(stats.received) == 3
