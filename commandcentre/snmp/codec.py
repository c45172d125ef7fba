"""A lean BER codec for SNMP messages (RFC 1157, 3416, 3412): bytes in, plain values out.

No I/O and no ASN.1 object model: lengths and tags are read straight off
``bytes`` with index arithmetic, integers with ``int.from_bytes``, and OIDs whose
arcs are all below 128 (nearly all of them) with one ``tuple()`` of the content.
This is what makes a poll cheap: pysnmp spends ~70 % of its time building pyasn1
objects for every varbind; here a varbind costs one ``VarBind``.

What is here:

* v1/v2c messages (``CommunityMessage``) carrying any PDU: requests, Response,
  Report, InformRequest, SNMPv2-Trap (``Pdu``) and the SNMPv1 Trap-PDU (``TrapV1Pdu``);
* the SNMPv3 envelope (``V3Message``) with its ``UsmSecurityParameters`` and the
  ``ScopedPdu`` inside it; keys, digests and ciphers are ``usm``'s business;
* encoders for all of the above.

Decoding is strict about structure (definite lengths, every length inside its
parent, known tags) and lenient only where agents are known to be sloppy
(unsigned integer types sent without a leading zero octet). ``DecodeError`` is
the only exception any ``decode_*`` function raises, whatever the input.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from commandcentre.snmp.types import Oid, SnmpType, VarBind

__all__ = [
    "NULL_VALUE",
    "CommunityMessage",
    "DecodeError",
    "Pdu",
    "PduType",
    "ScopedPdu",
    "TrapV1Pdu",
    "UsmSecurityParameters",
    "V3Message",
    "decode_message",
    "decode_scoped_pdu",
    "decode_usm_parameters",
    "encode_community_message",
    "encode_oid",
    "encode_pdu",
    "encode_scoped_pdu",
    "encode_usm_parameters",
    "encode_v3_message",
    "encode_varbinds",
    "message_version",
]

VERSION_1 = 0  # the wire value of msgVersion
VERSION_2C = 1
VERSION_3 = 3

# msgFlags bits (RFC 3412)
FLAG_AUTH = 0x01
FLAG_PRIV = 0x02
FLAG_REPORTABLE = 0x04

USM_SECURITY_MODEL = 3


class DecodeError(ValueError):
    """The bytes are not a well-formed SNMP message (or part of one)."""


class PduType(enum.IntEnum):
    """The context-specific constructed tags of the PDUs."""

    GET = 0xA0
    GET_NEXT = 0xA1
    RESPONSE = 0xA2
    SET = 0xA3
    TRAP_V1 = 0xA4
    GET_BULK = 0xA5
    INFORM = 0xA6
    TRAP_V2 = 0xA7
    REPORT = 0xA8


_PDU_TYPES = {int(t): t for t in PduType}


@dataclass(frozen=True, slots=True)
class Pdu:
    """Every PDU but the v1 Trap. For GETBULK, ``error_status`` is non-repeaters and
    ``error_index`` max-repetitions (the same fields on the wire)."""

    type: PduType
    request_id: int
    error_status: int
    error_index: int
    varbinds: tuple[VarBind, ...]


@dataclass(frozen=True, slots=True)
class TrapV1Pdu:
    """RFC 1157's Trap-PDU. ``agent_addr`` is the 4 octets of the IpAddress."""

    enterprise: Oid
    agent_addr: bytes
    generic_trap: int
    specific_trap: int
    time_stamp: int
    varbinds: tuple[VarBind, ...]


@dataclass(frozen=True, slots=True)
class CommunityMessage:
    """A v1 (``version`` 0) or v2c (``version`` 1) message."""

    version: int
    community: bytes
    pdu: Pdu | TrapV1Pdu


@dataclass(frozen=True, slots=True)
class ScopedPdu:
    context_engine_id: bytes
    context_name: bytes
    pdu: Pdu


