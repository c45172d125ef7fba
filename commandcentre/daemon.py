"""The daemon's lifecycle: load, serve, poll, reload, stop.

Signals: SIGTERM/SIGINT stop (polls cancelled, sockets closed, exit 0);
SIGHUP reloads, as ``POST /-/reload`` does (with ``--web.enable-lifecycle``),
the config and the web config (``--web.config.file``, also re-read by itself on
change). A reload that fails validation keeps the running config and records the
failure in ``commandcentre_config_last_reload_successful``. With ``NOTIFY_SOCKET`` set,
systemd hears READY/RELOADING/STOPPING, and WATCHDOG only while polls are
really completing.
"""

from __future__ import annotations

import asyncio
import platform
import signal
import time

import structlog
from aiohttp import web

from commandcentre import __version__
from commandcentre.config import Config, ConfigError, ConfigProblem, load_config, parse_listen
from commandcentre.configwarnings import config_warnings
from commandcentre.http import build_app
from commandcentre.logsetup import configure_logging
from commandcentre.looplag import LoopLagProbe
from commandcentre.mqtt.service import MqttService
from commandcentre.reloads import ReloadRecord
from commandcentre.samples import Sample
from commandcentre.sdnotify import Notifier
from commandcentre.snmp.poller import PlannedModule, Poller
from commandcentre.snmp.scheduler import Scheduler, plan_targets
from commandcentre.snmp.types import SnmpClient
from commandcentre.store import SampleStore
from commandcentre.traps.receiver import TrapService
from commandcentre.webauth import WebAuth
from commandcentre.webconfig import WebConfigWatcher, load_web_config
from commandcentre.weblisten import Listener

log = structlog.get_logger("commandcentre")


def _default_client(kind: str = "fast") -> SnmpClient:
    """``snmp.client``: our own codec (``fast``), or pysnmp as a fallback. Imported
    here so that only a daemon configured for it pulls in pysnmp."""
    if kind == "pysnmp":
        from commandcentre.snmp.pysnmp_client import PysnmpClient

        return PysnmpClient()
    from commandcentre.snmp.fast_client import FastSnmpClient

    return FastSnmpClient()


