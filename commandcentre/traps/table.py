"""The trap table: which notification OID means what.

Table files (``config/snmp/traps/*.yml``, and any the operator adds) are lists
of entries::

    traps:
      - name: linkDown                 # becomes the alert's alertname
        oid: 1.3.6.1.6.3.1.1.5.3       # snmpTrapOID.0 (SNMPv1: RFC 3584 form)
        mib: IF-MIB                    # documentation only
        severity: warning              # critical | warning | info | none (no alert)
        summary: "Interface {ifDescr} (ifIndex {ifIndex}) is down"
        subject: {ifIndex: 1.3.6.1.2.1.2.2.1.1}   # varbinds naming the thing
        details: {ifDescr: 1.3.6.1.2.1.2.2.1.2}   # varbinds shown, not matched
      - name: linkUp
        oid: 1.3.6.1.6.3.1.1.5.4
        clears: [linkDown]             # resolves linkDown for the same subject

A varbind matches a ``subject``/``details`` OID when its OID is that OID or
lies below it (the instance suffix: ``ifIndex.3``). Entries are checked at load
(unique names and OIDs, ``clears`` naming existing entries, summary
placeholders naming subject or detail fields) with file and key-path problems.
Later files may not redefine an entry: a site's own file adds to the shipped ones.
"""

from __future__ import annotations

import glob
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from commandcentre.configbase import ConfigProblem, Duration, Strict
from commandcentre.traps.types import Oid, Severity

_OID_RE = re.compile(r"^\.?\d+(\.\d+)+$")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FIXED_FIELDS = frozenset({"source", "target", "trap", "oid"})


def _oid(text: object) -> Oid:
    if not isinstance(text, str) or not _OID_RE.match(text):
        raise ValueError("must be a numeric OID like 1.3.6.1.6.3.1.1.5.3")
    return tuple(int(p) for p in text.lstrip(".").split("."))


class TrapEntry(Strict):
    name: str
    oid: str
    mib: str = ""
    severity: Severity = "none"
    summary: str = ""
    description: str = ""
    subject: dict[str, str] = Field(default_factory=dict)
    details: dict[str, str] = Field(default_factory=dict)
    clears: list[str] = Field(default_factory=list)
    # Names for a field's values, e.g. {ifOperStatus: {"2": down}}; others show as sent.
    values: dict[str, dict[str, str]] = Field(default_factory=dict)
    # An alert for a trap nothing clears ends by itself after this (default:
    # snmp.traps.alertmanager.resolve_timeout).
    resolve_after: Duration | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("must be a name like linkDown (letters, digits, _)")
        return v

    @field_validator("oid")
    @classmethod
    def _oid_text(cls, v: str) -> str:
        _oid(v)
        return v.lstrip(".")

    @field_validator("subject", "details")
    @classmethod
    def _fields(cls, v: dict[str, str]) -> dict[str, str]:
        for name, oid in v.items():
            if not _NAME_RE.match(name) or name.startswith("__"):
                raise ValueError(f"field name {name!r} must be a valid label name")
            if name in _FIXED_FIELDS or name in ("alertname", "severity", "subject"):
                raise ValueError(f"field name {name!r} is reserved")
            try:
                _oid(oid)
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
        return v

    @model_validator(mode="after")
    def _summary_fields(self) -> TrapEntry:
        known = set(self.subject) | set(self.details) | _FIXED_FIELDS
        for text in (self.summary, self.description):
            try:
                names = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
            except ValueError as e:
                raise ValueError(f"summary/description is not a valid template: {e}") from None
            unknown = sorted(n for n in names if n not in known)
            if unknown:
                raise ValueError(
                    f"summary/description uses {{{unknown[0]}}}, which is neither a subject "
                    f"nor a details field nor one of {sorted(_FIXED_FIELDS)}"
                )
        unknown_values = sorted(set(self.values) - set(self.subject) - set(self.details))
        if unknown_values:
            raise ValueError(
                f"values: {unknown_values[0]!r} is neither a subject nor a details field"
            )
        if self.clears and self.severity != "none":
            raise ValueError("a clearing trap (clears:) has no severity of its own")
        return self


class TrapFile(Strict):
    traps: list[TrapEntry] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TrapDef:
    """A table entry, compiled: OIDs as tuples, pairing resolved."""

    name: str
    oid: Oid
    severity: Severity
    summary: str
    description: str
    subject: tuple[tuple[str, Oid], ...]
    details: tuple[tuple[str, Oid], ...]
    clears: tuple[str, ...]
    values: Mapping[str, Mapping[str, str]]
    resolve_after: float | None
    paired: bool  # some entry clears this one: it has a state


