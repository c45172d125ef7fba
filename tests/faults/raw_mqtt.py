"""A flooding MQTT 3.1.1 publisher: QoS 0 PUBLISH packets written straight to a socket.

A misconfigured device does not wait for anyone; neither does this. Building the
packets by hand (instead of through a client library's per-message machinery)
lets one test process offer a broker a million messages in a few seconds.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: bytes) -> bytes:
    return len(s).to_bytes(2, "big") + s


def publish_packet(topic: str, payload: bytes) -> bytes:
    body = _str(topic.encode()) + payload
    return b"\x30" + _remaining_length(len(body)) + body


def flood(
    host: str, port: int, messages: Iterable[tuple[str, bytes]], client_id: str, chunk: int = 5000
) -> int:
    """Connect, publish every message at QoS 0, disconnect; returns how many were sent."""
    with socket.create_connection((host, port), timeout=30) as s:
        body = _str(b"MQTT") + b"\x04\x02\x00\x3c" + _str(client_id.encode())
        s.sendall(b"\x10" + _remaining_length(len(body)) + body)
        connack = s.recv(4)
        if connack[:1] != b"\x20" or connack[3:4] != b"\x00":
            raise ConnectionError(f"broker refused the connection: {connack!r}")
        sent = 0
        buf: list[bytes] = []
        for topic, payload in messages:
            buf.append(publish_packet(topic, payload))
            if len(buf) >= chunk:
                s.sendall(b"".join(buf))
                sent += len(buf)
                buf.clear()
        if buf:
            s.sendall(b"".join(buf))
            sent += len(buf)
        s.sendall(b"\xe0\x00")  # DISCONNECT
        return sent
