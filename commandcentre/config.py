"""Configuration: YAML in, validated frozen models out.

Everything is checked here, at load time, so nothing downstream re-checks: a
`Config` that exists is a config the daemon can run. Errors carry the file, the
key path (``snmp.targets[3].auth``), what is wrong and what was given (secrets
masked), and every problem is reported at once rather than one per attempt.

The SNMP module format is snmp_exporter's ``snmp.yml``: a module file written
for snmp_exporter (modern ``auths:`` layout, or the legacy layout with
``version``/``auth`` inside each module) loads unchanged.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

# Re-exported: commandcentre.config stays the one place callers import config names from.
from commandcentre.configbase import RESERVED_LABELS as RESERVED_LABELS
from commandcentre.configbase import SECRET_KEYS as SECRET_KEYS
from commandcentre.configbase import ConfigError as ConfigError
from commandcentre.configbase import ConfigProblem as ConfigProblem
from commandcentre.configbase import Duration as Duration
from commandcentre.configbase import Secret as Secret
from commandcentre.configbase import SecretStr as SecretStr
from commandcentre.configbase import Strict as Strict
from commandcentre.configbase import _check_labels, resolve_secret
from commandcentre.configbase import parse_duration as parse_duration
from commandcentre.mqtt.config import MqttSpec
from commandcentre.mqtt.mapping import compile_subscription
from commandcentre.traps.config import TrapsConfig, TrapsSpec, build_traps

# --------------------------------------------------------------------------- SNMP auth

SecurityLevel = Literal["noAuthNoPriv", "authNoPriv", "authPriv"]
AuthProtocol = Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"]
PrivProtocol = Literal["DES", "AES", "AES192", "AES256", "AES192C", "AES256C"]


class Auth(Strict):
    """Named SNMP credentials, as snmp_exporter's ``auths:`` entries.

    Secrets come inline (``${ENV}`` expanded), from ``*_file`` (path relative to
    the config file, ``${CREDENTIALS_DIRECTORY}`` and other variables expanded) or
    from ``*_credential`` (a systemd credential name, read from
    ``$CREDENTIALS_DIRECTORY``).
    """

    version: Literal[1, 2, 3] = 2
    community: SecretStr | None = None
    community_file: str | None = None
    community_credential: str | None = None
    security_level: SecurityLevel = "noAuthNoPriv"
    username: str = ""
    password: SecretStr | None = None
    password_file: str | None = None
    password_credential: str | None = None
    auth_protocol: AuthProtocol = "MD5"
    priv_protocol: PrivProtocol = "DES"
    priv_password: SecretStr | None = None
    priv_password_file: str | None = None
    priv_password_credential: str | None = None
    context_name: str = ""

    @model_validator(mode="before")
    @classmethod
    def _resolve_secrets(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        base_dir = Path((info.context or {}).get("base_dir", "."))
        data = dict(data)
        for key in sorted(SECRET_KEYS):
            resolve_secret(data, key, base_dir)
        return data

    @model_validator(mode="after")
    def _check_complete(self) -> Auth:
        if self.version in (1, 2):
            if self.community is None:
                # snmp_exporter's default community; check-config warns about it.
                object.__setattr__(self, "community", Secret("public"))
            return self
        missing = []
        if not self.username:
            missing.append("SNMPv3 needs a username")
        if self.security_level != "noAuthNoPriv" and self.password is None:
            missing.append(
                f"security_level {self.security_level} needs password (or password_file)"
            )
        if self.security_level == "authPriv" and self.priv_password is None:
            missing.append("security_level authPriv needs priv_password (or priv_password_file)")
        if missing:
            raise ValueError("; ".join(missing))
        return self


# --------------------------------------------------------------------------- SNMP modules

_OID_RE = re.compile(r"^\.?\d+(\.\d+)*$")


def parse_oid(text: str) -> tuple[int, ...]:
    """Dotted-decimal OID text -> tuple of ints. Symbolic names are not resolved here."""
    if not isinstance(text, str) or not _OID_RE.match(text):
        raise ValueError("must be a numeric OID like 1.3.6.1.2.1.1")
    return tuple(int(p) for p in text.lstrip(".").split("."))


def _oid_validator(value: object) -> str:
    parse_oid(value)  # type: ignore[arg-type]
    return str(value).lstrip(".")


OidStr = Annotated[str, BeforeValidator(_oid_validator)]

MetricType = Literal[
    "gauge",
    "counter",
    "DisplayString",
    "OctetString",
    "PhysAddress48",
    "InetAddress",
    "InetAddressIPv4",
    "InetAddressIPv6",
    "InetAddressMissingSize",
    "IpAddr",
    "DateAndTime",
    "ParseDateAndTime",
    "NTPTimeStamp",
    "EnumAsInfo",
    "EnumAsStateSet",
    "Bits",
    "Float",
    "Double",
]
IndexType = Literal[
    "gauge",
    "counter",
    "Integer32",
    "Integer",
    "PhysAddress48",
    "OctetString",
    "DisplayString",
    "InetAddress",
    "InetAddressIPv4",
    "InetAddressIPv6",
    "InetAddressMissingSize",
    "IpAddr",
    "EnumAsInfo",
    "EnumAsStateSet",
]
LookupType = MetricType


class Index(Strict):
    labelname: str
    type: IndexType
    fixed_size: int = 0
    implied: bool = False
    enum_values: dict[int, str] = Field(default_factory=dict)


class Lookup(Strict):
    """A label looked up from another table, as snmp_exporter's generated ``lookups``.

    ``labels: []`` with no ``oid``/``type`` is snmp_exporter's "drop label ``labelname``"
    (what the generator's ``drop_source_indexes`` emits); then ``oid`` and ``type`` are
    ``""`` (absent, as upstream's Go zero values). With labels, both are required.
    """

    labels: list[str]
    labelname: str
    oid: OidStr = ""
    type: LookupType | Literal[""] = ""
    drop_source_indexes: bool = False

    @property
    def drops_label(self) -> bool:
        """True for the ``labels: []`` form: remove ``labelname`` from the sample."""
        return not self.labels

    @model_validator(mode="after")
    def _oid_and_type_with_labels(self) -> Lookup:
        if self.labels and not (self.oid and self.type):
            raise ValueError("a lookup with labels needs oid and type")
        return self


class RegexExtract(Strict):
    regex: str
    value: str = "$1"

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"regex does not compile: {e}") from None
        return v


class Metric(Strict):
    name: str
    oid: OidStr
    type: MetricType
    help: str = ""
    indexes: list[Index] = Field(default_factory=list)
    lookups: list[Lookup] = Field(default_factory=list)
    regex_extracts: dict[str, list[RegexExtract]] = Field(default_factory=dict)
    date_time_pattern: str = ""
    enum_values: dict[int, str] = Field(default_factory=dict)
    display_hint: str = ""
    scale: float = 0.0
    offset: float = 0.0

    @field_validator("name")
    @classmethod
    def _metric_name(cls, v: str) -> str:
        if not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", v):
            raise ValueError("must be a valid Prometheus metric name")
        return v


class Module(Strict):
    """One snmp_exporter module; ``version``/``auth`` are the legacy (< 0.23) layout."""

    walk: list[OidStr] = Field(default_factory=list)
    get: list[OidStr] = Field(default_factory=list)
    metrics: list[Metric] = Field(default_factory=list)
    max_repetitions: int = Field(default=25, ge=1, le=255)
    retries: int = Field(default=3, ge=0, le=20)
    timeout: Duration = 5.0
    allow_nonincreasing_oids: bool = False
    use_unconnected_udp_socket: bool = False
    # legacy layout (snmp_exporter <= 0.22): credentials inside the module
    version: Literal[1, 2, 3] | None = None
    auth: Auth | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_version_into_auth(cls, data: Any) -> Any:
        # Legacy layout: `version` sits beside `auth`; validate the auth as that version.
        if (
            isinstance(data, dict)
            and type(data.get("version")) is int
            and data["version"] in (1, 2, 3)
        ):
            auth = data.get("auth") or {}
            if isinstance(auth, dict):
                data = {**data, "auth": {**auth, "version": data["version"]}}
        return data

    @property
    def legacy_auth(self) -> Auth | None:
        """The credentials a legacy-layout module carries, if any."""
        return self.auth


# --------------------------------------------------------------------------- targets

_ADDRESS_RE = re.compile(r"^(?:(?P<transport>udp|tcp|udp6|tcp6)://)?(?P<rest>.+)$")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where an agent listens. ``host`` is a name or an address."""

    transport: Literal["udp", "tcp"]
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        prefix = "" if self.transport == "udp" else "tcp://"
        return f"{prefix}{host}:{self.port}"


_HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?")


def parse_endpoint(text: str, default_port: int = 161) -> Endpoint:
    """``[udp|tcp://]host[:port]``; IPv6 literals in brackets (``[2001:db8::1]:161``).

    A bare IPv6 literal (``2001:db8::1``) is an address without port. ``udp6://`` and
    ``tcp6://`` are accepted as ``udp``/``tcp``. Raises ``ValueError`` only.
    """
    m = _ADDRESS_RE.match(text.strip())
    if not m or not m.group("rest"):
        raise ValueError("must be [udp|tcp://]host[:port]")
    if "://" in m.group("rest"):
        raise ValueError("transport must be udp:// or tcp:// (or none, meaning udp)")
    transport: Literal["udp", "tcp"] = (
        "tcp" if (m.group("transport") or "").startswith("tcp") else "udp"
    )
    rest = m.group("rest")
    port = default_port
    if rest.startswith("["):
        host, sep, tail = rest[1:].partition("]")
        if not sep:
            raise ValueError("IPv6 address needs a closing ]")
        _check_ipv6(host)
        if tail:
            if not tail.startswith(":"):
                raise ValueError("must be [udp|tcp://]host[:port]")
            port = _parse_port(tail[1:])
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
        port = _parse_port(port_text)
    elif rest.count(":") > 1:
        _check_ipv6(rest)  # a bare IPv6 literal, no port
        host = rest
    else:
        host = rest
    if ":" not in host:
        _check_host(host)
    return Endpoint(transport, host, port)


def _check_ipv6(text: str) -> None:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        raise ValueError("is not a valid IPv6 address (names go without brackets)") from None


def _check_host(host: str) -> None:
    labels = host.removesuffix(".").split(".")
    if not host or not host.isascii() or not all(_HOST_LABEL.fullmatch(p) for p in labels):
        raise ValueError("host name is empty or has characters a host name cannot have")
    if all(p.isdigit() for p in labels):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError("is not a valid IPv4 address") from None


def _parse_port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise ValueError("port must be a number from 1 to 65535")
    return int(text)


class TargetDefaults(Strict):
    auth: str | None = None
    modules: list[str] = Field(default_factory=list)
    interval: Duration = 30.0
    timeout: Duration | None = None
    retries: int | None = Field(default=None, ge=0, le=20)
    labels: dict[str, str] = Field(default_factory=dict)
    stale_after_failures: int = Field(default=3, ge=1)

    _labels = field_validator("labels")(_check_labels)


class TargetSpec(Strict):
    """A target as written; ``Target`` is the same with defaults applied."""

    name: str
    address: str
    auth: str | None = None
    modules: list[str] | None = None
    interval: Duration | None = None
    timeout: Duration | None = None
    retries: int | None = Field(default=None, ge=0, le=20)
    labels: dict[str, str] = Field(default_factory=dict)
    stale_after_failures: int | None = Field(default=None, ge=1)

    _labels = field_validator("labels")(_check_labels)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v or len(v) > 200 or any(ord(c) < 32 for c in v):
            raise ValueError("must be 1-200 printable characters")
        return v

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        parse_endpoint(v)
        return v


@dataclass(frozen=True, slots=True)
class Target:
    """A configured target, defaults applied and every reference resolved."""

    name: str
    endpoint: Endpoint
    auth_name: str
    modules: tuple[str, ...]
    interval: float
    timeout: float | None  # per-request override of the module's timeout
    retries: int | None  # per-request override of the module's retries
    labels: tuple[tuple[str, str], ...]
    stale_after_failures: int

    @property
    def budget(self) -> float:
        """How long one poll of this target may take: it must end before the next is due."""
        return self.interval * 0.9


# --------------------------------------------------------------------------- top level


class HttpConfig(Strict):
    # 8116: outside the 9100-9999 range the Prometheus wiki allocates to other
    # exporters; 116 echoes snmp_exporter's 9116. See README.
    listen: str = "127.0.0.1:8116"

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        parse_listen(v)
        return v


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port`` or ``:port`` (all addresses) for the HTTP server; port 0 picks a free
    port (the daemon logs the one it got)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError("must be host:port, e.g. 0.0.0.0:8116")
    host = host.strip("[]")
    if port == "0":
        return host or "0.0.0.0", 0  # noqa: S104 - ':port' means all, as exporters do
    return host or "0.0.0.0", _parse_port(port)  # noqa: S104 - ':port' means all, as exporters do


class LogConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class SnmpSpec(Strict):
    max_in_flight: int = Field(default=64, ge=1, le=4096)
    # /snmp?target=<address> for an address no target names: off, so the daemon
    # is no open SNMP proxy unless the operator says so.
    allow_unconfigured_targets: bool = False
    # the SNMP implementation: our own codec (fast) or pysnmp (the fallback);
    # read at start only, a change needs a restart
    client: Literal["fast", "pysnmp"] = "fast"
    auths: dict[str, Auth] = Field(default_factory=dict)
    module_files: list[str] = Field(default_factory=list)
    modules: dict[str, Module] = Field(default_factory=dict)
    defaults: TargetDefaults = Field(default_factory=TargetDefaults)
    targets: list[TargetSpec] = Field(default_factory=list)
    traps: TrapsSpec | None = None  # the trap receiver; see commandcentre.traps.config


class ConfigSpec(Strict):
    http: HttpConfig = Field(default_factory=HttpConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    snmp: SnmpSpec = Field(default_factory=SnmpSpec)
    mqtt: MqttSpec = Field(default_factory=MqttSpec)


class ModuleFile(Strict):
    """A snmp.yml: ``modules:`` and optionally ``auths:`` (snmp_exporter >= 0.23)."""

    auths: dict[str, Auth] = Field(default_factory=dict)
    modules: dict[str, Module] = Field(default_factory=dict)


DEFAULT_AUTH_NAME = "public_v2"


@dataclass(frozen=True)
class SnmpConfig:
    max_in_flight: int
    allow_unconfigured_targets: bool
    auths: Mapping[str, Auth]
    modules: Mapping[str, Module]
    targets: tuple[Target, ...]
    module_sources: Mapping[str, str]  # module name -> file it came from
    traps: TrapsConfig | None = None
    client: Literal["fast", "pysnmp"] = "fast"


@dataclass(frozen=True)
class Config:
    """A loaded, validated config. ``source`` is the file it came from."""

    source: str
    http: HttpConfig
    log: LogConfig
    snmp: SnmpConfig
    mqtt: MqttSpec

    def target(self, name: str) -> Target | None:
        return next((t for t in self.snmp.targets if t.name == name), None)


# --------------------------------------------------------------------------- loading

Loc = tuple[int | str, ...]
_M = TypeVar("_M", bound=BaseModel)


def _clean_loc(loc: Iterable[int | str]) -> Loc:
    # pydantic puts validator/branch names (``function-after[...]``) in loc; drop them
    return tuple(p for p in loc if not (isinstance(p, str) and p.startswith("function-")))


def _format_loc(loc: Iterable[int | str]) -> str:
    """``('snmp', 'targets', 3, 'auth')`` -> ``snmp.targets[3].auth``.

    A part followed by pydantic's ``'[key]'`` marker is a mapping key (``labels.1``),
    not a list index.
    """
    parts = list(loc)
    out = ""
    for i, part in enumerate(parts):
        if part == "[key]":
            continue
        is_key = i + 1 < len(parts) and parts[i + 1] == "[key]"
        if isinstance(part, int) and not is_key:
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _is_secret_loc(loc: Loc) -> bool:
    if any(isinstance(p, str) and p in SECRET_KEYS for p in loc):
        return True
    # a whole auth entry given as a scalar: `auths: {x: s3cr3t}`, a module's `auth: s3cr3t`
    return len(loc) >= 2 and (loc[-2] == "auths" or (loc[-1] == "auth" and "modules" in loc))


def _given(loc: Loc, value: object) -> str | None:
    if isinstance(value, dict | list):
        return None
    if _is_secret_loc(loc):
        return "<secret>"
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _problems_from(e: ValidationError, file: str, prefix: Loc) -> list[ConfigProblem]:
    problems = []
    for err in e.errors(include_url=False):
        loc = _clean_loc(err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "invalid_key":
            loc += ("[key]",)
            msg = "keys must be strings"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        elif msg.startswith("Assertion failed, "):
            msg = msg[len("Assertion failed, ") :]
        given = (
            None
            if err["type"] in ("missing", "extra_forbidden")
            else _given(prefix + loc, err.get("input"))
        )
        problems.append(ConfigProblem(file, _format_loc(prefix + loc), msg, given))
    return problems


def _prune(data: Any, loc: Loc) -> bool:
    """Delete the innermost mapping key on ``loc``'s path that exists.

    List items are never deleted (later messages name items by index); a bad item
    takes its whole list with it. False when nothing on the path can be deleted.
    """
    steps: list[tuple[Any, int | str]] = []
    node = data
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_dict or in_list):
            break
        steps.append((node, part))
        node = node[part]
    for container, key in reversed(steps):
        if isinstance(container, dict):
            del container[key]
            return True
    return False


def _validate(
    model: type[_M],
    data: Any,
    *,
    file: str,
    prefix: Loc,
    context: Mapping[str, str],
    problems: list[ConfigProblem],
    stand_ins: Mapping[str, object] | None = None,
) -> tuple[_M | None, list[Loc]]:
    """Validate, recording every problem; then drop what was wrong and validate the rest.

    The pruned model only serves to find further (cross-reference) problems: whoever
    gets problems here raises ``ConfigError`` in the end, so it is never run. Required
    keys that were pruned (or missing) are filled from ``stand_ins``. Returns the model
    (None if nothing usable remains) and the locations that had problems.
    """
    data = copy.deepcopy(data)
    bad: list[Loc] = []
    for attempt in range(50):
        try:
            return model.model_validate(data, context=dict(context)), bad
        except ValidationError as e:
            locs = [_clean_loc(err["loc"]) for err in e.errors(include_url=False)]
            if attempt == 0:
                problems.extend(_problems_from(e, file, prefix))
                bad = locs
            if not any([_prune(data, loc) for loc in locs]):  # noqa: C419 - prune every loc
                return None, bad
            if isinstance(data, dict):
                for key, value in (stand_ins or {}).items():
                    data.setdefault(key, value)
    return None, bad


class _YamlLoader(yaml.SafeLoader):
    """Safe loading that refuses duplicate mapping keys (PyYAML keeps the last silently)."""


class _FastYamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The same with libyaml's parser where PyYAML has it (module files are big)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[object] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
    return loader.construct_mapping(node)


for _loader in (_YamlLoader, _FastYamlLoader):
    _loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_FastYamlLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError:
        # again in pure Python: the same messages whether or not libyaml is there
        return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader subclass


def _read_yaml(path: Path, shown: str) -> dict[Any, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise ConfigError([ConfigProblem(shown, "", f"cannot read file: {why}")]) from None
    try:
        data = _parse_yaml(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError([ConfigProblem(shown, where, f"invalid YAML: {problem}")]) from None
    except (ValueError, RecursionError) as e:  # e.g. PyYAML's dates: `2024-02-30`
        raise ConfigError([ConfigProblem(shown, "", f"invalid YAML: {e}")]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            [
                ConfigProblem(
                    shown,
                    "",
                    "must be a YAML mapping at the top level",
                    type(data).__name__,
                )
            ]
        )
    return data


@dataclass
class _TargetIn:
    """A target that validated (perhaps after dropping bad keys), with where it was."""

    index: int
    spec: TargetSpec
    bad_keys: frozenset[str] = frozenset()


def _validate_spec(
    raw: dict[Any, Any], shown: str, base_dir: Path, problems: list[ConfigProblem]
) -> tuple[ConfigSpec, list[_TargetIn], list[Loc]]:
    """The config file's schema checks, every target on its own so indices stay right."""
    context = {"base_dir": str(base_dir)}
    raw_targets: list[Any] = []
    snmp = raw.get("snmp")
    if isinstance(snmp, dict) and isinstance(snmp.get("targets"), list):
        raw_targets = snmp["targets"]
        raw = {**raw, "snmp": {**snmp, "targets": []}}
    spec, bad = _validate(
        ConfigSpec, raw, file=shown, prefix=(), context=context, problems=problems
    )
    targets = []
    for i, rt in enumerate(raw_targets):
        t, t_bad = _validate(
            TargetSpec,
            rt,
            file=shown,
            prefix=("snmp", "targets", i),
            context=context,
            problems=problems,
            # keep checking the rest of a target whose name or address is wrong
            stand_ins={"name": f"<target {i}>", "address": "invalid."},
        )
        if t is not None:
            keys = frozenset(loc[0] for loc in t_bad if loc and isinstance(loc[0], str))
            targets.append(_TargetIn(i, t, keys))
    return spec or ConfigSpec(), targets, bad


def load_config(path: str | os.PathLike[str]) -> Config:
    """Load and validate a config file and the module files it names.

    Raises ``ConfigError`` listing every problem found, in the config file and in the
    module files: schema problems and cross-reference problems together.
    """
    path = Path(path)
    shown = str(path)
    raw = _read_yaml(path, shown)
    base_dir = path.parent.resolve()
    builder = _Builder(shown, base_dir)
    spec, targets, bad = _validate_spec(raw, shown, base_dir, builder.problems)
    builder.note_bad(bad, ("snmp",))
    return builder.build(spec, targets)


def build_config(spec: ConfigSpec, shown: str, base_dir: Path) -> Config:
    """Resolve an already validated ``ConfigSpec``: module files, references, defaults.

    ``shown`` is the config file's name for messages; relative ``module_files`` are
    relative to ``base_dir``. Raises ``ConfigError`` listing every problem.
    """
    return _Builder(shown, base_dir).build(
        spec, [_TargetIn(i, t) for i, t in enumerate(spec.snmp.targets)]
    )


def _builtin_auths() -> dict[str, Auth]:
    return {DEFAULT_AUTH_NAME: Auth(version=2, community=Secret("public"))}


@dataclass
class _Builder:
    """Collects modules and auths from every source, then resolves targets against them."""

    shown: str
    base_dir: Path
    problems: list[ConfigProblem] = field(default_factory=list)
    auths: dict[str, Auth] = field(default_factory=_builtin_auths)
    modules: dict[str, Module] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # module -> file
    module_paths: dict[str, str] = field(default_factory=dict)  # module -> key path
    # defined, but with problems already reported: they exist, no further checks
    bad_modules: set[str] = field(default_factory=set)
    bad_auths: set[str] = field(default_factory=set)
    # a source could not be read at all: unknown names may be defined there
    modules_unknown: bool = False
    auths_unknown: bool = False
    default_modules_bad: bool = False

    def note_bad(self, locs: Iterable[Loc], prefix: Loc) -> None:
        """Remember which definitions had schema problems (locs relative to a file)."""
        for loc in locs:
            if loc[: len(prefix)] != prefix:
                continue
            rel = loc[len(prefix) :]
            head = rel[0] if rel else None
            name = rel[1] if len(rel) > 1 and isinstance(rel[1], str) else None
            if head is None or head == "module_files":
                self.modules_unknown = self.auths_unknown = True
            elif head == "modules":
                if name is None or name == "[key]":
                    self.modules_unknown = True
                else:
                    self.bad_modules.add(name)
            elif head == "auths":
                if name is None or name == "[key]":
                    self.auths_unknown = True
                else:
                    self.bad_auths.add(name)
            elif rel[:2] == ("defaults", "modules") or rel == ("defaults",):
                self.default_modules_bad = True

    def build(self, spec: ConfigSpec, targets: list[_TargetIn]) -> Config:
        for i, mf in enumerate(spec.snmp.module_files):
            self._load_module_file(i, mf)
        for name, mod in spec.snmp.modules.items():
            self._add_module(name, mod, self.shown, f"snmp.modules.{name}")
        self.auths.update(spec.snmp.auths)
        for name, mod in self.modules.items():
            if name not in self.bad_modules:
                self.problems.extend(
                    _check_module(mod, self.sources[name], name, self.sources[name] == self.shown)
                )
        self._check_defaults(spec.snmp.defaults)
        self._check_mqtt(spec.mqtt)
        built = self._targets(targets, spec.snmp.defaults)
        traps = None
        if spec.snmp.traps is not None:
            traps = build_traps(
                spec.snmp.traps,
                auths=self.auths,
                auths_unknown=self.auths_unknown,
                bad_auths=self.bad_auths,
                targets=[(t.name, t.endpoint.host, t.labels) for t in built],
                base_dir=self.base_dir,
                shown=self.shown,
                read_yaml=_read_yaml,
                problems=self.problems,
            )
        if self.problems:
            raise ConfigError(self.problems)
        return Config(
            source=self.shown,
            http=spec.http,
            log=spec.log,
            snmp=SnmpConfig(
                max_in_flight=spec.snmp.max_in_flight,
                allow_unconfigured_targets=spec.snmp.allow_unconfigured_targets,
                auths=self.auths,
                modules=self.modules,
                targets=tuple(built),
                module_sources=self.sources,
                traps=traps,
                client=spec.snmp.client,
            ),
            mqtt=spec.mqtt,
        )

    def _check_mqtt(self, mqtt: MqttSpec) -> None:
        brokers: dict[str, int] = {}
        for i, b in enumerate(mqtt.brokers):
            self._duplicate(brokers, b.name, "mqtt.brokers", i, "broker")
        subs: dict[str, int] = {}
        for i, sub in enumerate(mqtt.subscriptions):
            self._duplicate(subs, sub.name, "mqtt.subscriptions", i, "subscription")
            if sub.broker is None and len(mqtt.brokers) != 1:
                self._problem(
                    f"mqtt.subscriptions[{i}].broker",
                    f"name a broker: there are {len(mqtt.brokers)} (a subscription may leave "
                    "it out only when there is exactly one)",
                )
            elif sub.broker is not None and sub.broker not in brokers:
                self._problem(
                    f"mqtt.subscriptions[{i}].broker",
                    f"broker does not exist; known: {_known(brokers)}",
                    repr(sub.broker),
                )
            # Templates, shared groups and label clashes are checked by compiling the
            # subscription, as the daemon will: check-config must catch what start would.
            try:
                compile_subscription(sub)
            except ValueError as e:
                self._problem(f"mqtt.subscriptions[{i}]", str(e))

    def _duplicate(self, seen: dict[str, int], name: str, section: str, i: int, what: str) -> bool:
        """Report ``name`` if an earlier entry of ``section`` has it; else remember it."""
        if name in seen:
            self._problem(
                f"{section}[{i}].name",
                f"duplicate {what} name (also {section}[{seen[name]}])",
                repr(name),
            )
            return True
        seen[name] = i
        return False

    def _problem(self, path: str, message: str, given: str | None = None) -> None:
        self.problems.append(ConfigProblem(self.shown, path, message, given))

    def _load_module_file(self, i: int, mf: str) -> None:
        mpath = Path(mf)
        if not mpath.is_absolute():
            mpath = self.base_dir / mpath
        if not mpath.is_file():
            self._problem(f"snmp.module_files[{i}]", "module file does not exist", str(mpath))
            self.modules_unknown = self.auths_unknown = True
            return
        file = str(mpath)
        try:
            raw = _read_yaml(mpath, file)
        except ConfigError as e:
            self.problems.extend(e.problems)
            self.modules_unknown = self.auths_unknown = True
            return
        context = {"base_dir": str(mpath.parent)}
        parsed, bad = _validate(
            ModuleFile, raw, file=file, prefix=(), context=context, problems=self.problems
        )
        self.note_bad(bad, ())
        if parsed is None:
            self.modules_unknown = self.auths_unknown = True
            return
        for name, mod in parsed.modules.items():
            self._add_module(name, mod, file, f"modules.{name}")
        self.auths.update(parsed.auths)

    def _add_module(self, name: str, mod: Module, file: str, path: str) -> None:
        if name in self.sources:
            self.problems.append(
                ConfigProblem(file, path, f"module already defined in {self.sources[name]}")
            )
            return
        self.modules[name] = mod
        self.sources[name] = file
        self.module_paths[name] = path

    def _known_module(self, name: str) -> bool:
        return name in self.modules or name in self.bad_modules or self.modules_unknown

    def _check_module_refs(self, names: list[str], path: str) -> None:
        for j, m in enumerate(names):
            if not self._known_module(m):
                self._problem(
                    f"{path}[{j}]", f"module does not exist; known: {_known(self.modules)}", repr(m)
                )
            elif m in names[:j]:
                self._problem(f"{path}[{j}]", "module listed twice", repr(m))

    def _check_auth_ref(self, name: str, path: str) -> None:
        if name in self.auths or name in self.bad_auths or self.auths_unknown:
            return
        known = {n: a for n, a in self.auths.items() if not n.startswith("module:")}
        self._problem(path, f"auth does not exist; known: {_known(known)}", repr(name))

    def _check_defaults(self, d: TargetDefaults) -> None:
        self._check_module_refs(d.modules, "snmp.defaults.modules")
        if d.auth is not None:
            self._check_auth_ref(d.auth, "snmp.defaults.auth")

    def _targets(self, targets: list[_TargetIn], d: TargetDefaults) -> list[Target]:
        built: list[Target] = []
        seen: dict[str, int] = {}
        for t in targets:
            target = self._target(t, d)
            if not self._duplicate(seen, t.spec.name, "snmp.targets", t.index, "target"):
                built.append(target)
        return built

    def _target(self, t: _TargetIn, d: TargetDefaults) -> Target:
        key = f"snmp.targets[{t.index}]"
        spec = t.spec
        mod_names = spec.modules if spec.modules is not None else d.modules
        if spec.modules is not None:
            self._check_module_refs(spec.modules, f"{key}.modules")
        no_modules_is_news = "modules" not in t.bad_keys and not (
            spec.modules is None and self.default_modules_bad
        )
        if not mod_names and no_modules_is_news:
            self._problem(
                f"{key}.modules", "no modules: name at least one (here or in snmp.defaults.modules)"
            )
        labels = {**d.labels, **spec.labels}
        endpoint = parse_endpoint(spec.address)
        if endpoint.transport == "tcp" and "address" not in t.bad_keys:
            self._problem(
                f"{key}.address",
                "tcp:// is not supported yet: the SNMP backend (pysnmp 7) has no TCP client; "
                "use UDP",
                repr(spec.address),
            )
        return Target(
            name=spec.name,
            endpoint=endpoint,
            auth_name=self._auth_for(key, spec, d, mod_names),
            modules=tuple(mod_names),
            interval=spec.interval or d.interval,
            timeout=spec.timeout if spec.timeout is not None else d.timeout,
            retries=spec.retries if spec.retries is not None else d.retries,
            labels=tuple(sorted(labels.items())),
            stale_after_failures=spec.stale_after_failures or d.stale_after_failures,
        )

    def _auth_for(self, key: str, t: TargetSpec, d: TargetDefaults, mod_names: list[str]) -> str:
        """The target's auth: its own, the default, its legacy modules' or public_v2."""
        if t.auth is not None:
            self._check_auth_ref(t.auth, f"{key}.auth")
            return t.auth
        if d.auth is not None:
            return d.auth  # checked once, in _check_defaults
        legacy = [
            (m, a)
            for m in mod_names
            if m in self.modules and (a := self.modules[m].legacy_auth) is not None
        ]
        if not legacy:
            return DEFAULT_AUTH_NAME
        first, auth = legacy[0]
        differ = [m for m, a in legacy[1:] if a != auth]
        if differ:
            self._problem(
                f"{key}.auth",
                f"modules {first} and {differ[0]} carry different credentials (legacy layout):"
                " name an auth for this target",
            )
        name = f"module:{first}"
        self.auths[name] = auth
        return name


def _check_module(mod: Module, file: str, name: str, inline: bool) -> list[ConfigProblem]:
    """Cross-field checks a single model validator cannot see in isolation."""
    prefix = f"snmp.modules.{name}" if inline else f"modules.{name}"
    problems = []
    if not mod.walk and not mod.get:
        problems.append(ConfigProblem(file, prefix, "module has neither walk nor get OIDs"))
    for i, metric in enumerate(mod.metrics):
        # A lookup may use the metric's index labels and, as snmp_exporter allows
        # (chained lookups), labels that earlier lookups of the same metric produce.
        available = {ix.labelname for ix in metric.indexes}
        for j, lookup in enumerate(metric.lookups):
            problems.extend(
                ConfigProblem(
                    file,
                    f"{prefix}.metrics[{i}].lookups[{j}].labels",
                    f"lookup uses label {label!r}, which is neither one of this metric's "
                    "indexes nor produced by an earlier lookup",
                )
                for label in lookup.labels
                if label not in available
            )
            available.add(lookup.labelname)
    return problems


def _known(d: Mapping[str, object]) -> str:
    names = sorted(d)
    return ", ".join(names[:20]) + (", ..." if len(names) > 20 else "") if names else "(none)"
