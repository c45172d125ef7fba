"""Varbinds -> Prometheus samples, exactly as snmp_exporter maps them.

A poll of one module returns a flat list of varbinds (all walks and gets
together). ``varbinds_to_samples`` turns them into ``Sample`` values with the
metric names, label names/values and values that snmp_exporter (0.25-0.30,
``collector/collector.go``) would expose for the same ``snmp.yml`` module, so
dashboards written for snmp_exporter keep working. For example, from the
``if_mib`` and ``ups_mib`` modules::

    ifHCInOctets{ifAlias="",ifDescr="Vlan2",ifIndex="2",ifName="Vl2"} 1.238907062e+09
    ifType_info{ifAlias="",ifDescr="Vlan1",ifIndex="1",ifName="Vl1",ifType="propVirtual"} 1
    ifPhysAddress{ifAlias="",...,ifIndex="10101",ifPhysAddress="E8:04:62:78:F2:01"} 1
    upsInputFrequency{upsInputLineIndex="1"} 50
    sysDescr{sysDescr="EATON 93E 80"} 1

(The exposition sorts labels by name; ``Sample.labels`` keeps snmp_exporter's
construction order: indexes, then lookups, then the value label.)

How it works
------------
``CompiledModule`` is built once per ``Module`` (the poller builds it at config
load; ``varbinds_to_samples`` also accepts a plain ``Module`` and caches the
compiled form per module object, evicted when the module is garbage-collected).
It holds a dict from each metric's OID tuple to a precompiled metric (index
parsers, lookup OIDs, regexes, help strings, enum tables), and the set of metric
OID lengths. A varbind belongs to the metric whose OID is the *shortest* prefix
of the varbind's OID (snmp_exporter walks a tree from the root and stops at the
first node carrying a metric); everything after that prefix is the index. So a
scalar ``sysUpTime`` arrives as ``...1.3.0`` with index ``(0,)`` and, having no
``indexes``, gets no labels from it. Varbinds matching no metric are ignored.

Per poll the varbinds are put into a dict by OID (the last one for an OID wins,
as upstream), which is what lookups read from. Samples come out in OID order, so
the output is deterministic although upstream iterates a Go map.

The poller does not build samples: its ``FamilyRenderer`` (one per target and
module) maps and renders a poll straight to the store's pre-rendered families,
byte for byte what ``render_families(varbinds_to_samples(...).samples)`` gives,
at a fraction of the cost per varbind, reusing row label text and unchanged
string values from the previous poll. ``varbinds_to_samples`` remains the
reference (and what ``/snmp`` and the tests use); tests hold the two together.

Where upstream's behaviour is kept although it looks odd
---------------------------------------------------------
* Index sub-identifiers that run out are padded with zeros (``splitOid``): a
  ``gauge`` index on a bare OID yields ``"0"``.
* A lookup whose row is missing sets its label to ``""`` (the label stays).
* A lookup with no ``labels`` deletes its ``labelname`` (that is how the
  generator writes ``drop_source_indexes``); a ``drop_source_indexes: true``
  lookup deletes its source index labels after all lookups ran.
* A lookup's result can feed a later lookup: its OID part is the lookup value as
  an integer (0 for non-integers).
* ``InetAddress``/``InetAddressMissingSize`` values take their address family
  from the column before them (OID last component - 1) in the same row.
* Invalid UTF-8 in labels becomes one U+FFFD per run of bad bytes (Go's
  ``strings.ToValidUTF8``), so e.g. ``b"sane\\xfd\\xbe\\xd6"`` -> ``"sane\\ufffd"``.
* ``Counter64`` values wrap at 2^53 (``--snmp.wrap-large-counters``, the default).

Where this module deliberately differs (documented, tested)
-----------------------------------------------------------
* A value whose SNMP type does not fit the metric type (an OctetString for a
  ``gauge``, garbage bytes for ``DateAndTime``/``Float``, ...) is skipped and
  counted in ``MappingResult.wrong_type``. Upstream would expose 0 for numeric
  mismatches, drop unparsable dates silently, and fail the scrape for BITS.
* Null / noSuchObject / noSuchInstance / endOfMibView are skipped silently.
* Two varbinds producing the same series (same name and label set) would make
  snmp_exporter's scrape fail; here the first (in OID order) is kept and the
  rest counted in ``MappingResult.duplicates``.
* Index types upstream would panic on (``IpAddr``, ``EnumAsStateSet``) are
  parsed as ``InetAddressIPv4`` and ``EnumAsInfo`` respectively; a length-prefixed
  index whose length cannot be real (beyond what an OID can carry) is counted as
  unmappable instead of allocating a giant zero-padded label.
"""

from __future__ import annotations

import contextlib
import math
import re
import struct
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from commandcentre.config import Lookup, Metric, Module, parse_oid
from commandcentre.samples import Labels, MetricKind, Sample
from commandcentre.snmp.types import EXCEPTION_TYPES, Oid, SnmpType, VarBind
from commandcentre.store import Family, format_labels, format_value

__all__ = [
    "CompiledModule",
    "FamilyRenderer",
    "MappingResult",
    "RenderedPoll",
    "compile_module",
    "varbinds_to_families",
    "varbinds_to_samples",
]

FLOAT64_MANTISSA = 1 << 53  # snmp_exporter wraps Counter64 by this (float64 mantissa)
_MAX_INDEX_LENGTH = 128  # an OID has at most 128 sub-identifiers (RFC 2578 3.5)
_NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01

