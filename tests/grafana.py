"""Helpers for tests of the Grafana dashboards in ``grafana-dashboards/``.

Used by ``tests/unit/test_dashboards.py`` (static checks) and by end-to-end tests
that send every panel's query to a real Prometheus:

    for name, dashboard in load_dashboards().items():
        variables = default_variables(dashboard)        # every template variable at "All"
        for dash_title, panel_title, expr in panel_queries(dashboard):
            promql = substitute(expr, variables)         # plain PromQL for /api/v1/query

No Grafana needed: the files are read as JSON and the template variables are
replaced the way Grafana's Prometheus data source does it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

DASHBOARD_DIR = Path(__file__).resolve().parents[1] / "grafana-dashboards"

#: Values of Grafana's built-in interval/range variables when the caller gives none:
#: ``$__rate_interval`` is what Grafana computes for a 15 s scrape interval (4 x 15 s).
BUILTIN_DEFAULTS: dict[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}

# $name, ${name}, ${name:format}, [[name]] and [[name:format]]: Grafana's three syntaxes.
_VARIABLE = re.compile(
    r"\$\{(?P<braced>\w+)(?::(?P<fmt>\w+))?\}"
    r"|\[\[(?P<bracket>\w+)(?::(?P<bfmt>\w+))?\]\]"
    r"|\$(?P<plain>\w+)"
)
# Characters Grafana's Prometheus data source escapes in multi-value regex values.
_REGEX_SPECIAL = re.compile(r"([\\^$*+?.()|{}\[\]])")


def load_dashboards(root: Path = DASHBOARD_DIR) -> dict[str, dict[str, Any]]:
    """Every ``*.json`` dashboard under ``root`` (recursively), keyed by its path
    relative to ``root`` (``"wall-overview.json"``). Raises ``ValueError`` naming the
    file when one is not valid JSON, ``TypeError`` when it is not a JSON object."""
    dashboards: dict[str, dict[str, Any]] = {}
    for path in sorted(root.rglob("*.json")):
        name = path.relative_to(root).as_posix()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{name}: not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise TypeError(f"{name}: a dashboard must be a JSON object")
        dashboards[name] = data
    return dashboards


def iter_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel of ``dashboard``, rows included, recursing into rows (collapsed
    rows keep their panels in ``panels``) and nested panels, in document order."""

    def walk(panels: Sequence[Any]) -> Iterator[dict[str, Any]]:
        for panel in panels:
            if not isinstance(panel, dict):
                continue
            yield panel
            yield from walk(panel.get("panels") or [])

    yield from walk(dashboard.get("panels") or [])


def panel_queries(dashboard: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(dashboard title, panel title, expr)`` for every Prometheus query target of
    every panel (rows and collapsed rows included), in document order; targets
    without an ``expr`` are left out."""
    title = str(dashboard.get("title", ""))
    queries: list[tuple[str, str, str]] = []
    for panel in iter_panels(dashboard):
        for target in panel.get("targets") or []:
            expr = target.get("expr") if isinstance(target, dict) else None
            if isinstance(expr, str) and expr.strip():
                queries.append((title, str(panel.get("title", "")), expr))
    return queries


def template_variables(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The dashboard's template variables (``templating.list``)."""
    templating = dashboard.get("templating") or {}
    return [v for v in templating.get("list") or [] if isinstance(v, dict)]


def default_variables(dashboard: Mapping[str, Any], all_value: str = ".*") -> dict[str, str]:
    """A value for each of the dashboard's template variables, for ``substitute``:
    ``all_value`` (a regex) for a variable offering "All" (its ``allValue`` if it has
    one), else the variable's current value (the data source variable: its uid)."""
    values: dict[str, str] = {}
    for var in template_variables(dashboard):
        name = str(var["name"])
        if var.get("includeAll"):
            values[name] = str(var.get("allValue") or all_value)
            continue
        current = (var.get("current") or {}).get("value", "")
        if isinstance(current, list):
            current = current[0] if current else ""
        values[name] = str(current)
    return values


def substitute(expr: str, variables: Mapping[str, str | Sequence[str]]) -> str:
    """``expr`` with Grafana's template variables replaced, ready for Prometheus' API.

    Replaces ``$name``, ``${name}``, ``${name:format}``, ``[[name]]`` for the user's
    variables and the built-in ``$__rate_interval``, ``$__interval``, ``$__range``
    (and ``_s``/``_ms`` variants; defaults in ``BUILTIN_DEFAULTS``, overridden by
    ``variables``). A ``str`` value is inserted verbatim whatever the format (give
    ``".*"`` for "All", or one value); a sequence of values is formatted the way
    Grafana formats a multi-value selection: ``(a|b)`` with regex metacharacters
    escaped for the default and ``regex`` formats (a single value: escaped, no
    parentheses), ``a|b`` for ``pipe``, ``a,b`` for ``csv`` and ``raw``, ``{a,b}``
    for ``glob``. Raises ``KeyError`` listing every variable ``expr`` uses but
    ``variables`` lacks."""
    values: dict[str, str | Sequence[str]] = {**BUILTIN_DEFAULTS, **variables}
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bracket") or match.group("plain")
        fmt = match.group("fmt") or match.group("bfmt") or ""
        if name not in values:
            missing.append(name)
            return match.group(0)
        return _format(values[name], fmt)

    result = _VARIABLE.sub(replace, expr)
    if missing:
        raise KeyError(f"no value for template variable(s) {sorted(set(missing))} in {expr!r}")
    return result


def _format(value: str | Sequence[str], fmt: str) -> str:
    if isinstance(value, str):
        return value
    items = [str(v) for v in value]
    if fmt == "pipe":
        return "|".join(items)
    if fmt in ("csv", "raw"):
        return ",".join(items)
    if fmt == "glob":
        return "{" + ",".join(items) + "}"
    escaped = [_REGEX_SPECIAL.sub(r"\\\\\1", v) for v in items]
    if len(escaped) == 1:
        return escaped[0]
    return "(" + "|".join(escaped) + ")"
