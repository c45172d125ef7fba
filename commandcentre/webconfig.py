"""The web config file (``--web.config.file``): TLS and basic auth for the HTTP server,
in the format of the Prometheus exporter-toolkit, so the file an operator already
writes for node_exporter or snmp_exporter works here unchanged::

    tls_server_config:
      cert_file: server.pem            # relative to this file; ${VAR} expanded
      key_file: ${CREDENTIALS_DIRECTORY}/web-key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: clients-ca.pem
      min_version: TLS12
    http_server_config:
      headers: {Strict-Transport-Security: max-age=31536000}
    basic_auth_users:
      prometheus: $2b$12$...           # bcrypt hash (htpasswd -nBC 12 "" | tr -d ':')

Validated like the main config (unknown keys are errors, every problem with its
key path, hashes never shown). ``WebConfigWatcher`` re-reads the file, and the
certificate, key and CA files it names, when their content changes (polled) or on
``reload()`` (SIGHUP, ``POST /-/reload``); a file that does not validate is logged
and counted and the running one stays. New connections get the new TLS context
(``weblisten.Listener`` swaps it in); established ones keep theirs.

Differences from exporter-toolkit, each refused with a clear message rather than
accepted and ignored: Python's ``ssl`` cannot require a client certificate without
verifying it, so ``RequireAnyClientCert`` is refused; ``RequestClientCert`` (which
in Go asks for a certificate and never checks it) is served as ``NoClientCert``, the
same access. Inline ``cert``/``key``/``client_ca`` and ``curve_preferences`` are not
supported (unknown keys).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import re
import ssl
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from commandcentre.configbase import ConfigError, ConfigProblem, Strict, _expand_env
from commandcentre.reloads import ReloadRecord
from commandcentre.samples import Sample

log = structlog.get_logger("commandcentre.web")

# How often the watcher looks at the files (content hash, not just mtime: a
# certificate renewed within the same second, or copied with its old mtime, counts).
POLL_SECONDS = 5.0

ClientAuthType = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
TlsVersion = Literal["TLS10", "TLS11", "TLS12", "TLS13"]

_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# Go's cipher suite names (what exporter-toolkit files use) -> OpenSSL's. As in Go,
# they apply to TLS 1.2 and below; TLS 1.3 suites are not configurable.
CIPHER_SUITES = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
}

# The response headers exporter-toolkit lets a web config set, and the values it
# allows where it restricts them (compared case-insensitively).
ALLOWED_HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}

_BCRYPT_RE = re.compile(r"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")


def _resolve_path(value: object, base_dir: Path, what: str) -> object:
    if not isinstance(value, str) or not value:
        return value
    path = Path(_expand_env(value, what))
    return str(path if path.is_absolute() else base_dir / path)


class TlsServerConfig(Strict):
    cert_file: str = ""
    key_file: str = ""
    client_auth_type: ClientAuthType = "NoClientCert"
    client_ca_file: str = ""
    client_allowed_sans: list[str] = Field(default_factory=list)
    min_version: TlsVersion = "TLS12"
    max_version: TlsVersion = "TLS13"
    cipher_suites: list[str] = Field(default_factory=list)
    prefer_server_cipher_suites: bool = True

    @model_validator(mode="before")
    @classmethod
    def _paths(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        base_dir = Path((info.context or {}).get("base_dir", "."))
        data = dict(data)
        for key in ("cert_file", "key_file", "client_ca_file"):
            if key in data:
                data[key] = _resolve_path(data[key], base_dir, key)
        return data

    @field_validator("cipher_suites")
    @classmethod
    def _known_suites(cls, v: list[str]) -> list[str]:
        unknown = [s for s in v if s not in CIPHER_SUITES]
        if unknown:
            raise ValueError(
                f"unknown cipher suite {unknown[0]!r}; known (Go names, TLS 1.2): "
                + ", ".join(sorted(CIPHER_SUITES))
            )
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TlsServerConfig:
        wrong = []
        if not self.cert_file or not self.key_file:
            wrong.append("cert_file and key_file are both required")
        if self.client_auth_type == "RequireAnyClientCert":
            wrong.append(
                "client_auth_type RequireAnyClientCert (a certificate required but not "
                "verified) is not supported: use RequireAndVerifyClientCert with client_ca_file"
            )
        verifies = self.client_auth_type in (
            "VerifyClientCertIfGiven",
            "RequireAndVerifyClientCert",
        )
        if verifies and not self.client_ca_file:
            wrong.append(f"client_auth_type {self.client_auth_type} needs client_ca_file")
        if self.client_ca_file and not verifies:
            wrong.append(
                "client_ca_file is given but client_auth_type does not verify client "
                "certificates: set client_auth_type to RequireAndVerifyClientCert "
                "(or VerifyClientCertIfGiven)"
            )
        if self.client_allowed_sans and self.client_auth_type != "RequireAndVerifyClientCert":
            wrong.append("client_allowed_sans needs client_auth_type RequireAndVerifyClientCert")
        if _VERSIONS[self.min_version] > _VERSIONS[self.max_version]:
            wrong.append(f"min_version {self.min_version} is above max_version {self.max_version}")
        if wrong:
            raise ValueError("; ".join(wrong))
        return self


class HttpServerConfig(Strict):
    # Accepted for compatibility; aiohttp serves HTTP/1.1 only, so it changes nothing.
    http2: bool = True
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _allowed(cls, v: dict[str, str]) -> dict[str, str]:
        canonical = {name.lower(): name for name in ALLOWED_HEADERS}
        out = {}
        for name, value in v.items():
            known = canonical.get(name.lower())
            if known is None:
                raise ValueError(
                    f"header {name!r} cannot be set; allowed: {', '.join(ALLOWED_HEADERS)}"
                )
            values = ALLOWED_HEADERS[known]
            if values and value.lower() not in values:
                raise ValueError(f"header {known} must be one of {', '.join(values)}")
            out[known] = value
        return out


class WebConfigSpec(Strict):
    tls_server_config: TlsServerConfig | None = None
    http_server_config: HttpServerConfig = Field(default_factory=HttpServerConfig)
    basic_auth_users: dict[str, str] = Field(default_factory=dict)

    @field_validator("basic_auth_users")
    @classmethod
    def _bcrypt(cls, v: dict[str, str]) -> dict[str, str]:
        wrong = []
        for user, hashed in v.items():
            if not user or ":" in user:
                wrong.append(f"user name {user!r} must be non-empty and without ':'")
            elif not isinstance(hashed, str) or not _BCRYPT_RE.match(hashed):
                wrong.append(
                    f"user {user!r}: not a bcrypt hash ($2b$<cost>$ and 53 characters); "
                    "make one with `htpasswd -nBC 12 '' | tr -d ':\\n'` or Python's bcrypt"
                )
        if wrong:
            raise ValueError("; ".join(wrong))
        return v


@dataclass(frozen=True)
class WebConfig:
    """A loaded web config: what the listener and the auth check use."""

    source: str
    spec: WebConfigSpec
    ssl_context: ssl.SSLContext | None
    fingerprint: str

    @property
    def users(self) -> dict[str, bytes]:
        return {u: h.encode("ascii") for u, h in self.spec.basic_auth_users.items()}

    @property
    def headers(self) -> dict[str, str]:
        return self.spec.http_server_config.headers

    @property
    def requires_auth(self) -> bool:
        """Basic auth or a verified client certificate stands between a client and data."""
        tls = self.spec.tls_server_config
        cert = tls is not None and tls.client_auth_type == "RequireAndVerifyClientCert"
        return bool(self.spec.basic_auth_users) or cert

    @property
    def allowed_sans(self) -> frozenset[str]:
        tls = self.spec.tls_server_config
        return frozenset(tls.client_allowed_sans) if tls is not None else frozenset()


def server_context(tls: TlsServerConfig) -> ssl.SSLContext:
    """A server ``SSLContext`` for ``tls``. Raises ``OSError``/``ssl.SSLError`` for files
    that cannot be read or do not hold a matching certificate and key."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        # TLS10/TLS11 warn (deprecated): the operator chose them; check-config says so.
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = _VERSIONS[tls.min_version]
        ctx.maximum_version = _VERSIONS[tls.max_version]
    legacy = _VERSIONS[tls.min_version] < ssl.TLSVersion.TLSv1_2
    if tls.cipher_suites or legacy:
        ciphers = ":".join(dict.fromkeys(CIPHER_SUITES[s] for s in tls.cipher_suites))
        # OpenSSL 3 refuses TLS < 1.2 at security level 1 and above; the operator
        # asked for it explicitly (check-config warns).
        ctx.set_ciphers((ciphers or "DEFAULT") + (":@SECLEVEL=0" if legacy else ""))
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_auth_type in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert"):
        ctx.load_verify_locations(cafile=tls.client_ca_file)
        ctx.verify_mode = (
            ssl.CERT_REQUIRED
            if tls.client_auth_type == "RequireAndVerifyClientCert"
            else ssl.CERT_OPTIONAL
        )
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _problems(e: ValidationError, shown: str) -> list[ConfigProblem]:
    # Imported here: commandcentre.config pulls in the protocol sections.
    from commandcentre.config import _problems_from

    out = []
    for p in _problems_from(e, shown, ()):
        masked = p.path.startswith("basic_auth_users") and p.given is not None
        out.append(dataclasses.replace(p, given="<secret>") if masked else p)
    return out


