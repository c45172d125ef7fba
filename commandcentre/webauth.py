"""Who may use the HTTP endpoints, from the running web config: HTTP basic auth
against bcrypt hashes, and the SANs a client certificate must carry.

bcrypt is slow on purpose (≈ 60 ms at cost 10, ≈ 250 ms at 12) and Prometheus
scrapes every 15 s with the same credentials, so successful checks are cached,
as exporter-toolkit does. The cache holds no password: its keys are HMACs, under
a random key made at start, of user, password and hash together, so a changed
hash (a web config reload) misses the cache, and a memory dump yields nothing a
password can be tested against offline without that key. Checks run in worker
threads, at most ``MAX_CONCURRENT_CHECKS`` at once, so a flood of wrong passwords
costs a bounded amount of CPU and never blocks the event loop.

With a web config that has ``basic_auth_users``, every endpoint except
``/-/healthy`` (for load balancers and systemd-style liveness checks, which carry
no credentials) needs them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping

import bcrypt
import structlog
from aiohttp import web

from commandcentre.samples import Sample
from commandcentre.webconfig import WebConfig

UNAUTHENTICATED_PATHS = frozenset({"/-/healthy"})
MAX_CACHED = 1024
MAX_CONCURRENT_CHECKS = 2
REALM = "commandcentre"
_REFUSAL_LOG_EVERY = 60.0  # seconds, per client address
_REFUSAL_LOG_ADDRESSES = 1024  # addresses remembered for that

log = structlog.get_logger("commandcentre.http")

# Checked against when the user is unknown, so an unknown user costs as much time
# as a wrong password (no user enumeration by timing). Hash of a throwaway string.
_DUMMY_HASH = b"$2b$10$n4awr741RUs/NQoI9wyCCOttoGFanRRL4y1QkC.KP.AL41XHyhdqq"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # bcrypt >= 5 refuses passwords over 72 bytes, and bad hashes
        return False


class BasicAuthVerifier:
    """bcrypt checks with a cache of successes (see the module docstring)."""

    def __init__(
        self, max_cached: int = MAX_CACHED, max_concurrent: int = MAX_CONCURRENT_CHECKS
    ) -> None:
        self._key = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._max_cached = max_cached
        self._slots = asyncio.Semaphore(max_concurrent)
        self.checks = 0  # bcrypt computations done (cache misses)

    def _cache_key(self, user: str, password: str, hashed: bytes) -> bytes:
        msg = b"\0".join((user.encode(), password.encode(), hashed))
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    async def verify(self, users: Mapping[str, bytes], user: str, password: str) -> bool:
        hashed = users.get(user)
        key = self._cache_key(user, password, hashed or _DUMMY_HASH)
        if hashed is not None and key in self._cache:
            self._cache.move_to_end(key)
            return True
        async with self._slots:
            self.checks += 1
            ok = await asyncio.to_thread(_checkpw, password.encode(), hashed or _DUMMY_HASH)
        if not ok or hashed is None:
            return False
        self._cache[key] = None
        if len(self._cache) > self._max_cached:
            self._cache.popitem(last=False)
        return True


def parse_basic_auth(header: str) -> tuple[str, str] | None:
    """``Basic base64(user:password)`` (RFC 7617, UTF-8) -> (user, password); None if
    it is not that."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _sans(peercert: object) -> set[str]:
    if not isinstance(peercert, dict):
        return set()
    return {str(value) for _, value in peercert.get("subjectAltName", ())}


class WebAuth:
    """The aiohttp middleware that enforces the running web config.

    Refusals are counted by reason. Wrong credentials and refused certificates are
    also logged (``http_request_refused``: the client's address, the reason, the
    path), once a minute per address with the number refused meanwhile, so that
    someone guessing passwords is seen without one line per guess. A request with
    no credentials is not logged: it is how every browser starts. The user name
    sent is never logged (people type passwords into it).
    """

    def __init__(self, current: Callable[[], WebConfig | None]) -> None:
        self._current = current
        self.verifier = BasicAuthVerifier()
        self.refused = {"missing_credentials": 0, "wrong_credentials": 0, "certificate": 0}
        # client address -> (when last logged, refusals not logged since)
        self._logged: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def _refuse(self, reason: str, request: web.Request) -> web.Response:
        self.refused[reason] += 1
        if reason != "missing_credentials":
            self._log_refusal(reason, request)
        if reason == "certificate":
            return web.Response(status=403, text="client certificate not allowed\n")
        return web.Response(
            status=401,
            text="Unauthorized\n",
            headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
        )

    async def check(self, config: WebConfig, request: web.Request) -> web.Response | None:
        """None if the request may go on, else the refusal to send."""
        if config.allowed_sans:
            peercert = request.transport.get_extra_info("peercert") if request.transport else None
            if not _sans(peercert) & config.allowed_sans:
                return self._refuse("certificate", request)
        users = config.users
        if not users:
            return None
        header = request.headers.get("Authorization")
        if header is None:
            return self._refuse("missing_credentials", request)
        creds = parse_basic_auth(header)
        if creds is None:
            return self._refuse("wrong_credentials", request)
        if not await self.verifier.verify(users, *creds):
            return self._refuse("wrong_credentials", request)
        return None

    def _log_refusal(self, reason: str, request: web.Request) -> None:
        remote = request.remote or "unknown"
        now = time.monotonic()
        last, unlogged = self._logged.pop(remote, (now - _REFUSAL_LOG_EVERY, 0))
        if now - last < _REFUSAL_LOG_EVERY:
            self._logged[remote] = (last, unlogged + 1)
            return
        self._logged[remote] = (now, 0)
        while len(self._logged) > _REFUSAL_LOG_ADDRESSES:
            self._logged.popitem(last=False)
        log.warning(
            "http_request_refused",
            remote=remote,
            reason=reason,
            path=request.path[:200],
            refused_unlogged_since=unlogged,
        )

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        config = self._current()
        if config is None:
            return await handler(request)
        refusal = None
        if request.path not in UNAUTHENTICATED_PATHS:
            refusal = await self.check(config, request)
        resp = refusal if refusal is not None else await handler(request)
        for name, value in config.headers.items():
            resp.headers[name] = value
        return resp

    def self_samples(self) -> list[Sample]:
        return [
            Sample(
                "commandcentre_http_requests_refused_total",
                (("reason", reason),),
                n,
                "counter",
                "HTTP requests refused by the web config's basic auth or client "
                "certificate rules, by reason.",
            )
            for reason, n in self.refused.items()
        ]
