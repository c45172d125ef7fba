"""The status page shows untrusted text (names from the config, device names from
MQTT topics, error messages, the config path) and must never let it become markup.

Markup goes in through every road the page reads, for real where one exists: a
target, a broker and a subscription named with it, the config file in a
directory named with it, a Zigbee2MQTT device whose topic carries it (published
to a real Mosquitto) that goes offline. A broker's last error is set directly on
its stats (no real error text carries markup on demand). The page must show each
payload escaped, contain no element or attribute outside its own small set, and
send the strict Content-Security-Policy.
"""

from __future__ import annotations

import asyncio
import html
import time
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import pytest
import yaml

from commandcentre.mqtt.aiomqtt_client import AiomqttPublisher
from commandcentre.mqtt.config import Broker
from tests.integration.agents import free_udp_port
from tests.integration.daemons import running_daemon
from tests.integration.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

SYSTEM_MODULE = Path(__file__).resolve().parents[2] / "config" / "snmp" / "system.yml"

INJECT = {
    "target": "<script>alert('target')</script>",
    "broker": "<script>alert('broker')</script>",
    "subscription": '<img src=x onerror="alert(1)">',
    "device": "<script>alert('device')</script>",
    "path": "<svg onload=alert('path')>",
    "error": "</td><script>alert('error')</script>",
}
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "span", "a",
    "table", "tr", "th", "td",
}  # fmt: skip


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)


async def test_status_page_escapes_names_topics_errors_and_paths(tmp_path: Path) -> None:
    directory = tmp_path / INJECT["path"]
    directory.mkdir()
    with Mosquitto() as broker:
        config = directory / "commandcentre.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "http": {"listen": "127.0.0.1:0"},
                    "snmp": {
                        "defaults": {"interval": "1s", "timeout": "200ms", "retries": 0},
                        "targets": [
                            {
                                "name": INJECT["target"],
                                "address": f"127.0.0.1:{free_udp_port()}",  # nobody answers
                                "modules": ["system"],
                            }
                        ],
                        "module_files": [str(SYSTEM_MODULE)],
                    },
                    "mqtt": {
                        "brokers": [
                            {"name": INJECT["broker"], "host": broker.host, "port": broker.port}
                        ],
                        "subscriptions": [
                            {"name": INJECT["subscription"], "profile": "zigbee2mqtt"}
                        ],
                    },
                }
            )
        )
        async with running_daemon(config) as (daemon, base), aiohttp.ClientSession() as s:
            publisher = Broker(name="publisher", host=broker.host, port=broker.port)
            topic = f"zigbee2mqtt/{INJECT['device']}/availability"

            async def page() -> str:
                async with s.get(base + "/") as r:
                    assert r.status == 200
                    csp = r.headers["Content-Security-Policy"]
                    assert "default-src 'none'" in csp
                    assert "script-src" not in csp
                    return await r.text()

            deadline = time.monotonic() + 15
            body = ""
            while time.monotonic() < deadline:
                # publish until the subscription is in place and the device shows offline
                async with AiomqttPublisher(publisher) as pub:
                    await pub.publish(topic, b'{"state": "offline"}', retain=True)
                for _, stats in daemon.mqtt.broker_states():
                    stats.last_error = INJECT["error"]
                body = await page()
                state = daemon.poller.states.get((INJECT["target"], "system"))
                if html.escape(INJECT["device"]) in body and state is not None and state.last_error:
                    break
                await asyncio.sleep(0.2)

    for what, payload in INJECT.items():
        assert payload not in body, what
        assert html.escape(payload) in body, f"{what} not shown (escaped): {body}"
    elements = Elements()
    elements.feed(body)
    assert elements.tags <= ALLOWED_TAGS, elements.tags - ALLOWED_TAGS
    assert not {a for a in elements.attributes if a.startswith("on")}, elements.attributes
    assert "timeout" in body, "the SNMP error of the unreachable target is on the page"