@dataclass(frozen=True, slots=True)
class UsmSecurityParameters:
    """RFC 3414's UsmSecurityParameters, the content of msgSecurityParameters."""

    engine_id: bytes
    engine_boots: int
    engine_time: int
    user_name: bytes
    auth_params: bytes
    priv_params: bytes


@dataclass(frozen=True, slots=True)
class V3Message:
    """An SNMPv3 message as it came off the wire, before any USM processing.

    ``auth_offset`` is where ``usm.auth_params`` starts inside the original bytes
    (the digest is computed over the message with those octets zeroed); -1 when the
    security parameters are not USM. ``scoped_pdu`` is the plaintext ScopedPDU when
    the message is not encrypted, else ``None`` and ``encrypted_pdu`` holds the
    ciphertext.
    """

    msg_id: int
    max_size: int
    flags: int
    security_model: int
    security_parameters: bytes
    usm: UsmSecurityParameters | None
    auth_offset: int
    scoped_pdu: ScopedPdu | None
    encrypted_pdu: bytes | None


# --------------------------------------------------------------------------- decoding

_from_bytes = int.from_bytes
# VarBind is a frozen slots dataclass: its __init__ sets each field through
# object.__setattr__. Setting the slots through their descriptors builds the very
# same object at half the cost, which matters once per varbind.
_new_object = object.__new__
_set_oid = VarBind.__dict__["oid"].__set__
_set_type = VarBind.__dict__["type"].__set__
_set_value = VarBind.__dict__["value"].__set__

