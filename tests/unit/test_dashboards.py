"""The Grafana dashboards in ``grafana-dashboards/``: structure, conventions, queries.

Every dashboard must be provisionable as a file (no ``__inputs``, a ``datasource``
template variable used by every panel and query), every panel readable on the wall
(description, unit, thresholds), and every query valid PromQL (``promtool check
rules``, skipped when promtool is not installed) over metrics that exist: the
shipped SNMP modules, the recording rules, the MQTT vocabulary or the daemon's
self-metrics. A typo in a metric name fails here, not on the wall.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import commandcentre.mqtt.mapping
from commandcentre.mqtt.config import Subscription
from tests.grafana import (
    DASHBOARD_DIR,
    default_variables,
    iter_panels,
    load_dashboards,
    panel_queries,
    substitute,
    template_variables,
)

REPO = Path(__file__).resolve().parents[2]
RULE_FILES = sorted((REPO / "config" / "prometheus" / "rules").glob("*.yml"))
SNMP_MODULES = sorted((REPO / "config" / "snmp").glob("*.yml"))
DASHBOARDS = load_dashboards()
EXPECTED = {
    "wall-overview.json",
    "power.json",
    "environment.json",
    "network.json",
    "collector-health.json",
}
DATASOURCE_UID = "commandcentre-prometheus"
PANEL_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
NEEDS_UNIT = {"stat", "gauge", "timeseries", "bargauge", "state-timeline"}
NEEDS_THRESHOLDS = {"stat", "gauge"}
# Series Prometheus makes itself for every scrape target.
PROMETHEUS_SYNTHETIC = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
}
PROMQL_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
}
LABEL_VALUES = re.compile(r"label_values\((?:(?P<selector>.*),\s*)?(?P<label>\w+)\)\s*", re.S)


def ids() -> list[str]:
    return sorted(DASHBOARDS)


def variable_query(var: dict[str, Any]) -> str:
    query = var.get("query")
    if isinstance(query, dict):
        query = query.get("query", "")
    return str(query or var.get("definition") or "")


def variable_selectors(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(variable name, series selector) of each ``label_values(selector, label)`` variable."""
    out = []
    for var in template_variables(dashboard):
        if var.get("type") != "query":
            continue
        m = LABEL_VALUES.fullmatch(variable_query(var))
        assert m, f"variable {var['name']}: expected label_values(...), got {variable_query(var)!r}"
        if m.group("selector"):
            out.append((str(var["name"]), m.group("selector")))
    return out


def all_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) for every panel query and every variable's series selector."""
    found = [(f"panel {panel!r}", expr) for _, panel, expr in panel_queries(dashboard)]
    found += [(f"variable {name!r}", sel) for name, sel in variable_selectors(dashboard)]
    return found


# ------------------------------------------------------------------ known metric names


def snmp_metric_names() -> set[str]:
    names: set[str] = set()
    for path in SNMP_MODULES:
        modules = yaml.safe_load(path.read_text(encoding="utf-8"))["modules"]
        for module in modules.values():
            for metric in module.get("metrics", []):
                names.add(metric["name"])
                if metric.get("type") == "EnumAsInfo":  # exposed as <name>_info
                    names.add(metric["name"] + "_info")
    return names


def recording_rule_names() -> set[str]:
    names: set[str] = set()
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            names.update(r["record"] for r in group["rules"] if "record" in r)
    return names


def mqtt_vocabulary() -> set[str]:
    """The vocabulary table of commandcentre.mqtt.mapping's docstring, with the
    default metric prefix."""
    doc = commandcentre.mqtt.mapping.__doc__ or ""
    table = doc.split("Metric vocabulary", 1)[1]
    prefix = Subscription.model_fields["metric_prefix"].default
    names: set[str] = set()
    for line in table.splitlines():
        m = re.match(r"``(\w+)``(?:\s*/\s*``(\w+)``)?\s+(?:gauge|counter)\b", line)
        if m:
            names.update(prefix + n for n in m.groups() if n)
    return names


