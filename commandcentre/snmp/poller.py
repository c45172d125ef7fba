"""One poll of one target: fetch each module's OIDs, map them, hand them to the store.

The poller is where the daemon's promises about bad devices are kept:
every request runs under the global cap on requests in flight, the whole
target poll runs under its time budget (so a dead or slow device ends its own
poll and never anyone else's), every failure is counted by reason, and a
failure is logged once when it starts (and once when it ends), not on every
poll.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from commandcentre.config import Auth, Endpoint, Module, Target, parse_oid
from commandcentre.samples import Labels, MetricKind, Sample
from commandcentre.snmp.mapping import CompiledModule, FamilyRenderer
from commandcentre.snmp.types import (
    ErrorReason,
    Oid,
    RequestOptions,
    SnmpClient,
    SnmpError,
    VarBind,
)
from commandcentre.store import SampleStore

log = structlog.get_logger("commandcentre.snmp")


@dataclass(frozen=True)
class PlannedModule:
    """A module ready to poll: OIDs parsed and the mapping compiled, once per config load."""

    name: str
    module: Module
    walk: tuple[Oid, ...]
    get: tuple[Oid, ...]
    compiled: CompiledModule

    @classmethod
    def build(cls, name: str, module: Module) -> PlannedModule:
        return cls(
            name=name,
            module=module,
            walk=tuple(parse_oid(o) for o in module.walk),
            get=tuple(parse_oid(o) for o in module.get),
            compiled=CompiledModule(module),
        )


@dataclass
class FetchResult:
    varbinds: list[VarBind]


@dataclass
class ModuleState:
    """Self-metric state for one (target, module)."""

    labels: Labels
    up: int = 0
    polls: int = 0
    duration: float = 0.0
    last_success: float = 0.0
    varbinds: int = 0
    failures_in_a_row: int = 0
    last_reason: ErrorReason | None = None
    last_error: str = ""  # detail of the last failure, for the status page
    errors: dict[ErrorReason, int] = field(default_factory=lambda: dict.fromkeys(ErrorReason, 0))


class Poller:
    """Runs polls; owns the in-flight cap and the per-(target, module) self-metric state."""

    def __init__(
        self,
        client: SnmpClient,
        store: SampleStore,
        max_in_flight: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.store = store
        self._clock = clock
        self.resize(max_in_flight)
        self.requests_in_flight = 0
        self.polls_in_flight = 0
        self.polls_completed = 0
        self.states: dict[tuple[str, str], ModuleState] = {}
        # Per (target, module): maps and renders its polls, keeping what it can
        # reuse from one poll to the next (see ``FamilyRenderer``).
        self._renderers: dict[tuple[str, str], FamilyRenderer] = {}

    def resize(self, max_in_flight: int) -> None:
        """Apply a new cap; requests already waiting keep the old semaphores and finish.

        Requests of targets whose last poll failed (the "suspect" lane) go through
        their own, smaller semaphore, so dead devices waiting out their timeouts
        cannot take the slots healthy devices need. The two lanes together never
        exceed ``max_in_flight``.
        """
        suspect = max(1, max_in_flight // 4)
        healthy = max(1, max_in_flight - suspect)
        self._slots = asyncio.Semaphore(healthy)
        self._suspect_slots = asyncio.Semaphore(suspect)
        self._single_lane = max_in_flight == 1

    # ------------------------------------------------------------------ fetching

    async def _request(
        self, coro_factory: Callable[[], object], suspect: bool = False
    ) -> list[VarBind]:
        lane = self._suspect_slots if suspect and not self._single_lane else self._slots
        async with lane:
            self.requests_in_flight += 1
            try:
                return await coro_factory()  # type: ignore[no-any-return, misc]
            finally:
                self.requests_in_flight -= 1

    async def fetch(
        self,
        endpoint: Endpoint,
        auth: Auth,
        planned: PlannedModule,
        *,
        request_timeout: float | None = None,
        retries: int | None = None,
        suspect: bool = False,
    ) -> FetchResult:
        """All varbinds of one module from one agent. Raises ``SnmpError``."""
        mod = planned.module
        options = RequestOptions(
            timeout=request_timeout if request_timeout is not None else mod.timeout,
            retries=retries if retries is not None else mod.retries,
            max_repetitions=mod.max_repetitions,
            allow_nonincreasing_oids=mod.allow_nonincreasing_oids,
        )
        varbinds: list[VarBind] = []
        for root in planned.walk:
            got = await self._request(
                lambda root=root: self.client.walk(endpoint, auth, root, options),  # type: ignore[misc]
                suspect,
            )
            varbinds.extend(got)
        if planned.get:
            got = await self._request(
                lambda: self.client.get(endpoint, auth, planned.get, options), suspect
            )
            varbinds.extend(got)
        return FetchResult(varbinds)

    # ------------------------------------------------------------------ polling a target

    def state(self, target: Target, module: str) -> ModuleState:
        key = (target.name, module)
        st = self.states.get(key)
        labels: Labels = (("target", target.name), ("module", module), *target.labels)
        if st is None:
            st = self.states[key] = ModuleState(labels=labels)
        else:
            st.labels = labels  # static labels may change on reload; counters carry on
        return st

    async def poll_target(self, target: Target, auth: Auth, modules: list[PlannedModule]) -> None:
        """Poll every module of ``target`` within its time budget."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + target.budget
        extra: Labels = (("target", target.name), *target.labels)
        self.polls_in_flight += 1
        try:
            for planned in modules:
                st = self.state(target, planned.name)
                started = loop.time()
                try:
                    async with asyncio.timeout_at(deadline):
                        fetched = await self.fetch(
                            target.endpoint,
                            auth,
                            planned,
                            request_timeout=target.timeout,
                            retries=target.retries,
                            suspect=st.failures_in_a_row > 0,
                        )
                    mapped = self._renderer(target.name, planned, extra).render(fetched.varbinds)
                except SnmpError as e:
                    self._failed(target, planned.name, st, e.reason, e.detail)
                except TimeoutError:
                    self._failed(
                        target,
                        planned.name,
                        st,
                        ErrorReason.BUDGET,
                        f"poll did not finish within its {target.budget:g}s budget",
                    )
                else:
                    if mapped.wrong_type:
                        st.errors[ErrorReason.WRONG_TYPE] += mapped.wrong_type
                        log.warning(
                            "snmp_values_of_wrong_type",
                            target=target.name,
                            module=planned.name,
                            count=mapped.wrong_type,
                            example=mapped.first_problem,
                        )
                    self.store.put_families(("snmp", target.name, planned.name), mapped.families)
                    if st.last_reason is not None:
                        log.info(
                            "snmp_poll_recovered",
                            target=target.name,
                            module=planned.name,
                            after_failures=st.failures_in_a_row,
                        )
                    st.up = 1
                    st.failures_in_a_row = 0
                    st.last_reason = None
                    st.last_success = self._clock()
                    st.varbinds = len(fetched.varbinds)
                finally:
                    st.polls += 1
                    st.duration = loop.time() - started
        finally:
            self.polls_in_flight -= 1
            self.polls_completed += 1

    def _renderer(self, target: str, planned: PlannedModule, extra: Labels) -> FamilyRenderer:
        """This target's renderer for the module, new when a reload changed the
        module or the target's labels (what it caches depends on both)."""
        key = (target, planned.name)
        renderer = self._renderers.get(key)
        if (
            renderer is None
            or renderer.compiled is not planned.compiled
            or renderer.extra_labels != extra
        ):
            renderer = self._renderers[key] = FamilyRenderer(planned.compiled, extra)
        return renderer

    def _failed(
        self, target: Target, module: str, st: ModuleState, reason: ErrorReason, detail: str
    ) -> None:
        st.up = 0
        st.errors[reason] += 1
        st.last_error = detail
        st.failures_in_a_row += 1
        st.varbinds = 0
        if st.last_reason is not reason:
            # Logged once per change of condition, not on every failed poll.
            log.warning(
                "snmp_poll_failed",
                target=target.name,
                address=str(target.endpoint),
                module=module,
                reason=reason.value,
                error=detail,
            )
        st.last_reason = reason
        if st.failures_in_a_row == target.stale_after_failures:
            self.store.drop(("snmp", target.name, module))
            self._renderers.pop((target.name, module), None)  # its rows are gone too
            log.info(
                "snmp_samples_dropped_as_stale",
                target=target.name,
                module=module,
                failed_polls=st.failures_in_a_row,
            )

    def forget(self, target_name: str, module: str | None = None) -> None:
        """Remove a target's (or one of its modules') samples and self-metrics."""
        for key in [k for k in self.states if k[0] == target_name and module in (None, k[1])]:
            del self.states[key]
            self._renderers.pop(key, None)
            self.store.drop(("snmp", *key))

    # ------------------------------------------------------------------ self-metrics

    def self_samples(self) -> list[Sample]:
        states = list(self.states.values())

        def per_state(name: str, kind: MetricKind, attr: str) -> list[Sample]:
            return [Sample(name, st.labels, getattr(st, attr), kind, _HELP[name]) for st in states]

        out = [
            *per_state("commandcentre_snmp_up", "gauge", "up"),
            *per_state("commandcentre_snmp_poll_duration_seconds", "gauge", "duration"),
            *per_state(
                "commandcentre_snmp_last_success_timestamp_seconds", "gauge", "last_success"
            ),
            *per_state("commandcentre_snmp_varbinds", "gauge", "varbinds"),
            *per_state("commandcentre_snmp_polls_total", "counter", "polls"),
        ]
        out.extend(
            Sample(
                "commandcentre_snmp_errors_total",
                (*st.labels[:2], ("reason", reason.value), *st.labels[2:]),
                n,
                "counter",
                _HELP["commandcentre_snmp_errors_total"],
            )
            for st in states
            for reason, n in st.errors.items()
        )
        out.append(
            Sample(
                "commandcentre_snmp_requests_in_flight",
                (),
                self.requests_in_flight,
                "gauge",
                "SNMP requests (walks and gets) in flight now.",
            )
        )
        out.append(
            Sample(
                "commandcentre_snmp_polls_in_flight",
                (),
                self.polls_in_flight,
                "gauge",
                "Target polls running now.",
            )
        )
        return out


_HELP = {
    "commandcentre_snmp_up": "1 if the last poll of this target and module succeeded, else 0.",
    "commandcentre_snmp_poll_duration_seconds": (
        "How long the last poll of this target and module took, in seconds."
    ),
    "commandcentre_snmp_last_success_timestamp_seconds": (
        "Unix time of the last successful poll of this target and module."
    ),
    "commandcentre_snmp_varbinds": "Varbinds returned by the last poll of this target and module.",
    "commandcentre_snmp_polls_total": "Polls of this target and module, successful or not.",
    "commandcentre_snmp_errors_total": "Failed polls of this target and module, by reason.",
}
