"""The HTTP listening sockets, with a TLS context that can change while running.

Python's ``ssl`` cannot change a listening server's context (a new certificate
could be swapped in through the SNI callback, but not client-certificate rules or
protocol versions), so a new context means a new server. Without a gap: the
listening sockets are bound once and each aiohttp site serves a duplicate of
them (``dup()``: the same kernel socket, the same accept queue). The new site
starts accepting on its duplicate before the old one closes its own, so no
connection is refused or lost, and connections already accepted keep their
context until they close.
"""

from __future__ import annotations

import socket
import ssl

from aiohttp import web


def bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for ``host:port`` (every address a name resolves to), as
    asyncio's ``create_server`` would make them (SO_REUSEADDR, IPv6-only for v6)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    socks: list[socket.socket] = []
    seen: set[tuple[object, ...]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(128)
            sock.setblocking(False)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


class Listener:
    """The daemon's HTTP sockets; ``use(context)`` serves new connections with it."""

    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        self._runner = runner
        self._host = host
        self._port = port
        self._socks: list[socket.socket] = []
        self._sites: list[web.SockSite] = []

    async def start(self, context: ssl.SSLContext | None) -> None:
        """Bind (``OSError`` if the address is taken) and start serving."""
        self._socks = bind(self._host, self._port)
        await self.use(context)

    async def use(self, context: ssl.SSLContext | None) -> None:
        new = [web.SockSite(self._runner, s.dup(), ssl_context=context) for s in self._socks]
        started: list[web.SockSite] = []
        try:
            for site in new:
                await site.start()
                started.append(site)
        except BaseException:
            for site in started:
                await site.stop()
            raise
        old, self._sites = self._sites, new
        for site in old:
            await site.stop()

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [(str(a[0]), int(a[1])) for a in (s.getsockname() for s in self._socks)]

    async def close(self) -> None:
        """Stop serving (before ``runner.cleanup()``) and close the sockets."""
        for site in self._sites:
            await site.stop()
        self._sites = []
        for sock in self._socks:
            sock.close()
        self._socks = []
