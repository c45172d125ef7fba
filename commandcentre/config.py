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

import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

# --------------------------------------------------------------------------- errors


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a config: where, what, and what was given."""

    file: str
    path: str
    message: str
    given: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}" if self.path else self.file
        tail = f" (given: {self.given})" if self.given is not None else ""
        return f"{where}: {self.message}{tail}"


class ConfigError(Exception):
    """A config could not be loaded. ``problems`` lists every problem found."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# --------------------------------------------------------------------------- secrets

SECRET_KEYS = frozenset({"community", "password", "priv_password"})
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Secret:
    """A credential. Prints as ``<secret>`` everywhere; ``reveal()`` is the only way in."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _to_secret(value: object) -> Secret:
    if isinstance(value, Secret):
        return value
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("must be a string")  # noqa: TRY004 - pydantic wants ValueError
    return Secret(str(value))


SecretStr = Annotated[
    Secret, BeforeValidator(_to_secret), PlainSerializer(lambda s: "<secret>", return_type=str)
]


def _expand_env(text: str, what: str) -> str:
    """Replace ``${VAR}`` with the environment's value; a missing variable is an error."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in os.environ:
            raise ValueError(f"{what} refers to environment variable {name}, which is not set")
        return os.environ[name]

    return _ENV_REF.sub(sub, text)


def _read_secret_file(path_text: str, base_dir: Path, what: str) -> str:
    path = Path(_expand_env(path_text, what + " file path"))
    if not path.is_absolute():
        path = base_dir / path
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as e:
        raise ValueError(f"cannot read {what} file {path}: {e.strerror}") from None


# --------------------------------------------------------------------------- durations

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: object) -> float:
    """``30s``, ``5m``, ``1h30m``, ``500ms`` or a plain number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("must be a duration like 30s or 5m")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        pos = 0
        seconds = 0.0
        for m in _DURATION_PART.finditer(text):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
            pos = m.end()
        if pos != len(text) or not text:
            try:
                seconds = float(text)
            except ValueError:
                raise ValueError("must be a duration like 30s, 5m, 1h30m or 500ms") from None
    else:
        raise ValueError("must be a duration like 30s or 5m")
    if seconds <= 0:
        raise ValueError("must be a positive duration")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


# --------------------------------------------------------------------------- base model


class Strict(BaseModel):
    """Unknown keys are errors; models are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


# --------------------------------------------------------------------------- SNMP auth

SecurityLevel = Literal["noAuthNoPriv", "authNoPriv", "authPriv"]
AuthProtocol = Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"]
PrivProtocol = Literal["DES", "AES", "AES192", "AES256", "AES192C", "AES256C"]