def self_metric_names() -> set[str]:
    """Every metric named in the first column of README.md's "Metrics" table."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Metrics", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_column = line.split("|")[1]
            names.update(re.findall(r"`(commandcentre_\w+)", first_column))
    return names


KNOWN_METRICS = (
    snmp_metric_names()
    | recording_rule_names()
    | mqtt_vocabulary()
    | self_metric_names()
    | PROMETHEUS_SYNTHETIC
)


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (after variable substitution).

    Strings, label matchers, label lists of by/without/on/ignoring/group_*,
    ranges and numbers are removed first; what is left that is not a function
    call or a keyword is a metric name. ``{__name__=~"a|b"}`` gives a and b."""
    names = set()
    for alternatives in re.findall(r'__name__\s*=~?\s*"([^"]*)"', expr):
        names.update(alternatives.split("|"))
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"(?<![\w:.])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?", " ", text)
    for m in re.finditer(r"[A-Za-z_:][\w:]*", text):
        following = text[m.end() :].lstrip()
        if following.startswith("(") or m.group().lower() in PROMQL_KEYWORDS:
            continue
        names.add(m.group())
    return names


def test_metric_name_extraction() -> None:
    """The extractor itself, on the constructs the dashboards use."""
    expr = (
        'max by (site, room) (label_replace(3 * foo_total{a=~"x|y", b="1e6"}, "s", "$1", "", ""))'
        " or on (target) ignoring (x) rate(bar:baz:ratio[5m]) / 1e6 > bool 2 and up"
        ' unless {__name__=~"qux|quux"}'
    )
    assert metric_names(expr) == {"foo_total", "bar:baz:ratio", "up", "qux", "quux"}
    assert metric_names("rPDU2PhaseStatusCurrent / 10") == {"rPDU2PhaseStatusCurrent"}


def test_known_metric_sources_are_not_empty() -> None:
    """Each source of known names was found (a parser that silently finds nothing
    would make the name check vacuous)."""
    assert {"ifHCInOctets", "upsOutputSource", "upsAdvBatteryCapacity"} <= snmp_metric_names()
    assert "commandcentre:ups_on_battery" in recording_rule_names()
    assert {
        "commandcentre_sensor_temperature_celsius",
        "commandcentre_sensor_energy_joules_total",
        "commandcentre_sensor_up",
        "commandcentre_sensor_state",
    } <= mqtt_vocabulary()
    assert {
        "commandcentre_snmp_errors_total",
        "commandcentre_mqtt_connected",
        "commandcentre_config_reloads_total",
        "commandcentre_mqtt_bad_payloads_total",
    } <= self_metric_names()


# ------------------------------------------------------------------ the set of dashboards


def test_the_expected_dashboards_exist_with_unique_uids() -> None:
    assert set(DASHBOARDS) == EXPECTED
    uids = [d.get("uid") for d in DASHBOARDS.values()]
    assert all(isinstance(u, str) and 0 < len(u) <= 40 for u in uids), uids
    assert len(set(uids)) == len(uids), f"duplicate dashboard uids: {uids}"
    titles = [d.get("title") for d in DASHBOARDS.values()]
    assert len(set(titles)) == len(titles), f"duplicate titles: {titles}"


