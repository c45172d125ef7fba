"""Weak choices in a valid config: printed by ``check-config`` (which still exits 0)
and logged by the daemon at start (``config_warning`` events).

These are not errors because each can be right somewhere (an isolated lab, a
broker on a private VLAN, a device that only speaks v2c), but on a government
network each one is something an auditor asks about, so the operator should
have decided it knowingly. Messages name the key, never a secret: a community
is quoted only when it is one of the well-known defaults.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from commandcentre.config import DEFAULT_AUTH_NAME, Auth, Config, parse_listen
from commandcentre.webconfig import WebConfig

WELL_KNOWN_COMMUNITIES = frozenset({"public", "private"})


@dataclass(frozen=True, slots=True)
class ConfigWarning:
    key: str  # where: a key path in the config, or the command-line flag
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses; names are not resolved."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _auth_key(name: str) -> str:
    if name.startswith("module:"):
        return f"modules.{name.removeprefix('module:')}.auth"
    return f"snmp.auths.{name}"


def _auth_warnings(name: str, auth: Auth, users: list[str]) -> list[ConfigWarning]:
    key = _auth_key(name)
    used = f" (used by {', '.join(users[:5])}{', ...' if len(users) > 5 else ''})" if users else ""
    out = []
    if auth.version in (1, 2):
        community = auth.community.reveal() if auth.community is not None else ""
        if community.lower() in WELL_KNOWN_COMMUNITIES:
            out.append(
                ConfigWarning(
                    key,
                    f"SNMPv{auth.version}c community is the well-known default "
                    f"{community.lower()!r}{used}: anyone on the network can read the device "
                    "(and write it, if the community allows); set a unique community "
                    "(community_credential, community_file or ${ENV}), or better SNMPv3 authPriv",
                )
            )
    elif auth.security_level != "authPriv":
        out.append(
            ConfigWarning(
                key,
                f"SNMPv3 security_level {auth.security_level}{used}: requests and answers "
                "cross the network unencrypted; use authPriv",
            )
        )
    if auth.version == 3 and auth.security_level == "authPriv" and auth.priv_protocol == "DES":
        out.append(ConfigWarning(key, "priv_protocol DES is broken; use AES (or AES256)"))
    if auth.version == 3 and auth.security_level != "noAuthNoPriv" and auth.auth_protocol == "MD5":
        out.append(ConfigWarning(key, "auth_protocol MD5 is weak; use SHA256 or better"))
    return out


def config_warnings(
    config: Config, web: WebConfig | None = None, listen: str | None = None
) -> list[ConfigWarning]:
    """Every warning for ``config`` served as ``listen`` (default ``http.listen``) with
    the web config ``web`` (None: no ``--web.config.file``)."""
    out: list[ConfigWarning] = []
    snmp = config.snmp
    users: dict[str, list[str]] = {}
    for t in snmp.targets:
        users.setdefault(t.auth_name, []).append(t.name)
    for name, auth in snmp.auths.items():
        if name == DEFAULT_AUTH_NAME and name not in users:
            continue  # built in, unused
        out += _auth_warnings(name, auth, users.get(name, []))

    for i, b in enumerate(config.mqtt.brokers):
        key = f"mqtt.brokers[{i}]"
        if b.tls is None and not is_loopback(b.host):
            what = "the password and every reading" if b.username else "every reading"
            out.append(
                ConfigWarning(
                    key,
                    f"broker {b.name} at {b.host}:{b.effective_port} without tls: {what} "
                    "cross the network in clear, and anyone on the path can inject readings; "
                    "set tls (ca_file, and cert_file/key_file for client certificates)",
                )
            )
        elif b.tls is not None and b.tls.insecure_skip_verify:
            out.append(
                ConfigWarning(
                    f"{key}.tls.insecure_skip_verify",
                    f"broker {b.name}: the broker's certificate is not verified, so TLS does "
                    "not stop an impostor; give ca_file instead",
                )
            )

    listen_text = listen or config.http.listen
    key = "--listen" if listen else "http.listen"
    host, _ = parse_listen(listen_text)
    exposed = not is_loopback(host)
    if exposed and (web is None or not web.requires_auth):
        out.append(
            ConfigWarning(
                key,
                f"HTTP on {listen_text} (not loopback) without authentication: anyone who can "
                "reach the port reads every metric, probes devices through /snmp and sees the "
                "status page; give --web.config.file with basic_auth_users (and "
                "tls_server_config), or listen on 127.0.0.1",
            )
        )
    if web is not None:
        tls = web.spec.tls_server_config
        if web.spec.basic_auth_users and tls is None and exposed:
            out.append(
                ConfigWarning(
                    "--web.config.file",
                    f"{web.source}: basic_auth_users without tls_server_config: passwords "
                    "cross the network in clear (base64 is not encryption)",
                )
            )
        if tls is not None and tls.min_version in ("TLS10", "TLS11"):
            out.append(
                ConfigWarning(
                    "--web.config.file",
                    f"{web.source}: tls_server_config.min_version {tls.min_version} allows "
                    "deprecated TLS versions (RFC 8996); use TLS12 or TLS13",
                )
            )
    if snmp.allow_unconfigured_targets and exposed:
        out.append(
            ConfigWarning(
                "snmp.allow_unconfigured_targets",
                "/snmp probes any address given: with HTTP reachable from the network this is "
                "an SNMP proxy into every network the host reaches",
            )
        )
    return out
