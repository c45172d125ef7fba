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
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from aiohttp import web

from commandcentre.config import DEFAULT_AUTH_NAME, Auth, Endpoint, Target, parse_endpoint
from commandcentre.samples import Sample
from commandcentre.snmp.mapping import varbinds_to_families
from commandcentre.snmp.types import SnmpError
from commandcentre.store import (
    CONTENT_TYPE,
    Family,
    encode_parts,
    exposition,
    exposition_parts,
    gzip_parts,
    render_families,
)

if TYPE_CHECKING:
    from commandcentre.daemon import Daemon

DAEMON_KEY: web.AppKey[Daemon] = web.AppKey("daemon")

# Security headers for every response; the status page has no scripts or styles
# from elsewhere, so the policy can be strict.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"


def build_app(daemon: Daemon) -> web.Application:
    # _headers outermost: refusals (401) carry the security headers too.
    app = web.Application(middlewares=[_headers, daemon.auth.middleware])
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
    """The store's pre-rendered text, joined; gzipped when the scraper accepts it (as
    Prometheus does). What sources still owe is rendered in slices with the event loop
    let through between them, and a large body is encoded (and compressed) and sent
    in ~256 KiB pieces, so a 100k-series scrape never holds the loop for long nor
    holds a second copy of the whole text."""
    daemon = request.app[DAEMON_KEY]
    store = daemon.store
    for _ in store.pending_renders():
        await asyncio.sleep(0)
    parts = exposition_parts([*store.families(), render_families(daemon.self_samples())])
    headers = {"Content-Type": CONTENT_TYPE, "Vary": "Accept-Encoding"}
    gzipped = _accepts_gzip(request.headers.get("Accept-Encoding", ""))
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    if sum(map(len, parts)) <= _INLINE_BYTES:
        body = gzip_parts(parts, _GZIP_LEVEL) if gzipped else b"".join(encode_parts(parts))
        return web.Response(body=body, headers=headers)
    # sent chunked, piece by piece, as the previous piece is written
    return web.Response(body=_pieces(parts, gzipped), headers=headers)


async def _pieces(parts: list[str], gzipped: bool) -> AsyncIterator[bytes]:
    z = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 31) if gzipped else None  # 31: gzip
    for piece in encode_parts(parts):
        await asyncio.sleep(0)  # writes to a fast client do not yield by themselves
        if z is None:
            yield piece
            continue
        out = z.compress(piece)
        if out:
            yield out
    if z is not None:
        yield z.flush()


# zlib level 1: metrics text is repetitive enough that it gets ~90 % of level 6's
# saving at a third of the CPU. Bodies up to this size are built whole.
_GZIP_LEVEL = 1
_INLINE_BYTES = 256 * 1024


def _accepts_gzip(header: str) -> bool:
    """Whether ``Accept-Encoding`` allows gzip (``gzip;q=0`` refuses it)."""
    for item in header.split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip", "*"):
            q = params.strip().lower()
            return not (q.startswith("q=") and q[2:].strip() in ("0", "0.0", "0.00", "0.000"))
    return False


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="Healthy.\n")


