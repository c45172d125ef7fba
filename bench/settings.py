"""How big a run is: the full run (≈ 15 min) or ``--quick`` (a smoke run, < 1 min)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Settings:
    """Sizes and repetitions for one run."""

    quick: bool
    reps: int
    clients: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    # scenarios 1, 2: poll interval and polls per repetition
    snmp_interval: float = 1.0
    polls_per_rep: int = 6
    snmp_min_cpu: float = 0.15
    # scenario 3
    targets: int = 500
    fleet_interval: float = 30.0
    fleet_reps: int = 2  # intervals measured (each after a warm-up interval)
    # scenario 4: the sizes of the exposition, in series
    scrape_series: tuple[int, ...] = (10_000, 100_000)
    scrapes_per_rep: int = 5
    # keep measuring until a process has used this much CPU (10 ms ticks)
    min_cpu: float = 0.3
    # scenario 5
    ingest_messages: int = 300_000
    burst_messages: int = 1_000_000

    @classmethod
    def make(cls, quick: bool, reps: int | None) -> Settings:
        if not quick:
            return cls(quick=False, reps=reps or 5, fleet_reps=min(reps or 2, 2))
        return cls(
            quick=True,
            reps=reps or 1,
            polls_per_rep=2,
            snmp_min_cpu=0.05,
            targets=4,
            fleet_interval=3.0,
            fleet_reps=1,
            scrape_series=(2_000,),
            scrapes_per_rep=2,
            min_cpu=0.1,
            ingest_messages=10_000,
            burst_messages=20_000,
        )
