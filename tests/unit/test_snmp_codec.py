"""The BER codec: round trips, equivalence with pysnmp's pyasn1 codec in both
directions, hand-checked encodings, and arbitrary bytes raising only DecodeError."""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder, encoder  # type: ignore[import-untyped]  # pyasn1: no stubs

from commandcentre.snmp import codec
from commandcentre.snmp.codec import (
    CommunityMessage,
    DecodeError,
    Pdu,
    PduType,
    ScopedPdu,
    TrapV1Pdu,
    UsmSecurityParameters,
    V3Message,
)
from commandcentre.snmp.types import Oid, SnmpType, VarBind

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from pysnmp.proto import api, rfc1905

    from commandcentre.snmp.pysnmp_client import _to_varbind

V1 = api.PROTOCOL_MODULES[api.SNMP_VERSION_1]
V2 = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]

# --------------------------------------------------------------------------- strategies

arcs = st.one_of(
    st.integers(0, 127),
    st.integers(0, 0xFFFFFFFF),
)


@st.composite
def oids(draw: st.DrawFn) -> Oid:
    first = draw(st.integers(0, 2))
    second = draw(st.integers(0, 39) if first < 2 else st.integers(0, 1000))
    return (first, second, *draw(st.lists(arcs, max_size=20)))


U32 = st.integers(0, 0xFFFFFFFF)
VALUES: dict[SnmpType, st.SearchStrategy[Any]] = {
    SnmpType.INTEGER: st.integers(-(2**31), 2**31 - 1),
    SnmpType.OCTET_STRING: st.binary(max_size=300),
    SnmpType.OBJECT_IDENTIFIER: oids(),
    SnmpType.IP_ADDRESS: st.binary(min_size=4, max_size=4),
    SnmpType.COUNTER32: U32,
    SnmpType.GAUGE32: U32,
    SnmpType.TIMETICKS: U32,
    SnmpType.OPAQUE: st.binary(max_size=50),
    SnmpType.COUNTER64: st.integers(0, 2**64 - 1),
    SnmpType.NULL: st.none(),
    SnmpType.NO_SUCH_OBJECT: st.none(),
    SnmpType.NO_SUCH_INSTANCE: st.none(),
    SnmpType.END_OF_MIB_VIEW: st.none(),
}
V1_TYPES: list[SnmpType] = [
    t
    for t in VALUES
    if t
    not in (
        SnmpType.COUNTER64,
        SnmpType.NO_SUCH_OBJECT,
        SnmpType.NO_SUCH_INSTANCE,
        SnmpType.END_OF_MIB_VIEW,
    )
]


@st.composite
def varbinds(draw: st.DrawFn, types: list[SnmpType] | None = None) -> VarBind:
    kind = draw(st.sampled_from(types or list(VALUES)))
    return VarBind(draw(oids()), kind, draw(VALUES[kind]))


def varbind_lists(types: list[SnmpType] | None = None) -> st.SearchStrategy[tuple[VarBind, ...]]:
    return st.lists(varbinds(types), max_size=12).map(tuple)


request_ids = st.integers(-(2**31), 2**31 - 1)


@st.composite
def pdus(draw: st.DrawFn, types: list[PduType] | None = None) -> Pdu:
    kinds = types or [t for t in PduType if t is not PduType.TRAP_V1]
    return Pdu(
        draw(st.sampled_from(kinds)),
        draw(request_ids),
        draw(st.integers(0, 18)),
        draw(st.integers(0, 100)),
        draw(varbind_lists()),
    )


@st.composite
def traps_v1(draw: st.DrawFn) -> TrapV1Pdu:
    return TrapV1Pdu(
        draw(oids()),
        draw(st.binary(min_size=4, max_size=4)),
        draw(st.integers(0, 6)),
        draw(st.integers(0, 2**31 - 1)),
        draw(U32),
        draw(varbind_lists(V1_TYPES)),
    )


# --------------------------------------------------------------------------- pysnmp bridge

_TO_PYSNMP = {
    SnmpType.INTEGER: "Integer",
    SnmpType.OCTET_STRING: "OctetString",
    SnmpType.OBJECT_IDENTIFIER: "ObjectIdentifier",
    SnmpType.IP_ADDRESS: "IpAddress",
    SnmpType.COUNTER32: "Counter32",
    SnmpType.GAUGE32: "Gauge32",
    SnmpType.TIMETICKS: "TimeTicks",
    SnmpType.OPAQUE: "Opaque",
    SnmpType.COUNTER64: "Counter64",
}


