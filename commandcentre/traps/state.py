"""Counters, last-seen times and the state gauges of the trap path, as samples.

Exposition (``source`` is the sender's address; ``target`` and the target's
labels are added when a configured target has that address)::

    commandcentre_snmp_traps_received_total{source="10.0.0.5",trap="upsOnBattery",version="v1"} 3
    commandcentre_snmp_traps_dropped_total{reason="unknown_community"} 2
    commandcentre_snmp_traps_last_received_timestamp_seconds{source="10.0.0.5"} 1.7e9
    commandcentre_snmp_trap_state{source="10.0.0.5",trap="linkDown",subject="ifIndex=3"} 1
    commandcentre_snmp_trap_states_refused_total 0
    commandcentre_snmp_traps_informs_answered_total 5
    commandcentre_snmp_traps_receiver_up 1

The state gauge exists for traps that another trap clears: 1 from the trap
until its clearing trap, then 0. Series are capped (``max_states``) so a
sender making up subjects cannot grow memory without end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from commandcentre.samples import Labels, Sample
from commandcentre.traps.types import DROP_REASONS, TrapEvent

StateKey = tuple[str, str, str]  # (trap name, source, subject text)


@dataclass
class ActiveState:
    """A paired trap that has not been cleared yet: what the daemon re-posts."""

    event: TrapEvent
    since: float
    value: int = 1


@dataclass
class TrapStats:
    max_states: int = 10_000
    clock: Callable[[], float] = time.time
    received: dict[tuple[str, str, str], int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    last_seen: dict[str, float] = field(default_factory=dict)
    states: dict[StateKey, ActiveState] = field(default_factory=dict)
    states_refused: int = 0
    informs_answered: int = 0
    receiver_up: int = 0
    sender_lookup_errors: int = 0

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def record(self, event: TrapEvent, version: str) -> None:
        """Count the event and move the state gauges it touches.

        A trap the table does not know counts as trap="unknown" (its OID is in the
        log): a sender making up OIDs must not make up series. Per-sender series
        are capped at ``max_states`` senders/traps too, forgetting the oldest.
        """
        key = (event.source, event.name if event.known else "unknown", version)
        self.received[key] = self.received.pop(key, 0) + 1
        now = self.clock()
        self.last_seen.pop(event.source, None)
        self.last_seen[event.source] = now
        while len(self.received) > self.max_states:
            del self.received[next(iter(self.received))]
        while len(self.last_seen) > self.max_states:
            del self.last_seen[next(iter(self.last_seen))]
        subject = event.subject_text
        if event.paired:
            self._set((event.name, event.source, subject), event, 1, now)
        for cleared in event.clears:
            self._set((cleared, event.source, subject), event, 0, now)

    def _set(self, key: StateKey, event: TrapEvent, value: int, now: float) -> None:
        current = self.states.get(key)
        if current is None and len(self.states) >= self.max_states:
            # Forget a cleared state first; refuse only when every state is active.
            cleared = next((k for k, s in self.states.items() if s.value == 0), None)
            if cleared is None:
                self.states_refused += 1
                return
            del self.states[cleared]
        if current is not None and current.value == value and value == 1:
            current.event = event  # the newest details, same since
            return
        self.states[key] = ActiveState(event, now, value)

    def active(self) -> list[ActiveState]:
        return [s for s in self.states.values() if s.value == 1]

    def samples(self, labels_for: Callable[[str], Labels]) -> list[Sample]:
        """``labels_for(source)``: the target labels to add for that sender."""
        out = [
            Sample(
                "commandcentre_snmp_traps_receiver_up",
                (),
                self.receiver_up,
                "gauge",
                "1 if the trap receiver's socket is bound, else 0.",
            )
        ]
        for (source, trap, version), n in sorted(self.received.items()):
            out.append(
                Sample(
                    "commandcentre_snmp_traps_received_total",
                    (("source", source), ("trap", trap), ("version", version), *labels_for(source)),
                    n,
                    "counter",
                    "SNMP traps and informs accepted, by sender, trap name and SNMP version.",
                )
            )
        for reason, n in self.dropped.items():
            out.append(
                Sample(
                    "commandcentre_snmp_traps_dropped_total",
                    (("reason", reason),),
                    n,
                    "counter",
                    "Datagrams on the trap port that were dropped, by reason.",
                )
            )
        for source, t in sorted(self.last_seen.items()):
            out.append(
                Sample(
                    "commandcentre_snmp_traps_last_received_timestamp_seconds",
                    (("source", source), *labels_for(source)),
                    t,
                    "gauge",
                    "Unix time of the last accepted trap or inform from the sender.",
                )
            )
        for (trap, source, subject), s in sorted(self.states.items()):
            out.append(
                Sample(
                    "commandcentre_snmp_trap_state",
                    (
                        ("source", source),
                        ("trap", trap),
                        ("subject", subject),
                        ("severity", _severity(s, trap)),
                        *labels_for(source),
                    ),
                    s.value,
                    "gauge",
                    "1 while a trap is in effect (e.g. linkDown until linkUp, on battery "
                    "until return from battery), 0 once its clearing trap arrived.",
                )
            )
        out.append(
            Sample(
                "commandcentre_snmp_trap_states_refused_total",
                (),
                self.states_refused,
                "counter",
                "Trap states not kept because max_states were all active.",
            )
        )
        out.append(
            Sample(
                "commandcentre_snmp_traps_informs_answered_total",
                (),
                self.informs_answered,
                "counter",
                "InformRequests acknowledged with a Response.",
            )
        )
        out.append(
            Sample(
                "commandcentre_snmp_traps_sender_lookup_errors_total",
                (),
                self.sender_lookup_errors,
                "counter",
                "Failed lookups of targets' host names, done to know their traps' senders.",
            )
        )
        return out


def _severity(state: ActiveState, trap: str) -> str:
    if state.event.name == trap:
        return state.event.severity
    return state.event.cleared_severity.get(trap, "none")
