"""SNMPv3 User-based Security Model (RFC 3414, 3826, 7860) on top of ``codec``.

Pure functions and small value types, no I/O, so that the command generator
(``fast_client``, non-authoritative) and a notification receiver (authoritative
for informs, non-authoritative for traps) share one implementation:

* keys: ``UsmUser.from_passwords`` turns passwords into master keys (the 1 MiB
  password expansion, done once); ``localize`` binds them to an engine ID, with
  the AES-192/256 key extension of the Blumenthal draft (net-snmp's ``AES-192``,
  ``AES-256``, and snmp_exporter's ``AES192``/``AES256``) or of the Reeder draft
  (Cisco's; ``AES192C``/``AES256C``), exactly as pysnmp does for the same names;
* outgoing: ``encode_v3`` builds, encrypts and authenticates a message;
* incoming: ``unprotect`` checks the digest and decrypts with known keys;
  ``verify_incoming`` is the whole RFC 3414 §3.2 receive path for a receiver with
  a ``UserTable`` (unknown engine, unknown user, level, digest, time window,
  decryption), failing with a ``UsmError`` that names the usmStats counter a
  Report would carry;
* clocks: ``EngineClock`` (what a non-authoritative side knows of an
  authoritative engine's boots/time) and ``LocalEngine`` (the authoritative side).

Key material never appears in a ``repr`` or an error message.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import itertools
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers import modes as _modes

from commandcentre.snmp.codec import (
    FLAG_AUTH,
    FLAG_PRIV,
    FLAG_REPORTABLE,
    USM_SECURITY_MODEL,
    DecodeError,
    Pdu,
    PduType,
    ScopedPdu,
    UsmSecurityParameters,
    V3Message,
    decode_scoped_pdu,
    encode_pdu,
    encode_scoped_pdu,
    encode_v3_message,
)
from commandcentre.snmp.types import Oid, SnmpType, VarBind

__all__ = [
    "AUTH_PROTOCOLS",
    "LEVELS",
    "PRIV_PROTOCOLS",
    "EngineClock",
    "LocalEngine",
    "LocalizedUser",
    "UserTable",
    "UsmError",
    "UsmFailure",
    "UsmUser",
    "Verified",
    "encode_discovery",
    "encode_report",
    "encode_v3",
    "localize",
    "localize_key",
    "password_to_key",
    "report_failure",
    "report_name",
    "unprotect",
    "verify_incoming",
]

TIME_WINDOW = 150  # seconds, RFC 3414 §2.2.3
MAX_BOOTS = 0x7FFFFFFF
DEFAULT_MAX_SIZE = 65507

# auth protocol -> (hashlib name, truncated MAC length)
AUTH_PROTOCOLS: dict[str, tuple[str, int]] = {
    "MD5": ("md5", 12),
    "SHA": ("sha1", 12),
    "SHA224": ("sha224", 16),
    "SHA256": ("sha256", 24),
    "SHA384": ("sha384", 32),
    "SHA512": ("sha512", 48),
}
# priv protocol -> (key size, key extension: "" none, "B" Blumenthal, "R" Reeder)
PRIV_PROTOCOLS: dict[str, tuple[int, str]] = {
    "DES": (16, ""),  # 8 octets of key, 8 of pre-IV
    "AES": (16, ""),
    "AES192": (24, "B"),
    "AES256": (32, "B"),
    "AES192C": (24, "R"),
    "AES256C": (32, "R"),
}
LEVELS = {"noAuthNoPriv": 0, "authNoPriv": FLAG_AUTH, "authPriv": FLAG_AUTH | FLAG_PRIV}
_LEVEL_NAMES = {v: k for k, v in LEVELS.items()}


# --------------------------------------------------------------------------- failures


class UsmFailure(enum.Enum):
    """Why USM rejected a message: the usmStats counter it increments (and a Report carries)."""

    UNSUPPORTED_SEC_LEVEL = "usmStatsUnsupportedSecLevels"
    NOT_IN_TIME_WINDOW = "usmStatsNotInTimeWindows"
    UNKNOWN_USER = "usmStatsUnknownUserNames"
    UNKNOWN_ENGINE_ID = "usmStatsUnknownEngineIDs"
    WRONG_DIGEST = "usmStatsWrongDigests"
    DECRYPTION_ERROR = "usmStatsDecryptionErrors"

    @property
    def oid(self) -> Oid:
        """The counter's instance OID (usmStats.N.0)."""
        return (1, 3, 6, 1, 6, 3, 15, 1, 1, _FAILURE_NUMBER[self], 0)


