"""The ``snmp.traps`` section: where to listen, whom to accept, where alerts go.

Embedded in ``commandcentre.config.SnmpSpec``; ``commandcentre.config`` checks
the cross-references (each ``accept`` entry names an ``snmp.auths`` entry) and
loads the trap table files, so a ``Config`` carries a ready ``TrapTable``.

```yaml
snmp:
  traps:
    listen: 0.0.0.0:162
    accept:
      - auth: ups_v1            # snmp.auths entry: its community (v1/v2c) ...
        networks: [10.20.0.0/16]
      - auth: switches_v3       # ... or its SNMPv3 user, keys and protocols
        engine_id: 800000090300aabbccddeeff   # the sender's, for its traps
    alertmanager:
      urls: [http://127.0.0.1:9093]
```
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator

from commandcentre.configbase import (
    ConfigError,
    ConfigProblem,
    Duration,
    SecretStr,
    Strict,
    resolve_secret,
)
from commandcentre.mqtt.config import TlsConfig
from commandcentre.samples import Labels
from commandcentre.traps.credentials import Community, Credentials, V3User
from commandcentre.traps.table import TrapTable, build_table, expand_table_files, parse_trap_file

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_HEX_RE = re.compile(r"^(0x)?([0-9a-fA-F]{2}){5,32}$")
DEFAULT_TABLE_FILES = ("snmp/traps/*.yml",)


def _check_engine_id(v: object) -> object:
    if isinstance(v, int) and not isinstance(v, bool):
        # YAML reads 0x8000... and all-digit hex as numbers, losing leading zeros
        raise ValueError("must be quoted ('80001f88...'): YAML read it as a number")  # noqa: TRY004
    if isinstance(v, str) and not _HEX_RE.match(v.replace(":", "")):
        raise ValueError("must be 5-32 bytes in hex, e.g. 80001f8880e9630000d61ff449")
    return v


class TrapAccept(Strict):
    """One accepted sender identity: an ``snmp.auths`` entry, optionally from given
    networks only. v1/v2c entries accept the auth's community; v3 entries its user."""

    auth: str
    networks: list[str] = Field(default_factory=list)  # empty: any address
    # SNMPv3 traps (not informs) are authenticated with keys localized to the
    # *sender's* engine ID; giving it pins the user to that device.
    engine_id: str | None = None

    @field_validator("networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for n in v:
            try:
                ipaddress.ip_network(n, strict=False)
            except ValueError:
                raise ValueError(f"{n!r} is not an address or network (10.0.0.0/8)") from None
        return v

    _engine_id = field_validator("engine_id", mode="before")(_check_engine_id)

    @property
    def engine_id_bytes(self) -> bytes | None:
        if self.engine_id is None:
            return None
        return bytes.fromhex(self.engine_id.replace(":", "").removeprefix("0x"))

    def allows(self, address: str) -> bool:
        if not self.networks:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(n, strict=False) for n in self.networks)


class RateLimitSpec(Strict):
    per_source: float = Field(default=50.0, gt=0)  # datagrams per second, sustained
    burst: int = Field(default=200, ge=1)
    max_sources: int = Field(default=10_000, ge=1)
    # all senders together: a flood from many (or spoofed) addresses, each under its
    # own limit, must not take the event loop (~40 µs of CPU per accepted trap)
    all_sources: float = Field(default=2000.0, gt=0)
    all_sources_burst: int = Field(default=10_000, ge=1)


