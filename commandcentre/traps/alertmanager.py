"""Posting alerts to Alertmanager's v2 API (``POST /api/v2/alerts``).

One queue and one task per URL, so a dead Alertmanager never delays a live one
(Alertmanager clusters want every member posted to, as Prometheus does). The
receiver only appends to the queues: it never waits on the network. A queue
is bounded; when full, the oldest alerts go (an alert re-posted later carries
the newer state anyway) and are counted. Failed posts are retried with
exponential backoff, merged with whatever queued up meanwhile.

Exposition::

    commandcentre_snmp_trap_alerts_posts_total{url="http://am:9093",result="success"} 4
    commandcentre_snmp_trap_alerts_dropped_total{url="http://am:9093"} 0
    commandcentre_snmp_trap_alerts_queued{url="http://am:9093"} 0
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog

from commandcentre.samples import Sample
from commandcentre.traps.config import AlertmanagerSpec

log = structlog.get_logger("commandcentre.traps")

_BATCH = 64
_BACKOFF_START = 0.5
_BACKOFF_MAX = 30.0


def ssl_context(spec: AlertmanagerSpec) -> ssl.SSLContext | None:
    tls = spec.tls
    if tls is None:
        return None
    ctx = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file and tls.key_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass
class _Endpoint:
    url: str
    queue: deque[dict[str, Any]]
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    posted: dict[str, int] = field(default_factory=lambda: {"success": 0, "failure": 0})
    dropped: int = 0
    failing: bool = False


class AlertmanagerPoster:
    """A bounded queue and a task per URL.

    ``previous``: the poster this one replaces on a reload. For every URL both have,
    its queue (alerts not delivered yet, Alertmanager being down, say) and counters
    carry over; the previous poster's tasks, once stopped, put a batch they were
    posting back in front of that queue.
    """

    def __init__(
        self,
        spec: AlertmanagerSpec,
        on_change: Callable[[], None] = lambda: None,
        previous: AlertmanagerPoster | None = None,
    ) -> None:
        self.spec = spec
        self._on_change = on_change  # counters moved: the owner refreshes its samples
        self._session: aiohttp.ClientSession | None = None
        before = {ep.url: ep for ep in previous._endpoints} if previous is not None else {}
        self._endpoints: list[_Endpoint] = []
        for url in spec.urls:
            old = before.get(url)
            ep = _Endpoint(url, deque())
            if old is not None:
                ep.queue, ep.posted = old.queue, old.posted
                ep.dropped, ep.failing = old.dropped, old.failing
                while len(ep.queue) > spec.queue_size:
                    ep.queue.popleft()
                    ep.dropped += 1
            self._endpoints.append(ep)

    def start(self) -> None:
        for ep in self._endpoints:
            if ep.task is None:
                ep.task = asyncio.create_task(self._run(ep), name=f"alertmanager:{ep.url}")

    async def stop(self) -> None:
        tasks = [ep.task for ep in self._endpoints if ep.task is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        for ep in self._endpoints:
            ep.task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def submit(self, alerts: list[dict[str, Any]]) -> None:
        """Queue alerts for every URL; never blocks."""
        if not alerts:
            return
        for ep in self._endpoints:
            for a in alerts:
                if len(ep.queue) >= self.spec.queue_size:
                    ep.queue.popleft()
                    ep.dropped += 1
                ep.queue.append(a)
            ep.wake.set()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            headers = {}
            basic = self.spec.basic_auth
            if basic is not None and basic.password is not None:
                # by hand: aiohttp.BasicAuth is deprecated in 3.14, its replacement
                # missing from the 3.9 that pyproject allows
                pair = f"{basic.username}:{basic.password.reveal()}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
            self._session = aiohttp.ClientSession(
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.spec.timeout),
                connector=aiohttp.TCPConnector(ssl=ssl_context(self.spec) or True),
            )
        return self._session

    async def _run(self, ep: _Endpoint) -> None:
        backoff = _BACKOFF_START
        while True:
            if not ep.queue:
                ep.wake.clear()
                await ep.wake.wait()
            batch = [ep.queue.popleft() for _ in range(min(_BATCH, len(ep.queue)))]
            try:
                error = await self._post(ep.url, batch)
            except asyncio.CancelledError:
                # stopped mid-post: a successor (a reload's) posts them again; a
                # duplicate is harmless to Alertmanager, a lost alert is not
                ep.queue.extendleft(reversed(batch))
                raise
            self._on_change()
            if error is None:
                ep.posted["success"] += 1
                if ep.failing:
                    log.info("alertmanager_post_recovered", url=ep.url)
                ep.failing = False
                backoff = _BACKOFF_START
                continue
            ep.posted["failure"] += 1
            if not ep.failing:
                log.warning("alertmanager_post_failed", url=ep.url, error=error, alerts=len(batch))
            ep.failing = True
            # Back in front, in order, within the bound (the oldest go first).
            room = self.spec.queue_size - len(ep.queue)
            keep = batch[-room:] if room > 0 else []
            ep.dropped += len(batch) - len(keep)
            ep.queue.extendleft(reversed(keep))
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)

    async def _post(self, url: str, batch: list[dict[str, Any]]) -> str | None:
        try:
            server_name = self.spec.tls.server_name if self.spec.tls is not None else None
            async with self._client().post(
                f"{url}/api/v2/alerts", json=batch, server_hostname=server_name
            ) as resp:
                if resp.status >= 300:
                    body = (await resp.text())[:200]
                    return f"HTTP {resp.status}: {body}"
                return None
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            return f"{type(e).__name__}: {e}"[:300]

    def samples(self) -> list[Sample]:
        out: list[Sample] = []
        for ep in self._endpoints:
            for result, n in ep.posted.items():
                out.append(
                    Sample(
                        "commandcentre_snmp_trap_alerts_posts_total",
                        (("url", ep.url), ("result", result)),
                        n,
                        "counter",
                        "POSTs of trap alerts to Alertmanager, by URL and result.",
                    )
                )
            out.append(
                Sample(
                    "commandcentre_snmp_trap_alerts_dropped_total",
                    (("url", ep.url),),
                    ep.dropped,
                    "counter",
                    "Trap alerts dropped because the queue for that Alertmanager was full.",
                )
            )
            out.append(
                Sample(
                    "commandcentre_snmp_trap_alerts_queued",
                    (("url", ep.url),),
                    len(ep.queue),
                    "gauge",
                    "Trap alerts waiting to be posted to that Alertmanager.",
                )
            )
        return out