_FAILURE_NUMBER = {
    UsmFailure.UNSUPPORTED_SEC_LEVEL: 1,
    UsmFailure.NOT_IN_TIME_WINDOW: 2,
    UsmFailure.UNKNOWN_USER: 3,
    UsmFailure.UNKNOWN_ENGINE_ID: 4,
    UsmFailure.WRONG_DIGEST: 5,
    UsmFailure.DECRYPTION_ERROR: 6,
}
_FAILURE_BY_OID = {f.oid: f for f in UsmFailure}
# Report OIDs from other MIBs that an agent may send (RFC 3412, 3413).
_OTHER_REPORTS = {
    (1, 3, 6, 1, 6, 3, 11, 2, 1, 1, 0): "snmpUnknownSecurityModels",
    (1, 3, 6, 1, 6, 3, 11, 2, 1, 2, 0): "snmpInvalidMsgs",
    (1, 3, 6, 1, 6, 3, 11, 2, 1, 3, 0): "snmpUnknownPDUHandlers",
    (1, 3, 6, 1, 6, 3, 12, 1, 4, 0): "snmpUnavailableContexts",
    (1, 3, 6, 1, 6, 3, 12, 1, 5, 0): "snmpUnknownContexts",
}


class UsmError(Exception):
    """A message USM rejects. ``failure`` names the usmStats counter; ``detail`` never
    carries key material."""

    def __init__(self, failure: UsmFailure, detail: str = "") -> None:
        self.failure = failure
        self.detail = detail
        super().__init__(f"{failure.value}{': ' + detail if detail else ''}")


def report_failure(pdu: Pdu) -> UsmFailure | None:
    """The USM failure a Report PDU announces, if it is one of usmStats*."""
    return _FAILURE_BY_OID.get(pdu.varbinds[0].oid) if pdu.varbinds else None


def report_name(pdu: Pdu) -> str:
    """A readable name for what a Report PDU announces (usmStats*, snmpUnknownContexts, ...)."""
    if not pdu.varbinds:
        return "empty report"
    oid = pdu.varbinds[0].oid
    hit = _FAILURE_BY_OID.get(oid)
    if hit is not None:
        return hit.value
    return _OTHER_REPORTS.get(oid, "report " + ".".join(map(str, oid)))


# --------------------------------------------------------------------------- keys


