"""The polling schedule: one task per target, each on its own interval.

Start times are spread over the interval by a stable hash of the target's
name (as Prometheus spreads scrape offsets), so 200 targets on a 30 s
interval do not fire together, and a restarted daemon keeps the same phase.
A poll that overruns its interval skips the missed slots rather than
bunching up. Reloads diff the new targets against the running ones: an
unchanged target keeps its task, its phase and its series.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import structlog

from commandcentre.config import Auth, Config, Target
from commandcentre.snmp.poller import PlannedModule, Poller

log = structlog.get_logger("commandcentre.snmp")


def phase_offset(name: str, interval: float) -> float:
    """Deterministic start offset in [0, interval) for a target name."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    return (int.from_bytes(digest, "big") / 2**64) * interval


@dataclass(frozen=True)
class TargetPlan:
    """Everything a target's task needs; equal plans mean the task can keep running."""

    target: Target
    auth: Auth
    modules: tuple[PlannedModule, ...]

    def same_as(self, other: TargetPlan) -> bool:
        return (
            self.target == other.target
            and self.auth == other.auth
            and tuple(m.module for m in self.modules) == tuple(m.module for m in other.modules)
        )


def plan_targets(config: Config) -> dict[str, TargetPlan]:
    planned: dict[str, PlannedModule] = {}
    plans: dict[str, TargetPlan] = {}
    for t in config.snmp.targets:
        mods = []
        for name in t.modules:
            if name not in planned:
                planned[name] = PlannedModule.build(name, config.snmp.modules[name])
            mods.append(planned[name])
        plans[t.name] = TargetPlan(t, config.snmp.auths[t.auth_name], tuple(mods))
    return plans


class Scheduler:
    def __init__(self, poller: Poller) -> None:
        self.poller = poller
        self._plans: dict[str, TargetPlan] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.running = False

    @property
    def plans(self) -> Mapping[str, TargetPlan]:
        return self._plans

    def apply(self, plans: dict[str, TargetPlan]) -> tuple[int, int, int]:
        """Start, stop and restart target tasks to match ``plans``.

        Returns (added, removed, changed). Unchanged targets are not touched.
        """
        added = removed = changed = 0
        for name in list(self._plans):
            if name not in plans:
                self._stop_task(name)
                self.poller.forget(name)
                del self._plans[name]
                removed += 1
        for name, plan in plans.items():
            old = self._plans.get(name)
            if old is not None and old.same_as(plan):
                continue
            if old is not None:
                self._stop_task(name)
                kept = {m.name for m in plan.modules}
                for m in old.modules:
                    if m.name not in kept:
                        self.poller.forget(name, m.name)
                changed += 1
            else:
                added += 1
            self._plans[name] = plan
            if self.running:
                self._start_task(plan)
        return added, removed, changed

    def start(self) -> None:
        self.running = True
        for plan in self._plans.values():
            if plan.target.name not in self._tasks:
                self._start_task(plan)

    async def stop(self) -> None:
        """Cancel every target task and wait for them (in-flight requests are cancelled)."""
        self.running = False
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    def _start_task(self, plan: TargetPlan) -> None:
        name = plan.target.name
        # Touch the state of every module now so /metrics lists the target (up=0)
        # before its first poll completes.
        for m in plan.modules:
            self.poller.state(plan.target, m.name)
        self._tasks[name] = asyncio.create_task(self._run_target(plan), name=f"poll:{name}")

    def _stop_task(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()

    async def _run_target(self, plan: TargetPlan) -> None:
        loop = asyncio.get_running_loop()
        interval = plan.target.interval
        next_due = loop.time() + phase_offset(plan.target.name, interval)
        modules = list(plan.modules)
        while True:
            delay = next_due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                await self.poller.poll_target(plan.target, plan.auth, modules)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A bug, not a device problem (those are SnmpErrors handled in the
                # poller): log it with context and keep this target on schedule.
                log.exception("snmp_poll_crashed", target=plan.target.name)
            next_due += interval
            now = loop.time()
            if next_due <= now:
                skipped = int((now - next_due) // interval) + 1
                next_due += skipped * interval
                log.warning(
                    "snmp_poll_overran_interval",
                    target=plan.target.name,
                    interval=interval,
                    skipped_polls=skipped,
                )
