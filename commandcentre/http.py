"""The HTTP surface (aiohttp): ``/metrics``, snmp_exporter's ``/snmp``, lifecycle endpoints
and a small status page.

Handlers only read memory, except ``/snmp``, which polls a device on demand
with snmp_exporter's URL parameters and semantics, so an existing Prometheus
multi-target scrape config works when pointed here. It probes only what the
config names (no open SNMP proxy) unless ``snmp.allow_unconfigured_targets``.
"""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from commandcentre.config import DEFAULT_AUTH_NAME, Auth, Endpoint, Target, parse_endpoint
from commandcentre.samples import Sample
from commandcentre.snmp.mapping import varbinds_to_samples
from commandcentre.snmp.types import SnmpError
from commandcentre.store import CONTENT_TYPE, exposition, render_families

if TYPE_CHECKING:
    from commandcentre.daemon import Daemon

DAEMON_KEY: web.AppKey[Daemon] = web.AppKey("daemon")

# Security headers for every response; the status page has no scripts or styles
# from elsewhere, so the policy can be strict.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"


def build_app(daemon: Daemon) -> web.Application:
    app = web.Application(middlewares=[_headers])
    app[DAEMON_KEY] = daemon
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/snmp", snmp_probe)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)
    app.router.add_get("/", status_page)
    return app


@web.middleware
async def _headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    resp = await handler(request)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Content-Security-Policy", _CSP)
    return resp


async def metrics(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    text = exposition([*daemon.store.families(), render_families(daemon.self_samples())])
    return web.Response(body=text.encode("utf-8"), headers={"Content-Type": CONTENT_TYPE})


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="Healthy.\n")


async def ready(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    if daemon.ready:
        return web.Response(text="Ready.\n")
    return web.Response(status=503, text="Not ready.\n")


async def reload(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    problems = await daemon.reload()
    if problems:
        return web.Response(
            status=500,
            text="config reload failed; still running the previous config:\n"
            + "\n".join(problems)
            + "\n",
        )
    return web.Response(text="config reloaded\n")


def _bad_request(message: str) -> web.Response:
    return web.Response(status=400, text=message + "\n")


def _resolve_target(daemon: Daemon, text: str) -> tuple[Endpoint, Target | None] | str:
    """A configured target by name or address, else an address if allowed; or an error."""
    cfg = daemon.config
    by_name = cfg.target(text)
    if by_name is not None:
        return by_name.endpoint, by_name
    try:
        endpoint = parse_endpoint(text)
    except ValueError as e:
        return f"target {text!r} is neither a configured target name nor a valid address: {e}"
    for t in cfg.snmp.targets:
        if t.endpoint == endpoint:
            return endpoint, t
    if cfg.snmp.allow_unconfigured_targets:
        return endpoint, None
    return (
        f"target {text!r} is not configured; name a configured target or its address "
        "(set snmp.allow_unconfigured_targets: true to probe any address)"
    )


async def snmp_probe(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    cfg = daemon.config
    q = request.query
    target_text = q.get("target", "")
    if not target_text:
        return _bad_request("'target' parameter must be specified")
    resolved = _resolve_target(daemon, target_text)
    if isinstance(resolved, str):
        return _bad_request(resolved)
    endpoint, target = resolved

    module_names = [m.strip() for v in q.getall("module", []) for m in v.split(",") if m.strip()]
    if not module_names:
        module_names = list(target.modules) if target is not None else ["if_mib"]
    for m in module_names:
        if m not in cfg.snmp.modules:
            return _bad_request(f"Unknown module '{m}'")

    auth_name = q.get("auth") or (target.auth_name if target is not None else DEFAULT_AUTH_NAME)
    auth: Auth | None = cfg.snmp.auths.get(auth_name)
    if auth is None:
        return _bad_request(f"Unknown auth '{auth_name}'")

    budget = _scrape_budget(request)
    samples: list[Sample] = []
    errors: list[str] = []
    started = time.monotonic()
    try:
        async with asyncio.timeout(budget):
            for name in module_names:
                planned = daemon.planned_module(name)
                t0 = time.monotonic()
                try:
                    fetched = await daemon.poller.fetch(
                        endpoint,
                        auth,
                        planned,
                        request_timeout=target.timeout if target else None,
                        retries=target.retries if target else None,
                    )
                except SnmpError as e:
                    errors.append(f"module {name}: {e.reason.value}: {e.detail}")
                    continue
                walk_seconds = time.monotonic() - t0
                samples.extend(varbinds_to_samples(planned.compiled, fetched.varbinds).samples)
                mod_label = (("module", name),)
                samples.append(
                    Sample(
                        "snmp_scrape_walk_duration_seconds",
                        mod_label,
                        walk_seconds,
                        "gauge",
                        "Time SNMP walk/bulkwalk took.",
                    )
                )
                samples.append(
                    Sample(
                        "snmp_scrape_pdus_returned",
                        mod_label,
                        len(fetched.varbinds),
                        "gauge",
                        "PDUs returned from walk.",
                    )
                )
                samples.append(
                    Sample(
                        "snmp_scrape_duration_seconds",
                        mod_label,
                        time.monotonic() - t0,
                        "gauge",
                        "Total SNMP time scrape took (walk and processing).",
                    )
                )
    except TimeoutError:
        errors.append(f"probe did not finish within {budget:g}s")
    if errors:
        daemon.log_probe_failure(target_text, module_names, errors, time.monotonic() - started)
        return web.Response(
            status=500,
            text="An error has occurred while serving metrics:\n\n" + "\n".join(errors) + "\n",
        )
    text = exposition([render_families(samples)])
    return web.Response(body=text.encode("utf-8"), headers={"Content-Type": CONTENT_TYPE})


def _scrape_budget(request: web.Request) -> float:
    """Prometheus says how long it will wait; finish a little before that."""
    header = request.headers.get("X-Prometheus-Scrape-Timeout-Seconds", "")
    try:
        given = float(header)
    except ValueError:
        return 20.0
    return max(0.5, min(given - 0.25, 120.0))


async def status_page(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    rows = []
    for (target, module), st in sorted(daemon.poller.states.items()):
        reason = st.last_reason.value if st.last_reason else ""
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(c))}</td>"
                for c in (
                    target,
                    module,
                    "up" if st.up else "DOWN",
                    f"{st.duration:.3f}s",
                    st.varbinds,
                    reason,
                )
            )
            + "</tr>"
        )
    body = (
        "<!doctype html><html><head><meta charset=utf-8><title>commandcentre</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}</style>"
        "</head><body><h1>commandcentre</h1>"
        f"<p>Config: {html.escape(daemon.config.source)} &middot; "
        '<a href="/metrics">/metrics</a> &middot; <a href="/-/ready">/-/ready</a></p>'
        "<table><tr><th>target</th><th>module</th><th>state</th><th>last poll</th>"
        "<th>varbinds</th><th>last error</th></tr>" + "".join(rows) + "</table></body></html>"
    )
    return web.Response(text=body, content_type="text/html", charset="utf-8")
