"""Side by side with the real snmp_exporter: same agent, same modules, same samples.

Debian 12's ``prometheus-snmp-exporter`` (0.21) reads the legacy layout and
predates ``scale``/``offset``: its copy of each module has them stripped and
credentials put inside the module, and the test applies scale/offset to its raw
values before comparing. Every sample's name and labels must agree; values must
be equal, except those that move between reads (counters, uptimes), which must
lie between two snmp_exporter reads taken before and after ours.
"""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.agents import AgentProcess, free_tcp_port, run_snmpd, run_snmpsim
from tests.integration.daemons import running_daemon

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("prometheus-snmp-exporter") is None,
        reason="prometheus-snmp-exporter is installed by ./dev test",
    ),
]

REPO = Path(__file__).resolve().parents[2]
UPSTREAM = REPO / "tests" / "data" / "snmp_exporter" / "snmp.yml"
WALKS = REPO / "tests" / "data" / "walks"

Key = tuple[str, frozenset[tuple[str, str]]]


def parse(text: str) -> dict[Key, float]:
    out: dict[Key, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.startswith("snmp_scrape_"):
                continue
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, AgentProcess]]:
    data = tmp_path_factory.mktemp("walks")
    # The Eaton UPS recording (UPS-MIB) served under community "eaton".
    shutil.copyfile(WALKS / "eaton-93e-80.snmprec", data / "eaton.snmprec")
    with run_snmpd() as snmpd, run_snmpsim(data, probe_community="eaton") as sim:
        yield {"snmpd": snmpd, "snmpsim": sim}


def module_plan(agents: dict[str, AgentProcess]) -> list[tuple[str, str, str, str]]:
    """(module file, module, agent address, community) pairs to compare."""
    snmpd = f"127.0.0.1:{agents['snmpd'].port}"
    sim = f"127.0.0.1:{agents['snmpsim'].port}"
    return [
        (str(UPSTREAM), "if_mib", snmpd, "public"),
        (str(UPSTREAM), "system", snmpd, "public"),
        (str(UPSTREAM), "hrStorage", snmpd, "public"),
        (str(UPSTREAM), "ups_mib", sim, "eaton"),
        (str(REPO / "config" / "snmp" / "ups_mib.yml"), "ups_mib", sim, "eaton"),
    ]


def legacy_copy(module: dict[str, Any], community: str) -> dict[str, Any]:
    """The module as snmp_exporter 0.21 wants it: credentials inside, no scale/offset."""
    mod: dict[str, Any] = yaml.safe_load(yaml.safe_dump(module))
    mod["version"] = 2
    mod["auth"] = {"community": community}
    for metric in mod["metrics"]:
        metric.pop("scale", None)
        metric.pop("offset", None)
    return mod


def scale_offset(module: dict[str, Any]) -> dict[str, tuple[float, float]]:
    return {
        m["name"]: (float(m.get("scale", 0)), float(m.get("offset", 0)))
        for m in module["metrics"]
        if m["type"] in ("gauge", "counter") and ("scale" in m or "offset" in m)
    }


def moving(name: str) -> bool:
    """Values that change between two reads of a live agent."""
    return name in ("sysUpTime", "hrSystemUptime") or name.startswith(
        ("ifIn", "ifOut", "ifHC", "ifLastChange", "hrStorageUsed")
    )


@pytest.fixture(scope="module")
def snmp_exporter(
    agents: dict[str, AgentProcess], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    work = tmp_path_factory.mktemp("snmp_exporter")
    legacy: dict[str, Any] = {}
    for i, (file, name, _addr, community) in enumerate(module_plan(agents)):
        modules = yaml.safe_load(Path(file).read_text())["modules"]
        legacy[f"{name}_{i}"] = legacy_copy(modules[name], community)
    conf = work / "snmp.yml"
    conf.write_text(yaml.safe_dump(legacy))
    port = free_tcp_port()
    log = (work / "log").open("wb")
    proc = subprocess.Popen(
        [
            "prometheus-snmp-exporter",
            f"--config.file={conf}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, (work / "log").read_text()
            assert time.monotonic() < deadline, "snmp_exporter did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def prepare(
    plan: list[tuple[str, str, str, str]], tmp_path: Path
) -> tuple[Path, list[dict[str, Any]]]:
    """commandcentre's config (modern layout, module files as given) and each plan
    entry's module definition. The upstream file and ours both define ups_mib, so
    ours is loaded under the name ups_mib_ours."""
    modules = [yaml.safe_load(Path(f).read_text())["modules"][n] for f, n, _, _ in plan]
    ours_file = tmp_path / "ours_ups.yml"
    ours_file.write_text(yaml.safe_dump({"modules": {"ups_mib_ours": modules[4]}}))
    cfg_path = tmp_path / "c.yml"
    cfg_path.write_text(
        yaml.safe_dump(
            {
                "http": {"listen": "127.0.0.1:0"},
                "snmp": {
                    "module_files": [str(UPSTREAM), str(ours_file)],
                    "allow_unconfigured_targets": True,
                    "auths": {"eaton": {"version": 2, "community": "eaton"}},
                },
            }
        )
    )
    return cfg_path, modules


async def test_same_samples_as_snmp_exporter(
    agents: dict[str, AgentProcess], snmp_exporter: str, tmp_path: Path
) -> None:
    plan = module_plan(agents)
    cfg_path, modules = prepare(plan, tmp_path)
    async with running_daemon(cfg_path) as (_, ours_base), aiohttp.ClientSession() as http:

        async def fetch(url: str) -> dict[Key, float]:
            async with http.get(url) as r:
                text = await r.text()
                assert r.status == 200, (url, text)
                return parse(text)

        compared = 0
        for i, (file, name, addr, community) in enumerate(plan):
            our_name = "ups_mib_ours" if i == 4 else name
            auth = "eaton" if community == "eaton" else "public_v2"
            before = await fetch(f"{snmp_exporter}/snmp?target={addr}&module={name}_{i}")
            ours = await fetch(f"{ours_base}/snmp?target={addr}&module={our_name}&auth={auth}")
            after = await fetch(f"{snmp_exporter}/snmp?target={addr}&module={name}_{i}")

            scales = scale_offset(modules[i])

            def adjust(
                key: Key, value: float, scales: dict[str, tuple[float, float]] = scales
            ) -> float:
                scale, offset = scales.get(key[0], (0.0, 0.0))
                if scale:
                    value *= scale
                return value + offset

            only_ours = sorted(set(ours) - set(before))[:5]
            only_theirs = sorted(set(before) - set(ours))[:5]
            assert set(ours) == set(before), (
                f"{name} ({file}): only in commandcentre: {only_ours}; "
                f"only in snmp_exporter: {only_theirs}"
            )
            assert len(ours) > 5, f"{name}: too few samples to mean anything"
            for key, value in ours.items():
                lo, hi = sorted((adjust(key, before[key]), adjust(key, after[key])))
                if moving(key[0]):
                    assert lo <= value <= hi, (name, key, lo, value, hi)
                else:
                    assert math.isclose(value, lo, rel_tol=1e-12, abs_tol=1e-12), (
                        name,
                        key,
                        value,
                        lo,
                    )
                compared += 1
        assert compared > 100