def to_pysnmp(vb: VarBind, p: Any = V2) -> tuple[Any, Any]:
    if vb.type is SnmpType.NULL:
        value = p.Null("")
    elif vb.type is SnmpType.NO_SUCH_OBJECT:
        value = rfc1905.noSuchObject
    elif vb.type is SnmpType.NO_SUCH_INSTANCE:
        value = rfc1905.noSuchInstance
    elif vb.type is SnmpType.END_OF_MIB_VIEW:
        value = rfc1905.endOfMibView
    elif p is V1 and vb.type is SnmpType.COUNTER32:
        value = p.Counter(vb.value)
    elif p is V1 and vb.type is SnmpType.GAUGE32:
        value = p.Gauge(vb.value)
    else:
        value = getattr(p, _TO_PYSNMP[vb.type])(vb.value)
    return p.ObjectIdentifier(vb.oid), value


_PDU_CLASSES = {
    PduType.GET: "GetRequestPDU",
    PduType.GET_NEXT: "GetNextRequestPDU",
    PduType.RESPONSE: "ResponsePDU",
    PduType.SET: "SetRequestPDU",
    PduType.INFORM: "InformRequestPDU",
    PduType.TRAP_V2: "SNMPv2TrapPDU",
    PduType.REPORT: "ReportPDU",
}


def pysnmp_v2c_message(community: bytes, pdu: Pdu) -> bytes:
    p = V2
    if pdu.type is PduType.GET_BULK:
        req = p.GetBulkRequestPDU()
        p.apiBulkPDU.set_defaults(req)
        p.apiBulkPDU.set_request_id(req, pdu.request_id)
        p.apiBulkPDU.set_non_repeaters(req, pdu.error_status)
        p.apiBulkPDU.set_max_repetitions(req, pdu.error_index)
        p.apiBulkPDU.set_varbinds(req, [to_pysnmp(vb) for vb in pdu.varbinds])
    else:
        req = getattr(p, _PDU_CLASSES[pdu.type])()
        p.apiPDU.set_defaults(req)
        p.apiPDU.set_request_id(req, pdu.request_id)
        p.apiPDU.set_error_status(req, pdu.error_status)
        p.apiPDU.set_error_index(req, pdu.error_index)
        p.apiPDU.set_varbinds(req, [to_pysnmp(vb) for vb in pdu.varbinds])
    msg = p.Message()
    p.apiMessage.set_defaults(msg)
    p.apiMessage.set_community(msg, community)
    p.apiMessage.set_pdu(msg, req)
    return bytes(encoder.encode(msg))


def pysnmp_decode_v2c(data: bytes) -> tuple[bytes, int, int, int, int, list[VarBind]]:
    p = V2
    msg, rest = decoder.decode(data, asn1Spec=p.Message())
    assert not rest
    pdu = p.apiMessage.get_pdu(msg)
    tag = pdu.tagSet[0]
    vbs = [_to_varbind(n, v) for n, v in p.apiPDU.get_varbinds(pdu)]
    return (
        bytes(p.apiMessage.get_community(msg)),
        0xA0 | int(tag.tagId),
        int(p.apiPDU.get_request_id(pdu)),
        int(pdu[1]),
        int(pdu[2]),
        vbs,
    )


# --------------------------------------------------------------------------- round trips

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.binary(max_size=40), pdus())
def test_v2c_message_round_trip(community: bytes, pdu: Pdu) -> None:
    wire = codec.encode_community_message(1, community, pdu)
    assert codec.decode_message(wire) == CommunityMessage(1, community, pdu)


@FAST
@given(st.binary(max_size=40), traps_v1())
def test_v1_trap_round_trip(community: bytes, trap: TrapV1Pdu) -> None:
    wire = codec.encode_community_message(0, community, trap)
    assert codec.decode_message(wire) == CommunityMessage(0, community, trap)