def _fingerprint(config_bytes: bytes, spec: WebConfigSpec | None) -> str:
    """A hash of the file and of every file it names, so a renewed certificate counts
    as a change. Unreadable named files hash as such (the load reports them)."""
    h = hashlib.sha256(config_bytes)
    tls = spec.tls_server_config if spec is not None else None
    if tls is not None:
        for path in (tls.cert_file, tls.key_file, tls.client_ca_file):
            h.update(b"\0" + path.encode())
            if path:
                try:
                    h.update(hashlib.sha256(Path(path).read_bytes()).digest())
                except OSError:
                    h.update(b"<unreadable>")
    return h.hexdigest()


def load_web_config(path: str | Path) -> WebConfig:
    """Read and validate a web config file and build its TLS context.

    Raises ``ConfigError`` with every problem (key path, what is wrong; bcrypt hashes
    and key material never appear in messages).
    """
    from commandcentre.config import _parse_yaml

    path = Path(path)
    shown = str(path)
    try:
        raw_bytes = path.read_bytes()
        text = raw_bytes.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise ConfigError([ConfigProblem(shown, "", f"cannot read file: {why}")]) from None
    try:
        data = _parse_yaml(text)
    except Exception as e:  # noqa: BLE001 - YAMLError, ValueError, RecursionError alike
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ConfigError([ConfigProblem(shown, where, f"invalid YAML: {problem}")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            [
                ConfigProblem(
                    shown, "", "must be a YAML mapping at the top level", type(data).__name__
                )
            ]
        )
    try:
        spec = WebConfigSpec.model_validate(data, context={"base_dir": str(path.parent.resolve())})
    except ValidationError as e:
        raise ConfigError(_problems(e, shown)) from None
    context = None
    if spec.tls_server_config is not None:
        tls = spec.tls_server_config
        try:
            context = server_context(tls)
        except (OSError, ssl.SSLError, ValueError) as e:
            # The message names the file, never its content.
            why = getattr(e, "strerror", None) or getattr(e, "reason", None) or str(e)
            raise ConfigError(
                [
                    ConfigProblem(
                        shown,
                        "tls_server_config",
                        f"cannot use the certificate, key or CA files ({tls.cert_file}, "
                        f"{tls.key_file}{', ' + tls.client_ca_file if tls.client_ca_file else ''})"
                        f": {why}",
                    )
                ]
            ) from None
    return WebConfig(shown, spec, context, _fingerprint(raw_bytes, spec))


def _current_fingerprint(path: Path, current: WebConfig | None) -> str:
    """The fingerprint of what is on disk now, using the running config's file list."""
    try:
        raw = path.read_bytes()
    except OSError:
        return "<unreadable>"
    return _fingerprint(raw, current.spec if current is not None else None)


class WebConfigWatcher:
    """Holds the running web config and replaces it when the files change.

    ``on_tls_change`` is called with the new context (or None) when a reload changes
    the TLS context, so the listener can serve new connections with it.
    """

    def __init__(self, config: WebConfig, poll_seconds: float = POLL_SECONDS) -> None:
        self.path = Path(config.source)
        self.current = config
        self.poll_seconds = poll_seconds
        self.on_tls_change: Callable[[ssl.SSLContext | None], Any] | None = None
        self.record = ReloadRecord(
            "web_config",
            "1 if the last load of the web config file (TLS, basic auth) succeeded, else 0.",
            "Unix time of the last successful load of the web config file.",
            "Web config file reloads attempted (on change, SIGHUP or /-/reload), by result.",
        )
        self._seen = config.fingerprint
        self._lock = asyncio.Lock()

    async def reload(self, *, force: bool = True) -> list[str]:
        """Re-read the files; apply a valid config. Returns the problems, if any.

        Without ``force`` (the poll) nothing happens unless the files changed since the
        last attempt, so a broken file is reported once, not every poll.
        """
        async with self._lock:
            if not force:
                seen = await asyncio.to_thread(_current_fingerprint, self.path, self.current)
                if seen == self._seen:
                    return []
            try:
                new = await asyncio.to_thread(load_web_config, self.path)
            except ConfigError as e:
                self._seen = await asyncio.to_thread(_current_fingerprint, self.path, self.current)
                return self.record.failed(str(self.path), e)
            self._seen = new.fingerprint
            changed = new.fingerprint != self.current.fingerprint
            self.current = new
            self.record.succeeded()
            if changed:
                log.info(
                    "web_config_applied",
                    file=str(self.path),
                    tls=new.ssl_context is not None,
                    users=len(new.spec.basic_auth_users),
                )
                if self.on_tls_change is not None:
                    result = self.on_tls_change(new.ssl_context)
                    if asyncio.iscoroutine(result):
                        await result
            return []

    async def watch(self) -> None:
        """Poll for changes until cancelled."""
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.reload(force=False)
            except Exception as e:  # noqa: BLE001 - the watcher must outlive any surprise
                log.error("web_config_watch_failed", error=type(e).__name__)

    def self_samples(self) -> list[Sample]:
        return self.record.self_samples()