# Types whose address family is given by the previous column (InetAddressType).
_COMBINED_TYPES: dict[str, dict[int, str]] = {
    "InetAddress": {1: "InetAddressIPv4", 2: "InetAddressIPv6"},
    "InetAddressMissingSize": {1: "InetAddressIPv4", 2: "InetAddressIPv6"},
    "LldpPortId": {
        1: "DisplayString",
        2: "DisplayString",
        3: "PhysAddress48",
        5: "DisplayString",
        7: "DisplayString",
    },
}
_INTEGER_TYPES = frozenset(
    {
        SnmpType.INTEGER,
        SnmpType.COUNTER32,
        SnmpType.GAUGE32,
        SnmpType.TIMETICKS,
        SnmpType.COUNTER64,
    }
)
_NUMERIC_METRIC_TYPES = frozenset({"gauge", "counter", "Float", "Double"})
_STRING_METRIC_TYPES = frozenset(
    {
        "DisplayString",
        "OctetString",
        "PhysAddress48",
        "InetAddress",
        "InetAddressIPv4",
        "InetAddressIPv6",
        "InetAddressMissingSize",
        "IpAddr",
        "LldpPortId",
    }
)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class MappingResult:
    """What one poll of one module mapped to.

    ``wrong_type`` counts varbinds that matched a metric but could not be mapped
    (value type does not fit, unparsable bytes, impossible index); the poller
    adds it to its ``wrong_type`` error counter and logs ``first_problem``.
    ``duplicates`` counts samples dropped because an earlier one had the same
    name and label set.
    """

    samples: tuple[Sample, ...]
    wrong_type: int = 0
    first_problem: str | None = None
    duplicates: int = 0


class _Unmappable(Exception):
    """A varbind matched a metric but its value or index cannot be mapped."""


# --------------------------------------------------------------------------- decoding


def go_valid_utf8(data: bytes) -> str:
    """Decode like Go's ``strings.ToValidUTF8(s, "\\ufffd")``: each *run* of
    invalid bytes becomes a single U+FFFD (Python's ``errors="replace"`` would
    emit one per invalid sequence)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="surrogateescape")
        return _ESCAPED_RUN.sub("\ufffd", text)


_ESCAPED_RUN = re.compile("[\udc80-\udcff]+")


def _opaque_float(raw: bytes) -> float | None:
    """The value of an Opaque-wrapped float (tag 9f78, 4 bytes) or double
    (9f79, 8 bytes), as gosnmp decodes them; ``None`` for any other Opaque."""
    if len(raw) < 3 or raw[0] != 0x9F or raw[1] not in (0x78, 0x79):
        return None
    length = raw[2]
    body = raw[3 : 3 + length]
    if length & 0x80 or len(body) != length:
        return None
    if raw[1] == 0x78 and length == 4:
        return float(struct.unpack(">f", body)[0])
    if raw[1] == 0x79 and length == 8:
        return float(struct.unpack(">d", body)[0])
    return None


def _numeric(vb: VarBind, wrap_counters: bool) -> float | None:
    """snmp_exporter's ``getPduValue`` for the types where it is meaningful;
    ``None`` where upstream would silently use 0 (strings, OIDs, addresses)."""
    t = vb.type
    v = vb.value
    if t in _INTEGER_TYPES and isinstance(v, int):
        if t is SnmpType.COUNTER64:
            u = v & 0xFFFFFFFFFFFFFFFF
            return float(u % FLOAT64_MANTISSA) if wrap_counters else float(u)
        return float(v)
    if t is SnmpType.OPAQUE and isinstance(v, bytes):
        return _opaque_float(v)
    return None


def _format_go_float(value: float, bits: int) -> str:
    """Go's ``strconv.FormatFloat(v, 'f', -1, bits)``: shortest digits that
    round-trip at that precision, never in exponent form."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if bits == 32:
        packed = struct.pack(">f", value)
        for precision in range(1, 10):
            text = f"{value:.{precision}g}"
            if struct.pack(">f", float(text)) == packed:
                break
    else:
        text = repr(value)
    out = format(Decimal(text), "f")
    if "." in out:
        out = out.rstrip("0").rstrip(".")
    return out


def _int_for_lookup_chain(vb: VarBind) -> int:
    """``gosnmp.ToBigInt(value).Int64()``: integers as themselves (64-bit two's
    complement), everything else 0."""
    if vb.type in _INTEGER_TYPES and isinstance(vb.value, int):
        u = vb.value & 0xFFFFFFFFFFFFFFFF
        return u - (1 << 64) if u >= 1 << 63 else u
    return 0


# --------------------------------------------------------------------------- index parsing


def _split(oids: Sequence[int], count: int) -> tuple[list[int], Sequence[int]]:
    """Take ``count`` sub-identifiers, right-padding with zeros when they run out
    (snmp_exporter's ``splitOid``: some agents drop trailing zeros)."""
    head = list(oids[:count])
    if len(head) < count:
        head.extend([0] * (count - len(head)))
    return head, oids[count:]


def _index_as_string(
    oids: Sequence[int],
    typ: str,
    fixed_size: int = 0,
    implied: bool = False,
    enum_values: dict[int, str] | None = None,
) -> tuple[str, list[int], Sequence[int]]:
    """Render the leading sub-identifiers of ``oids`` as an index of type ``typ``.

    Returns (label value, the sub-identifiers used, the rest). The same routine
    renders OctetString values (as length-prefixed byte lists), exactly as
    upstream reuses ``indexOidsAsString`` for values.
    """
    mapping = _COMBINED_TYPES.get(typ)
    if mapping is not None:
        missing_size = typ == "InetAddressMissingSize"
        sub, rest = _split(oids, 1 if missing_size else 2)
        mapped = mapping.get(sub[0])
        if mapped is not None:
            text, taken, remaining = _index_as_string(rest, mapped, 0, False, enum_values)
            return text, sub + taken, remaining
        if missing_size:
            return _index_as_string(oids, "OctetString", 0, True, enum_values)
        return _index_as_string(oids, "OctetString", sub[1] + 2, False, enum_values)

    if typ in ("Integer32", "Integer", "gauge", "counter"):
        sub, rest = _split(oids, 1)
        return str(sub[0]), sub, rest
    if typ == "PhysAddress48":
        sub, rest = _split(oids, 6)
        return ":".join(f"{o:02X}" for o in sub), sub, rest
    if typ in ("OctetString", "DisplayString"):
        used: list[int] = []
        length = len(oids) if implied else fixed_size
        if length == 0:
            used, oids = _split(oids, 1)
            length = used[0]
        if length > max(len(oids), _MAX_INDEX_LENGTH):
            raise _Unmappable(f"index length {length} exceeds the OID")
        content, rest = _split(oids, length)
        used += content
        raw = bytes(o & 0xFF for o in content)
        if typ == "DisplayString":
            return go_valid_utf8(raw), used, rest
        return ("0x" + raw.hex().upper() if raw else ""), used, rest
    if typ in ("InetAddressIPv4", "IpAddr"):
        sub, rest = _split(oids, 4)
        return ".".join(str(o) for o in sub), sub, rest
    if typ == "InetAddressIPv6":
        sub, rest = _split(oids, 16)
        groups = (f"{sub[i]:02X}{sub[i + 1]:02X}" for i in range(0, 16, 2))
        return ":".join(groups), sub, rest
    if typ in ("EnumAsInfo", "EnumAsStateSet"):
        sub, rest = _split(oids, 1)
        name = (enum_values or {}).get(sub[0])
        return (name if name is not None else str(sub[0])), sub, rest
    raise _Unmappable(f"cannot render as {typ}")