@dataclass(frozen=True)
class TrapTable:
    by_oid: Mapping[Oid, TrapDef] = field(default_factory=dict)
    by_name: Mapping[str, TrapDef] = field(default_factory=dict)
    files: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.by_oid)


def _compile(entry: TrapEntry, paired: bool) -> TrapDef:
    return TrapDef(
        name=entry.name,
        oid=_oid(entry.oid),
        severity=entry.severity,
        summary=entry.summary,
        description=entry.description,
        subject=tuple((k, _oid(v)) for k, v in entry.subject.items()),
        details=tuple((k, _oid(v)) for k, v in entry.details.items()),
        clears=tuple(entry.clears),
        values=entry.values,
        resolve_after=entry.resolve_after,
        paired=paired,
    )


def build_table(
    entries: Iterable[tuple[str, str, TrapEntry]], problems: list[ConfigProblem]
) -> TrapTable:
    """Check entries across files (``(file, key path, entry)``) and compile them."""
    by_name: dict[str, tuple[str, str, TrapEntry]] = {}
    by_oid: dict[str, str] = {}
    files: list[str] = []
    for file, path, entry in entries:
        if file not in files:
            files.append(file)
        if entry.name in by_name:
            f, p, _ = by_name[entry.name]
            problems.append(ConfigProblem(file, f"{path}.name", f"also defined in {f}: {p}"))
            continue
        if entry.oid in by_oid:
            problems.append(
                ConfigProblem(file, f"{path}.oid", f"OID already used by {by_oid[entry.oid]}")
            )
            continue
        by_name[entry.name] = (file, path, entry)
        by_oid[entry.oid] = entry.name
    cleared: set[str] = set()
    for file, path, entry in by_name.values():
        for j, name in enumerate(entry.clears):
            if name not in by_name:
                problems.append(
                    ConfigProblem(file, f"{path}.clears[{j}]", "no trap of this name", repr(name))
                )
            elif by_name[name][2].clears:
                problems.append(
                    ConfigProblem(
                        file, f"{path}.clears[{j}]", "clears a trap that is itself a clearing trap"
                    )
                )
            elif by_name[name][2].subject.keys() != entry.subject.keys():
                problems.append(
                    ConfigProblem(
                        file,
                        f"{path}.subject",
                        f"must have the same fields as {name}'s subject "
                        f"({', '.join(by_name[name][2].subject) or 'none'}) to find what it clears",
                    )
                )
            else:
                cleared.add(name)
    defs = [_compile(e, e.name in cleared) for _, _, e in by_name.values()]
    return TrapTable(
        by_oid={d.oid: d for d in defs}, by_name={d.name: d for d in defs}, files=tuple(files)
    )


def expand_table_files(patterns: Iterable[str], base_dir: Path) -> list[tuple[int, list[Path]]]:
    """Each pattern (relative to ``base_dir``, globs allowed) with the files it names, sorted."""
    out = []
    for i, pattern in enumerate(patterns):
        p = Path(pattern)
        full = p if p.is_absolute() else base_dir / p
        if glob.has_magic(str(full)):
            out.append((i, sorted(Path(m) for m in glob.glob(str(full)) if Path(m).is_file())))
        else:
            out.append((i, [full] if full.is_file() else []))
    return out


def parse_trap_file(
    raw: Any, file: str, problems: list[ConfigProblem]
) -> list[tuple[str, str, TrapEntry]]:
    """Validate one parsed YAML table file; problems carry ``traps[i].key`` paths."""
    if not isinstance(raw, dict) or not isinstance(raw.get("traps", []), list):
        problems.append(ConfigProblem(file, "traps", "must be a mapping with a list under traps:"))
        return []
    extra = sorted(str(k) for k in raw if k != "traps")
    problems.extend(ConfigProblem(file, k, "unknown key") for k in extra)
    entries: list[tuple[str, str, TrapEntry]] = []
    for i, item in enumerate(raw.get("traps") or []):
        try:
            entries.append((file, f"traps[{i}]", TrapEntry.model_validate(item)))
        except ValidationError as e:
            for err in e.errors(include_url=False):
                loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
                msg = err["msg"].removeprefix("Value error, ")
                if err["type"] == "extra_forbidden":
                    msg = "unknown key"
                problems.append(
                    ConfigProblem(file, f"traps[{i}]" + (f".{loc}" if loc else ""), msg)
                )
    return entries