async def ready(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    if daemon.ready:
        return web.Response(text="Ready.\n")
    return web.Response(status=503, text="Not ready.\n")


async def reload(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    if not daemon.enable_lifecycle:
        # As Prometheus without --web.enable-lifecycle; SIGHUP still reloads.
        return web.Response(status=403, text="Lifecycle API is not enabled.\n")
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
    groups: list[tuple[Family, ...]] = []  # per module: its families, then its scrape stats
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
                groups.append(varbinds_to_families(planned.compiled, fetched.varbinds).families)
                samples: list[Sample] = []
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
                groups.append(render_families(samples))
    except TimeoutError:
        errors.append(f"probe did not finish within {budget:g}s")
    if errors:
        daemon.log_probe_failure(target_text, module_names, errors, time.monotonic() - started)
        return web.Response(
            status=500,
            text="An error has occurred while serving metrics:\n\n" + "\n".join(errors) + "\n",
        )
    # one family per name across modules, in first-seen order, as snmp_exporter writes
    text = exposition(groups)
    return web.Response(body=text.encode("utf-8"), headers={"Content-Type": CONTENT_TYPE})


def _scrape_budget(request: web.Request) -> float:
    """Prometheus says how long it will wait; finish a little before that."""
    header = request.headers.get("X-Prometheus-Scrape-Timeout-Seconds", "")
    try:
        given = float(header)
    except ValueError:
        return 20.0
    return max(0.5, min(given - 0.25, 120.0))


STATUS_REFRESH_SECONDS = 10

_STATUS_CSS = (
    "body{font-family:sans-serif;background:#111;color:#eee;margin:1.5rem;font-size:1.25rem}"
    "h1{margin:0 0 .5rem}h2{margin:1.5rem 0 .5rem;font-size:1.4rem}"
    "table{border-collapse:collapse}td,th{padding:.2rem .8rem;text-align:left}"
    "th{color:#aaa;font-weight:normal;border-bottom:1px solid #444}"
    ".ok{color:#5d5}.bad{color:#fff;background:#b22;font-weight:bold}"
    ".summary span{display:inline-block;margin-right:1.5rem;padding:.2rem .6rem}"
    "a{color:#8bf}.muted{color:#999}"
)


def _ago(ts: float, now: float) -> str:
    if ts <= 0:
        return "never"
    seconds = max(0, int(now - ts))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def _table(
    headers: tuple[str, ...],
    rows: Sequence[tuple[bool, dict[str, str], tuple[object, ...]]],
    empty: str = "none configured",
) -> str:
    """An HTML table; every cell and attribute is escaped (names, topics and errors
    are untrusted). A row is (bad?, data attributes, cells); bad rows are red."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for bad, attrs, cells in rows:
        attr = "".join(f' data-{k}="{html.escape(v, quote=True)}"' for k, v in attrs.items())
        tds = "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
        body.append(f'<tr class="{"bad" if bad else "ok"}"{attr}>{tds}</tr>')
    if not body:
        body.append(
            f'<tr><td class="muted" colspan="{len(headers)}">{html.escape(empty)}</td></tr>'
        )
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


async def status_page(request: web.Request) -> web.Response:
    """For sysadmins, and for the wall when Grafana is down: no external assets,
    refreshes itself, every value escaped, no secrets (config objects hold none in
    printable form, and error details never carry credentials)."""
    daemon = request.app[DAEMON_KEY]
    now = time.time()
    snmp_rows = [
        (
            not st.up,
            {"target": target, "module": module, "state": "up" if st.up else "down"},
            (
                target,
                module,
                "up" if st.up else "DOWN",
                _ago(st.last_success, now),
                f"{st.duration:.2f}s",
                st.varbinds,
                f"{st.last_reason.value}: {st.last_error}" if st.last_reason else "",
            ),
        )
        for (target, module), st in sorted(daemon.poller.states.items())
    ]
    broker_rows = [
        (
            not s.connected,
            {"broker": name, "state": "connected" if s.connected else "disconnected"},
            (
                name,
                "connected" if s.connected else "DISCONNECTED",
                _ago(s.last_connect, now),
                s.reconnects,
                s.messages_received,
                s.messages_dropped,
                s.last_error,
            ),
        )
        for name, s in daemon.mqtt.broker_states()
    ]
    sub_rows = [
        (
            False,
            {"subscription": name},
            (name, st.series, st.messages, sum(st.bad.values()), st.refused),
        )
        for name, st in sorted(daemon.mqtt.cache.subs.items())
    ]
    offline = daemon.mqtt.cache.offline_devices()
    sensor_rows = [
        (True, {"device": device, "state": "offline"}, (sub, device, _ago(seen, now)))
        for sub, device, seen in offline
    ]
    down = sum(1 for bad, _, _ in snmp_rows if bad)
    disconnected = sum(1 for bad, _, _ in broker_rows if bad)
    reload_ok = bool(daemon.reload_record.ok)

    def badge(bad: bool, text: str) -> str:
        return f'<span class="{"bad" if bad else "ok"}">{html.escape(text)}</span>'

    summary = (
        '<p class="summary">'
        + badge(bool(down), f"{len(snmp_rows) - down}/{len(snmp_rows)} SNMP polls up")
        + badge(bool(offline), f"{len(offline)} sensors offline")
        + badge(bool(disconnected), f"{len(broker_rows) - disconnected}/{len(broker_rows)} brokers")
        + badge(not reload_ok, "config OK" if reload_ok else "config reload FAILED")
        + "</p>"
    )
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="refresh" content="{STATUS_REFRESH_SECONDS}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>commandcentre status</title><style>{_STATUS_CSS}</style></head><body>"
        "<h1>commandcentre</h1>"
        + summary
        + '<p class="muted">'
        + f"config {html.escape(daemon.config.source)}, "
        + f"last good load {_ago(daemon.reload_record.time, now)} &middot; "
        + f"refreshes every {STATUS_REFRESH_SECONDS}s &middot; "
        + '<a href="/metrics">/metrics</a></p>'
        + "<h2>SNMP targets</h2>"
        + _table(
            ("target", "module", "state", "last success", "poll", "varbinds", "last error"),
            snmp_rows,
        )
        + "<h2>Sensors offline</h2>"
        + _table(("subscription", "device", "last seen"), sensor_rows, empty="none")
        + "<h2>MQTT brokers</h2>"
        + _table(
            ("broker", "state", "connected", "reconnects", "received", "dropped", "last error"),
            broker_rows,
        )
        + "<h2>MQTT subscriptions</h2>"
        + _table(("subscription", "series", "messages", "bad payloads", "refused"), sub_rows)
        + "</body></html>"
    )
    return web.Response(text=body, content_type="text/html", charset="utf-8")