@FAST
@given(
    st.integers(0, 2**31 - 1),
    st.integers(484, 2**31 - 1),
    st.integers(0, 7),
    st.builds(
        UsmSecurityParameters,
        st.binary(max_size=32),
        st.integers(0, 2**31 - 1),
        st.integers(0, 2**31 - 1),
        st.binary(max_size=32),
        st.binary(max_size=48),
        st.binary(max_size=8),
    ),
    st.binary(max_size=32),
    st.binary(max_size=32),
    pdus(),
)
def test_v3_message_round_trip(  # noqa: PLR0917 - one argument per generated field
    msg_id: int,
    max_size: int,
    flags: int,
    params: UsmSecurityParameters,
    context_engine_id: bytes,
    context_name: bytes,
    pdu: Pdu,
) -> None:
    scoped = codec.encode_scoped_pdu(context_engine_id, context_name, pdu)
    wire, offset = codec.encode_v3_message(
        msg_id=msg_id, max_size=max_size, flags=flags, params=params, msg_data=scoped,
        encrypted=False,
    )  # fmt: skip
    msg = codec.decode_message(wire)
    assert isinstance(msg, V3Message)
    assert (msg.msg_id, msg.max_size, msg.flags, msg.usm) == (msg_id, max_size, flags, params)
    assert msg.scoped_pdu == ScopedPdu(context_engine_id, context_name, pdu)
    assert msg.auth_offset == offset
    assert wire[offset : offset + len(params.auth_params)] == params.auth_params
    # the same message with the data encrypted (opaque octets here)
    wire, _ = codec.encode_v3_message(
        msg_id=msg_id, max_size=max_size, flags=flags, params=params, msg_data=b"secret",
        encrypted=True,
    )  # fmt: skip
    msg = codec.decode_message(wire)
    assert isinstance(msg, V3Message)
    assert (msg.scoped_pdu, msg.encrypted_pdu) == (None, b"secret")


# --------------------------------------------------------------------------- pysnmp equivalence


@FAST
@given(st.binary(max_size=40), pdus())
def test_decodes_what_pysnmp_encodes(community: bytes, pdu: Pdu) -> None:
    wire = pysnmp_v2c_message(community, pdu)
    assert codec.decode_message(wire) == CommunityMessage(1, community, pdu)


@FAST
@given(st.binary(max_size=40), pdus())
def test_pysnmp_decodes_what_we_encode(community: bytes, pdu: Pdu) -> None:
    wire = codec.encode_community_message(1, community, pdu)
    assert pysnmp_decode_v2c(wire) == (
        community,
        int(pdu.type),
        pdu.request_id,
        pdu.error_status,
        pdu.error_index,
        list(pdu.varbinds),
    )


@FAST
@given(traps_v1())
def test_v1_trap_equivalent_to_pysnmp(trap: TrapV1Pdu) -> None:
    p = V1
    pdu = p.TrapPDU()
    p.apiTrapPDU.set_defaults(pdu)
    p.apiTrapPDU.set_enterprise(pdu, trap.enterprise)
    p.apiTrapPDU.set_agent_address(pdu, p.IpAddress(trap.agent_addr))
    p.apiTrapPDU.set_generic_trap(pdu, trap.generic_trap)
    p.apiTrapPDU.set_specific_trap(pdu, trap.specific_trap)
    p.apiTrapPDU.set_timestamp(pdu, trap.time_stamp)
    p.apiTrapPDU.set_varbinds(pdu, [to_pysnmp(vb, V1) for vb in trap.varbinds])
    msg = p.Message()
    p.apiMessage.set_defaults(msg)
    p.apiMessage.set_community(msg, b"traps")
    p.apiMessage.set_pdu(msg, pdu)
    theirs = bytes(encoder.encode(msg))
    assert codec.decode_message(theirs) == CommunityMessage(0, b"traps", trap)
    ours = codec.encode_community_message(0, b"traps", trap)
    decoded, _ = decoder.decode(ours, asn1Spec=p.Message())
    back = p.apiMessage.get_pdu(decoded)
    assert tuple(p.apiTrapPDU.get_enterprise(back)) == trap.enterprise
    assert bytes(p.apiTrapPDU.get_agent_address(back).asOctets()) == trap.agent_addr
    assert int(p.apiTrapPDU.get_generic_trap(back)) == trap.generic_trap
    assert int(p.apiTrapPDU.get_specific_trap(back)) == trap.specific_trap
    assert int(p.apiTrapPDU.get_timestamp(back)) == trap.time_stamp
    got = [_to_varbind(n, v) for n, v in p.apiTrapPDU.get_varbinds(back)]
    assert got == list(trap.varbinds)


