"""A UDP relay in front of an SNMP agent: the fixed address a target polls, with the
agent behind it swappable (restarted snmpd, a hostile agent) and a trap door that
kills the agent at the moment a walk is half done.

The daemon polls the relay's port. The relay forwards each request to the current
backend from a per-client upstream socket and relays the answers back. With
``kill_mid_walk`` armed, the first GETNEXT/GETBULK that continues a walk (its OID is
not the walk's root) triggers the callback (which SIGKILLs the agent) and the
request is dropped: the agent died between two requests of one walk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from pyasn1.codec.ber import decoder  # type: ignore[import-untyped]  # pyasn1: no stubs
from pysnmp.proto import api

Addr = tuple[str | Any, int]


def continues_walk(data: bytes, root: tuple[int, ...]) -> bool:
    """Whether ``data`` is a GETNEXT/GETBULK asking past ``root`` (not a walk's first request)."""
    try:
        version = int(api.decodeMessageVersion(data))
        p = api.PROTOCOL_MODULES[version]
        msg, _ = decoder.decode(data, asn1Spec=p.Message())
        pdu = p.apiMessage.get_pdu(msg)
        is_walk = pdu.isSameTypeWith(p.GetNextRequestPDU()) or (
            version == api.SNMP_VERSION_2C and pdu.isSameTypeWith(p.GetBulkRequestPDU())
        )
        oids = [tuple(o) for o, _ in p.apiPDU.get_varbinds(pdu)]
    except Exception:  # not an SNMP request we understand: not a walk
        return False
    return is_walk and bool(oids) and oids[0] != root and oids[0][: len(root)] == root


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, relay: UdpRelay, client: Addr) -> None:
        self.relay = relay
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        if self.relay.transport is not None:
            self.relay.transport.sendto(data, self.client)


class UdpRelay(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.backend: Addr | None = None
        self._upstreams: dict[Addr, _Upstream] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self.kill_mid_walk: tuple[tuple[int, ...], Callable[[], None]] | None = None
        self.mid_walk_kills = 0

    async def start(self) -> UdpRelay:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=("127.0.0.1", 0)
        )
        self.transport = transport
        self.port = int(transport.get_extra_info("sockname")[1])
        return self

    def set_backend(self, backend: Addr | None) -> None:
        """Point at another agent (None: nobody answers); old upstream sockets close."""
        self.backend = backend
        for up in self._upstreams.values():
            if up.transport is not None:
                up.transport.close()
        self._upstreams.clear()

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        if self.kill_mid_walk is not None and continues_walk(data, self.kill_mid_walk[0]):
            _, kill = self.kill_mid_walk
            self.kill_mid_walk = None
            self.mid_walk_kills += 1
            kill()
            self.set_backend(None)
            return
        if self.backend is None:
            return
        up = self._upstreams.get(addr)
        if up is not None and up.transport is not None:
            up.transport.sendto(data)
            return
        task = asyncio.get_running_loop().create_task(self._open_and_send(addr, data))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _open_and_send(self, client: Addr, data: bytes) -> None:
        backend = self.backend
        if backend is None:
            return
        loop = asyncio.get_running_loop()
        _, up = await loop.create_datagram_endpoint(
            lambda: _Upstream(self, client), remote_addr=backend
        )
        if self.backend != backend:  # switched while we were connecting
            if up.transport is not None:
                up.transport.close()
            return
        old = self._upstreams.get(client)
        if old is not None and old.transport is not None:
            old.transport.close()
        self._upstreams[client] = up
        assert up.transport is not None
        up.transport.sendto(data)

    async def stop(self) -> None:
        for t in list(self._pending):
            t.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
        self.set_backend(None)
        if self.transport is not None:
            self.transport.close()
            self.transport = None
