"""Building blocks shared by every part of the config: problems and errors,
secrets, durations, label names and the strict base model.

They live apart from ``commandcentre.config`` so that protocol sections
(``commandcentre.mqtt.config``) can use them and be embedded in the top-level
config without an import cycle.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer

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


def _read_credential(name: str, what: str) -> str:
    """A systemd credential by name: ``$CREDENTIALS_DIRECTORY/<name>``, the private
    copy systemd makes of each ``LoadCredential=NAME:...`` for the service."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(
            f"{what}_credential must be a credential name, as in LoadCredential=NAME:..., "
            "not a path"
        )
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise ValueError(
            f"{what}_credential {name!r} needs $CREDENTIALS_DIRECTORY, which systemd sets "
            "for a service with LoadCredential=; it is not set"
        )
    return _read_secret_file(str(Path(directory) / name), Path(directory), what + " credential")


def resolve_secret(data: dict[str, object], key: str, base_dir: Path) -> None:
    """Turn ``key`` (inline, ``${ENV}`` expanded), ``key_file`` (a path) or
    ``key_credential`` (a systemd credential name) into ``data[key]``, in place.
    At most one of the three may be given."""
    forms = [k for k in (key, key + "_file", key + "_credential") if data.get(k) is not None]
    if len(forms) == 2:  # the usual mistake gets the usual message
        raise ValueError(f"give {forms[0]} or {forms[1]}, not both")
    if len(forms) > 2:
        raise ValueError(f"give only one of {', '.join(forms)}")
    if isinstance(data.get(key), str):
        data[key] = Secret(_expand_env(str(data[key]), key))
    elif isinstance(data.get(key + "_file"), str):
        data[key] = Secret(_read_secret_file(str(data[key + "_file"]), base_dir, key))
    elif isinstance(data.get(key + "_credential"), str):
        data[key] = Secret(_read_credential(str(data[key + "_credential"]), key))


# --------------------------------------------------------------------------- durations

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)")
_PLAIN_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION_HELP = "must be a duration like 30s, 5m, 1h30m or 500ms"


def parse_duration(value: object) -> float:
    """``30s``, ``5m``, ``1h30m``, ``2.5s``, ``500ms`` or a plain number of seconds -> seconds.

    Units ``ms s m h d w``, ASCII digits only, each part may have a fraction (as Go's
    ``time.ParseDuration``, which snmp_exporter uses for module timeouts). Raises
    ``ValueError`` (never anything else) for anything that is not a finite positive duration.
    """
    # ValueError, not TypeError, for wrong types too: pydantic only turns ValueError into
    # a validation problem, and callers need one exception type.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(_DURATION_HELP)  # noqa: TRY004
    if isinstance(value, str):
        seconds = _parse_duration_text(value.strip())
    else:
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError("is too large for a duration") from None
    if not math.isfinite(seconds):
        raise ValueError("is too large for a duration")
    if seconds <= 0:
        raise ValueError("must be a positive duration")
    return seconds


def _parse_duration_text(text: str) -> float:
    if _PLAIN_NUMBER.fullmatch(text):
        return float(text)
    pos = 0
    seconds = 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        seconds += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise ValueError(_DURATION_HELP)
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


# --------------------------------------------------------------------------- base model


class Strict(BaseModel):
    """Unknown keys are errors; models are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _check_labels(v: dict[str, str]) -> dict[str, str]:
    wrong = []
    for name in v:
        if not _LABEL_RE.match(name) or name.startswith("__"):
            wrong.append(f"label name {name!r} is not a valid Prometheus label name")
        elif name in RESERVED_LABELS:
            wrong.append(f"label name {name!r} is reserved: commandcentre sets it")
    if wrong:
        raise ValueError("; ".join(wrong))
    return v


RESERVED_LABELS = frozenset({"target", "module"})