def password_to_key(password: bytes, auth_protocol: str) -> bytes:
    """RFC 3414 A.2: hash the password repeated to 1 MiB (the user's master key Ku)."""
    if not password:
        raise ValueError("an SNMPv3 password may not be empty")
    name, _ = AUTH_PROTOCOLS[auth_protocol]
    total = 1024 * 1024
    data = (password * (total // len(password) + 1))[:total]
    return hashlib.new(name, data).digest()


def localize_key(master: bytes, engine_id: bytes, auth_protocol: str) -> bytes:
    """RFC 3414 §2.6: Kul = H(Ku || engineID || Ku)."""
    name, _ = AUTH_PROTOCOLS[auth_protocol]
    return hashlib.new(name, master + engine_id + master).digest()


def _localize_priv(master: bytes, engine_id: bytes, auth_protocol: str, priv: str) -> bytes:
    size, extension = PRIV_PROTOCOLS[priv]
    name, _ = AUTH_PROTOCOLS[auth_protocol]
    key = localize_key(master, engine_id, auth_protocol)
    while len(key) < size:
        if extension == "B":  # Blumenthal: append H(key so far)
            key += hashlib.new(name, key).digest()
        else:  # Reeder: the key so far is a password, turned into a localized key
            key += localize_key(password_to_key(key, auth_protocol), engine_id, auth_protocol)
    return key[:size]


@dataclass(frozen=True, slots=True)
class UsmUser:
    """A USM user with master keys (passwords already expanded). ``None`` protocols
    mean no authentication / no privacy."""

    name: bytes
    auth_protocol: str | None = None
    priv_protocol: str | None = None
    auth_master: bytes = field(default=b"", repr=False)
    priv_master: bytes = field(default=b"", repr=False)

    @classmethod
    def from_passwords(
        cls,
        name: str | bytes,
        auth_protocol: str | None = None,
        auth_password: str | bytes | None = None,
        priv_protocol: str | None = None,
        priv_password: str | bytes | None = None,
    ) -> UsmUser:
        """Raises ``ValueError`` for an unknown protocol or a missing/empty password."""
        raw_name = name.encode() if isinstance(name, str) else name
        if auth_protocol is None:
            if priv_protocol is not None:
                raise ValueError("privacy needs authentication")
            return cls(raw_name)
        if auth_protocol not in AUTH_PROTOCOLS:
            raise ValueError(f"unknown auth protocol {auth_protocol!r}")
        if priv_protocol is not None and priv_protocol not in PRIV_PROTOCOLS:
            raise ValueError(f"unknown priv protocol {priv_protocol!r}")
        auth_master = password_to_key(_b(auth_password), auth_protocol)
        priv_master = b""
        if priv_protocol is not None:
            priv_master = password_to_key(_b(priv_password), auth_protocol)
        return cls(raw_name, auth_protocol, priv_protocol, auth_master, priv_master)

    @property
    def level(self) -> int:
        """The highest level this user can do, as msgFlags bits (0, 1 or 3)."""
        if self.auth_protocol is None:
            return 0
        return FLAG_AUTH | (FLAG_PRIV if self.priv_protocol is not None else 0)


def _b(value: str | bytes | None) -> bytes:
    if value is None:
        return b""
    return value.encode() if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class LocalizedUser:
    """A user's keys localized to one authoritative engine."""

    name: bytes
    engine_id: bytes
    auth_protocol: str | None
    priv_protocol: str | None
    auth_key: bytes = field(repr=False)
    priv_key: bytes = field(repr=False)

    @property
    def level(self) -> int:
        if self.auth_protocol is None:
            return 0
        return FLAG_AUTH | (FLAG_PRIV if self.priv_protocol is not None else 0)


@lru_cache(maxsize=4096)
def localize(user: UsmUser, engine_id: bytes) -> LocalizedUser:
    """The user's keys for ``engine_id`` (cached: localisation is a few hashes, but per
    message it would be the largest cost of a v3 request)."""
    if user.auth_protocol is None:
        return LocalizedUser(user.name, engine_id, None, None, b"", b"")
    auth_key = localize_key(user.auth_master, engine_id, user.auth_protocol)
    priv_key = b""
    if user.priv_protocol is not None:
        priv_key = _localize_priv(
            user.priv_master, engine_id, user.auth_protocol, user.priv_protocol
        )
    return LocalizedUser(
        user.name, engine_id, user.auth_protocol, user.priv_protocol, auth_key, priv_key
    )


# --------------------------------------------------------------------------- privacy

# Salts must not repeat under one key: a random start, then a counter (RFC 3826 §3.1.2.1).
_salt64 = itertools.count(secrets.randbits(63))
_salt32 = itertools.count(secrets.randbits(31))


# CFB and CBC are built here on a raw block cipher (ECB) context kept per key: a
# cryptography ``Cipher`` object per message costs more (its Python-side checks)
# than decrypting the whole message. CFB-128 decryption and CBC decryption need
# no chaining through the cipher, so a response is one ECB call and one XOR.
# (The contexts are shared: call these from one thread, the event loop's.)
@lru_cache(maxsize=4096)
def _ecb(key: bytes, des: bool) -> tuple[Any, Any]:
    """(encryptor, decryptor) of the raw block cipher for ``key``."""
    algorithm = TripleDES(key * 3) if des else algorithms.AES(key)
    cipher = Cipher(algorithm, _modes.ECB())  # noqa: S305 - the block primitive; CFB/CBC are built on it above
    return cipher.encryptor(), cipher.decryptor()


_from_bytes = int.from_bytes


def _xor(a: bytes, b: bytes) -> bytes:
    """a XOR b, over len(a) octets (b at least as long)."""
    n = len(a)
    return (_from_bytes(a, "big") ^ _from_bytes(b[:n], "big")).to_bytes(n, "big")


def _encrypt(keys: LocalizedUser, boots: int, time: int, plaintext: bytes) -> tuple[bytes, bytes]:
    """(ciphertext, msgPrivacyParameters). Requests are a few blocks: chained by hand."""
    if keys.priv_protocol == "DES":  # RFC 3414 §8.1.1: CBC, IV = pre-IV XOR salt
        salt = boots.to_bytes(4, "big") + (next(_salt32) & 0xFFFFFFFF).to_bytes(4, "big")
        block = _xor(keys.priv_key[8:16], salt)
        enc = _ecb(keys.priv_key[:8], True)[0]
        data = plaintext + b"\0" * (-len(plaintext) % 8)
        out = []
        for i in range(0, len(data), 8):
            block = enc.update(_xor(data[i : i + 8], block))
            out.append(block)
        return b"".join(out), salt
    # RFC 3826 §3.1.3: CFB-128, IV = boots | time | salt
    salt = (next(_salt64) & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")
    block = boots.to_bytes(4, "big") + time.to_bytes(4, "big") + salt
    enc = _ecb(keys.priv_key, False)[0]
    out = []
    for i in range(0, len(plaintext), 16):
        block = _xor(plaintext[i : i + 16], enc.update(block))
        out.append(block)
    return b"".join(out), salt


def _decrypt(keys: LocalizedUser, boots: int, time: int, salt: bytes, ciphertext: bytes) -> bytes:
    if len(salt) != 8:
        raise UsmError(UsmFailure.DECRYPTION_ERROR, "privacy parameters are not 8 octets")
    if keys.priv_protocol == "DES":
        if len(ciphertext) % 8:
            raise UsmError(UsmFailure.DECRYPTION_ERROR, "DES ciphertext is not whole blocks")
        iv = _xor(keys.priv_key[8:16], salt)
        # CBC: P_i = D(C_i) XOR C_(i-1), with C_(-1) = IV
        plain = _ecb(keys.priv_key[:8], True)[1].update(ciphertext)
        return _xor(plain, iv + ciphertext)
    # CFB-128: P_i = C_i XOR E(C_(i-1)), with C_(-1) = IV
    iv = boots.to_bytes(4, "big") + time.to_bytes(4, "big") + salt
    whole = len(ciphertext) - len(ciphertext) % 16
    inputs = iv + ciphertext[: whole if whole < len(ciphertext) else whole - 16]
    return _xor(ciphertext, _ecb(keys.priv_key, False)[0].update(inputs))


# --------------------------------------------------------------------------- messages


def encode_v3(
    *,
    msg_id: int,
    user: LocalizedUser,
    level: int,
    engine_boots: int,
    engine_time: int,
    scoped_pdu: bytes,
    reportable: bool,
    max_size: int = DEFAULT_MAX_SIZE,
) -> bytes:
    """An SNMPv3 message from a ScopedPDU TLV (``codec.encode_scoped_pdu``), encrypted
    and authenticated as ``level`` (msgFlags bits) asks, for ``user.engine_id``."""
    if level & ~user.level & (FLAG_AUTH | FLAG_PRIV):
        raise ValueError(f"user cannot do level {_LEVEL_NAMES.get(level & 3, level)}")
    auth_len = AUTH_PROTOCOLS[user.auth_protocol][1] if level & FLAG_AUTH else 0  # type: ignore[index]
    data, priv_params = scoped_pdu, b""
    if level & FLAG_PRIV:
        data, priv_params = _encrypt(user, engine_boots, engine_time, scoped_pdu)
    params = UsmSecurityParameters(
        user.engine_id, engine_boots, engine_time, user.name, b"\0" * auth_len, priv_params
    )
    flags = (level & 3) | (FLAG_REPORTABLE if reportable else 0)
    wire, offset = encode_v3_message(
        msg_id=msg_id,
        max_size=max_size,
        flags=flags,
        params=params,
        msg_data=data,
        encrypted=bool(level & FLAG_PRIV),
    )
    if not auth_len:
        return wire
    name = AUTH_PROTOCOLS[user.auth_protocol][0]  # type: ignore[index]
    mac = hmac.digest(user.auth_key, wire, name)[:auth_len]
    return wire[:offset] + mac + wire[offset + auth_len :]


def encode_discovery(msg_id: int, request_id: int) -> bytes:
    """RFC 3414 §4: a noAuthNoPriv reportable GET with no varbinds, no user and no engine
    ID; the agent answers with a usmStatsUnknownEngineIDs Report carrying its engine
    ID, boots and time."""
    pdu = encode_pdu(Pdu(PduType.GET, request_id, 0, 0, ()))
    return encode_v3(
        msg_id=msg_id,
        user=LocalizedUser(b"", b"", None, None, b"", b""),
        level=0,
        engine_boots=0,
        engine_time=0,
        scoped_pdu=encode_scoped_pdu(b"", b"", pdu),
        reportable=True,
    )


def unprotect(
    data: bytes, msg: V3Message, keys: LocalizedUser | None, *, digest_checked: bool = False
) -> ScopedPdu:
    """Check the digest and decrypt ``msg`` (decoded from ``data``) with ``keys``.

    Raises ``UsmError`` (UNSUPPORTED_SEC_LEVEL, WRONG_DIGEST, DECRYPTION_ERROR). Does
    not check the engine ID, user name or time window: ``verify_incoming`` does for a
    receiver, and a command generator checks them against its own request.
    """
    usm = msg.usm
    if usm is None:
        raise UsmError(UsmFailure.UNSUPPORTED_SEC_LEVEL, "not a USM message")
    level = msg.flags & 3
    if level == FLAG_PRIV:
        raise UsmError(UsmFailure.UNSUPPORTED_SEC_LEVEL, "privacy without authentication")
    have = keys.level if keys is not None else 0
    if level & ~have:
        raise UsmError(UsmFailure.UNSUPPORTED_SEC_LEVEL, f"user cannot do {_LEVEL_NAMES[level]}")
    if level & FLAG_AUTH and not digest_checked:
        assert keys is not None
        _check_digest(data, msg, keys)
    if level & FLAG_PRIV:
        assert keys is not None
        if msg.encrypted_pdu is None:
            raise UsmError(UsmFailure.DECRYPTION_ERROR, "privacy flag set but data not encrypted")
        plain = _decrypt(
            keys, usm.engine_boots, usm.engine_time, usm.priv_params, msg.encrypted_pdu
        )
        try:
            return decode_scoped_pdu(plain)
        except DecodeError:
            raise UsmError(
                UsmFailure.DECRYPTION_ERROR, "decrypted data is not a ScopedPDU"
            ) from None
    if msg.scoped_pdu is None:
        raise UsmError(UsmFailure.UNSUPPORTED_SEC_LEVEL, "encrypted data without privacy flag")
    return msg.scoped_pdu


# --------------------------------------------------------------------------- clocks


@dataclass(frozen=True, slots=True)
class EngineClock:
    """What a non-authoritative engine knows of an authoritative one (RFC 3414 §2.3):
    its ID, and its boots/time as of ``learnt_at`` (a monotonic time)."""

    engine_id: bytes
    boots: int
    time: int
    learnt_at: float

    def now(self, now: float) -> tuple[int, int]:
        """(boots, time) to put in an outgoing message at monotonic time ``now``."""
        return self.boots, min(self.time + int(now - self.learnt_at), MAX_BOOTS)

    def in_window(self, boots: int, time: int, now: float) -> bool:
        """RFC 3414 §3.2.7 b: may an authenticated message with (boots, time) be accepted?"""
        _, latest = self.now(now)
        if boots == MAX_BOOTS or boots < self.boots:
            return False
        return not (boots == self.boots and time < latest - TIME_WINDOW)

    def updated(self, boots: int, time: int, now: float) -> EngineClock:
        """The clock after an authenticated message with (boots, time) (§3.2.7 b)."""
        _, latest = self.now(now)
        if boots > self.boots or (boots == self.boots and time > latest):
            return EngineClock(self.engine_id, boots, time, now)
        return self


@dataclass(frozen=True, slots=True)
class LocalEngine:
    """An authoritative engine (a receiver of informs): its ID, boots, and the monotonic
    time its engine time counts from."""

    engine_id: bytes
    boots: int
    started_at: float

    def time(self, now: float) -> int:
        return min(int(now - self.started_at), MAX_BOOTS)

    def in_window(self, boots: int, time: int, now: float) -> bool:
        """RFC 3414 §3.2.7 a."""
        if self.boots == MAX_BOOTS or boots != self.boots:
            return False
        return abs(time - self.time(now)) <= TIME_WINDOW


# --------------------------------------------------------------------------- receiver


class UserTable:
    """Users a receiver accepts, by name; keys are localized per engine ID on demand."""

    def __init__(self, users: Iterable[UsmUser] = ()) -> None:
        self._users = {u.name: u for u in users}

    def add(self, user: UsmUser) -> None:
        self._users[user.name] = user

    def get(self, name: bytes) -> UsmUser | None:
        return self._users.get(name)

    def __len__(self) -> int:
        return len(self._users)


@dataclass(frozen=True, slots=True)
class Verified:
    """An incoming v3 message that passed USM."""

    scoped_pdu: ScopedPdu
    user_name: bytes
    level: int  # msgFlags bits: 0, 1 or 3
    engine_id: bytes  # the authoritative engine of the message
    authoritative: bool  # True: it was addressed to our engine (an inform, a request)


def verify_incoming(
    data: bytes,
    msg: V3Message,
    *,
    users: UserTable,
    local: LocalEngine,
    clocks: dict[bytes, EngineClock],
    now: float,
    min_level: int = 0,
) -> Verified:
    """RFC 3414 §3.2 for a notification receiver.

    A message whose security engine ID is ``local.engine_id`` (an inform, after the
    sender discovered us) is checked against our clock; any other engine ID is the
    sender's own (a trap), checked against ``clocks[engine_id]``, which this function
    updates (and creates on the first authenticated message from that engine).
    An empty engine ID is discovery: UNKNOWN_ENGINE_ID, and the Report tells the
    sender ours. Raises ``UsmError``; the caller decides whether to send a Report
    (only when the message was reportable, and never for a trap).
    """
    usm = msg.usm
    if usm is None or msg.security_model != USM_SECURITY_MODEL:
        raise UsmError(UsmFailure.UNSUPPORTED_SEC_LEVEL, "not a USM message")
    engine_id = usm.engine_id
    authoritative = engine_id == local.engine_id
    if not engine_id:
        raise UsmError(UsmFailure.UNKNOWN_ENGINE_ID, "discovery")
    user = users.get(usm.user_name)
    if user is None:
        raise UsmError(UsmFailure.UNKNOWN_USER)
    level = msg.flags & 3
    if level < min_level:
        raise UsmError(UsmFailure.UNSUPPORTED_SEC_LEVEL, "below the required level")
    if level & ~user.level or level == FLAG_PRIV:
        raise UsmError(UsmFailure.UNSUPPORTED_SEC_LEVEL)
    keys = localize(user, engine_id)
    if level & FLAG_AUTH:
        # the digest first (§3.2.6), then the time window (§3.2.7), then decryption
        _check_digest(data, msg, keys)
        if authoritative:
            if not local.in_window(usm.engine_boots, usm.engine_time, now):
                raise UsmError(UsmFailure.NOT_IN_TIME_WINDOW)
        else:
            clock = clocks.get(engine_id)
            if clock is None:
                clock = EngineClock(engine_id, usm.engine_boots, usm.engine_time, now)
            elif not clock.in_window(usm.engine_boots, usm.engine_time, now):
                raise UsmError(UsmFailure.NOT_IN_TIME_WINDOW)
            clocks[engine_id] = clock.updated(usm.engine_boots, usm.engine_time, now)
    scoped = unprotect(data, msg, keys, digest_checked=True)
    return Verified(scoped, usm.user_name, level, engine_id, authoritative)


def _check_digest(data: bytes, msg: V3Message, keys: LocalizedUser) -> None:
    usm = msg.usm
    assert usm is not None
    name, auth_len = AUTH_PROTOCOLS[keys.auth_protocol]  # type: ignore[index]
    if len(usm.auth_params) != auth_len:
        raise UsmError(UsmFailure.WRONG_DIGEST, "digest of the wrong length")
    off = msg.auth_offset
    zeroed = data[:off] + b"\0" * auth_len + data[off + auth_len :]
    if not hmac.compare_digest(
        hmac.digest(keys.auth_key, zeroed, name)[:auth_len], usm.auth_params
    ):
        raise UsmError(UsmFailure.WRONG_DIGEST)


def encode_report(
    *,
    msg_id: int,
    local: LocalEngine,
    now: float,
    failure: UsmFailure,
    count: int,
    request_id: int = 0,
    user: LocalizedUser | None = None,
    level: int = 0,
    context_name: bytes = b"",
) -> bytes:
    """The Report a receiver sends back for ``failure`` (usmStats counter = ``count``).

    As RFC 3414 §3.1.1 wants, it is noAuthNoPriv unless ``user``/``level`` are given
    (a NOT_IN_TIME_WINDOW report to a known user should be authNoPriv). The engine
    ID, boots and time in it are ours: that is what discovery learns from it.
    """
    vb = VarBind(failure.oid, SnmpType.COUNTER32, count & 0xFFFFFFFF)
    pdu = encode_pdu(Pdu(PduType.REPORT, request_id, 0, 0, (vb,)))
    keys = user or LocalizedUser(b"", local.engine_id, None, None, b"", b"")
    if keys.engine_id != local.engine_id:
        raise ValueError("report keys must be localized to the local engine")
    return encode_v3(
        msg_id=msg_id,
        user=keys,
        level=level & FLAG_AUTH,
        engine_boots=local.boots,
        engine_time=local.time(now),
        scoped_pdu=encode_scoped_pdu(local.engine_id, context_name, pdu),
        reportable=False,
    )
