"""structlog set-up: JSON lines when stderr is not a terminal (journald, files),
readable console output when a person is watching.

Events are snake_case names with context as keyword arguments
(``log.warning("snmp_poll_failed", target=..., reason=...)``). Secrets never
reach a log call: config objects print them as ``<secret>``.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(
    level: str = "info", fmt: Literal["auto", "json", "console"] = "auto"
) -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries that use stdlib logging (aiohttp access logs, pysnmp) stay quiet
    # unless debugging; their warnings still reach stderr.
    logging.basicConfig(
        level=logging.WARNING if level != "debug" else logging.DEBUG, stream=sys.stderr
    )
