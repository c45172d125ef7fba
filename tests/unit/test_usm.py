"""SNMPv3 USM: key localisation (RFC 3414 A.3 vectors, pysnmp for the rest), message
protection round trips, the receiver's checks and their failure reasons, clocks."""

from __future__ import annotations

import hashlib
import warnings
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyasn1.type import univ  # type: ignore[import-untyped]  # pyasn1: no stubs

from commandcentre.snmp import codec, usm
from commandcentre.snmp.codec import FLAG_AUTH, FLAG_PRIV, FLAG_REPORTABLE, Pdu, PduType
from commandcentre.snmp.types import SnmpType, VarBind
from commandcentre.snmp.usm import (
    EngineClock,
    LocalEngine,
    UserTable,
    UsmError,
    UsmFailure,
    UsmUser,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    # pysnmp's secmod modules import each other in a cycle that resolves only when
    # entered from the top: load the USM package first.
    import pysnmp.proto.secmod.rfc3414  # noqa: F401 - import order, see above
    from pysnmp.proto.secmod.eso.priv import aes192, aes256
    from pysnmp.proto.secmod.rfc3414 import localkey
    from pysnmp.proto.secmod.rfc3414.auth import hmacmd5, hmacsha
    from pysnmp.proto.secmod.rfc3414.priv import des
    from pysnmp.proto.secmod.rfc3826.priv import aes
    from pysnmp.proto.secmod.rfc7860.auth import hmacsha2

RFC_ENGINE = bytes.fromhex("000000000000000000000002")
AUTH_OIDS = {
    "MD5": hmacmd5.HmacMd5.SERVICE_ID,
    "SHA": hmacsha.HmacSha.SERVICE_ID,
    "SHA224": hmacsha2.HmacSha2.SHA224_SERVICE_ID,
    "SHA256": hmacsha2.HmacSha2.SHA256_SERVICE_ID,
    "SHA384": hmacsha2.HmacSha2.SAH384_SERVICE_ID,
    "SHA512": hmacsha2.HmacSha2.SHA512_SERVICE_ID,
}
PYSNMP_PRIV: dict[str, Any] = {
    "DES": des.Des(),
    "AES": aes.Aes(),
    "AES192": aes192.AesBlumenthal192(),
    "AES256": aes256.AesBlumenthal256(),
    "AES192C": aes192.Aes192(),
    "AES256C": aes256.Aes256(),
}

# --------------------------------------------------------------------------- keys


@pytest.mark.parametrize(
    ("proto", "ku", "kul"),
    [
        (
            "MD5",
            "9faf3283884e92834ebc9847d8edd963",
            "526f5eed9fcce26f8964c2930787d82b",
        ),
        (
            "SHA",
            "9fb5cc0381497b3793528939ff788d5d79145211",
            "6695febc9288e36282235fc7151f128497b38f3f",
        ),
    ],
)
def test_rfc3414_a3_vectors(proto: str, ku: str, kul: str) -> None:
    master = usm.password_to_key(b"maplesyrup", proto)
    assert master.hex() == ku
    assert usm.localize_key(master, RFC_ENGINE, proto).hex() == kul


@pytest.mark.parametrize("proto", list(AUTH_OIDS))
def test_auth_keys_match_pysnmp(proto: str) -> None:
    algo = getattr(hashlib, usm.AUTH_PROTOCOLS[proto][0])
    theirs = localkey.password_to_key(b"maplesyrup", univ.OctetString(RFC_ENGINE), algo)
    ours = usm.localize_key(usm.password_to_key(b"maplesyrup", proto), RFC_ENGINE, proto)
    assert ours == bytes(theirs)


@pytest.mark.parametrize("priv", list(PYSNMP_PRIV))
@pytest.mark.parametrize("auth", ["MD5", "SHA", "SHA256", "SHA512"])
def test_priv_keys_match_pysnmp(auth: str, priv: str) -> None:
    """Including the AES-192/256 key extensions: Blumenthal (net-snmp's) for AES192 and
    AES256, Reeder (Cisco's) for AES192C and AES256C, as pysnmp does for those names."""
    service = PYSNMP_PRIV[priv]
    ku = service.hash_passphrase(AUTH_OIDS[auth], "priv-pass-1")
    theirs = service.localize_key(AUTH_OIDS[auth], ku, univ.OctetString(RFC_ENGINE))
    user = UsmUser.from_passwords("u", auth, "auth-pass-1", priv, "priv-pass-1")
    ours = usm.localize(user, RFC_ENGINE).priv_key
    size = usm.PRIV_PROTOCOLS[priv][0]
    assert ours == bytes(theirs)[:size]
    assert len(ours) == size


def test_keys_never_show() -> None:
    user = UsmUser.from_passwords("alice", "SHA", "auth-pass-1", "AES", "priv-pass-1")
    local = usm.localize(user, RFC_ENGINE)
    for text in (repr(user), str(user), repr(local), str(local)):
        assert user.auth_master.hex() not in text
        assert local.auth_key.hex() not in text
        assert str(local.priv_key) not in text
        assert "pass" not in text


def test_bad_user_definitions() -> None:
    with pytest.raises(ValueError, match="privacy needs authentication"):
        UsmUser.from_passwords("u", None, None, "AES", "x")
    with pytest.raises(ValueError, match="unknown auth protocol"):
        UsmUser.from_passwords("u", "SHA1", "password")
    with pytest.raises(ValueError, match="unknown priv protocol"):
        UsmUser.from_passwords("u", "SHA", "password", "3DES", "password")
    with pytest.raises(ValueError, match="empty"):
        UsmUser.from_passwords("u", "SHA", "")


# --------------------------------------------------------------------------- round trips

PAIRS = [(a, None) for a in usm.AUTH_PROTOCOLS] + [
    ("SHA", p) for p in usm.PRIV_PROTOCOLS
] + [("MD5", "DES"), ("SHA512", "AES256"), ("SHA224", "AES192C")]  # fmt: skip

ENGINE = bytes.fromhex("80001f8880aabbccddeeff0011")
NOW = 1000.0


def _user(auth: str | None, priv: str | None, name: str = "alice") -> UsmUser:
    return UsmUser.from_passwords(
        name, auth, "auth-pass-1" if auth else None, priv, "priv-pass-1" if priv else None
    )


def _message(
    user: UsmUser,
    *,
    level: int | None = None,
    engine: bytes = ENGINE,
    boots: int = 3,
    time: int = 500,
    pdu: Pdu | None = None,
    msg_id: int = 77,
) -> bytes:
    pdu = pdu or Pdu(
        PduType.INFORM,
        msg_id,
        0,
        0,
        (VarBind((1, 3, 6, 1, 2, 1, 1, 3, 0), SnmpType.TIMETICKS, 42),),
    )
    return usm.encode_v3(
        msg_id=msg_id,
        user=usm.localize(user, engine),
        level=user.level if level is None else level,
        engine_boots=boots,
        engine_time=time,
        scoped_pdu=codec.encode_scoped_pdu(engine, b"ctx", pdu),
        reportable=True,
    )


def _verify(
    data: bytes,
    users: list[UsmUser],
    local: LocalEngine | None = None,
    clocks: dict[bytes, EngineClock] | None = None,
    now: float = NOW,
) -> usm.Verified:
    msg = codec.decode_message(data)
    assert isinstance(msg, codec.V3Message)
    return usm.verify_incoming(
        data,
        msg,
        users=UserTable(users),
        local=local or LocalEngine(ENGINE, 3, NOW - 500),
        clocks={} if clocks is None else clocks,
        now=now,
    )


@pytest.mark.parametrize(("auth", "priv"), PAIRS)
def test_protect_and_verify_round_trip(auth: str, priv: str | None) -> None:
    user = _user(auth, priv)
    data = _message(user)
    msg = codec.decode_message(data)
    assert isinstance(msg, codec.V3Message)
    assert msg.flags == user.level | FLAG_REPORTABLE
    assert (msg.scoped_pdu is None) == (priv is not None)  # encrypted iff privacy
    v = _verify(data, [user])
    assert v.authoritative
    assert v.scoped_pdu.pdu.varbinds[0].value == 42
    assert v.scoped_pdu.context_name == b"ctx"
    # the same keys, via unprotect (what the command generator uses)
    assert usm.unprotect(data, msg, usm.localize(user, ENGINE)) == v.scoped_pdu


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(PAIRS),
    st.binary(min_size=1, max_size=40),
    st.binary(min_size=5, max_size=32),
    st.integers(0, 2**31 - 2),
    st.integers(0, 2**31 - 1),
    st.binary(max_size=600),
)
def test_round_trip_any_content(  # noqa: PLR0917 - one argument per generated field
    pair: tuple[str, str | None],
    password: bytes,
    engine: bytes,
    boots: int,
    time: int,
    payload: bytes,
) -> None:
    auth, priv = pair
    user = UsmUser.from_passwords("bob", auth, password, priv, password if priv else None)
    keys = usm.localize(user, engine)
    pdu = Pdu(PduType.RESPONSE, 5, 0, 0, (VarBind((1, 3, 6), SnmpType.OCTET_STRING, payload),))
    data = usm.encode_v3(
        msg_id=5,
        user=keys,
        level=user.level,
        engine_boots=boots,
        engine_time=time,
        scoped_pdu=codec.encode_scoped_pdu(engine, b"", pdu),
        reportable=False,
    )
    msg = codec.decode_message(data)
    assert isinstance(msg, codec.V3Message)
    assert usm.unprotect(data, msg, keys).pdu == pdu


