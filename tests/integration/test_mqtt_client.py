"""``AiomqttConnection`` and ``AiomqttPublisher`` against a real Mosquitto.

Every test uses its own topics (``cc-test/<uuid>/...``), so tests sharing the
module's broker never see each other's messages. Tests that need a special broker
(passwords, TLS, restarts) start their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as paho_mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from structlog.testing import capture_logs

from commandcentre.mqtt.aiomqtt_client import AiomqttConnection, AiomqttPublisher
from commandcentre.mqtt.config import Broker
from commandcentre.mqtt.types import BrokerStats, Message
from tests.integration.mosquitto import Mosquitto, make_pki

pytestmark = pytest.mark.integration

# Fast backoff so reconnect tests take fractions of a second.
FAST = {"initial": "50ms", "max": "500ms"}


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def mosquitto() -> Iterator[Mosquitto]:
    """An anonymous broker shared by the tests that need nothing special."""
    with Mosquitto() as m:
        yield m


def topic_base() -> str:
    return f"cc-test/{uuid.uuid4().hex}"


def broker_for(
    m: Mosquitto, name: str = "test", base_dir: Path | None = None, **settings: Any
) -> Broker:
    data: dict[str, Any] = {
        "name": name,
        "host": m.host,
        "port": m.port,
        "reconnect": FAST,
        **settings,
    }
    return Broker.model_validate(data, context={"base_dir": str(base_dir or ".")})


class Collector:
    """An ``on_message`` that keeps what it is given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def payloads(self) -> list[bytes]:
        return [m.payload for m in self.messages]