@FAST
@given(st.lists(oids(), min_size=1, max_size=60), st.integers(0, 2**31 - 1), st.integers(0, 100))
def test_requests_equivalent_to_pysnmp(oid_list: list[Oid], rid: int, reps: int) -> None:
    ours = codec.encode_community_message(
        1, b"public", codec.encode_request_pdu(PduType.GET_BULK, rid, oid_list, 0, reps)
    )
    expected = Pdu(
        PduType.GET_BULK, rid, 0, reps, tuple(VarBind(o, SnmpType.NULL, None) for o in oid_list)
    )
    assert ours == pysnmp_v2c_message(b"public", expected)


# --------------------------------------------------------------------------- hand-checked bytes

# A v2c GetResponse for sysUpTime.0 = TimeTicks 4242, request-id 1, community "public".
RESPONSE = bytes.fromhex(
    "3028 020101 04067075626c6963"  # SEQUENCE, version 1 (v2c), community
    "a21b 020101 020100 020100"  # GetResponse, request-id, error-status, error-index
    "3010 300e 06082b06010201010300 43021092"  # varbinds: sysUpTime.0 = TimeTicks 4242
)


def test_known_response() -> None:
    msg = codec.decode_message(RESPONSE)
    assert msg == CommunityMessage(
        1,
        b"public",
        Pdu(
            PduType.RESPONSE,
            1,
            0,
            0,
            (VarBind((1, 3, 6, 1, 2, 1, 1, 3, 0), SnmpType.TIMETICKS, 4242),),
        ),
    )
    assert codec.encode_community_message(1, b"public", msg.pdu) == RESPONSE


@pytest.mark.parametrize(
    ("raw", "oid"),
    [
        ("2b0601", (1, 3, 6, 1)),
        ("00", (0, 0)),
        ("7f", (2, 47)),
        ("8100", (2, 48)),  # first subidentifier 128: arcs 2.48
        ("2b8f7f", (1, 3, 2047)),
        ("2b8fffffff7f", (1, 3, 0xFFFFFFFF)),
        ("2b81808080800001", (1, 3, 2**35, 1)),  # arcs beyond 32 bits still decode
    ],
)
def test_oid_encodings(raw: str, oid: Oid) -> None:
    content = bytes.fromhex(raw)
    assert codec._decode_oid(content) == oid
    assert codec.encode_oid(oid) == bytes((0x06, len(content))) + content


@pytest.mark.parametrize(
    "raw",
    [
        "",  # empty
        "2b80",  # ends inside a subidentifier
        "2b807f",  # non-minimal (leading 0x80)
    ],
)
def test_bad_oids(raw: str) -> None:
    with pytest.raises(DecodeError):
        codec._decode_oid(bytes.fromhex(raw))


def _response_with_value(value: bytes) -> bytes:
    oid = codec.encode_oid((1, 3, 6, 1, 2, 1, 1, 3, 0))
    vb = codec._tlv(0x30, oid + value)
    pdu = codec._tlv(0xA2, bytes.fromhex("020101020100020100") + codec._tlv(0x30, vb))
    return codec._tlv(0x30, bytes.fromhex("020101") + codec._tlv(0x04, b"public") + pdu)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # agents that forget the leading zero of unsigned values >= 2**31
        ("4104ffffffff", VarBind((1, 3, 6, 1, 2, 1, 1, 3, 0), SnmpType.COUNTER32, 0xFFFFFFFF)),
        ("430500ffffffff", VarBind((1, 3, 6, 1, 2, 1, 1, 3, 0), SnmpType.TIMETICKS, 0xFFFFFFFF)),
        (
            "4608ffffffffffffffff",
            VarBind((1, 3, 6, 1, 2, 1, 1, 3, 0), SnmpType.COUNTER64, 2**64 - 1),
        ),
        ("0201ff", VarBind((1, 3, 6, 1, 2, 1, 1, 3, 0), SnmpType.INTEGER, -1)),
        ("8200", VarBind((1, 3, 6, 1, 2, 1, 1, 3, 0), SnmpType.END_OF_MIB_VIEW, None)),
        ("0481020102", VarBind((1, 3, 6, 1, 2, 1, 1, 3, 0), SnmpType.OCTET_STRING, b"\x01\x02")),
    ],
)
def test_value_encodings(value: str, expected: VarBind) -> None:
    msg = codec.decode_message(_response_with_value(bytes.fromhex(value)))
    assert isinstance(msg, CommunityMessage)
    assert msg.pdu.varbinds == (expected,)


