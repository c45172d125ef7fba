"""What a run produces: per scenario, one row per measured subject, each figure a list
of repetitions summarised as median and spread (min-max)."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Role = Literal["anchor", "commandcentre"]


@dataclass
class Figure:
    """One quantity measured once per repetition."""

    name: str
    unit: str
    values: list[float] = field(default_factory=list)

    @property
    def measured(self) -> list[float]:
        """The repetitions that produced a number (NaN: nothing to divide by, e.g. no
        poll succeeded in the window)."""
        return [v for v in self.values if not math.isnan(v)]

    @property
    def median(self) -> float:
        ok = self.measured
        return statistics.median(ok) if ok else math.nan

    @property
    def spread(self) -> tuple[float, float]:
        ok = self.measured
        return (min(ok), max(ok)) if ok else (math.nan, math.nan)


@dataclass
class Row:
    """One subject (an anchor, or commandcentre with one SNMP client) in one scenario."""

    subject: str
    role: Role
    figures: dict[str, Figure] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, unit: str, value: float) -> None:
        self.figures.setdefault(name, Figure(name, unit)).values.append(value)


@dataclass
class Scenario:
    """A scenario's rows; ``primary`` is the figure the ratio is taken on."""

    key: str
    title: str
    primary: str
    lower_is_better: bool
    target: str  # the target for the ratio, as text
    # further figures the summary shows beside the ratio (e.g. polls on time)
    highlights: tuple[str, ...] = ()
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self, subject: str, role: Role) -> Row:
        r = Row(subject, role)
        self.rows.append(r)
        return r

    def ratios(self) -> list[tuple[str, str, float]]:
        """(commandcentre subject, anchor subject, ratio of primary medians)."""
        anchors = [r for r in self.rows if r.role == "anchor" and self.primary in r.figures]
        out: list[tuple[str, str, float]] = []
        for a in anchors:
            base = a.figures[self.primary].median
            for r in self.rows:
                if r.role == "commandcentre" and self.primary in r.figures:
                    value = r.figures[self.primary].median
                    ratio = value / base if base else math.nan
                    out.append((r.subject, a.subject, ratio))
        return out

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratios"] = [
            {"commandcentre": c, "anchor": a, "ratio": x} for c, a, x in self.ratios()
        ]
        for row in data["rows"]:
            for name, fig in row["figures"].items():
                f = self._figure(row["subject"], name)
                fig["median"] = f.median
                fig["min"], fig["max"] = f.spread
        return data

    def _figure(self, subject: str, name: str) -> Figure:
        return next(r for r in self.rows if r.subject == subject).figures[name]
