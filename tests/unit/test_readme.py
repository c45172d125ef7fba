"""The README's MQTT configuration example is a config the daemon accepts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from commandcentre.cli import check_config

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_mqtt_example_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    match = re.search(r"```yaml\n(mqtt:.*?)```", README.read_text(), re.S)
    assert match, "README has no ```yaml block starting with mqtt:"
    (tmp_path / "mqtt-password").write_text("pw-MARK-7731\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    cfg = tmp_path / "c.yml"
    cfg.write_text(match.group(1))
    assert check_config(str(cfg)) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    for profile in (
        "zigbee2mqtt",
        "tasmota",
        "esphome",
        "shelly_gen1",
        "shelly_gen2",
        "json",
        "number",
    ):
        assert f" {profile} on main " in out, profile
    assert "pw-MARK-7731" not in out  # the password is never printed