# first octet of an OID whose first subidentifier fits one octet -> the first two arcs
_FIRST_ARCS: tuple[tuple[int, int], ...] = tuple(
    (b // 40, b % 40) if b < 80 else (2, b - 80) for b in range(128)
)

_INTEGER = SnmpType.INTEGER
_OCTET_STRING = SnmpType.OCTET_STRING
_OBJECT_IDENTIFIER = SnmpType.OBJECT_IDENTIFIER
_IP_ADDRESS = SnmpType.IP_ADDRESS
_COUNTER32 = SnmpType.COUNTER32
_GAUGE32 = SnmpType.GAUGE32
_TIMETICKS = SnmpType.TIMETICKS
_OPAQUE = SnmpType.OPAQUE
_COUNTER64 = SnmpType.COUNTER64
_NULL = SnmpType.NULL

# value tag -> (type, kind): kind 0 signed int, 1 unsigned 32-bit, 2 unsigned 64-bit,
# 3 octets, 4 OID, 5 no value, 6 IpAddress (4 octets)
_VALUE_TAGS: dict[int, tuple[SnmpType, int]] = {
    0x02: (_INTEGER, 0),
    0x04: (_OCTET_STRING, 3),
    0x05: (_NULL, 5),
    0x06: (_OBJECT_IDENTIFIER, 4),
    0x40: (_IP_ADDRESS, 6),
    0x41: (_COUNTER32, 1),
    0x42: (_GAUGE32, 1),
    0x43: (_TIMETICKS, 1),
    0x44: (_OPAQUE, 3),
    0x46: (_COUNTER64, 2),
    0x80: (SnmpType.NO_SUCH_OBJECT, 5),
    0x81: (SnmpType.NO_SUCH_INSTANCE, 5),
    0x82: (SnmpType.END_OF_MIB_VIEW, 5),
}
_TAG_OF_TYPE = {t: tag for tag, (t, _) in _VALUE_TAGS.items()}


def _long_length(buf: bytes, pos: int, first: int) -> tuple[int, int]:
    n = first & 0x7F
    if n == 0 or n > 4:
        raise DecodeError("indefinite or oversized length")
    if pos + n > len(buf):
        raise DecodeError("truncated length")
    return _from_bytes(buf[pos : pos + n], "big"), pos + n


def _header(buf: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    """Read the tag (which must be ``tag``) and length at ``pos``; return (start, stop)
    of the content, checked to lie inside ``end``."""
    if pos + 2 > end:
        raise DecodeError("truncated")
    if buf[pos] != tag:
        raise DecodeError(f"expected tag 0x{tag:02x}, got 0x{buf[pos]:02x}")
    length = buf[pos + 1]
    pos += 2
    if length & 0x80:
        length, pos = _long_length(buf, pos, length)
    stop = pos + length
    if stop > end:
        raise DecodeError("length past the end of its container")
    return pos, stop


def _any_header(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, start, stop) of whatever TLV is at ``pos``."""
    if pos + 2 > end:
        raise DecodeError("truncated")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise DecodeError("high tag numbers are not SNMP")
    length = buf[pos + 1]
    pos += 2
    if length & 0x80:
        length, pos = _long_length(buf, pos, length)
    stop = pos + length
    if stop > end:
        raise DecodeError("length past the end of its container")
    return tag, pos, stop


def _int_at(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    start, stop = _header(buf, pos, end, 0x02)
    if start == stop:
        raise DecodeError("empty INTEGER")
    return _from_bytes(buf[start:stop], "big", signed=True), stop


def _octets_at(buf: bytes, pos: int, end: int) -> tuple[bytes, int]:
    start, stop = _header(buf, pos, end, 0x04)
    return buf[start:stop], stop


def _decode_oid(raw: bytes) -> Oid:
    if not raw:
        raise DecodeError("empty OBJECT IDENTIFIER")
    if raw.isascii():  # every subidentifier is one octet: the common case
        return _FIRST_ARCS[raw[0]] + tuple(raw[1:])
    if raw[-1] & 0x80:
        raise DecodeError("OBJECT IDENTIFIER ends inside a subidentifier")
    # Multi-octet subidentifiers (IP addresses, ports, PIDs in indexes). The loop
    # is as lean as it gets: it is ~40 % of a walk over tables indexed by address.
    arcs: list[int] = []
    append = arcs.append
    value = 0
    for byte in raw:
        if byte < 0x80:
            append(value | byte)
            value = 0
        elif value or byte != 0x80:
            value = (value | (byte & 0x7F)) << 7
        else:
            raise DecodeError("non-minimal subidentifier in OBJECT IDENTIFIER")
    first = arcs[0]
    arcs[0:1] = (first // 40, first % 40) if first < 80 else (2, first - 80)
    return tuple(arcs)


def _decode_varbinds(buf: bytes, pos: int, end: int) -> tuple[VarBind, ...]:  # noqa: PLR0915 - one inlined hot loop: a call per TLV would double its cost
    """The hot loop: a SEQUENCE OF VarBind content between ``pos`` and ``end``."""
    out: list[VarBind] = []
    append = out.append
    tags = _VALUE_TAGS
    first_arcs = _FIRST_ARCS
    from_bytes = _from_bytes
    new = _new_object
    set_oid, set_type, set_value = _set_oid, _set_type, _set_value
    while pos < end:
        # VarBind ::= SEQUENCE { name ObjectName, value ObjectSyntax }
        if buf[pos] != 0x30:
            raise DecodeError("varbind is not a SEQUENCE")
        length = buf[pos + 1]
        pos += 2
        if length & 0x80:
            length, pos = _long_length(buf, pos, length)
        vb_end = pos + length
        if vb_end > end:
            raise DecodeError("varbind past the end of the list")
        if buf[pos] != 0x06:
            raise DecodeError("varbind name is not an OBJECT IDENTIFIER")
        length = buf[pos + 1]
        pos += 2
        if length & 0x80:
            length, pos = _long_length(buf, pos, length)
        stop = pos + length
        if stop > vb_end or stop == pos:
            raise DecodeError("bad varbind name")
        raw = buf[pos:stop]
        oid = first_arcs[raw[0]] + tuple(raw[1:]) if raw.isascii() else _decode_oid(raw)
        pos = stop
        tag = buf[pos]
        length = buf[pos + 1]
        pos += 2
        if length & 0x80:
            length, pos = _long_length(buf, pos, length)
        stop = pos + length
        if stop != vb_end:
            raise DecodeError("varbind value does not end its varbind")
        hit = tags.get(tag)
        if hit is None:
            raise DecodeError(f"value of a type SNMP does not have (tag 0x{tag:02x})")
        kind = hit[1]
        value: int | bytes | Oid | None
        if kind == 3:
            value = buf[pos:stop]
        elif kind == 0:
            if pos == stop:
                raise DecodeError("empty INTEGER")
            value = from_bytes(buf[pos:stop], "big", signed=True)
        elif kind == 1:
            # unsigned: some agents omit the leading zero octet of values >= 2**31
            value = from_bytes(buf[pos:stop], "big")
            if value > 0xFFFFFFFF or pos == stop:
                raise DecodeError("32-bit unsigned value out of range")
        elif kind == 5:
            value = None
            if tag == 0x05 and pos != stop:
                raise DecodeError("NULL with content")
        elif kind == 2:
            value = from_bytes(buf[pos:stop], "big")
            if value > 0xFFFFFFFFFFFFFFFF or pos == stop:
                raise DecodeError("Counter64 out of range")
        elif kind == 6:
            if stop - pos != 4:
                raise DecodeError("IpAddress is not 4 octets")
            value = buf[pos:stop]
        else:
            value = _decode_oid(buf[pos:stop])
        vb = new(VarBind)
        set_oid(vb, oid)
        set_type(vb, hit[0])
        set_value(vb, value)
        append(vb)
        pos = stop
    if pos != end:
        raise DecodeError("varbind list overruns its SEQUENCE")
    return tuple(out)


def _decode_pdu(buf: bytes, pos: int, end: int) -> tuple[Pdu | TrapV1Pdu, int]:
    tag, start, stop = _any_header(buf, pos, end)
    ptype = _PDU_TYPES.get(tag)
    if ptype is None:
        raise DecodeError(f"unknown PDU type 0x{tag:02x}")
    if ptype is PduType.TRAP_V1:
        return _decode_trap_v1(buf, start, stop), stop
    request_id, p = _int_at(buf, start, stop)
    error_status, p = _int_at(buf, p, stop)
    error_index, p = _int_at(buf, p, stop)
    vstart, vstop = _header(buf, p, stop, 0x30)
    if vstop != stop:
        raise DecodeError("trailing octets in PDU")
    return Pdu(
        ptype, request_id, error_status, error_index, _decode_varbinds(buf, vstart, vstop)
    ), stop


def _decode_trap_v1(buf: bytes, pos: int, end: int) -> TrapV1Pdu:
    start, stop = _header(buf, pos, end, 0x06)
    enterprise = _decode_oid(buf[start:stop])
    start, p = _header(buf, stop, end, 0x40)
    agent_addr = buf[start:p]
    if len(agent_addr) != 4:
        raise DecodeError("agent-addr is not 4 octets")
    generic, p = _int_at(buf, p, end)
    specific, p = _int_at(buf, p, end)
    start, p = _header(buf, p, end, 0x43)
    if start == p:
        raise DecodeError("empty time-stamp")
    time_stamp = _from_bytes(buf[start:p], "big")
    if time_stamp > 0xFFFFFFFF:
        raise DecodeError("time-stamp out of range")
    vstart, vstop = _header(buf, p, end, 0x30)
    if vstop != end:
        raise DecodeError("trailing octets in Trap-PDU")
    varbinds = _decode_varbinds(buf, vstart, vstop)
    return TrapV1Pdu(enterprise, agent_addr, generic, specific, time_stamp, varbinds)


def message_version(data: bytes) -> int:
    """The msgVersion of a message (0 v1, 1 v2c, 3 v3) without decoding the rest."""
    try:
        start, stop = _header(data, 0, len(data), 0x30)
        version, _ = _int_at(data, start, stop)
    except IndexError:
        raise DecodeError("truncated") from None
    return version


def decode_message(data: bytes) -> CommunityMessage | V3Message:
    """Decode a whole datagram. Raises ``DecodeError`` and nothing else."""
    try:
        return _decode_message(bytes(data))
    except DecodeError:
        raise
    except (IndexError, ValueError, OverflowError):
        raise DecodeError("malformed message") from None


def _decode_message(buf: bytes) -> CommunityMessage | V3Message:
    end = len(buf)
    start, stop = _header(buf, 0, end, 0x30)
    if stop != end:
        raise DecodeError("trailing octets after the message")
    version, p = _int_at(buf, start, stop)
    if version in (VERSION_1, VERSION_2C):
        community, p = _octets_at(buf, p, stop)
        pdu, p = _decode_pdu(buf, p, stop)
        if p != stop:
            raise DecodeError("trailing octets after the PDU")
        if isinstance(pdu, TrapV1Pdu) and version != VERSION_1:
            raise DecodeError("a v1 Trap-PDU in a v2c message")
        if isinstance(pdu, Pdu) and version == VERSION_1 and pdu.type > PduType.TRAP_V1:
            raise DecodeError(f"{pdu.type.name} is not a v1 PDU")
        return CommunityMessage(version, community, pdu)
    if version == VERSION_3:
        return _decode_v3(buf, p, stop)
    raise DecodeError(f"unknown SNMP version {version}")


def _decode_v3(buf: bytes, p: int, end: int) -> V3Message:
    gstart, gstop = _header(buf, p, end, 0x30)
    msg_id, q = _int_at(buf, gstart, gstop)
    max_size, q = _int_at(buf, q, gstop)
    flags_raw, q = _octets_at(buf, q, gstop)
    model, q = _int_at(buf, q, gstop)
    if q != gstop or len(flags_raw) != 1:
        raise DecodeError("bad msgGlobalData")
    if not (0 <= msg_id <= 0x7FFFFFFF and 484 <= max_size <= 0x7FFFFFFF):
        raise DecodeError("msgID or msgMaxSize out of range")
    sstart, sstop = _header(buf, gstop, end, 0x04)
    params = buf[sstart:sstop]
    usm: UsmSecurityParameters | None = None
    auth_offset = -1
    if model == USM_SECURITY_MODEL:
        usm, rel = _decode_usm(params)
        auth_offset = sstart + rel
    tag, dstart, dstop = _any_header(buf, sstop, end)
    if dstop != end:
        raise DecodeError("trailing octets after msgData")
    if tag == 0x30:
        return V3Message(
            msg_id, max_size, flags_raw[0], model, params, usm, auth_offset,
            _decode_scoped(buf, sstop, dstop), None,
        )  # fmt: skip
    if tag == 0x04:
        return V3Message(
            msg_id, max_size, flags_raw[0], model, params, usm, auth_offset,
            None, buf[dstart:dstop],
        )  # fmt: skip
    raise DecodeError("msgData is neither a ScopedPDU nor an encrypted PDU")


def _decode_usm(params: bytes) -> tuple[UsmSecurityParameters, int]:
    end = len(params)
    start, stop = _header(params, 0, end, 0x30)
    if stop != end:
        raise DecodeError("trailing octets after UsmSecurityParameters")
    engine_id, p = _octets_at(params, start, stop)
    boots, p = _int_at(params, p, stop)
    time, p = _int_at(params, p, stop)
    user, p = _octets_at(params, p, stop)
    astart, p = _header(params, p, stop, 0x04)
    auth = params[astart:p]
    priv, p = _octets_at(params, p, stop)
    if p != stop:
        raise DecodeError("trailing octets in UsmSecurityParameters")
    if not (0 <= boots <= 0x7FFFFFFF and 0 <= time <= 0x7FFFFFFF):
        raise DecodeError("engine boots or time out of range")
    if len(engine_id) > 32 or len(user) > 32:
        raise DecodeError("engine ID or user name too long")
    return UsmSecurityParameters(engine_id, boots, time, user, auth, priv), astart


def decode_usm_parameters(params: bytes) -> UsmSecurityParameters:
    """Decode msgSecurityParameters' content (as ``V3Message.security_parameters``)."""
    try:
        return _decode_usm(bytes(params))[0]
    except DecodeError:
        raise
    except (IndexError, ValueError, OverflowError):
        raise DecodeError("malformed UsmSecurityParameters") from None


def _decode_scoped(buf: bytes, pos: int, end: int) -> ScopedPdu:
    start, stop = _header(buf, pos, end, 0x30)
    engine_id, p = _octets_at(buf, start, stop)
    name, p = _octets_at(buf, p, stop)
    pdu, p = _decode_pdu(buf, p, stop)
    if p != stop:
        raise DecodeError("trailing octets in ScopedPDU")
    if not isinstance(pdu, Pdu):
        raise DecodeError("a v1 Trap-PDU in a ScopedPDU")
    return ScopedPdu(engine_id, name, pdu)


def decode_scoped_pdu(data: bytes) -> ScopedPdu:
    """Decode a (decrypted) ScopedPDU. Octets after it are ignored: block ciphers pad."""
    try:
        return _decode_scoped(bytes(data), 0, len(data))
    except DecodeError:
        raise
    except (IndexError, ValueError, OverflowError):
        raise DecodeError("malformed ScopedPDU") from None


# --------------------------------------------------------------------------- encoding


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(raw),)) + raw


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    return bytes((tag,)) + _length(n) + content


