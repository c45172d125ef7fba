"""The frame reader of ``aiomqtt_client`` on its own: PUBLISH frames written to a real
socket in arbitrary pieces come out whole, in order, with the right fields; other
packets go to paho; a malformed frame ends the connection. paho here is a real,
unconnected client given one end of a socket pair as its socket."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import paho.mqtt.client as paho_mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from commandcentre.mqtt.aiomqtt_client import _FrameReader

Delivered = tuple[str, bytes, bool]


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish(
    topic: str, payload: bytes, *, qos: int, retain: bool, v5: bool, props: bytes = b""
) -> bytes:
    """A PUBLISH packet as MQTT 3.1.1 section 3.3 / MQTT 5 section 3.3 lay it out."""
    t = topic.encode()
    var = len(t).to_bytes(2, "big") + t + ((1234).to_bytes(2, "big") if qos else b"")
    if v5:
        var += varint(len(props)) + props
    body = var + payload
    return bytes([0x30 | qos << 1 | int(retain)]) + varint(len(body)) + body


PINGRESP = b"\xd0\x00"


class Wire:
    """A paho client whose socket is one end of a socket pair, and a reader on it."""

    def __init__(self, v5: bool) -> None:
        self.ours, self.theirs = socket.socketpair()
        self.ours.setblocking(False)
        self.client = paho_mqtt.Client(
            CallbackAPIVersion.VERSION2,
            protocol=paho_mqtt.MQTTv5 if v5 else paho_mqtt.MQTTv311,
        )
        self.client._sock = self.ours  # what connect() would have set
        self.got: list[Delivered] = []
        self.reader = _FrameReader(self.client, lambda t, p, r: self.got.append((t, p, r)))

    def send(self, data: bytes, pieces: list[int]) -> None:
        """``data`` in pieces cut at the given sizes, each read as it arrives."""
        for chunk in cut(data, pieces):
            self.theirs.sendall(chunk)
            while self.client.socket() is not None and self._readable():
                self.reader.on_readable()

    def _readable(self) -> bool:
        try:
            return bool(self.ours.recv(1, socket.MSG_PEEK))
        except BlockingIOError:
            return False

    def close(self) -> None:
        self.theirs.close()
        self.ours.close()


def cut(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    pos = 0
    for size in sizes:
        if pos >= len(data):
            return
        yield data[pos : pos + size]
        pos += size
    for start in range(pos, len(data), 32 * 1024):
        yield data[start : start + 32 * 1024]


@pytest.fixture
def wire() -> Iterator[Wire]:
    w = Wire(v5=False)
    yield w
    w.close()


frames = st.lists(
    st.one_of(
        st.tuples(
            st.text(min_size=1, max_size=30).filter(lambda t: "\x00" not in t),
            st.one_of(st.binary(max_size=300), st.sampled_from([b"x" * 150_000])),
            st.integers(0, 1),
            st.booleans(),
            st.binary(max_size=200),  # v5 properties: only their length matters here
        ),
        st.just("ping"),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(frames=frames, pieces=st.lists(st.integers(1, 70_000), max_size=12), v5=st.booleans())
def test_frames_cut_anywhere_arrive_whole_and_in_order(
    frames: list[tuple[str, bytes, int, bool, bytes] | str], pieces: list[int], v5: bool
) -> None:
    w = Wire(v5)
    try:
        data = b""
        expected: list[Delivered] = []
        for f in frames:
            if f == "ping":
                data += PINGRESP  # handled by paho; must not disturb what follows
                continue
            assert not isinstance(f, str)
            topic, payload, qos, retain, props = f
            data += publish(topic, payload, qos=qos, retain=retain, v5=v5, props=props)
            expected.append((topic, payload, retain))
        w.send(data, pieces)
        assert w.got == expected
        assert w.client.socket() is w.ours, "nothing here should end the connection"
    finally:
        w.close()


def test_a_publish_longer_than_its_frame_ends_the_connection(wire: Wire) -> None:
    good = publish("a/b", b"1", qos=0, retain=False, v5=False)
    # topic length 200 in a frame of 6 bytes
    bad = b"\x30\x06\x00\xc8abcd"
    wire.send(good + bad + good, [])
    assert wire.got == [("a/b", b"1", False)]
    assert wire.client.socket() is None, "paho closed it as a protocol error"


def test_a_remaining_length_over_four_bytes_ends_the_connection(wire: Wire) -> None:
    wire.send(b"\x30\xff\xff\xff\xff\x01", [])
    assert wire.got == []
    assert wire.client.socket() is None


def test_an_unknown_packet_type_goes_to_paho_which_ends_the_connection(wire: Wire) -> None:
    wire.send(b"\xf0\x00" + publish("a", b"2", qos=0, retain=False, v5=False), [])
    assert wire.got == []
    assert wire.client.socket() is None


def test_the_end_of_the_stream_goes_to_paho(wire: Wire) -> None:
    wire.send(publish("t", b"last", qos=1, retain=True, v5=False), [3])
    wire.theirs.shutdown(socket.SHUT_WR)
    wire.reader.on_readable()
    assert wire.got == [("t", b"last", True)]
    assert wire.client.socket() is None, "paho saw the end of the stream and closed"


@pytest.mark.parametrize("after", [b"", publish("s", b"small", qos=0, retain=False, v5=False)])
@pytest.mark.parametrize("pieces", [[], [5], [65_536], [65_536, 65_536, 1]])
def test_a_frame_longer_than_a_read_arrives_whole(
    wire: Wire, after: bytes, pieces: list[int]
) -> None:
    big = publish("big", bytes(range(256)) * 800, qos=1, retain=False, v5=False)
    wire.send(big + after, pieces)
    expected = [("big", bytes(range(256)) * 800, False)]
    if after:
        expected.append(("s", b"small", False))
    assert wire.got == expected