def test_provisioning_files_match_the_dashboards() -> None:
    ds = yaml.safe_load(
        (DASHBOARD_DIR / "provisioning" / "datasources" / "prometheus.yaml").read_text("utf-8")
    )
    [source] = ds["datasources"]
    assert source["uid"] == DATASOURCE_UID
    assert source["type"] == "prometheus"
    prov = yaml.safe_load(
        (DASHBOARD_DIR / "provisioning" / "dashboards" / "commandcentre.yaml").read_text("utf-8")
    )
    [provider] = prov["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "commandcentre"
    assert provider["options"]["path"]


# ------------------------------------------------------------------ per dashboard


@pytest.mark.parametrize("name", ids())
def test_file_provisioning_ready(name: str) -> None:
    """Grafana's file provisioning does not substitute ``__inputs``: the data source
    is a template variable defaulting to the provisioned uid."""
    d = DASHBOARDS[name]
    raw = (DASHBOARD_DIR / name).read_text(encoding="utf-8")
    assert "__inputs" not in d
    assert "${DS_" not in raw
    assert isinstance(d.get("schemaVersion"), int)
    assert 36 <= d["schemaVersion"] <= 41  # Grafana 9.4 .. 11.x
    assert d.get("title")
    assert d.get("description")
    variables = {v["name"]: v for v in template_variables(d)}
    ds = variables.get("datasource")
    assert ds is not None, "no `datasource` template variable"
    assert ds["type"] == "datasource"
    assert ds["query"] == "prometheus"
    assert ds["current"]["value"] == DATASOURCE_UID


@pytest.mark.parametrize("name", ids())
def test_every_panel_and_query_uses_the_datasource_variable(name: str) -> None:
    d = DASHBOARDS[name]
    for var in template_variables(d):
        if var["type"] == "query":
            assert var.get("datasource") == PANEL_DATASOURCE, f"variable {var['name']}"
    panel_ids = []
    for panel in iter_panels(d):
        panel_ids.append(panel.get("id"))
        if panel.get("type") == "row":
            continue
        assert panel.get("datasource") == PANEL_DATASOURCE, f"panel {panel.get('title')!r}"
        assert panel.get("targets"), f"panel {panel.get('title')!r} has no query"
        for target in panel["targets"]:
            assert target.get("datasource") == PANEL_DATASOURCE, f"panel {panel.get('title')!r}"
    assert len(set(panel_ids)) == len(panel_ids), "duplicate panel ids"


@pytest.mark.parametrize("name", ids())
def test_declared_variables_are_used_and_used_variables_declared(name: str) -> None:
    d = DASHBOARDS[name]
    declared = {v["name"] for v in template_variables(d)}
    queries = [expr for _, expr in all_exprs(d)]
    for var in declared - {"datasource"}:
        pattern = rf"\$\{{?{var}\b"
        used_in_panels = [e for _, _, e in panel_queries(d) if re.search(pattern, e)]
        assert used_in_panels, f"variable ${var} is declared but no panel query uses it"
    for expr in queries:
        substitute(expr, dict.fromkeys(declared, ".*"))  # KeyError on an undeclared one
    for var in template_variables(d):
        if var["name"] in ("site", "room"):
            assert var.get("multi"), f"${var['name']}: not multi-value"
            assert var.get("includeAll"), f"${var['name']}: no All"


@pytest.mark.parametrize("name", ids())
def test_panels_have_description_unit_and_thresholds(name: str) -> None:
    for panel in iter_panels(DASHBOARDS[name]):
        if panel.get("type") == "row":
            continue
        title = panel.get("title")
        assert title, "panel without title"
        assert str(panel.get("description", "")).strip(), f"panel {title!r}: no description"
        defaults = panel.get("fieldConfig", {}).get("defaults", {})
        if panel["type"] in NEEDS_UNIT:
            assert defaults.get("unit"), f"panel {title!r}: no unit"
        if panel["type"] in NEEDS_THRESHOLDS:
            steps = defaults.get("thresholds", {}).get("steps", [])
            assert steps, f"panel {title!r}: no thresholds"
            assert steps[0].get("value") is None, f"panel {title!r}: first step needs no value"
            values = [s["value"] for s in steps[1:]]
            assert values == sorted(values), f"panel {title!r}: thresholds out of order"


@pytest.mark.parametrize("name", ids())
def test_rates_use_rate_interval(name: str) -> None:
    for where, expr in all_exprs(DASHBOARDS[name]):
        for m in re.finditer(r"\b(rate|irate|increase)\s*\(", expr):
            depth, end = 1, m.end()
            while depth and end < len(expr):
                depth += {"(": 1, ")": -1}.get(expr[end], 0)
                end += 1
            ranges = re.findall(r"\[([^\]]*)\]", expr[m.end() : end])
            assert ranges == ["$__rate_interval"], (
                f"{where}: {m.group(1)}() must use [$__rate_interval], got {ranges}: {expr}"
            )


@pytest.mark.parametrize("name", ids())
def test_no_hard_coded_instance_or_target(name: str) -> None:
    for where, expr in all_exprs(DASHBOARDS[name]):
        hard = re.search(r'\b(instance|target)\s*(=|!=|=~|!~)\s*"(?!\$)', expr)
        assert not hard, f"{where}: hard-coded {hard.group(1) if hard else ''}: {expr}"


def test_wall_overview_refreshes_every_30s_to_1m() -> None:
    refresh = DASHBOARDS["wall-overview.json"]["refresh"]
    m = re.fullmatch(r"(\d+)([sm])", refresh)
    assert m, refresh
    seconds = int(m.group(1)) * (60 if m.group(2) == "m" else 1)
    assert 30 <= seconds <= 60


@pytest.mark.parametrize("name", ids())
def test_metric_names_exist(name: str) -> None:
    d = DASHBOARDS[name]
    variables = default_variables(d)
    for where, expr in all_exprs(d):
        names = metric_names(substitute(expr, variables))
        assert names, f"{where}: no metric found in {expr}"
        unknown = names - KNOWN_METRICS
        assert not unknown, f"{where}: unknown metric(s) {sorted(unknown)} in {expr}"


def alert_thresholds(alert: str) -> list[float]:
    """The numbers an alert's expressions compare with (``> 27``, ``< 0.35``)."""
    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == alert:
                    found += [float(x) for x in re.findall(r"[<>]=?\s*(-?[\d.]+)", rule["expr"])]
    return sorted(set(found))


def step_values(panel: dict[str, Any]) -> list[float]:
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    return [s["value"] for s in steps[1:]]


@pytest.mark.parametrize(
    ("title", "alerts", "expected"),
    [
        ("Inlet temperature", ["InletTemperatureLow", "InletTemperatureHigh"], [18, 27, 32]),
        ("Inlet humidity", ["InletHumidityOutOfRange"], [0.08, 0.6]),
        ("UPS load", ["UpsOverload"], [0.8, 0.95]),
        ("UPS runtime", ["UpsRuntimeLow"], [300, 900]),
    ],
)
def test_wall_colours_change_where_the_alerts_fire(
    title: str, alerts: list[str], expected: list[float]
) -> None:
    """The wall's colour steps are the alert thresholds of config/prometheus/rules."""
    assert sorted({t for a in alerts for t in alert_thresholds(a)}) == expected
    [panel] = [p for p in iter_panels(DASHBOARDS["wall-overview.json"]) if p["title"] == title]
    assert step_values(panel) == expected


# ------------------------------------------------------------------ PromQL syntax


def promtool_check(
    exprs: list[str], tmp_path: Path, promtool: str
) -> subprocess.CompletedProcess[str]:
    rules = [{"record": f"dashboard:check_{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / f"dashboard-queries-{len(list(tmp_path.iterdir()))}.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}), "utf-8")
    return subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """Each query, its variables replaced, as a recording rule for ``promtool check
    rules`` (one run for all; on failure, one per query to name the culprits)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; ./dev test installs it)")
    exprs: list[tuple[str, str]] = []
    for name, d in sorted(DASHBOARDS.items()):
        variables = default_variables(d)
        exprs += [(f"{name} {where}", substitute(e, variables)) for where, e in all_exprs(d)]
    result = promtool_check([e for _, e in exprs], tmp_path, promtool)
    if result.returncode == 0:
        return
    bad = []
    for where, expr in exprs:
        one = promtool_check([expr], tmp_path, promtool)
        if one.returncode != 0:
            bad.append(f"{where}: {expr}\n  {one.stdout.strip()} {one.stderr.strip()}")
    pytest.fail("invalid PromQL:\n" + "\n".join(bad or [result.stdout + result.stderr]))


def test_promtool_check_catches_a_broken_query(tmp_path: Path) -> None:
    """The check above is not vacuous: promtool rejects a malformed expression."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; ./dev test installs it)")
    assert promtool_check(["rate(foo[1m]"], tmp_path, promtool).returncode != 0
    assert promtool_check(["rate(foo[1m])"], tmp_path, promtool).returncode == 0