def _int_content(n: int) -> bytes:
    return n.to_bytes((n + (n < 0)).bit_length() // 8 + 1, "big", signed=True)


def _int(n: int, tag: int = 0x02) -> bytes:
    return _tlv(tag, _int_content(n))


def encode_oid(oid: Sequence[int]) -> bytes:
    """The OBJECT IDENTIFIER TLV. Raises ``ValueError`` for an OID BER cannot carry."""
    if len(oid) < 2:
        raise ValueError("an OID needs at least two arcs")
    a, b = oid[0], oid[1]
    if not (0 <= a <= 2) or b < 0 or (a < 2 and b >= 40):
        raise ValueError("the first two arcs of an OID are 0..2 and (for 0, 1) 0..39")
    first = 40 * a + b
    rest = oid[2:]
    if first < 0x80 and (not rest or (max(rest) < 0x80 and min(rest) >= 0)):
        return _tlv(0x06, bytes((first, *rest)))
    out = bytearray()
    for arc in (first, *rest):
        if arc < 0:
            raise ValueError("OID arcs are non-negative")
        if arc < 0x80:
            out.append(arc)
            continue
        chunk = [arc & 0x7F]
        high = arc >> 7
        while high:
            chunk.append(0x80 | (high & 0x7F))
            high >>= 7
        out.extend(reversed(chunk))
    return _tlv(0x06, bytes(out))


def _encode_value(vb: VarBind) -> bytes:
    t = vb.type
    tag = _TAG_OF_TYPE[t]
    v = vb.value
    if v is None:
        return bytes((tag, 0))
    if isinstance(v, bytes):
        return _tlv(tag, v)
    if isinstance(v, int):
        return _int(v, tag)
    return encode_oid(v)


def encode_varbinds(varbinds: Iterable[VarBind | Oid]) -> bytes:
    """The VarBindList TLV. A bare OID stands for (OID, NULL), as in requests."""
    parts = []
    for vb in varbinds:
        if isinstance(vb, VarBind):
            parts.append(_tlv(0x30, encode_oid(vb.oid) + _encode_value(vb)))
        else:
            parts.append(_tlv(0x30, encode_oid(vb) + b"\x05\x00"))
    return _tlv(0x30, b"".join(parts))


NULL_VALUE = b"\x05\x00"


def encode_pdu(pdu: Pdu | TrapV1Pdu) -> bytes:
    """The PDU TLV (any type, including the v1 Trap-PDU)."""
    if isinstance(pdu, TrapV1Pdu):
        if len(pdu.agent_addr) != 4:
            raise ValueError("agent_addr must be 4 octets")
        body = (
            encode_oid(pdu.enterprise)
            + _tlv(0x40, pdu.agent_addr)
            + _int(pdu.generic_trap)
            + _int(pdu.specific_trap)
            + _int(pdu.time_stamp, 0x43)
            + encode_varbinds(pdu.varbinds)
        )
        return _tlv(PduType.TRAP_V1, body)
    body = (
        _int(pdu.request_id)
        + _int(pdu.error_status)
        + _int(pdu.error_index)
        + encode_varbinds(pdu.varbinds)
    )
    return _tlv(pdu.type, body)


def encode_request_pdu(
    pdu_type: PduType,
    request_id: int,
    oids: Iterable[Oid],
    non_repeaters: int = 0,
    max_repetitions: int = 0,
) -> bytes:
    """A GET/GETNEXT/GETBULK PDU TLV for ``oids`` (values NULL), without building ``VarBind``s."""
    body = _int(request_id) + _int(non_repeaters) + _int(max_repetitions) + encode_varbinds(oids)
    return _tlv(pdu_type, body)


def encode_community_message(version: int, community: bytes, pdu: bytes | Pdu | TrapV1Pdu) -> bytes:
    """A v1 (0) or v2c (1) message around a PDU (or an already encoded PDU TLV)."""
    if version not in (VERSION_1, VERSION_2C):
        raise ValueError("community messages are version 0 (v1) or 1 (v2c)")
    raw = pdu if isinstance(pdu, bytes) else encode_pdu(pdu)
    return _tlv(0x30, _int(version) + _tlv(0x04, community) + raw)


def encode_scoped_pdu(context_engine_id: bytes, context_name: bytes, pdu: bytes | Pdu) -> bytes:
    """The ScopedPDU TLV (the plaintext that USM may encrypt)."""
    raw = pdu if isinstance(pdu, bytes) else encode_pdu(pdu)
    return _tlv(0x30, _tlv(0x04, context_engine_id) + _tlv(0x04, context_name) + raw)


def encode_usm_parameters(params: UsmSecurityParameters) -> tuple[bytes, int]:
    """The UsmSecurityParameters SEQUENCE and the offset of the auth params' content in it."""
    head = (
        _tlv(0x04, params.engine_id)
        + _int(params.engine_boots)
        + _int(params.engine_time)
        + _tlv(0x04, params.user_name)
    )
    auth = _tlv(0x04, params.auth_params)
    body = head + auth + _tlv(0x04, params.priv_params)
    whole = _tlv(0x30, body)
    offset = len(whole) - len(body) + len(head) + (len(auth) - len(params.auth_params))
    return whole, offset


def encode_v3_message(
    *,
    msg_id: int,
    max_size: int,
    flags: int,
    params: UsmSecurityParameters,
    msg_data: bytes,
    encrypted: bool,
) -> tuple[bytes, int]:
    """A whole SNMPv3/USM message; returns it and the offset of the auth params' content.

    ``msg_data`` is the ScopedPDU TLV, or the ciphertext when ``encrypted``. The
    caller (``usm``) puts placeholder auth params of the right length in ``params``
    and splices the digest in at the returned offset.
    """
    usm, usm_offset = encode_usm_parameters(params)
    head = _int(VERSION_3) + _tlv(
        0x30, _int(msg_id) + _int(max_size) + _tlv(0x04, bytes((flags,))) + _int(3)
    )
    sec = _tlv(0x04, usm)
    data = _tlv(0x04, msg_data) if encrypted else msg_data
    body = head + sec + data
    whole = _tlv(0x30, body)
    offset = (len(whole) - len(body)) + len(head) + (len(sec) - len(usm)) + usm_offset
    return whole, offset