def test_salts_do_not_repeat() -> None:
    user = _user("SHA", "AES")
    salts = set()
    for _ in range(50):
        msg = codec.decode_message(_message(user))
        assert isinstance(msg, codec.V3Message)
        assert msg.usm is not None
        salts.add(msg.usm.priv_params)
    assert len(salts) == 50


# --------------------------------------------------------------------------- receiver failures


def _failure(data: bytes, users: list[UsmUser], **kwargs: Any) -> UsmFailure:
    with pytest.raises(UsmError) as e:
        _verify(data, users, **kwargs)
    for secret in ("auth-pass-1", "priv-pass-1", "other-pass"):
        assert secret not in str(e.value)
    return e.value.failure


def test_discovery_is_unknown_engine_id() -> None:
    data = usm.encode_discovery(9, 9)
    assert _failure(data, [_user("SHA", "AES")]) is UsmFailure.UNKNOWN_ENGINE_ID


def test_unknown_user() -> None:
    data = _message(_user("SHA", "AES", name="mallory"))
    assert _failure(data, [_user("SHA", "AES")]) is UsmFailure.UNKNOWN_USER


def test_wrong_digest() -> None:
    impostor = UsmUser.from_passwords("alice", "SHA", "other-pass", "AES", "priv-pass-1")
    assert _failure(_message(impostor), [_user("SHA", "AES")]) is UsmFailure.WRONG_DIGEST
    # one flipped bit anywhere in an authenticated message
    data = bytearray(_message(_user("SHA", None)))
    data[-3] ^= 0x01
    assert _failure(bytes(data), [_user("SHA", None)]) is UsmFailure.WRONG_DIGEST