# --------------------------------------------------------------------------- display hints


def _is_digit(c: int) -> bool:
    return 0x30 <= c <= 0x39


@dataclass(frozen=True, slots=True)
class _HintSpec:
    """One octet-format spec: ``[*]<take><fmt>[sep][term]``."""

    star: bool
    take: int
    fmt: int  # one of b"dxoat"
    sep: int | None
    term: int | None
    end: int  # position after the spec in the hint


def _parse_hint_spec(spec: bytes, pos: int) -> _HintSpec | None:
    n = len(spec)
    star = pos < n and spec[pos] == 0x2A  # '*'
    if star:
        pos += 1
    if pos >= n or not _is_digit(spec[pos]):
        return None
    take = 0
    while pos < n and _is_digit(spec[pos]):
        take = take * 10 + spec[pos] - 0x30
        pos += 1
    if pos >= n or spec[pos] not in b"dxoat":
        return None
    fmt = spec[pos]
    pos += 1
    sep = term = None
    if pos < n and not _is_digit(spec[pos]) and spec[pos] != 0x2A:
        sep = spec[pos]
        pos += 1
    if star and pos < n and not _is_digit(spec[pos]) and spec[pos] != 0x2A:
        term = spec[pos]
        pos += 1
    return _HintSpec(star, take, fmt, sep, term, pos)


def apply_display_hint(hint: str, data: bytes) -> str | None:
    """Render ``data`` per an RFC 2579 DISPLAY-HINT octet format (e.g. ``1d.``,
    ``1x:``, ``255a``, ``2d-1d-1d,1d:1d:1d.1d``), as snmp_exporter >= 0.29 does
    for OctetString metrics with ``display_hint``. Hex digits are upper case; a
    trailing separator is suppressed; the last spec repeats until the data is
    used up. Returns ``None`` when the hint cannot be parsed (the caller then
    falls back to ``0x...``). Like upstream, the hint is read byte by byte."""
    spec_text = hint.encode()
    if not spec_text or not data:
        return None
    out = bytearray()
    hpos = dpos = last_start = 0
    last_consumes = False
    while dpos < len(data):
        if hpos >= len(spec_text):
            if not last_consumes:
                return None
            hpos = last_start
        spec = _parse_hint_spec(spec_text, hpos)
        if spec is None:
            return None
        last_start, hpos = hpos, spec.end
        last_consumes = spec.take > 0 or spec.star
        repeat = 1
        if spec.star:
            repeat = data[dpos]
            dpos += 1
        r = 0
        while r < repeat and dpos < len(data):
            chunk = data[dpos : dpos + spec.take]
            if spec.fmt in b"do":
                if len(chunk) > 8:
                    return None
                number = int.from_bytes(chunk, "big")
                out += (str(number) if spec.fmt == 0x64 else format(number, "o")).encode()
            elif spec.fmt == 0x78:  # 'x'
                out += chunk.hex().upper().encode()
            else:  # 'a', 't'
                out += chunk
            dpos += len(chunk)
            more = dpos < len(data)
            if spec.sep is not None and more and (spec.term is None or r != repeat - 1):
                out.append(spec.sep)
            r += 1
        if spec.term is not None and dpos < len(data):
            out.append(spec.term)
    return go_valid_utf8(bytes(out))


# --------------------------------------------------------------------------- value -> string


def _value_as_string(vb: VarBind, typ: str, display_hint: str = "") -> str:
    """snmp_exporter's ``pduValueAsString``: how a value becomes a label value.

    Integers print in decimal (Counter64 unwrapped), floats in Go's shortest
    form, OIDs dotted without the leading dot, IpAddress dotted-quad; bytes are
    rendered per ``typ`` (hex ``0x..`` for OctetString, text for DisplayString,
    ``AA:BB:..`` for PhysAddress48, ...).
    """
    t = vb.type
    v = vb.value
    if t in _INTEGER_TYPES and isinstance(v, int):
        return str(v & 0xFFFFFFFFFFFFFFFF if t is SnmpType.COUNTER64 else v)
    if t is SnmpType.OBJECT_IDENTIFIER and isinstance(v, tuple):
        return ".".join(map(str, v))
    if t is SnmpType.IP_ADDRESS and isinstance(v, bytes):
        if len(v) == 4:
            return ".".join(map(str, v))
        raise _Unmappable(f"IpAddress of {len(v)} bytes")
    if t is SnmpType.OPAQUE and isinstance(v, bytes):
        number = _opaque_float(v)
        if number is not None:
            return _format_go_float(number, 32 if v[1] == 0x78 else 64)
    if isinstance(v, bytes):
        if typ == "DisplayString":  # fast paths for the two common cases
            return go_valid_utf8(v)
        if typ == "OctetString" and not display_hint:
            return "0x" + v.hex().upper() if v else ""
        if display_hint and typ in ("", "OctetString"):
            hinted = apply_display_hint(display_hint, v)
            if hinted is not None:
                return hinted
        if typ in ("", "Bits"):
            typ = "OctetString"
        if typ == "IpAddr":
            raise _Unmappable("IpAddr metric got bytes, not an IpAddress")
        parts: list[int] = list(v)
        if typ in ("OctetString", "DisplayString"):
            parts.insert(0, len(v))
        text, _, _ = _index_as_string(parts, typ)
        return text
    raise _Unmappable(f"{t.value} value {v!r}")