@contextlib.asynccontextmanager
async def running(conn: AiomqttConnection) -> AsyncIterator[asyncio.Task[None]]:
    """``conn.run()`` as a task for the duration of the block; cancelled after it."""
    task = asyncio.create_task(conn.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_until(cond: Callable[[], bool], limit: float, what: str) -> float:
    """Poll ``cond`` every 5 ms; returns the seconds it took, fails after ``limit`` s."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > limit:
            pytest.fail(f"timed out after {limit} s waiting for {what}")
        await asyncio.sleep(0.005)
    return time.monotonic() - start


def socket_closed(client: paho_mqtt.Client) -> Callable[[], bool]:
    """A condition for ``wait_until`` bound to this client (not to a loop variable)."""
    return lambda: client.socket() is None


async def connected(conn: AiomqttConnection, limit: float = 5.0) -> None:
    await wait_until(lambda: conn.stats.connected == 1, limit, f"{conn.broker.name} to connect")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------- delivery


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_messages_reach_on_message_in_order(mosquitto: Mosquitto, protocol: str) -> None:
    base = topic_base()
    b = broker_for(mosquitto, protocol=protocol)
    got = Collector()
    conn = AiomqttConnection(b, [(f"{base}/#", 1)], got, BrokerStats())
    assert conn.client_id == f"commandcentre-{socket.gethostname()}-test"
    async with running(conn):
        await connected(conn)
        async with AiomqttPublisher(b) as pub:
            for i in range(300):
                await pub.publish(f"{base}/s{i % 3}", str(i).encode(), qos=i % 2)
        await wait_until(lambda: len(got.messages) >= 300, 5, "300 messages")
    assert got.payloads == [str(i).encode() for i in range(300)]
    assert [m.topic for m in got.messages[:3]] == [f"{base}/s0", f"{base}/s1", f"{base}/s2"]
    assert not any(m.retain for m in got.messages)
    s = conn.stats
    assert (s.connects, s.reconnects, s.messages_received, s.messages_dropped) == (1, 0, 300, 0)
    assert s.connected == 0  # after run() ended
    assert s.errors == {}


async def test_retained_message_delivered_on_subscribe(mosquitto: Mosquitto) -> None:
    base = topic_base()
    b = broker_for(mosquitto)
    async with AiomqttPublisher(b) as pub:
        await pub.publish(f"{base}/state", b"retained-1", qos=1, retain=True)
    got = Collector()
    conn = AiomqttConnection(b, [(f"{base}/#", 0)], got, BrokerStats())
    async with running(conn):
        await wait_until(lambda: len(got.messages) >= 1, 5, "the retained message")
        async with AiomqttPublisher(b) as pub:
            await pub.publish(f"{base}/state", b"live", qos=1)
            await pub.publish(f"{base}/state", b"", qos=1, retain=True)  # clear it
        await wait_until(lambda: len(got.messages) >= 3, 5, "the live messages")
    assert got.messages[0] == Message(f"{base}/state", b"retained-1", retain=True)
    assert got.messages[1] == Message(f"{base}/state", b"live", retain=False)


async def test_consumer_exception_does_not_break_the_connection(mosquitto: Mosquitto) -> None:
    base = topic_base()
    b = broker_for(mosquitto)
    seen: list[bytes] = []

    def fragile(message: Message) -> None:
        seen.append(message.payload)
        if int(message.payload) % 2 == 0:
            raise ValueError(f"cannot parse {message.payload!r}")

    conn = AiomqttConnection(b, [(f"{base}/#", 0)], fragile, BrokerStats())
    with capture_logs() as logs:
        async with running(conn):
            await connected(conn)
            async with AiomqttPublisher(b) as pub:
                for i in range(200):
                    await pub.publish(f"{base}/x", str(i).encode(), qos=1)
            await wait_until(lambda: len(seen) >= 200, 5, "200 messages")
    assert seen == [str(i).encode() for i in range(200)]
    assert (conn.stats.connects, conn.stats.errors) == (1, {})
    failures = [e for e in logs if e["event"] == "mqtt_consumer_failed"]
    assert len(failures) == 1, "100 failures within 10 s must be logged once"
    assert failures[0]["log_level"] == "error"
    assert "cannot parse" in failures[0]["error"]


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_shared_subscription_splits_messages_exactly_once(
    mosquitto: Mosquitto, protocol: str
) -> None:
    base = topic_base()
    b = broker_for(mosquitto, protocol=protocol)
    shared = [(f"$share/g/{base}/#", 1)]
    a_got, b_got = Collector(), Collector()
    conn_a = AiomqttConnection(b, shared, a_got, BrokerStats(), client_id=f"cc-a-{base[-8:]}")
    conn_b = AiomqttConnection(b, shared, b_got, BrokerStats(), client_id=f"cc-b-{base[-8:]}")
    async with running(conn_a), running(conn_b):
        await connected(conn_a)
        await connected(conn_b)
        async with AiomqttPublisher(b) as pub:
            for i in range(200):
                await pub.publish(f"{base}/t{i % 4}", str(i).encode(), qos=1)
        await wait_until(
            lambda: len(a_got.messages) + len(b_got.messages) >= 200, 5, "200 shared messages"
        )
        await asyncio.sleep(0.2)  # a duplicate would arrive by now
    together = sorted(int(p) for p in a_got.payloads + b_got.payloads)
    assert together == list(range(200)), "each message exactly once between the two"
    assert a_got.messages, "Mosquitto shares round-robin"
    assert b_got.messages, "Mosquitto shares round-robin"
    assert all(m.topic.startswith(f"{base}/t") for m in a_got.messages + b_got.messages)
    # each member still sees its share in publication order
    for got in (a_got, b_got):
        assert [int(p) for p in got.payloads] == sorted(int(p) for p in got.payloads)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_every_qos_large_payloads_and_v5_properties_arrive_intact(
    mosquitto: Mosquitto, protocol: str
) -> None:
    """The frame reader's paths: QoS 0 and 1 cut from the buffer (1 acknowledged),
    QoS 2 handed to paho, a payload several reads long, MQTT 5 properties (with a
    multi-byte length) skipped, and a retained message that arrived before the
    reader took over the socket."""
    base = topic_base()
    b = broker_for(mosquitto, protocol=protocol)
    async with AiomqttPublisher(b) as pub:
        await pub.publish(f"{base}/kept", b"retained", qos=1, retain=True)
    got = Collector()
    conn = AiomqttConnection(b, [(f"{base}/#", 2)], got, BrokerStats())
    big = bytes(range(256)) * 4096  # 1 MiB: four times what one read takes
    sent: list[tuple[str, bytes]] = []
    with capture_logs() as logs:
        async with running(conn):
            await connected(conn)
            await wait_until(lambda: len(got.messages) >= 1, 5, "the retained message")
            async with AiomqttPublisher(b) as pub:
                for i in range(60):
                    payload = big if i == 30 else f"m{i}".encode()
                    await pub.publish(f"{base}/q{i % 3}", payload, qos=i % 3)
                    sent.append((f"{base}/q{i % 3}", payload))
            if protocol == "5":
                # (paho's Properties has no annotations)
                props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                props.UserProperty = [("origin", "x" * 300)]
                props.ContentType = "application/json"
                client = aiomqtt.Client(
                    b.host,
                    b.effective_port,
                    protocol=aiomqtt.ProtocolVersion.V5,
                    identifier="cc-props",
                )
                async with client:
                    for qos in (0, 1, 2):
                        await client.publish(
                            f"{base}/props", b'{"v":%d}' % qos, qos=qos, properties=props
                        )
                        sent.append((f"{base}/props", b'{"v":%d}' % qos))
            await wait_until(lambda: len(got.messages) >= 1 + len(sent), 10, "every message")
            await asyncio.sleep(0.2)  # a duplicate would arrive by now
    assert got.messages[0] == Message(f"{base}/kept", b"retained", retain=True)
    received = [(m.topic, m.payload) for m in got.messages[1:]]
    # paho hands a QoS 2 message on at PUBREL, so a later QoS 0/1 one may overtake
    # it; each topic here has one QoS, and within a topic the order holds.
    for topic in {t for t, _ in sent}:
        assert [p for t, p in received if t == topic] == [p for t, p in sent if t == topic]
    assert len(received) == len(sent)
    assert not any(m.retain for m in got.messages[1:])
    s = conn.stats
    assert (s.connects, s.messages_received, s.messages_dropped) == (1, 1 + len(sent), 0)
    assert s.errors == {}
    assert not [e for e in logs if e["event"] == "mqtt_fast_reader_unavailable"]


async def test_an_idle_connection_is_kept_alive_by_pings(mosquitto: Mosquitto) -> None:
    """PINGRESP goes to paho through the frame reader: with a 1 s keepalive and no
    traffic for 3.5 s the connection must stay up (the broker cuts a client that
    misses 1.5 keepalives, paho one whose PINGRESP never comes)."""
    base = topic_base()
    b = broker_for(mosquitto, keepalive="1s")
    got = Collector()
    conn = AiomqttConnection(b, [(f"{base}/#", 1)], got, BrokerStats())
    async with running(conn):
        await connected(conn)
        await asyncio.sleep(3.5)
        async with AiomqttPublisher(b) as pub:
            await pub.publish(f"{base}/after", b"still here", qos=1)
        await wait_until(lambda: len(got.messages) == 1, 5, "the message after the pause")
        assert conn.stats.connected == 1
    assert (conn.stats.connects, conn.stats.errors) == (1, {})


async def test_a_v5_disconnect_from_the_broker_ends_the_session_and_it_reconnects(
    mosquitto: Mosquitto,
) -> None:
    """A client taking over our client id makes Mosquitto send us an MQTT 5
    DISCONNECT (session taken over) and close the connection: the session ends as
    a lost connection, and the next one connects and receives again."""
    base = topic_base()
    b = broker_for(mosquitto, protocol="5")
    got = Collector()
    conn = AiomqttConnection(b, [(f"{base}/#", 1)], got, BrokerStats(), client_id=base[-12:])
    async with running(conn):
        await connected(conn)
        thief = aiomqtt.Client(
            b.host, b.effective_port, protocol=aiomqtt.ProtocolVersion.V5, identifier=base[-12:]
        )
        # (our reconnect may take the id back before the thief says goodbye)
        with contextlib.suppress(aiomqtt.MqttError):
            async with thief:
                await wait_until(lambda: conn.stats.connected == 0, 5, "the takeover")
        await wait_until(lambda: conn.stats.connects >= 2, 10, "the reconnect")
        await connected(conn)
        async with AiomqttPublisher(b) as pub:
            await pub.publish(f"{base}/back", b"again", qos=1)
        await wait_until(lambda: got.payloads == [b"again"], 5, "a message after it")
    assert conn.stats.errors.get("connection_lost", 0) >= 1, conn.stats.errors


# --------------------------------------------------------------------------- reconnects


async def test_broker_restart_reconnects_and_resubscribes() -> None:
    base = topic_base()
    acked: list[int] = []
    with Mosquitto() as m:
        b = broker_for(m)
        got = Collector()
        conn = AiomqttConnection(b, [(f"{base}/#", 1)], got, BrokerStats())
        resume_at = 1  # the publisher waits for this many subscriber connects after a failure

        async def publish_forever() -> None:
            seq = 0
            while True:
                await wait_until(
                    lambda: conn.stats.connects >= resume_at and conn.stats.connected == 1,
                    15,
                    "the subscriber to be back",
                )
                try:
                    async with AiomqttPublisher(b) as pub:
                        while True:
                            await asyncio.wait_for(
                                pub.publish(f"{base}/seq", str(seq).encode(), qos=1), 1.0
                            )
                            acked.append(seq)
                            seq += 1
                            await asyncio.sleep(0.002)
                except (aiomqtt.MqttError, TimeoutError):
                    seq += 1  # that one may or may not have reached the broker
                    await asyncio.sleep(0.02)

        async with running(conn):
            publisher = asyncio.create_task(publish_forever())
            try:
                await wait_until(lambda: len(acked) >= 100, 10, "100 messages before the kill")
                resume_at = conn.stats.connects + 1
                t_kill = time.monotonic()
                m.kill()
                await asyncio.sleep(0.3)
                await asyncio.to_thread(m.start)  # same port, no sessions (persistence false)
                t_up = time.monotonic()
                await wait_until(lambda: conn.stats.connects == 2, 10, "the reconnect")
                t_back = time.monotonic()
                before = len(acked)
                await wait_until(lambda: len(acked) >= before + 100, 10, "100 messages after")
            finally:
                publisher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await publisher
            await wait_until(lambda: set(acked) <= {int(p) for p in got.payloads}, 5, "all acked")
            received = {int(p) for p in got.payloads}
    print(
        f"\nreconnect: {t_back - t_up:.3f} s after the broker was back, "
        f"{t_back - t_kill:.3f} s after the kill (0.3 s down); {len(acked)} acked, "
        f"{len(received)} received"
    )
    assert set(acked) <= received
    s = conn.stats
    assert (s.connects, s.reconnects) == (2, 1)
    assert s.errors.get("connection_lost") == 1
    assert s.errors.get("connect", 0) >= 1  # refused while it was down
    assert t_back - t_up < 2.0


async def test_wrong_password_is_reported_and_backs_off(tmp_path: Path) -> None:
    password = "wrong-pass-8f3a"
    with Mosquitto(users={"sensor": "right-pass"}) as m:
        b = broker_for(
            m, username="sensor", password=password, reconnect={"initial": "40ms", "max": "2s"}
        )
        conn = AiomqttConnection(b, [("cc-test/none", 0)], Collector(), BrokerStats())
        attempts: list[float] = []
        with capture_logs() as logs:
            async with running(conn):
                deadline = time.monotonic() + 5
                while len(attempts) < 6 and time.monotonic() < deadline:
                    n = conn.stats.errors.get("auth", 0)
                    if n > len(attempts):
                        attempts.extend([time.monotonic()] * (n - len(attempts)))
                    await asyncio.sleep(0.002)
    assert len(attempts) >= 6, conn.stats
    s = conn.stats
    assert (s.connects, s.connected) == (0, 0)
    assert "not authorized" in s.last_error.lower() or "bad user" in s.last_error.lower()
    everything = repr(logs) + repr(s) + repr(b)
    assert password not in everything
    warnings = [
        e for e in logs if e["event"] == "mqtt_connect_failed" and e["log_level"] == "warning"
    ]
    assert len(warnings) == 1, "the same failure again is logged at debug level"
    assert warnings[0]["kind"] == "auth"
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    # backoff doubles (with 50-100 % jitter): the 5th gap is >= 4x the 1st
    assert gaps[4] > 3 * gaps[0], gaps


# --------------------------------------------------------------------------- TLS


async def test_tls_with_ca_password_file_and_server_name(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    (tmp_path / "mqtt.pass").write_text("tls-pass\n")
    base = topic_base()
    with Mosquitto(users={"sensor": "tls-pass"}, tls=pki) as m:
        common = {"username": "sensor", "password_file": "mqtt.pass"}
        good = broker_for(
            m,
            base_dir=tmp_path,
            **common,
            tls={"ca_file": str(pki.ca_file), "server_name": "broker.test"},
        )
        assert good.password is not None
        assert good.password.reveal() == "tls-pass"
        # the certificate names broker.test only: connecting to 127.0.0.1 must fail ...
        wrong_name = broker_for(m, base_dir=tmp_path, **common, tls={"ca_file": str(pki.ca_file)})
        # ... unless verification is off (no CA given at all)
        unverified = broker_for(m, base_dir=tmp_path, **common, tls={"insecure_skip_verify": True})
        got, got_unverified = Collector(), Collector()
        conn = AiomqttConnection(good, [(f"{base}/#", 1)], got, BrokerStats())
        bad = AiomqttConnection(wrong_name, [(f"{base}/#", 1)], Collector(), BrokerStats())
        insecure = AiomqttConnection(
            unverified, [(f"{base}/#", 1)], got_unverified, BrokerStats(), client_id="cc-insecure"
        )
        async with running(conn), running(bad), running(insecure):
            await connected(conn)
            await connected(insecure)
            async with AiomqttPublisher(good) as pub:
                await pub.publish(f"{base}/t", b"over-tls", qos=1)
            await wait_until(lambda: len(got.messages) == 1, 5, "the message over TLS")
            await wait_until(lambda: len(got_unverified.messages) == 1, 5, "the insecure one")
            await wait_until(lambda: bad.stats.errors.get("tls", 0) >= 1, 5, "a TLS error")
    assert got.messages == [Message(f"{base}/t", b"over-tls")]
    assert bad.stats.connects == 0
    assert "certificate" in bad.stats.last_error.lower(), bad.stats.last_error


async def test_tls_carries_many_messages_and_one_longer_than_a_read(tmp_path: Path) -> None:
    """The frame reader over TLS: records decrypted beyond one read (``pending()``)
    and a message split across many reads arrive whole and in order."""
    pki = make_pki(tmp_path / "pki")
    base = topic_base()
    with Mosquitto(tls=pki) as m:
        b = broker_for(
            m, protocol="5", tls={"ca_file": str(pki.ca_file), "server_name": "broker.test"}
        )
        async with AiomqttPublisher(b) as pub:
            # retained: arrives in the TLS records right behind the SUBACK
            for i in range(3):
                await pub.publish(f"{base}/kept{i}", b"r%d" % i, qos=1, retain=True)
        got = Collector()
        conn = AiomqttConnection(b, [(f"{base}/#", 1)], got, BrokerStats())
        payloads = [f"{i:06d}".encode() * 20 for i in range(2000)]
        payloads[1000] = b"L" * 300_000
        async with running(conn):
            await wait_until(lambda: len(got.messages) >= 3, 5, "the retained messages")
            async with AiomqttPublisher(b) as pub:
                for i, p in enumerate(payloads):
                    await pub.publish(f"{base}/t{i % 7}", p, qos=i % 2)
            await wait_until(lambda: len(got.messages) >= 3 + len(payloads), 15, "every message")
    assert sorted(got.payloads[:3]) == [b"r0", b"r1", b"r2"]
    assert got.payloads[3:] == payloads
    assert (conn.stats.connects, conn.stats.messages_dropped, conn.stats.errors) == (1, 0, {})


async def test_tls_client_certificate(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    base = topic_base()
    with Mosquitto(tls=pki, require_certificate=True) as m:
        tls = {"ca_file": str(pki.ca_file), "server_name": "broker.test"}
        with_cert = broker_for(
            m, tls={**tls, "cert_file": str(pki.client_cert), "key_file": str(pki.client_key)}
        )
        without = broker_for(m, name="nocert", tls=tls)
        got = Collector()
        conn = AiomqttConnection(with_cert, [(f"{base}/#", 0)], got, BrokerStats())
        refused = AiomqttConnection(without, [(f"{base}/#", 0)], Collector(), BrokerStats())
        async with running(conn), running(refused):
            await connected(conn)
            async with AiomqttPublisher(with_cert) as pub:
                await pub.publish(f"{base}/t", b"mutual", qos=1)
            await wait_until(lambda: len(got.messages) == 1, 5, "the message")
            # TLS 1.3: the refusal comes after the handshake, before CONNACK, and is
            # noticed when the CONNACK wait (5 s) runs out.
            await wait_until(lambda: sum(refused.stats.errors.values()) >= 1, 8, "a refusal")
    assert got.payloads == [b"mutual"]
    assert refused.stats.connects == 0


# --------------------------------------------------------------------------- limits


async def test_burst_is_bounded_and_drops_are_counted() -> None:
    # 50k keeps the test short (the read path costs ~80 us CPU per message here);
    # 200k behaves the same, in ~19 s.
    total = 50_000
    queued = 1000
    base = topic_base()
    # The broker must not drop anything itself, so that what we did not receive is
    # exactly what our bounded queue discarded.
    with Mosquitto(max_queued_messages=total * 2, extra=("max_queued_bytes 0",)) as m:
        b = broker_for(m, max_queued_messages=queued)
        received = 0

        def slow(message: Message) -> None:
            nonlocal received
            received += 1
            end = time.perf_counter() + 20e-6  # a consumer slower than the socket
            while time.perf_counter() < end:
                pass

        conn = AiomqttConnection(b, [(f"{base}/#", 0)], slow, BrokerStats())
        peak = 0
        sampling = True

        def sample() -> None:
            nonlocal peak
            while sampling:
                peak = max(peak, rss_bytes())
                time.sleep(0.005)

        lines = b"\n".join(str(i).encode() for i in range(total)) + b"\n"
        gc.collect()
        with capture_logs() as logs:
            async with running(conn):
                await connected(conn)
                baseline = rss_bytes()
                sampler = threading.Thread(target=sample, daemon=True)
                sampler.start()
                t0 = time.monotonic()
                try:
                    await asyncio.to_thread(m.publish_lines, f"{base}/burst", lines)
                    s = conn.stats

                    def settled() -> bool:
                        return s.messages_received + s.messages_dropped >= total

                    await wait_until(settled, 40, "the burst to be received or dropped")
                finally:
                    sampling = False
                    sampler.join()
                elapsed = time.monotonic() - t0
        broker_dropped = m.sys_value("$SYS/broker/publish/messages/dropped")
    s = conn.stats
    growth = peak - baseline
    print(
        f"\nburst: published {total}, received {s.messages_received}, dropped "
        f"{s.messages_dropped} (broker dropped {broker_dropped}), {elapsed:.1f} s, "
        f"RSS +{growth / 2**20:.1f} MiB (baseline {baseline / 2**20:.1f} MiB)"
    )
    assert s.messages_received == received
    assert s.messages_received + s.messages_dropped == total, broker_dropped
    assert s.messages_dropped > 0, "the consumer was slow enough to overflow the queue"
    # The queue holds at most 1000 small messages (< 1 MiB; measured +0.0 MiB). With
    # the queue unbounded this burst took +10.6 MiB (and dropped nothing).
    assert growth < 5 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB"
    summaries = [e for e in logs if e["event"] == "mqtt_messages_dropped"]
    assert 1 <= len(summaries) <= 2 + int(elapsed // 10)
    assert sum(e["dropped"] for e in summaries) == s.messages_dropped


# --------------------------------------------------------------------------- cancellation


async def test_cancellation_ends_run_promptly(mosquitto: Mosquitto) -> None:
    b = broker_for(mosquitto)
    conn = AiomqttConnection(b, [(f"{topic_base()}/#", 0)], Collector(), BrokerStats())
    task = asyncio.create_task(conn.run())
    await connected(conn)
    t0 = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - t0 < 2.0
    assert conn.stats.connected == 0


async def test_cancellation_while_the_broker_does_not_answer() -> None:
    """A listener that accepts TCP and never sends CONNACK: run() still ends within 2 s
    and leaves no socket open (a leak is a ResourceWarning, an error here)."""
    accepted: list[asyncio.StreamWriter] = []

    async def mute(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.append(w)

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        b = Broker.model_validate({"name": "mute", "host": "127.0.0.1", "port": port})
        conn = AiomqttConnection(b, [("cc-test/x", 0)], Collector(), BrokerStats())
        task = asyncio.create_task(conn.run())
        await wait_until(lambda: bool(accepted), 5, "the connection attempt")
        await asyncio.sleep(0.2)
        t0 = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - t0 < 2.0
        assert conn.stats.connects == 0
        del task, conn
        gc.collect()
    finally:
        for w in accepted:
            w.close()
        server.close()
        await server.wait_closed()


async def test_a_goodbye_queued_as_the_broker_dies_leaves_no_loop_error() -> None:
    """The demo's Ctrl-C once ended with asyncio logging "Bad file descriptor" from
    ``add_writer``: Ctrl-C stopped the broker too, and in one loop iteration the
    publisher queued its DISCONNECT (paho asks for a writer through aiomqtt, which
    registers it on the *next* iteration) and then the reader met the broker's
    end-of-stream and closed the socket. The writer must not be registered on a socket
    closed by then, nor on another socket that reused its number.

    Staged exactly: the broker is killed while the loop is held, so the end-of-stream
    is waiting; then the DISCONNECT is queued from a callback that runs before the
    reader's in the same iteration (as a cancelled task's step did)."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        with Mosquitto() as m:
            for _ in range(3):
                pub = AiomqttPublisher(broker_for(m))
                await pub.__aenter__()
                assert pub._client is not None
                paho = pub._client._client
                m.kill()
                time.sleep(0.2)  # noqa: ASYNC251 - hold the loop: the end-of-stream is now waiting
                loop.call_soon(paho.disconnect)  # what aiomqtt's __aexit__ does
                await asyncio.sleep(0)
                await wait_until(socket_closed(paho), 5, "the socket to close")
                for _ in range(5):
                    await asyncio.sleep(0)
                await pub.__aexit__(None, None, None)
                m.start()
    finally:
        loop.set_exception_handler(previous)
    assert errors == [], [str(e.get("exception") or e.get("message")) for e in errors]