def test_decryption_error() -> None:
    wrong_priv = UsmUser.from_passwords("alice", "SHA", "auth-pass-1", "AES", "other-pass")
    assert _failure(_message(wrong_priv), [_user("SHA", "AES")]) is UsmFailure.DECRYPTION_ERROR


def test_unsupported_security_level() -> None:
    # the user has no privacy, the message claims it; and a level below the minimum
    assert _failure(_message(_user("SHA", "AES")), [_user("SHA", None)]) is (
        UsmFailure.UNSUPPORTED_SEC_LEVEL
    )
    data = _message(_user(None, None))
    with pytest.raises(UsmError) as e:
        usm.verify_incoming(
            data,
            codec.decode_message(data),  # type: ignore[arg-type]
            users=UserTable([_user(None, None)]),
            local=LocalEngine(ENGINE, 3, NOW - 500),
            clocks={},
            now=NOW,
            min_level=FLAG_AUTH,
        )
    assert e.value.failure is UsmFailure.UNSUPPORTED_SEC_LEVEL


def test_authoritative_time_window() -> None:
    user = _user("SHA", "AES")
    local = LocalEngine(ENGINE, 3, NOW - 500)  # our time is 500
    assert _verify(_message(user, time=650), [user], local=local)
    assert _failure(_message(user, time=651), [user], local=local) is UsmFailure.NOT_IN_TIME_WINDOW
    assert _failure(_message(user, time=349), [user], local=local) is UsmFailure.NOT_IN_TIME_WINDOW
    assert _failure(_message(user, boots=2), [user], local=local) is UsmFailure.NOT_IN_TIME_WINDOW
    # unauthenticated messages have no time window
    anon = _user(None, None)
    assert _verify(_message(anon, boots=0, time=0), [anon], local=local)