class Daemon:
    def __init__(
        self,
        config: Config,
        listen: str | None = None,
        client: SnmpClient | None = None,
        notifier: Notifier | None = None,
        *,
        web: WebConfigWatcher | None = None,
        enable_lifecycle: bool = False,
    ) -> None:
        self.config = config
        # --web.config.file (TLS, basic auth) and --web.enable-lifecycle (/-/reload)
        self.web = web
        self.enable_lifecycle = enable_lifecycle
        self.auth = WebAuth(lambda: self.web.current if self.web is not None else None)
        self.listen = listen or config.http.listen
        self.store = SampleStore()
        self.client = client if client is not None else _default_client(config.snmp.client)
        # the snmp.client running (None: injected); a reload cannot swap it
        self._client_kind = config.snmp.client if client is None else None
        self.poller = Poller(self.client, self.store, config.snmp.max_in_flight)
        self.scheduler = Scheduler(self.poller)
        self.mqtt = MqttService(self.store)
        self.traps = TrapService(self.store)
        self.loop_lag = LoopLagProbe()
        self.notifier = notifier or Notifier()
        self.ready = False
        self.bound: list[tuple[str, int]] = []
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._planned: dict[str, PlannedModule] = {}
        self.reload_record = ReloadRecord(
            "config",
            "1 if the last config load or reload succeeded, else 0.",
            "Unix time of the last successful config load or reload.",
            "Config reloads attempted, by result.",
        )
        self._apply(config)

    # ------------------------------------------------------------------ config

    def _apply(self, config: Config) -> None:
        plans = plan_targets(config)
        self._planned = {m.name: m for p in plans.values() for m in p.modules}
        self.config = config
        self.poller.resize(config.snmp.max_in_flight)
        added, removed, changed = self.scheduler.apply(plans)
        self.mqtt.apply(config.mqtt)
        self.traps.apply(config.snmp.traps)
        log.info(
            "config_applied",
            file=config.source,
            targets=len(config.snmp.targets),
            mqtt_subscriptions=len(config.mqtt.subscriptions),
            added=added,
            removed=removed,
            changed=changed,
        )

    def planned_module(self, name: str) -> PlannedModule:
        """A compiled module for on-demand probes (``/snmp``)."""
        planned = self._planned.get(name)
        if planned is None or planned.module is not self.config.snmp.modules[name]:
            planned = PlannedModule.build(name, self.config.snmp.modules[name])
            self._planned[name] = planned
        return planned

    async def reload(self) -> list[str]:
        """Re-read the config file (and the web config file); apply each if valid.
        Returns the problems, if any."""
        web_problems = await self.web.reload() if self.web is not None else []
        return await self._reload_config() + web_problems

    async def _reload_config(self) -> list[str]:
        async with self._reload_lock:
            self.notifier.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
            try:
                new = await asyncio.to_thread(load_config, self.config.source)
                if _monitors_something(self.config) and not _monitors_something(new):
                    await asyncio.to_thread(_refuse_emptied, self.config.source)
            except ConfigError as e:
                problems = self.reload_record.failed(self.config.source, e)
                self.notifier.notify("READY=1")
                return problems
            if new.http.listen != self.config.http.listen:
                log.warning(
                    "config_http_listen_change_needs_restart",
                    running=self.listen,
                    configured=new.http.listen,
                )
            if self._client_kind is not None and new.snmp.client != self._client_kind:
                log.warning(
                    "config_snmp_client_change_needs_restart",
                    running=self._client_kind,
                    configured=new.snmp.client,
                )
            self._apply(new)
            self.reload_record.succeeded()
            self.notifier.notify("READY=1")
            return []

    # ------------------------------------------------------------------ metrics

    def self_samples(self) -> list[Sample]:
        out = self.poller.self_samples()
        out += self.mqtt.self_samples()
        out += self.auth.self_samples()
        out += self.loop_lag.self_samples()
        if self.web is not None:
            out += self.web.self_samples()
        out.append(
            Sample(
                "commandcentre_build_info",
                (("version", __version__), ("python_version", platform.python_version())),
                1,
                "gauge",
                "Build information of the running commandcentre.",
            )
        )
        out += self.reload_record.self_samples()
        out.append(
            Sample(
                "commandcentre_snmp_targets",
                (),
                len(self.config.snmp.targets),
                "gauge",
                "SNMP targets in the running config.",
            )
        )
        out.append(
            Sample(
                "commandcentre_series",
                (),
                self.store.series_count(),
                "gauge",
                "Series held in the sample store (excluding these self-metrics).",
            )
        )
        return out

    def log_probe_failure(
        self, target: str, modules: list[str], errors: list[str], seconds: float
    ) -> None:
        log.warning(
            "snmp_probe_failed",
            target=target,
            modules=modules,
            errors=errors,
            seconds=round(seconds, 3),
        )

    # ------------------------------------------------------------------ running

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))

        runner = web.AppRunner(build_app(self), access_log=None, handle_signals=False)
        await runner.setup()
        host, port = parse_listen(self.listen)
        listener = Listener(runner, host, port)
        try:
            await listener.start(self.web.current.ssl_context if self.web is not None else None)
        except OSError as e:
            log.error("http_listen_failed", listen=self.listen, error=e.strerror)
            await listener.close()
            await runner.cleanup()
            await self.client.close()
            return 1
        self.bound = listener.addresses
        if not await self._start_traps():
            await listener.close()
            await runner.cleanup()
            await self.client.close()
            return 1
        web_watch = None
        if self.web is not None:
            self.web.on_tls_change = listener.use
            web_watch = asyncio.create_task(self.web.watch())
        self.scheduler.start()
        self.mqtt.start()
        loop_lag = asyncio.create_task(self.loop_lag.run())
        self.ready = True
        self.notifier.notify("READY=1", f"STATUS=polling {len(self.config.snmp.targets)} targets")
        log.info(
            "listening",
            listen=self.listen,
            addresses=[f"{h}:{p}" for h, p in self.bound],
            tls=self.web is not None and self.web.current.ssl_context is not None,
        )
        watchdog = (
            asyncio.create_task(self._watchdog()) if self.notifier.watchdog_interval else None
        )
        try:
            await self._stop.wait()
        finally:
            log.info("stopping")
            self.ready = False
            self.notifier.notify("STOPPING=1")
            if watchdog is not None:
                watchdog.cancel()
            if web_watch is not None:
                web_watch.cancel()
            loop_lag.cancel()
            await self.scheduler.stop()
            await self.mqtt.stop()
            await self.traps.stop()
            await listener.close()
            await runner.cleanup()
            await self.client.close()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            log.info("stopped")
        return 0

    async def _start_traps(self) -> bool:
        """Bind the trap port (if configured); False, logged, if it cannot be bound."""
        try:
            await self.traps.start()
        except OSError as e:
            traps = self.config.snmp.traps
            log.error(
                "snmp_trap_listen_failed",
                listen=traps.spec.listen if traps else None,
                error=e.strerror,
                hint="ports below 1024 need CAP_NET_BIND_SERVICE (systemd/README.md)",
            )
            return False
        return True

    async def _watchdog(self) -> None:
        """Ping systemd's watchdog only while the scheduler makes progress.

        Progress: polls complete (when there are targets) and the event loop is
        responsive. A hung event loop or a scheduler that stopped completing polls
        misses its pings, and systemd restarts the service.
        """
        interval = self.notifier.watchdog_interval
        assert interval is not None
        last_completed = self.poller.polls_completed
        last_progress = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            if self.poller.polls_completed != last_completed or not self.config.snmp.targets:
                last_completed = self.poller.polls_completed
                last_progress = now
            longest_interval = max((t.interval for t in self.config.snmp.targets), default=0.0)
            if now - last_progress <= 2 * longest_interval + interval:
                self.notifier.notify("WATCHDOG=1")
            else:
                log.error(
                    "watchdog_withheld_no_poll_progress", seconds=round(now - last_progress, 1)
                )


