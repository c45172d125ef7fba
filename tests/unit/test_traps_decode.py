"""Captured net-snmp datagrams (``tests/data/traps``) through the decoder: the right
notification, the inform's answer, and every refusal reason. No network."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from commandcentre.snmp import codec, usm
from commandcentre.snmp.codec import PduType
from commandcentre.traps.credentials import Community, Credentials, V3User
from commandcentre.traps.decode import Decoder, Verdict

DATA = Path(__file__).resolve().parents[1] / "data" / "traps"
LOCAL_ENGINE = bytes.fromhex("80001f888001020304050607")
BOB = V3User("bob_v3", "bob", "SHA256", b"bob-auth-pass-256", "AES256", b"bob-priv-pass-256", None)


def captured(name: str) -> bytes:
    return bytes.fromhex((DATA / f"{name}.hex").read_text(encoding="ascii").strip())


def decoder(
    communities: tuple[Community, ...] = (
        Community("ups_v1", b"ups-c0mmunity-7"),
        Community("switch_v2", b"sw-c0mmunity-9"),
    ),
    users: tuple[V3User, ...] = (BOB,),
) -> Decoder:
    return Decoder(Credentials(communities, users, LOCAL_ENGINE))


def oid(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def test_apc_v1_on_battery_becomes_its_rfc3584_oid() -> None:
    v = decoder().decode(captured("apc-v1-on-battery"))
    n = v.notification
    assert n is not None
    # net-snmp fills an empty uptime argument with its host's uptime at capture time
    assert (n.version, n.principal, n.inform, n.uptime) == ("v1", "ups_v1", False, 67958)
    assert n.trap_oid == oid("1.3.6.1.4.1.318.0.5")
    assert [(".".join(map(str, vb.oid)), vb.value) for vb in n.varbinds] == [
        ("1.3.6.1.4.1.318.2.3.3.0", "UPS: On battery power in response to an input power problem."),
        ("1.3.6.1.6.3.18.1.3.0", "10.20.30.40"),  # snmpTrapAddress.0: the v1 agent-addr
        ("1.3.6.1.6.3.1.1.4.3.0", "1.3.6.1.4.1.318"),  # snmpTrapEnterprise.0
    ]
    assert v.reply is None


def test_v1_generic_link_down_is_snmp_traps_3() -> None:
    n = decoder().decode(captured("v1-generic-linkdown")).notification
    assert n is not None
    assert n.trap_oid == oid("1.3.6.1.6.3.1.1.5.3")
    assert n.varbinds[0].value == 12
    assert n.varbinds[1].value == "GigabitEthernet0/12"


def test_v2c_trap_and_inform() -> None:
    d = decoder()
    trap = d.decode(captured("v2c-linkdown"))
    assert trap.notification is not None
    assert trap.notification.uptime == 123456
    assert trap.notification.principal == "switch_v2"
    assert trap.reply is None
    inform = d.decode(captured("v2c-inform-linkup"))
    assert inform.notification is not None
    assert inform.notification.inform
    assert inform.reply is not None
    answer = codec.decode_message(inform.reply)
    asked = codec.decode_message(captured("v2c-inform-linkup"))
    assert isinstance(answer, codec.CommunityMessage)
    assert isinstance(asked, codec.CommunityMessage)
    assert isinstance(answer.pdu, codec.Pdu)
    assert isinstance(asked.pdu, codec.Pdu)
    assert answer.pdu.type is PduType.RESPONSE
    assert answer.pdu.request_id == asked.pdu.request_id
    assert answer.pdu.varbinds == asked.pdu.varbinds


def test_object_identifier_values_are_dotted() -> None:
    n = decoder().decode(captured("v2c-ups-alarm-added")).notification
    assert n is not None
    assert n.varbinds[1].value == "1.3.6.1.2.1.33.1.6.3.2"


def test_v3_authpriv_trap_from_a_pinned_engine() -> None:
    engine = bytes.fromhex("80001f8880aabbccdd01020304")
    ok = decoder(users=(dataclasses.replace(BOB, engine_id=engine),)).decode(
        captured("v3-bob-warmstart")
    )
    assert ok.notification is not None
    assert (ok.notification.version, ok.notification.principal) == ("v3", "bob_v3")
    assert ok.notification.trap_oid == oid("1.3.6.1.6.3.1.1.5.2")
    other = dataclasses.replace(BOB, engine_id=bytes.fromhex("80001f8880000000000000ffff"))
    assert decoder(users=(other,)).decode(captured("v3-bob-warmstart")).drop == "unknown_engine_id"


@pytest.mark.parametrize(
    ("datagram", "kwargs", "reason"),
    [
        (b"", {}, "malformed"),
        (b"\x30\x82\xff\xff", {}, "malformed"),
        ("v2c-linkdown", {"communities": (Community("x", b"other"),)}, "unknown_community"),
        ("v3-bob-warmstart", {"users": ()}, "unknown_user"),
        (
            "v3-bob-warmstart",
            {"users": (V3User("b", "bob", "SHA256", b"wrong-password", "AES256", b"x" * 8, None),)},
            "wrong_digest",
        ),
        (
            "v3-bob-warmstart",
            {
                "users": (
                    V3User(
                        "b", "bob", "SHA256", b"bob-auth-pass-256", "AES256", b"wrong-priv", None
                    ),
                )
            },
            "decryption",
        ),
        (
            "v3-bob-warmstart",
            {"users": (V3User("b", "bob", "SHA256", b"bob-auth-pass-256", None, b"", None),)},
            "unsupported_security_level",
        ),
    ],
)
def test_refusals(datagram: bytes | str, kwargs: dict[str, object], reason: str) -> None:
    data = captured(datagram) if isinstance(datagram, str) else datagram
    v = decoder(**kwargs).decode(data)  # type: ignore[arg-type]
    assert v == Verdict(drop=reason)


def test_get_request_is_not_a_notification() -> None:
    get = codec.encode_community_message(
        1, b"sw-c0mmunity-9", codec.encode_request_pdu(PduType.GET, 7, [oid("1.3.6.1.2.1.1.1.0")])
    )
    assert decoder().decode(get) == Verdict(drop="unsupported")


def test_v3_discovery_is_answered_with_our_engine_id() -> None:
    d = decoder()
    v = d.decode(usm.encode_discovery(msg_id=42, request_id=43))
    assert v.discovery
    assert v.drop is None
    assert v.report is not None
    report = codec.decode_message(v.report)
    assert isinstance(report, codec.V3Message)
    assert report.usm is not None
    assert report.usm.engine_id == LOCAL_ENGINE
    assert report.msg_id == 42