class Auth(Strict):
    """Named SNMP credentials, as snmp_exporter's ``auths:`` entries.

    Secrets come inline (``${ENV}`` expanded) or from ``*_file`` (path relative to
    the config file, ``${CREDENTIALS_DIRECTORY}`` and other variables expanded).
    """

    version: Literal[1, 2, 3] = 2
    community: SecretStr | None = None
    community_file: str | None = None
    security_level: SecurityLevel = "noAuthNoPriv"
    username: str = ""
    password: SecretStr | None = None
    password_file: str | None = None
    auth_protocol: AuthProtocol = "MD5"
    priv_protocol: PrivProtocol = "DES"
    priv_password: SecretStr | None = None
    priv_password_file: str | None = None
    context_name: str = ""

    @model_validator(mode="before")
    @classmethod
    def _resolve_secrets(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        base_dir = Path((info.context or {}).get("base_dir", "."))
        data = dict(data)
        for key in SECRET_KEYS:
            file_key = key + "_file"
            if data.get(key) is not None and data.get(file_key) is not None:
                raise ValueError(f"give {key} or {file_key}, not both")
            if isinstance(data.get(key), str):
                data[key] = Secret(_expand_env(data[key], key))
            elif isinstance(data.get(file_key), str):
                data[key] = Secret(_read_secret_file(data[file_key], base_dir, key))
        return data

    @model_validator(mode="after")
    def _check_complete(self) -> Auth:
        if self.version in (1, 2):
            if self.community is None:
                # snmp_exporter's default community; check-config warns about it.
                object.__setattr__(self, "community", Secret("public"))
            return self
        if not self.username:
            raise ValueError("SNMPv3 needs a username")
        if self.security_level != "noAuthNoPriv" and self.password is None:
            raise ValueError(
                f"security_level {self.security_level} needs password (or password_file)"
            )
        if self.security_level == "authPriv" and self.priv_password is None:
            raise ValueError("security_level authPriv needs priv_password (or priv_password_file)")
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
    labels: list[str]
    labelname: str
    oid: OidStr
    type: LookupType
    drop_source_indexes: bool = False


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
        if isinstance(data, dict) and data.get("version") is not None:
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


def parse_endpoint(text: str, default_port: int = 161) -> Endpoint:
    """``[udp|tcp://]host[:port]``; IPv6 literals in brackets (``[2001:db8::1]:161``)."""
    m = _ADDRESS_RE.match(text.strip())
    if not m or not m.group("rest"):
        raise ValueError("must be [udp|tcp://]host[:port]")
    transport: Literal["udp", "tcp"] = (
        "tcp" if (m.group("transport") or "").startswith("tcp") else "udp"
    )
    rest = m.group("rest")
    port = default_port
    if rest.startswith("["):
        host, sep, tail = rest[1:].partition("]")
        if not sep:
            raise ValueError("IPv6 address needs a closing ]")
        if tail:
            if not tail.startswith(":"):
                raise ValueError("must be [udp|tcp://]host[:port]")
            port = _parse_port(tail[1:])
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
        port = _parse_port(port_text)
    elif rest.count(":") > 1:
        ipaddress.IPv6Address(rest)  # a bare IPv6 literal, no port
        host = rest
    else:
        host = rest
    if not host or any(c.isspace() or c in "/?#@" for c in host):
        raise ValueError("host name is empty or has characters a host name cannot have")
    return Endpoint(transport, host, port)


def _parse_port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError("port must be a number from 1 to 65535")
    return int(text)


_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _check_labels(v: dict[str, str]) -> dict[str, str]:
    for name in v:
        if not _LABEL_RE.match(name) or name.startswith("__"):
            raise ValueError(f"label name {name!r} is not a valid Prometheus label name")
        if name in RESERVED_LABELS:
            raise ValueError(f"label name {name!r} is reserved: commandcentre sets it")
    return v


RESERVED_LABELS = frozenset({"target", "module"})


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
    """``host:port`` or ``:port`` (all addresses) for the HTTP server."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError("must be host:port, e.g. 0.0.0.0:8116")
    host = host.strip("[]")
    return host or "0.0.0.0", _parse_port(port)  # noqa: S104 - ':port' means all, as exporters do


class LogConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class SnmpSpec(Strict):
    max_in_flight: int = Field(default=64, ge=1, le=4096)
    # /snmp?target=<address> for an address no target names: off, so the daemon
    # is no open SNMP proxy unless the operator says so.
    allow_unconfigured_targets: bool = False
    auths: dict[str, Auth] = Field(default_factory=dict)
    module_files: list[str] = Field(default_factory=list)
    modules: dict[str, Module] = Field(default_factory=dict)
    defaults: TargetDefaults = Field(default_factory=TargetDefaults)
    targets: list[TargetSpec] = Field(default_factory=list)


class ConfigSpec(Strict):
    http: HttpConfig = Field(default_factory=HttpConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    snmp: SnmpSpec = Field(default_factory=SnmpSpec)


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


@dataclass(frozen=True)
class Config:
    """A loaded, validated config. ``source`` is the file it came from."""

    source: str
    http: HttpConfig
    log: LogConfig
    snmp: SnmpConfig

    def target(self, name: str) -> Target | None:
        return next((t for t in self.snmp.targets if t.name == name), None)


# --------------------------------------------------------------------------- loading


def _format_loc(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _given(loc: tuple[int | str, ...], value: object) -> str | None:
    if any(str(p) in SECRET_KEYS for p in loc):
        return "<secret>"
    if isinstance(value, dict | list):
        return None
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _problems_from(
    e: ValidationError, file: str, prefix: tuple[int | str, ...]
) -> list[ConfigProblem]:
    problems = []
    for err in e.errors(include_url=False):
        # pydantic puts the union/validator branch name in loc for some errors; drop those
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        elif msg.startswith("Assertion failed, "):
            msg = msg[len("Assertion failed, ") :]
        given = (
            None if err["type"] in ("missing", "extra_forbidden") else _given(loc, err.get("input"))
        )
        problems.append(ConfigProblem(file, _format_loc(prefix + loc), msg, given))
    return problems


def _read_yaml(path: Path, shown: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([ConfigProblem(shown, "", f"cannot read file: {e.strerror}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError([ConfigProblem(shown, where, f"invalid YAML: {problem}")]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem(shown, "", "must be a YAML mapping at the top level")])
    return data


def load_config(path: str | os.PathLike[str]) -> Config:
    """Load and validate a config file and the module files it names.

    Raises ``ConfigError`` listing every problem found.
    """
    path = Path(path)
    shown = str(path)
    raw = _read_yaml(path, shown)
    base_dir = path.parent.resolve()
    try:
        spec = ConfigSpec.model_validate(raw, context={"base_dir": str(base_dir)})
    except ValidationError as e:
        raise ConfigError(_problems_from(e, shown, ())) from None
    return build_config(spec, shown, base_dir)


def build_config(spec: ConfigSpec, shown: str, base_dir: Path) -> Config:
    problems: list[ConfigProblem] = []
    auths: dict[str, Auth] = {DEFAULT_AUTH_NAME: Auth(version=2, community=Secret("public"))}
    modules: dict[str, Module] = {}
    sources: dict[str, str] = {}

    for i, mf in enumerate(spec.snmp.module_files):
        mpath = Path(mf)
        if not mpath.is_absolute():
            mpath = base_dir / mpath
        key = f"snmp.module_files[{i}]"
        if not mpath.is_file():
            problems.append(ConfigProblem(shown, key, "module file does not exist", str(mpath)))
            continue
        try:
            raw = _read_yaml(mpath, str(mpath))
            parsed = ModuleFile.model_validate(raw, context={"base_dir": str(mpath.parent)})
        except ConfigError as e:
            problems.extend(e.problems)
            continue
        except ValidationError as e:
            problems.extend(_problems_from(e, str(mpath), ()))
            continue
        for name, mod in parsed.modules.items():
            if name in sources:
                problems.append(
                    ConfigProblem(
                        str(mpath), f"modules.{name}", f"module already defined in {sources[name]}"
                    )
                )
                continue
            modules[name] = mod
            sources[name] = str(mpath)
        auths.update(parsed.auths)

    for name, mod in spec.snmp.modules.items():
        if name in sources:
            problems.append(
                ConfigProblem(
                    shown, f"snmp.modules.{name}", f"module already defined in {sources[name]}"
                )
            )
            continue
        modules[name] = mod
        sources[name] = shown
    auths.update(spec.snmp.auths)

    for name, mod in modules.items():
        problems.extend(_check_module(mod, sources[name], name, sources[name] == shown))

    targets: list[Target] = []
    seen_names: dict[str, int] = {}
    d = spec.snmp.defaults
    for i, t in enumerate(spec.snmp.targets):
        key = f"snmp.targets[{i}]"
        if t.name in seen_names:
            problems.append(
                ConfigProblem(
                    shown,
                    f"{key}.name",
                    f"duplicate target name (also snmp.targets[{seen_names[t.name]}])",
                    repr(t.name),
                )
            )
            continue
        seen_names[t.name] = i
        mod_names = t.modules if t.modules is not None else d.modules
        mod_key = f"{key}.modules" if t.modules is not None else "snmp.defaults.modules"
        if not mod_names:
            problems.append(
                ConfigProblem(
                    shown,
                    f"{key}.modules",
                    "no modules: name at least one (here or in snmp.defaults.modules)",
                )
            )
        for j, m in enumerate(mod_names):
            if m not in modules:
                problems.append(
                    ConfigProblem(
                        shown,
                        f"{mod_key}[{j}]",
                        f"module does not exist; known: {_known(modules)}",
                        repr(m),
                    )
                )
        auth_name = t.auth or d.auth
        if auth_name is None:
            legacy = [m for m in mod_names if m in modules and modules[m].legacy_auth is not None]
            if legacy:
                auth_name = f"module:{legacy[0]}"
                legacy_auth = modules[legacy[0]].legacy_auth
                assert legacy_auth is not None
                auths[auth_name] = legacy_auth
            else:
                auth_name = DEFAULT_AUTH_NAME
        elif auth_name not in auths:
            auth_key = f"{key}.auth" if t.auth else "snmp.defaults.auth"
            problems.append(
                ConfigProblem(
                    shown, auth_key, f"auth does not exist; known: {_known(auths)}", repr(auth_name)
                )
            )
        labels = {**d.labels, **t.labels}
        targets.append(
            Target(
                name=t.name,
                endpoint=parse_endpoint(t.address),
                auth_name=auth_name,
                modules=tuple(mod_names),
                interval=t.interval or d.interval,
                timeout=t.timeout if t.timeout is not None else d.timeout,
                retries=t.retries if t.retries is not None else d.retries,
                labels=tuple(sorted(labels.items())),
                stale_after_failures=t.stale_after_failures or d.stale_after_failures,
            )
        )

    if problems:
        raise ConfigError(problems)
    return Config(
        source=shown,
        http=spec.http,
        log=spec.log,
        snmp=SnmpConfig(
            max_in_flight=spec.snmp.max_in_flight,
            allow_unconfigured_targets=spec.snmp.allow_unconfigured_targets,
            auths=auths,
            modules=modules,
            targets=tuple(targets),
            module_sources=sources,
        ),
    )


def _check_module(mod: Module, file: str, name: str, inline: bool) -> list[ConfigProblem]:
    """Cross-field checks a single model validator cannot see in isolation."""
    prefix = f"snmp.modules.{name}" if inline else f"modules.{name}"
    problems = []
    if not mod.walk and not mod.get:
        problems.append(ConfigProblem(file, prefix, "module has neither walk nor get OIDs"))
    for i, metric in enumerate(mod.metrics):
        index_labels = {ix.labelname for ix in metric.indexes}
        for j, lookup in enumerate(metric.lookups):
            for label in lookup.labels:
                if label not in index_labels:
                    problems.append(
                        ConfigProblem(
                            file,
                            f"{prefix}.metrics[{i}].lookups[{j}].labels",
                            f"lookup uses label {label!r}, which is not one of this metric's indexes",
                        )
                    )
    return problems


def _known(d: Mapping[str, object]) -> str:
    names = sorted(d)
    return ", ".join(names[:20]) + (", ..." if len(names) > 20 else "") if names else "(none)"