def _monitors_something(config: Config) -> bool:
    return bool(config.snmp.targets or config.mqtt.brokers or config.snmp.traps)


def _refuse_emptied(path: str) -> None:
    """An empty config is valid at start (monitor nothing), but a reload onto an
    empty file is far likelier a save caught half-way (truncate, then write) than a
    wish to stop monitoring everything: refuse it and keep the running config."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    if not any(line.strip() and not line.lstrip().startswith("#") for line in text.splitlines()):
        raise ConfigError(
            [
                ConfigProblem(
                    path,
                    "",
                    "the file is empty: a reload would stop all monitoring, so the running "
                    "config is kept (restart the daemon to run with an empty config)",
                )
            ]
        )


def run_daemon(
    config_path: str,
    listen: str | None = None,
    web_config_file: str | None = None,
    enable_lifecycle: bool = False,
) -> int:
    """Entry point of ``commandcentre run``: exit code 0 on clean stop, 2 on bad config."""
    try:
        config = load_config(config_path)
        web_config = load_web_config(web_config_file) if web_config_file is not None else None
    except ConfigError as e:
        configure_logging()
        for p in e.problems:
            log.error("config_problem", file=p.file, key=p.path, problem=p.message, given=p.given)
        return 2
    if listen is not None:
        try:
            parse_listen(listen)
        except ValueError as e:
            configure_logging()
            log.error("bad_listen_address", listen=listen, problem=str(e))
            return 2
    configure_logging(config.log.level, config.log.format)
    for warning in config_warnings(config, web_config, listen):
        log.warning("config_warning", key=warning.key, warning=warning.message)

    async def main() -> int:
        web = WebConfigWatcher(web_config) if web_config is not None else None
        daemon = Daemon(config, listen, web=web, enable_lifecycle=enable_lifecycle)
        return await daemon.run()

    return asyncio.run(main())
