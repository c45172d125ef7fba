"""The benchmark harness in its quick mode, so that it does not rot.

No timing is asserted (benchmarks are not tests): the run must succeed and produce,
for every scenario, an anchor row and a commandcentre row with the scenario's primary
figure measured (finite, positive), a finite ratio, and a results file that names
the machine and every scenario.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        any(
            shutil.which(tool) is None
            for tool in ("prometheus-snmp-exporter", "prometheus-mqtt-exporter", "mosquitto_pub")
        )
        or not Path("/usr/sbin/mosquitto").exists()
        or not Path("/usr/sbin/snmpd").exists(),
        reason="the anchors, snmpd and Mosquitto are installed by ./dev test",
    ),
]

REPO = Path(__file__).resolve().parents[2]
EXPECTED = {"snmp_v2c", "snmp_v3", "snmp_fleet", "mqtt_ingest", "mqtt_burst"}


def test_quick_run_produces_every_figure(tmp_path: Path) -> None:
    out, data = tmp_path / "RESULTS.md", tmp_path / "results.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--output", str(out), "--json", str(data)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    scenarios = json.loads(data.read_text())
    keys = {s["key"] for s in scenarios}
    assert keys >= EXPECTED, keys
    assert any(k.startswith("scrape_") for k in keys), keys
    text = out.read_text()
    assert "## Machine" in text
    for s in scenarios:
        assert s["title"] in text
        roles = {r["role"] for r in s["rows"]}
        assert roles == {"anchor", "commandcentre"}, (s["key"], roles)
        for row in s["rows"]:
            fig = row["figures"].get(s["primary"])
            assert fig is not None, (s["key"], row["subject"], s["primary"])
            assert fig["values"], (s["key"], row["subject"])
            assert all(math.isfinite(v) and v > 0 for v in fig["values"]), (s["key"], fig)
        assert s["ratios"], s["key"]
        for r in s["ratios"]:
            assert math.isfinite(r["ratio"]), (s["key"], r)
            assert r["ratio"] > 0, (s["key"], r)
