"""Who may send traps, as the decoder needs it: communities and SNMPv3 users.

Built from ``snmp.traps.accept`` and ``snmp.auths`` at config load; plain values
with no codec import, so ``commandcentre.config`` can build them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Community:
    auth: str  # the snmp.auths entry's name
    community: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class V3User:
    auth: str
    username: str
    auth_protocol: str | None  # None: noAuth
    auth_password: bytes = field(repr=False)
    priv_protocol: str | None  # None: noPriv
    priv_password: bytes = field(repr=False)
    engine_id: bytes | None  # the sender's, if pinned


@dataclass(frozen=True)
class Credentials:
    """Who may send: built once per config from ``snmp.traps.accept``."""

    communities: tuple[Community, ...]
    users: tuple[V3User, ...]
    local_engine_id: bytes
