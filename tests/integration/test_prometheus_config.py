"""The shipped Prometheus and Alertmanager configuration, checked with the real tools.

``config/prometheus``: ``promtool check config`` (which also checks every rule
file it names), ``promtool check rules`` and ``promtool test rules`` on every
unit-test file; and, by reading the YAML, that every alert (each severity of it)
has a test expecting it to fire and one expecting silence, and that every
recording rule is checked or feeds one that is.
``config/alertmanager``: ``amtool check-config``, the routing tree with
``amtool config routes test``, and the inhibition rules against a real
Alertmanager (the cases are in ``config/alertmanager/tests/routing_test.yml``).

Needs promtool (Debian package ``prometheus``) and amtool/alertmanager (Debian
package ``prometheus-alertmanager``); ``./dev test`` installs both.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.agents import free_tcp_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PROM_DIR = REPO / "config" / "prometheus"
AM_DIR = REPO / "config" / "alertmanager"
AM_CONFIG = AM_DIR / "alertmanager.yml"
RULE_FILES = sorted((PROM_DIR / "rules").glob("*.yml"))
UNIT_TEST_FILES = sorted((PROM_DIR / "tests").glob("*.yml"))
ROUTING_CASES: dict[str, Any] = yaml.safe_load(
    (AM_DIR / "tests" / "routing_test.yml").read_text(encoding="utf-8")
)


def need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not installed (Debian package {package}; ./dev test installs it)")
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rules() -> Iterator[dict[str, Any]]:
    for f in RULE_FILES:
        for group in load_yaml(f)["groups"]:
            yield from group["rules"]


def unit_tests() -> Iterator[dict[str, Any]]:
    for f in UNIT_TEST_FILES:
        yield from load_yaml(f)["tests"]


# ------------------------------------------------------------------ promtool


def test_the_files_are_where_the_rest_expects_them() -> None:
    assert RULE_FILES, "no rule files in config/prometheus/rules"
    assert UNIT_TEST_FILES, "no unit tests in config/prometheus/tests"
    # prometheus.yml loads rules/*.yml: every unit test must load rule files from there
    for f in UNIT_TEST_FILES:
        for rule_file in load_yaml(f)["rule_files"]:
            assert (f.parent / rule_file).resolve() in RULE_FILES, (f.name, rule_file)


def test_promtool_check_config() -> None:
    promtool = need("promtool", "prometheus")
    r = run(promtool, "check", "config", str(PROM_DIR / "prometheus.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    # the rule_files glob found every rule file (a typo in the glob finds none, silently)
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in r.stdout


def test_promtool_check_rules() -> None:
    promtool = need("promtool", "prometheus")
    r = run(promtool, "check", "rules", *map(str, RULE_FILES))
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("test_file", UNIT_TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(test_file: Path) -> None:
    promtool = need("promtool", "prometheus")
    r = run(promtool, "test", "rules", str(test_file))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_every_alert_is_tested_firing_and_silent() -> None:
    defined = {(r["alert"], r["labels"]["severity"]) for r in rules() if "alert" in r}
    fires: set[tuple[str, str]] = set()
    silent: set[str] = set()
    for t in unit_tests():
        for case in t.get("alert_rule_test", []):
            expected = case.get("exp_alerts") or []
            if not expected:
                silent.add(case["alertname"])
            for alert in expected:
                labels = alert["exp_labels"]
                assert labels["alertname"] == case["alertname"], case
                fires.add((case["alertname"], labels["severity"]))
    assert defined, "no alerts found in the rule files"
    assert sorted(defined - fires) == [], "alerts (alertname, severity) never expected to fire"
    assert sorted({name for name, _ in defined} - silent) == [], "alerts never expected silent"
    assert sorted(fires - defined) == [], "tests expect alerts the rules do not define"


def test_every_alert_has_a_severity_and_actionable_annotations() -> None:
    for r in rules():
        if "alert" not in r:
            continue
        assert r["labels"]["severity"] in {"critical", "warning", "info"}, r["alert"]
        assert "for" in r, f"{r['alert']} has no for:"
        annotations = r["annotations"]
        assert set(annotations) == {"summary", "description"}, r["alert"]
        # which thing: every alert names its device, target, site, daemon or subscription
        thing = r"\$labels\.(target|device|site|instance|broker|subscription)\b"
        assert re.search(thing, annotations["summary"]), r["alert"]


def test_every_recording_rule_is_checked_or_feeds_a_rule() -> None:
    records = {r["record"] for r in rules() if "record" in r}
    used_by_rules = {name for r in rules() for name in records if name in r["expr"]}
    checked = {
        name
        for t in unit_tests()
        for case in t.get("promql_expr_test", [])
        for name in records
        if name in case["expr"]
    }
    assert sorted(records - checked - used_by_rules) == []
    # the values a dashboard reads directly are checked directly
    for name in (
        "commandcentre:ups_on_battery",
        "commandcentre:dew_point:celsius",
        "commandcentre:inlet_temperature:celsius",
        "commandcentre:site_targets_down:count",
        "commandcentre:target_up",
    ):
        assert name in checked, name


# ------------------------------------------------------------------ amtool


def test_amtool_check_config() -> None:
    amtool = need("amtool", "prometheus-alertmanager")
    r = run(amtool, "check-config", str(AM_CONFIG))
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize(
    "case",
    ROUTING_CASES["routes"],
    ids=lambda c: f"{c['labels'].get('severity', 'none')}-{c['labels']['alertname']}",
)
def test_amtool_routes(case: dict[str, Any]) -> None:
    amtool = need("amtool", "prometheus-alertmanager")
    labels = [f"{k}={v}" for k, v in case["labels"].items()]
    r = run(
        amtool,
        "config",
        "routes",
        "test",
        f"--config.file={AM_CONFIG}",
        f"--verify.receivers={','.join(case['receivers'])}",
        *labels,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == ",".join(case["receivers"])


def test_telegram_token_is_inline_for_alertmanager_025() -> None:
    """0.25 rejects bot_token_file: the example must keep a form it accepts."""
    config = load_yaml(AM_CONFIG)
    telegram = [t for r in config["receivers"] for t in r.get("telegram_configs", [])]
    assert telegram
    assert all("bot_token" in t and "bot_token_file" not in t for t in telegram)
    emails = [e for r in config["receivers"] for e in r.get("email_configs", [])]
    assert emails
    assert all("auth_password_file" in e and "auth_password" not in e for e in emails)


# ------------------------------------------------------------------ inhibition


def _api(port: int, path: str, body: object | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v2/{path}",
        data=data,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        text = resp.read()
    return json.loads(text) if text.strip() else None


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """Alertmanager on a free port with the shipped routes and inhibitions; the
    receivers are emptied (same names), so it never tries to send anything."""
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.skip("alertmanager not installed (Debian package prometheus-alertmanager)")
    tmp = tmp_path_factory.mktemp("alertmanager")
    config = load_yaml(AM_CONFIG)
    config["receivers"] = [{"name": r["name"]} for r in config["receivers"]]
    (tmp / "alertmanager.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_tcp_port()
    log = (tmp / "alertmanager.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp / 'alertmanager.yml'}",
            f"--storage.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip: a single instance
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _api(port, "status")
                break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        "alertmanager did not start:\n" + (tmp / "alertmanager.log").read_text()
                    )
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.mark.parametrize("case", ROUTING_CASES["inhibitions"], ids=lambda c: c["name"])
def test_inhibitions(alertmanager: int, case: dict[str, Any]) -> None:
    # a label unique to this case keeps the cases apart in the one Alertmanager
    tag = re.sub(r"\W+", "-", case["name"])
    alerts = [{"labels": {**labels, "case": tag}} for labels in case["alerts"]]
    _api(alertmanager, "alerts", alerts)
    got: dict[int, bool] = {}

    def settled() -> bool:
        inhibited = sorted(i for i, yes in got.items() if yes)
        return len(got) == len(alerts) and inhibited == case["inhibited"]

    # Alertmanager marks an alert inhibited only once it has processed the alert that
    # inhibits it, so the first listing may show every alert and no inhibition yet:
    # poll until the expected state shows, and judge what was last seen.
    deadline = time.monotonic() + 10
    while not settled() and time.monotonic() < deadline:
        listed = _api(alertmanager, f"alerts?filter=case%3D%22{tag}%22")
        got = {}
        for a in listed:
            labels = {k: v for k, v in a["labels"].items() if k != "case"}
            got[case["alerts"].index(labels)] = bool(a["status"]["inhibitedBy"])
        time.sleep(0.1)
    assert sorted(got) == list(range(len(alerts))), "not every alert reached Alertmanager"
    assert sorted(i for i, inhibited in got.items() if inhibited) == case["inhibited"]