def test_trap_time_window_is_tracked_per_engine() -> None:
    user = _user("SHA", "AES")
    other = bytes.fromhex("80001f8880deadbeef")
    clocks: dict[bytes, EngineClock] = {}
    v = _verify(_message(user, engine=other, boots=5, time=100), [user], clocks=clocks)
    assert not v.authoritative
    assert v.engine_id == other
    assert clocks[other].boots == 5
    # 60 s later the sender's clock says 160; a replay of an old message is refused
    later = NOW + 60
    assert _verify(
        _message(user, engine=other, boots=5, time=160), [user], clocks=clocks, now=later
    )
    assert (
        _failure(_message(user, engine=other, boots=5, time=5), [user], clocks=clocks, now=later)
        is UsmFailure.NOT_IN_TIME_WINDOW
    )
    assert (
        _failure(_message(user, engine=other, boots=4, time=999), [user], clocks=clocks, now=later)
        is UsmFailure.NOT_IN_TIME_WINDOW
    )
    # a reboot (more boots) is accepted and becomes the new reference
    assert _verify(_message(user, engine=other, boots=6, time=1), [user], clocks=clocks, now=later)
    assert clocks[other].boots == 6


def test_engine_clock() -> None:
    clock = EngineClock(b"e", 2, 100, 50.0)
    assert clock.now(60.5) == (2, 110)
    assert clock.in_window(2, 100 - 150 + 10, 60.0)
    assert not clock.in_window(2, 100 - 150 + 9, 60.0)
    assert not clock.in_window(1, 100, 60.0)
    assert not clock.in_window(usm.MAX_BOOTS, 100, 60.0)
    assert clock.updated(2, 105, 60.0) is clock  # not newer than our estimate (110)
    assert clock.updated(2, 200, 60.0) == EngineClock(b"e", 2, 200, 60.0)
    assert clock.updated(3, 0, 60.0) == EngineClock(b"e", 3, 0, 60.0)


# --------------------------------------------------------------------------- reports


@pytest.mark.parametrize("failure", list(UsmFailure))
def test_reports_name_their_failure(failure: UsmFailure) -> None:
    local = LocalEngine(ENGINE, 7, NOW - 42)
    data = usm.encode_report(
        msg_id=31, local=local, now=NOW, failure=failure, count=12, request_id=99
    )
    msg = codec.decode_message(data)
    assert isinstance(msg, codec.V3Message)
    assert msg.usm is not None
    assert (msg.msg_id, msg.flags & 7, msg.usm.engine_id) == (31, 0, ENGINE)
    assert (msg.usm.engine_boots, msg.usm.engine_time) == (7, 42)  # what discovery learns
    assert msg.scoped_pdu is not None
    pdu = msg.scoped_pdu.pdu
    assert (pdu.type, pdu.request_id) == (PduType.REPORT, 99)
    assert pdu.varbinds == (VarBind(failure.oid, SnmpType.COUNTER32, 12),)
    assert usm.report_failure(pdu) is failure
    assert usm.report_name(pdu) == failure.value


def test_authenticated_report() -> None:
    user = _user("SHA", "AES")
    local = LocalEngine(ENGINE, 7, NOW - 42)
    data = usm.encode_report(
        msg_id=1,
        local=local,
        now=NOW,
        failure=UsmFailure.NOT_IN_TIME_WINDOW,
        count=1,
        user=usm.localize(user, ENGINE),
        level=FLAG_AUTH | FLAG_PRIV,  # reports are never encrypted: authNoPriv
    )
    msg = codec.decode_message(data)
    assert isinstance(msg, codec.V3Message)
    assert msg.flags == FLAG_AUTH
    assert usm.unprotect(data, msg, usm.localize(user, ENGINE)).pdu.type is PduType.REPORT


def test_other_report_names() -> None:
    pdu = Pdu(
        PduType.REPORT,
        1,
        0,
        0,
        (VarBind((1, 3, 6, 1, 6, 3, 12, 1, 5, 0), SnmpType.COUNTER32, 1),),
    )
    assert usm.report_failure(pdu) is None
    assert usm.report_name(pdu) == "snmpUnknownContexts"