# --------------------------------------------------------------------------- time types


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (any year)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_date_and_time(raw: bytes) -> float:
    """RFC 2579 DateAndTime (8 bytes UTC, or 11 with a +/-hh:mm zone) -> Unix
    seconds. Out-of-range fields roll over like Go's ``time.Date`` (month 13 is
    January next year); deciseconds count only through their whole seconds."""
    if len(raw) == 8:
        offset = 0
    elif len(raw) == 11:
        sign, hours, minutes = raw[8], raw[9], raw[10]
        if sign not in b"+-" or hours > 24 or minutes > 60:
            raise _Unmappable(f"DateAndTime zone {raw[8:].hex()}")
        offset = (hours * 3600 + minutes * 60) * (1 if sign == ord("+") else -1)
    else:
        raise _Unmappable(f"DateAndTime of {len(raw)} bytes")
    year = int.from_bytes(raw[0:2], "big")
    month0 = raw[2] - 1
    year += month0 // 12
    month0 %= 12
    days = _days_from_civil(year, month0 + 1, 1) + raw[3] - 1
    seconds = days * 86400 + raw[4] * 3600 + raw[5] * 60 + raw[6] + raw[7] // 10
    return float(seconds - offset)


def parse_ntp_timestamp(raw: bytes) -> float:
    """NTP timestamp (seconds since 1900 + 32-bit fraction) -> whole Unix seconds."""
    if len(raw) < 8:
        raise _Unmappable(f"NTPTimeStamp of {len(raw)} bytes")
    return float(int.from_bytes(raw[0:4], "big") - _NTP_EPOCH_OFFSET)


def parse_date_with_pattern(text: str, pattern: str) -> float:
    """``ParseDateAndTime``: strftime-style pattern -> Unix seconds (UTC unless
    the pattern carries a zone). Upstream uses itchyny/timefmt-go; the common
    directives (%Y %m %d %b %H %M %S %z ...) behave the same."""
    try:
        parsed = datetime.strptime(text, pattern)  # naive means UTC, as upstream
    except ValueError as e:
        raise _Unmappable(f"{text!r} does not match {pattern!r}") from e
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return float(math.floor(parsed.timestamp()))


# --------------------------------------------------------------------------- regex extracts

_GO_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_GO_HEX = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F_]+\.?[0-9a-fA-F_]*|\.[0-9a-fA-F_]+)[pP][+-]?\d+")
_GO_SPECIAL = re.compile(r"[+-]?(?:inf|infinity)|nan", re.IGNORECASE)


def parse_go_float(text: str) -> float | None:
    """``strconv.ParseFloat(s, 64)``, or ``None`` where Go returns an error:
    empty or junk text, surrounding whitespace, decimal underscores, a hex
    mantissa without ``p`` exponent, a signed NaN, or a value out of range."""
    if _GO_SPECIAL.fullmatch(text):
        return float(text)
    if _GO_HEX.fullmatch(text):
        try:
            value = float.fromhex(text.replace("_", ""))
        except (ValueError, OverflowError):
            return None
    elif _GO_DECIMAL.fullmatch(text):
        value = float(text)
    else:
        return None
    return None if math.isinf(value) else value


_TEMPLATE_NAME = re.compile(r"[A-Za-z0-9_]+")


def expand_go_template(template: str, match: re.Match[str]) -> str:
    """Go's ``Regexp.ExpandString``: ``$1``, ``${1}``, ``$name``, ``${name}``,
    ``$$``. ``$1x`` means the group named ``1x`` (so: empty); unknown or
    unmatched groups expand to nothing; a malformed ``$`` stays literal."""
    out: list[str] = []
    i = 0
    n = len(template)
    while i < n:
        dollar = template.find("$", i)
        if dollar < 0:
            out.append(template[i:])
            break
        out.append(template[i:dollar])
        i = dollar + 1
        if i < n and template[i] == "$":
            out.append("$")
            i += 1
            continue
        braced = i < n and template[i] == "{"
        m = _TEMPLATE_NAME.match(template, i + 1 if braced else i)
        if m is None or (braced and (m.end() >= n or template[m.end()] != "}")):
            out.append("$")
            continue
        name = m.group()
        i = m.end() + (1 if braced else 0)
        group: int | str = name
        if name.isdigit() and not (name[0] == "0" and len(name) > 1) and len(name) < 9:
            group = int(name)
        with contextlib.suppress(IndexError):  # no such group: expands to nothing
            out.append(match.group(group) or "")
    return "".join(out)


# --------------------------------------------------------------------------- compiled module