@pytest.mark.parametrize(
    "value",
    [
        "0c026f6b",  # UTF8String: a type SNMP does not have
        "410500ffffffffff",  # Counter32 beyond 32 bits
        "4100",  # empty Counter32
        "0200",  # empty INTEGER
        "4003010203",  # IpAddress of 3 octets
        "050100",  # NULL with content
        "0480",  # indefinite length
        "048500000000ff",  # 5-octet length
        "3f0100",  # high tag number
    ],
)
def test_bad_values(value: str) -> None:
    with pytest.raises(DecodeError):
        codec.decode_message(_response_with_value(bytes.fromhex(value)))


def test_structure_errors() -> None:
    good = RESPONSE
    for bad in (
        good + b"\x00",  # trailing octets
        good[:-1],  # truncated
        b"\x30\x03\x02\x01\x02",  # version 2 does not exist
        b"",
        b"\x30",
    ):
        with pytest.raises(DecodeError):
            codec.decode_message(bad)
    # a GETBULK inside a v1 message
    bulk = codec.encode_request_pdu(PduType.GET_BULK, 1, [(1, 3)], 0, 10)
    with pytest.raises(DecodeError):
        codec.decode_message(codec._tlv(0x30, b"\x02\x01\x00\x04\x00" + bulk))
    # a v1 Trap-PDU inside a v2c message
    trap = codec.encode_pdu(TrapV1Pdu((1, 3), b"\x7f\0\0\1", 6, 1, 0, ()))
    with pytest.raises(DecodeError):
        codec.decode_message(codec._tlv(0x30, b"\x02\x01\x01\x04\x00" + trap))


def test_encoder_refuses_what_ber_cannot_carry() -> None:
    for bad in ((1,), (3, 1), (1, 40), (1, 3, -1)):
        with pytest.raises(ValueError, match="OID"):
            codec.encode_oid(bad)
    with pytest.raises(ValueError, match="version"):
        codec.encode_community_message(3, b"", codec.encode_request_pdu(PduType.GET, 1, [(1, 3)]))


def test_scoped_pdu_ignores_cipher_padding() -> None:
    pdu = Pdu(PduType.RESPONSE, 5, 0, 0, ())
    raw = codec.encode_scoped_pdu(b"engine", b"ctx", pdu)
    assert codec.decode_scoped_pdu(raw + b"\0" * 7) == ScopedPdu(b"engine", b"ctx", pdu)


# --------------------------------------------------------------------------- fuzzing


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    for fn in (codec.decode_message, codec.decode_scoped_pdu, codec.decode_usm_parameters):
        with contextlib.suppress(DecodeError):
            fn(data)


@settings(max_examples=300, deadline=None)
@given(pdus(), st.data())
def test_mutated_messages_raise_only_decode_error(pdu: Pdu, data: st.DataObject) -> None:
    wire = bytearray(codec.encode_community_message(1, b"public", pdu))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(wire) - 1))
        wire[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(wire)))
    for candidate in (bytes(wire), bytes(wire[:cut])):
        with contextlib.suppress(DecodeError):
            codec.decode_message(candidate)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200), st.data())
def test_v3_shaped_garbage_raises_only_decode_error(tail: bytes, data: st.DataObject) -> None:
    params = UsmSecurityParameters(b"engine", 1, 2, b"user", b"\0" * 12, b"\0" * 8)
    wire, _ = codec.encode_v3_message(
        msg_id=1, max_size=65507, flags=3, params=params, msg_data=tail, encrypted=True
    )
    mutated = bytearray(wire)
    i = data.draw(st.integers(0, len(mutated) - 1))
    mutated[i] ^= data.draw(st.integers(1, 255))
    for candidate in (wire, bytes(mutated), wire + tail):
        with contextlib.suppress(DecodeError):
            codec.decode_message(candidate)