class BasicAuth(Strict):
    """Basic auth to Alertmanager; the password inline (``${ENV}``), from a file or
    a systemd credential, as every secret in the config."""

    username: str
    password: SecretStr | None = None
    password_file: str | None = None
    password_credential: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _resolve_password(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        resolve_secret(data, "password", Path((info.context or {}).get("base_dir", ".")))
        return data

    @model_validator(mode="after")
    def _needs_password(self) -> BasicAuth:
        if self.password is None:
            raise ValueError("basic_auth needs password (or password_file, password_credential)")
        return self


class AlertmanagerSpec(Strict):
    urls: list[str] = Field(min_length=1)  # base URLs; alerts go to <url>/api/v2/alerts
    tls: TlsConfig | None = None
    basic_auth: BasicAuth | None = None
    timeout: Duration = 5.0
    # alerts waiting to be posted, per URL; beyond it the oldest are dropped and counted
    queue_size: int = Field(default=1000, ge=1, le=1_000_000)
    # An alert for a trap nothing clears ends by itself after this.
    resolve_timeout: Duration = 3600.0
    # Alerts in effect (paired traps not yet cleared) are posted again this often,
    # as Prometheus does, so that Alertmanager keeps them firing.
    resend_interval: Duration = 60.0
    generator_url: str = ""

    @field_validator("urls")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        for u in v:
            parts = urlsplit(u)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{u!r} is not an http:// or https:// URL")
            if parts.username or parts.password:
                raise ValueError("credentials go in basic_auth, not in the URL")
        return [u.rstrip("/") for u in v]


class TrapsSpec(Strict):
    # 162 is the standard port; below 1024 it needs CAP_NET_BIND_SERVICE (see README).
    listen: str = "0.0.0.0:162"
    accept: list[TrapAccept] = Field(min_length=1)
    table_files: list[str] = Field(default_factory=lambda: list(DEFAULT_TABLE_FILES))
    # This receiver's snmpEngineID: SNMPv3 informs are sent to it (the receiver is
    # the authoritative engine), so senders localize their keys with it. Default:
    # derived from the host name, stable across restarts.
    engine_id: str | None = None
    rate_limit: RateLimitSpec = Field(default_factory=RateLimitSpec)
    max_states: int = Field(default=10_000, ge=1)
    alertmanager: AlertmanagerSpec | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        parse_trap_listen(v)
        return v

    _engine_id = field_validator("engine_id", mode="before")(_check_engine_id)


def parse_trap_listen(text: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` (all IPv4 addresses); port 0 picks one."""
    host, sep, port = text.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError("must be host:port, e.g. 0.0.0.0:162")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - ':port' means all, as for http.listen
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError("the host must be an IP address (0.0.0.0, ::, 192.0.2.1)") from None
    return host, int(port)


# --------------------------------------------------------------------------- resolving


@dataclass(frozen=True)
class TrapsConfig:
    """``snmp.traps`` resolved: credentials built, table loaded, targets by address."""

    spec: TrapsSpec
    credentials: Credentials
    table: TrapTable
    # sender address -> (target name, the target's static labels)
    targets: Mapping[str, tuple[str, Labels]]
    # targets given by host name, (name, host, labels): the receiver looks up their
    # addresses itself (at start, on reload and every few minutes), off this path
    named_targets: tuple[tuple[str, str, Labels], ...] = ()


def build_traps(
    spec: TrapsSpec,
    *,
    auths: Mapping[str, Any],
    auths_unknown: bool,
    bad_auths: Iterable[str] = (),
    targets: Iterable[tuple[str, str, Labels]] = (),
    base_dir: Path,
    shown: str,
    read_yaml: Callable[[Path, str], dict[Any, Any]],
    problems: list[ConfigProblem],
) -> TrapsConfig:
    """Check ``snmp.traps`` against the auths, load the trap table files.

    ``auths`` are the resolved ``snmp.auths`` (``commandcentre.config.Auth``);
    ``targets`` are ``(name, host, labels)``; problems are appended, not raised.
    """
    communities: list[Community] = []
    users: list[V3User] = []
    seen_users: dict[str, int] = {}
    for i, acc in enumerate(spec.accept):
        key = f"snmp.traps.accept[{i}]"
        auth = auths.get(acc.auth)
        if auth is None:
            if not auths_unknown and acc.auth not in set(bad_auths):
                known = ", ".join(sorted(n for n in auths if not n.startswith("module:")))
                problems.append(
                    ConfigProblem(
                        shown, f"{key}.auth", f"auth does not exist; known: {known}", repr(acc.auth)
                    )
                )
            continue
        if auth.version in (1, 2):
            if acc.engine_id is not None:
                problems.append(
                    ConfigProblem(shown, f"{key}.engine_id", "only SNMPv3 auths have an engine ID")
                )
            community = auth.community.reveal().encode()
            clash = next((c for c in communities if c.community == community), None)
            if clash is not None and clash.auth != acc.auth:
                problems.append(
                    ConfigProblem(
                        shown,
                        f"{key}.auth",
                        f"has the same community as auth {clash.auth!r}: a trap could not "
                        "tell them apart",
                    )
                )
            elif clash is None:
                communities.append(Community(acc.auth, community))
            continue
        # The codec's user table is by name: one entry per SNMPv3 user name.
        user_key = auth.username
        first = seen_users.get(user_key)
        if first is not None:
            prev = spec.accept[first]
            if prev.auth != acc.auth or prev.engine_id_bytes != acc.engine_id_bytes:
                problems.append(
                    ConfigProblem(
                        shown,
                        f"{key}.auth",
                        f"SNMPv3 user {auth.username!r} is already accepted (accept[{first}]) "
                        "with other credentials or engine ID: one entry per user name",
                    )
                )
            continue
        seen_users[user_key] = i
        level = auth.security_level
        users.append(
            V3User(
                auth=acc.auth,
                username=auth.username,
                auth_protocol=auth.auth_protocol if level != "noAuthNoPriv" else None,
                auth_password=auth.password.reveal().encode() if auth.password else b"",
                priv_protocol=auth.priv_protocol if level == "authPriv" else None,
                priv_password=auth.priv_password.reveal().encode() if auth.priv_password else b"",
                engine_id=acc.engine_id_bytes,
            )
        )
    table = _load_table(spec, base_dir, shown, read_yaml, problems)
    by_address: dict[str, tuple[str, Labels]] = {}
    named: list[tuple[str, str, Labels]] = []
    for name, host, labels in targets:
        try:
            address = str(ipaddress.ip_address(host))
        except ValueError:
            named.append((name, host, labels))  # looked up by the receiver
            continue
        by_address.setdefault(address, (name, labels))
    engine = (
        bytes.fromhex(spec.engine_id.replace(":", "").removeprefix("0x"))
        if spec.engine_id
        else default_engine_id()
    )
    return TrapsConfig(
        spec=spec,
        credentials=Credentials(tuple(communities), tuple(users), engine),
        table=table,
        targets=by_address,
        named_targets=tuple(named),
    )


def default_engine_id() -> bytes:
    """An enterprise-format engine ID (RFC 3411; net-snmp's enterprise number
    8072, format 5 "octets") with a hash of the host name: stable across
    restarts, different per host, without revealing the name."""
    digest = hashlib.sha256(socket.gethostname().encode()).digest()[:8]
    return bytes.fromhex("80001f8805") + digest


def _load_table(
    spec: TrapsSpec,
    base_dir: Path,
    shown: str,
    read_yaml: Callable[[Path, str], dict[Any, Any]],
    problems: list[ConfigProblem],
) -> TrapTable:
    entries = []
    explicit = "table_files" in spec.model_fields_set
    for i, files in expand_table_files(spec.table_files, base_dir):
        if not files and explicit:
            problems.append(
                ConfigProblem(
                    shown,
                    f"snmp.traps.table_files[{i}]",
                    "names no file",
                    repr(spec.table_files[i]),
                )
            )
        for path in files:
            try:
                raw = read_yaml(path, str(path))
            except ConfigError as e:
                problems.extend(e.problems)
                continue
            entries.extend(parse_trap_file(raw, str(path), problems))
    return build_table(entries, problems)
