"""Samples: what producers (SNMP pollers, MQTT subscribers) hand to the store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MetricKind = Literal["gauge", "counter"]
Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Sample:
    """One series value. ``labels`` keeps the order the producer gives (snmp_exporter's
    order: indexes, then lookups, then extra labels) so the exposition is stable."""

    name: str
    labels: Labels
    value: float
    kind: MetricKind = "gauge"
    help: str = ""