@dataclass(frozen=True, slots=True)
class _CompiledIndex:
    labelname: str
    type: str
    fixed_size: int
    implied: bool
    enum_items: tuple[tuple[int, str], ...]  # hashable, so equal specs intern
    enum_values: dict[int, str] | None = field(default=None, compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class _CompiledLookup:
    labelname: str
    labels: tuple[str, ...]
    oid: Oid
    prev_oid: Oid | None  # the InetAddressType column for combined types
    type: str
    delete: bool  # a ``labels: []`` lookup: remove ``labelname``


@dataclass(frozen=True, slots=True)
class _LabelSpec:
    """How a row's labels are built: indexes, lookups, labels to drop. Metrics of
    one table usually share an equal spec; ``CompiledModule`` interns them so a
    poll computes each row's labels once, not once per column."""

    indexes: tuple[_CompiledIndex, ...]
    lookups: tuple[_CompiledLookup, ...]
    drop_labels: tuple[str, ...]  # from ``drop_source_indexes: true``


@dataclass(frozen=True, slots=True)
class _CompiledMetric:
    name: str
    type: str
    help: str
    prev_oid: Oid | None
    label_spec: _LabelSpec
    regex_extracts: tuple[tuple[str, tuple[tuple[re.Pattern[str], str], ...]], ...]
    enum_items: tuple[tuple[int, str], ...]  # sorted by value
    enum_values: dict[int, str]
    display_hint: str
    date_time_pattern: str
    scale: float
    offset: float


def _prev_oid(oid: Oid) -> Oid:
    return (*oid[:-1], oid[-1] - 1)


def _compile_lookup(lookup: Lookup) -> _CompiledLookup:
    oid = parse_oid(lookup.oid) if lookup.oid else ()
    return _CompiledLookup(
        labelname=lookup.labelname,
        labels=tuple(lookup.labels),
        oid=oid,
        prev_oid=_prev_oid(oid) if oid and lookup.type in _COMBINED_TYPES else None,
        type=lookup.type,
        delete=not lookup.labels,
    )


def _compile_metric(metric: Metric, specs: dict[_LabelSpec, _LabelSpec]) -> _CompiledMetric:
    oid = parse_oid(metric.oid)
    drops: list[str] = []
    for lookup in metric.lookups:
        if lookup.drop_source_indexes:
            drops.extend(label for label in lookup.labels if label not in drops)
    spec = _LabelSpec(
        indexes=tuple(
            _CompiledIndex(
                ix.labelname,
                ix.type,
                ix.fixed_size,
                ix.implied,
                tuple(ix.enum_values.items()),
                dict(ix.enum_values) or None,
            )
            for ix in metric.indexes
        ),
        lookups=tuple(_compile_lookup(lk) for lk in metric.lookups),
        drop_labels=tuple(drops),
    )
    return _CompiledMetric(
        name=metric.name,
        type=metric.type,
        help=metric.help,
        prev_oid=_prev_oid(oid) if metric.type in _COMBINED_TYPES else None,
        label_spec=specs.setdefault(spec, spec),
        regex_extracts=tuple(
            (suffix, tuple((re.compile(rx.regex), rx.value) for rx in extracts))
            for suffix, extracts in metric.regex_extracts.items()
        ),
        enum_items=tuple(sorted(metric.enum_values.items())),
        enum_values=dict(metric.enum_values),
        display_hint=metric.display_hint,
        date_time_pattern=metric.date_time_pattern,
        scale=metric.scale,
        offset=metric.offset,
    )


class CompiledModule:
    """A ``Module`` prepared for mapping: build once per config load, reuse on
    every poll. ``by_oid`` maps each metric OID to its compiled metric (a later
    metric with the same OID replaces an earlier one, as upstream); ``lengths``
    are the distinct metric OID lengths, shortest first, for prefix matching."""

    __slots__ = ("by_oid", "lengths", "module")

    def __init__(self, module: Module) -> None:
        self.module = module
        by_oid: dict[Oid, _CompiledMetric] = {}
        specs: dict[_LabelSpec, _LabelSpec] = {}
        for metric in module.metrics:
            by_oid[parse_oid(metric.oid)] = _compile_metric(metric, specs)
        self.by_oid = by_oid
        self.lengths = tuple(sorted({len(oid) for oid in by_oid}))

    def match(self, oid: Oid) -> tuple[_CompiledMetric, Oid] | None:
        """The metric owning ``oid`` (shortest matching prefix) and the index part."""
        by_oid = self.by_oid
        for length in self.lengths:
            if length > len(oid):
                return None
            metric = by_oid.get(oid[:length])
            if metric is not None:
                return metric, oid[length:]
        return None


_COMPILED: dict[int, CompiledModule] = {}


def compile_module(module: Module) -> CompiledModule:
    """The cached ``CompiledModule`` for this module object (by identity; the
    entry goes away when the module is garbage-collected)."""
    key = id(module)
    compiled = _COMPILED.get(key)
    if compiled is None or compiled.module is not module:
        compiled = CompiledModule(module)
        _COMPILED[key] = compiled
        weakref.finalize(module, _COMPILED.pop, key, None)
    return compiled


# --------------------------------------------------------------------------- mapping


def _labels_for(spec: _LabelSpec, index: Oid, rows: dict[Oid, VarBind]) -> dict[str, str]:
    """Index labels, then lookups (snmp_exporter's ``indexesToLabels``). A dict
    keeps insertion order, so a lookup that reuses an index's name overwrites it
    in place, like upstream's map."""
    labels: dict[str, str] = {}
    label_oids: dict[str, list[int]] = {}
    rest: Sequence[int] = index
    for ix in spec.indexes:
        text, used, rest = _index_as_string(
            rest, ix.type, ix.fixed_size, ix.implied, ix.enum_values
        )
        labels[ix.labelname] = text
        label_oids[ix.labelname] = used
    for lk in spec.lookups:
        if lk.delete:
            labels.pop(lk.labelname, None)
            continue
        suffix: list[int] = []
        found = True
        for name in lk.labels:
            part = label_oids.get(name)
            if not part:
                found = False
                break
            suffix += part
        vb = rows.get((*lk.oid, *suffix)) if found else None
        if vb is None:
            labels[lk.labelname] = ""
            continue
        typ = lk.type
        if lk.prev_oid is not None:
            prev = rows.get((*lk.prev_oid, *suffix))
            if prev is not None and prev.type in _INTEGER_TYPES:
                typ = _COMBINED_TYPES[typ].get(_int_for_lookup_chain(prev), typ)
        labels[lk.labelname] = _value_as_string(vb, typ)
        label_oids[lk.labelname] = [_int_for_lookup_chain(vb)]
    for name in spec.drop_labels:
        labels.pop(name, None)
    return labels


def _scaled(metric: _CompiledMetric, value: float) -> float:
    if metric.scale != 0.0:
        value *= metric.scale
    return value + metric.offset


def _bytes_value(vb: VarBind, what: str) -> bytes:
    if isinstance(vb.value, bytes) and vb.type in (SnmpType.OCTET_STRING, SnmpType.OPAQUE):
        if vb.type is SnmpType.OPAQUE and _opaque_float(vb.value) is not None:
            raise _Unmappable(f"{what} got an Opaque float")
        return vb.value
    raise _Unmappable(f"{what} got {vb.type.value}")


def _samples_for(
    metric: _CompiledMetric,
    index: Oid,
    vb: VarBind,
    rows: dict[Oid, VarBind],
    row: tuple[dict[str, str], Labels],
    *,
    wrap_counters: bool,
) -> list[Sample]:
    """snmp_exporter's ``pduToSamples`` for one varbind, given its row's labels
    (``_labels_for``, as the dict and as a tuple), which the caller caches."""
    labels, base = row
    typ = metric.type
    kind: MetricKind = "counter" if typ == "counter" else "gauge"

    if typ in _NUMERIC_METRIC_TYPES or typ in ("EnumAsInfo", "EnumAsStateSet"):
        number = _numeric(vb, wrap_counters)
        if number is None:
            raise _Unmappable(f"{typ} got {vb.type.value}")
        if typ == "EnumAsInfo":
            if metric.name in labels:
                return []
            state = _enum_name(metric, number)
            return [
                Sample(
                    metric.name + "_info",
                    (*base, (metric.name, state)),
                    1.0,
                    "gauge",
                    metric.help + " (EnumAsInfo)",
                )
            ]
        if typ == "EnumAsStateSet":
            if metric.name in labels:
                return []
            current = int(number) if math.isfinite(number) else 0
            help_text = metric.help + " (EnumAsStateSet)"
            out = [
                Sample(
                    metric.name,
                    (*base, (metric.name, name)),
                    float(k == current),
                    "gauge",
                    help_text,
                )
                for k, name in metric.enum_items
            ]
            if current not in metric.enum_values:
                out.append(
                    Sample(
                        metric.name, (*base, (metric.name, str(current))), 1.0, "gauge", help_text
                    )
                )
            return out
        return [Sample(metric.name, base, _scaled(metric, number), kind, metric.help)]

    if typ == "Bits":
        raw = _bytes_value(vb, "Bits")
        if metric.name in labels:
            return []
        help_text = metric.help + " (Bits)"
        return [
            Sample(
                metric.name,
                (*base, (metric.name, name)),
                1.0 if 0 <= bit < len(raw) * 8 and raw[bit // 8] & (0x80 >> (bit % 8)) else 0.0,
                "gauge",
                help_text,
            )
            for bit, name in metric.enum_items
        ]

    if typ == "DateAndTime":
        value = parse_date_and_time(_bytes_value(vb, "DateAndTime"))
        return [Sample(metric.name, base, _scaled(metric, value), "gauge", metric.help)]
    if typ == "NTPTimeStamp":
        value = parse_ntp_timestamp(_bytes_value(vb, "NTPTimeStamp"))
        return [Sample(metric.name, base, _scaled(metric, value), "gauge", metric.help)]
    if typ == "ParseDateAndTime":
        text = _value_as_string(vb, "DisplayString")
        value = parse_date_with_pattern(text, metric.date_time_pattern)
        return [Sample(metric.name, base, _scaled(metric, value), "gauge", metric.help)]

    # Some form of string: value 1, the text in a label named like the metric.
    if metric.prev_oid is not None:
        prev = rows.get((*metric.prev_oid, *index))
        mapped = None
        if prev is not None and prev.type in _INTEGER_TYPES:
            mapped = _COMBINED_TYPES[typ].get(_int_for_lookup_chain(prev))
        typ = mapped or "OctetString"
    text = _value_as_string(vb, typ, metric.display_hint)
    if metric.regex_extracts:
        return _regex_samples(metric, text, base)
    if metric.name not in labels:
        base = (*base, (metric.name, text))
    return [Sample(metric.name, base, _scaled(metric, 1.0), "gauge", metric.help)]


def _enum_name(metric: _CompiledMetric, number: float) -> str:
    value = int(number) if math.isfinite(number) else 0
    name = metric.enum_values.get(value)
    return name if name is not None else str(value)


def _regex_samples(metric: _CompiledMetric, text: str, base: Labels) -> list[Sample]:
    """``<name><suffix>`` gauges; per suffix the first regex that matches *and*
    expands to a number wins (a match that does not parse tries the next)."""
    out: list[Sample] = []
    help_text = metric.help + " (regex extracted)"
    for suffix, extracts in metric.regex_extracts:
        for pattern, template in extracts:
            m = pattern.search(text)
            if m is None:
                continue
            value = parse_go_float(expand_go_template(template, m))
            if value is None:
                continue
            out.append(
                Sample(metric.name + suffix, base, _scaled(metric, value), "gauge", help_text)
            )
            break
    return out


def varbinds_to_samples(
    module: Module | CompiledModule,
    varbinds: Iterable[VarBind],
    *,
    wrap_counters: bool = True,
) -> MappingResult:
    """Map one poll's varbinds (walks and gets together, any order) to samples.

    Never raises for device data: values that do not fit are skipped and
    counted in ``wrong_type``. Samples are ordered by varbind OID.
    """
    compiled = module if isinstance(module, CompiledModule) else compile_module(module)
    rows: dict[Oid, VarBind] = {}
    for vb in varbinds:
        if vb.type not in EXCEPTION_TYPES:
            rows[vb.oid] = vb

    samples: list[Sample] = []
    # Row labels per (label spec, index), for this poll. Keyed by the spec's id:
    # hashing the spec dataclass itself would cost more than the rest of the row.
    row_labels: dict[tuple[int, Oid], tuple[dict[str, str], Labels]] = {}
    seen: set[tuple[str, frozenset[tuple[str, str]]]] = set()
    wrong = 0
    duplicates = 0
    first_problem: str | None = None
    match: Callable[[Oid], tuple[_CompiledMetric, Oid] | None] = compiled.match
    for oid, vb in sorted(rows.items()):
        found = match(oid)
        if found is None:
            continue
        metric, index = found
        try:
            row_key = (id(metric.label_spec), index)
            row = row_labels.get(row_key)
            if row is None:
                labels = _labels_for(metric.label_spec, index, rows)
                row = row_labels[row_key] = (labels, tuple(labels.items()))
            produced = _samples_for(metric, index, vb, rows, row, wrap_counters=wrap_counters)
        except _Unmappable as e:
            wrong += 1
            if first_problem is None:
                first_problem = _problem(metric, oid, e)
            continue
        for sample in produced:
            key = (sample.name, frozenset(sample.labels))
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            samples.append(sample)
    return MappingResult(tuple(samples), wrong, first_problem, duplicates)


def _problem(metric: _CompiledMetric, oid: Oid, e: _Unmappable) -> str:
    return f"{metric.name} ({metric.type}) at {'.'.join(map(str, oid))}: {e}"


# ---------------------------------------------------------------- mapping and rendering in one pass


@dataclass(frozen=True, slots=True)
class RenderedPoll:
    """``varbinds_to_families``' result: ``families`` are byte for byte what
    ``store.render_families(varbinds_to_samples(...).samples, extra_labels)``
    gives, and the counts are ``MappingResult``'s."""

    families: tuple[Family, ...]
    series: int
    wrong_type: int = 0
    first_problem: str | None = None
    duplicates: int = 0


# Metric types whose integer varbinds are written without building a ``Sample``.
_DIRECT_TYPES = frozenset({"gauge", "counter"})
# ``format_value`` writes an integral float below this as a plain integer, so an
# integer in range (exact as a float: 1e15 < 2**53) can be written with ``str``.
_PLAIN_INT_LIMIT = 10**15
# The same sets as tuples: ``in`` on a tuple compares identities, where a set would
# call ``Enum.__hash__`` (Python code) twice per varbind.
_EXCEPTION_TUPLE = tuple(EXCEPTION_TYPES)
_INTEGER_TUPLE = (
    SnmpType.COUNTER32,
    SnmpType.COUNTER64,
    SnmpType.GAUGE32,
    SnmpType.INTEGER,
    SnmpType.TIMETICKS,
)


def _with_extra(labels: Labels, extra: Labels, extra_names: frozenset[str]) -> Labels:
    """``render_families``' merge: extra labels after the sample's own, where an
    own label of the same name wins (the equivalence tests hold the two together)."""
    if not extra:
        return labels
    own = {k for k, _ in labels}
    if own & extra_names:
        return labels + tuple(kv for kv in extra if kv[0] not in own)
    return labels + extra


# One sample as the renderer keeps it: name, labels (``None``: the row's own), line,
# kind, help. Labels are kept as the tuple, not as a set: a small frozenset takes
# several times the memory, and this is kept per target.
_Rendered = tuple[str, Labels | None, str, MetricKind, str]
# A row's ``names`` between polls (a row gets its poll's set before any use, so
# nothing is ever added to this one): frees the sets, which would be most of what
# a renderer keeps otherwise.
_NO_NAMES: set[str] = set()


class _Row:
    """One row (label spec and index) of one target's table, kept from one poll to
    the next while its labels stay the same. ``names`` is the set of metric names
    already written with this row's label set in the current poll (duplicate
    check); ``values`` caches, per non-integer metric (by id), the varbind type
    and value last seen and what they rendered to."""

    __slots__ = ("base", "fs", "labels", "names", "text", "values")

    def __init__(self, labels: dict[str, str], base: Labels, text: str) -> None:
        self.labels = labels
        self.base = base
        self.text = text
        self.fs = frozenset(base)
        self.names = _NO_NAMES
        self.values: dict[int, tuple[SnmpType, object, list[_Rendered]]] = {}


class FamilyRenderer:
    """Maps and renders the polls of one target's module: ``varbinds_to_samples``
    followed by ``store.render_families``, in one pass and byte for byte the same
    (the equivalence tests hold them together). The poller keeps one per
    (target, module), so the cost per varbind of every poll is this.

    Where the time goes and what is saved:

    * An integer ``gauge``/``counter`` varbind (most of an interface table)
      becomes one line without a ``Sample``: the row's label text (index
      labels, lookups, the target's extra labels, escaped) is rendered once per
      row, not per column, and the value is written with ``str``.
    * The metric owning a run of varbinds of one column is matched once per
      run, not per varbind (the varbinds are sorted, so a column's rows are
      consecutive).
    * Across polls: a row's labels are recomputed every poll (lookups read that
      poll's values), but when they are what they were, its label text is
      reused; and a string, enum or other non-integer value equal to the last
      poll's reuses the last poll's lines. Rows not seen in a poll are
      forgotten at its end, so the caches hold one poll's rows at most.
    """

    __slots__ = ("_extra", "_extra_names", "_rows", "compiled", "wrap_counters")

    def __init__(
        self, compiled: CompiledModule, extra_labels: Labels = (), *, wrap_counters: bool = True
    ) -> None:
        self.compiled = compiled
        self._extra = extra_labels
        self._extra_names = frozenset(k for k, _ in extra_labels)
        self.wrap_counters = wrap_counters
        self._rows: dict[int, dict[Oid, _Row]] = {}  # by id(label spec), then index

    @property
    def extra_labels(self) -> Labels:
        return self._extra

    def _row(self, metric: _CompiledMetric, index: Oid, rows: dict[Oid, VarBind]) -> _Row:
        """The row's labels for this poll (raises ``_Unmappable``), reusing the last
        poll's row when its labels are unchanged."""
        labels = _labels_for(metric.label_spec, index, rows)
        base = tuple(labels.items())
        last = self._rows.get(id(metric.label_spec), {}).get(index)
        if last is not None and last.base == base:
            last.labels = labels
            return last
        text = format_labels(_with_extra(base, self._extra, self._extra_names))
        return _Row(labels, base, text)

    def _render_samples(
        self, metric: _CompiledMetric, index: Oid, vb: VarBind, rows: dict[Oid, VarBind], row: _Row
    ) -> list[_Rendered]:
        """A non-integer (or not gauge/counter) varbind's lines, via ``_samples_for``;
        the last poll's when the varbind's type and value are the same and nothing
        but the value decides (no column before it to read)."""
        cached = row.values.get(id(metric))
        value = vb.value
        if (
            cached is not None
            and cached[0] is vb.type
            and type(cached[1]) is type(value)
            and cached[1] == value
            and metric.prev_oid is None
        ):
            return cached[2]
        base = row.base
        out: list[_Rendered] = []
        for s in _samples_for(
            metric, index, vb, rows, (row.labels, base), wrap_counters=self.wrap_counters
        ):
            own = s.labels is base
            text = (
                row.text
                if own
                else format_labels(_with_extra(s.labels, self._extra, self._extra_names))
            )
            line = f"{s.name}{text} {format_value(s.value)}\n"
            out.append((s.name, None if own else s.labels, line, s.kind, s.help))
        row.values[id(metric)] = (vb.type, value, out)
        return out

    def render(self, varbinds: Iterable[VarBind]) -> RenderedPoll:  # noqa: PLR0915 - one flat loop
        """One poll's varbinds (walks and gets together, any order) -> families; kept flat
        (one loop, no call per varbind on the common path), as that is what it saves."""
        compiled = self.compiled
        rows: dict[Oid, VarBind] = {}
        exceptions = _EXCEPTION_TUPLE
        for vb in varbinds:
            if vb.type not in exceptions:
                rows[vb.oid] = vb

        families: dict[str, tuple[MetricKind, str, list[str]]] = {}
        poll_rows: dict[int, dict[Oid, _Row]] = {}  # the rows of this poll: next poll's cache
        names_by_labels: dict[frozenset[tuple[str, str]], set[str]] = {}  # duplicate check
        series = wrong = duplicates = 0
        first_problem: str | None = None
        integer_types = _INTEGER_TUPLE
        counter64 = SnmpType.COUNTER64
        wrap = self.wrap_counters

        metric: _CompiledMetric | None = None
        prefix: Oid = ()
        plen = 0
        spec_rows: dict[Oid, _Row] = {}
        lines: list[str] | None = None
        name = ""
        direct = plain = False
        for oid, vb in sorted(rows.items()):
            if metric is not None and oid[:plen] == prefix:
                # Still the previous varbind's metric: a shorter metric OID owning
                # this varbind would have been a prefix of that one's too.
                index = oid[plen:]
            else:
                found = compiled.match(oid)
                if found is None:
                    metric = None
                    continue
                metric, index = found
                plen = len(oid) - len(index)
                prefix = oid[:plen]
                spec_rows = poll_rows.setdefault(id(metric.label_spec), {})
                name = metric.name
                direct = metric.type in _DIRECT_TYPES
                plain = metric.scale == 0.0 and metric.offset == 0.0
                entry = families.get(name)
                lines = entry[2] if entry is not None else None

            row = spec_rows.get(index)
            if row is None:
                try:
                    row = self._row(metric, index, rows)
                except _Unmappable as e:
                    wrong += 1
                    if first_problem is None:
                        first_problem = _problem(metric, oid, e)
                    continue
                row.names = names_by_labels.setdefault(row.fs, set())
                spec_rows[index] = row

            value = vb.value
            if direct and vb.type in integer_types and type(value) is int:
                if vb.type is counter64:
                    value &= 0xFFFFFFFFFFFFFFFF
                    if wrap:
                        value %= FLOAT64_MANTISSA
                if plain and -_PLAIN_INT_LIMIT < value < _PLAIN_INT_LIMIT:
                    number = str(value)
                else:
                    number = format_value(_scaled(metric, float(value)))
                names = row.names
                if name in names:
                    duplicates += 1
                    continue
                names.add(name)
                if lines is None:
                    entry = families.get(name)
                    if entry is None:
                        kind: MetricKind = "counter" if metric.type == "counter" else "gauge"
                        entry = families[name] = (kind, metric.help, [])
                    lines = entry[2]
                lines.append(f"{name}{row.text} {number}\n")
                series += 1
                continue

            try:
                rendered = self._render_samples(metric, index, vb, rows, row)
            except _Unmappable as e:
                wrong += 1
                if first_problem is None:
                    first_problem = _problem(metric, oid, e)
                continue
            for s_name, s_labels, line, s_kind, s_help in rendered:
                names = (
                    row.names
                    if s_labels is None
                    else names_by_labels.setdefault(frozenset(s_labels), set())
                )
                if s_name in names:
                    duplicates += 1
                    continue
                names.add(s_name)
                entry = families.get(s_name)
                if entry is None:
                    entry = families[s_name] = (s_kind, s_help, [])
                entry[2].append(line)
                series += 1
        for spec_rows in poll_rows.values():
            for row in spec_rows.values():
                row.names = _NO_NAMES  # only needed during a poll
        self._rows = poll_rows
        return RenderedPoll(
            tuple(Family(n, k, h, "".join(ls)) for n, (k, h, ls) in families.items()),
            series,
            wrong,
            first_problem,
            duplicates,
        )


def varbinds_to_families(
    module: Module | CompiledModule,
    varbinds: Iterable[VarBind],
    extra_labels: Labels = (),
    *,
    wrap_counters: bool = True,
) -> RenderedPoll:
    """One poll through a fresh ``FamilyRenderer`` (nothing kept between calls)."""
    compiled = module if isinstance(module, CompiledModule) else compile_module(module)
    return FamilyRenderer(compiled, extra_labels, wrap_counters=wrap_counters).render(varbinds)
