"""A real Mosquitto for integration tests, and the certificates its TLS listener needs.

``Mosquitto`` writes a config into a private temporary directory, starts
``mosquitto -c`` on a free 127.0.0.1 port, waits until the port accepts
connections, and can be stopped (SIGTERM), killed (SIGKILL) and started again on
the same port (broker-restart tests). Use it as a context manager: the process is
always killed and the directory removed.

* ``persistence false``: a restarted broker has lost every session and subscription,
  which is what the reconnect tests want to see handled.
* ``user root``: started as root, Mosquitto switches to the ``mosquitto`` user, which
  cannot read files in a 0700 temporary directory owned by root (generated keys,
  password file). ``user root`` keeps it running as whoever started it; for a
  non-root user the option has no effect.
* ``sys_interval 1``: ``$SYS/broker/...`` counters (messages the broker dropped)
  are fresh within a second.

``make_pki`` generates a test CA, a server certificate and a client certificate
with the ``cryptography`` package (EC P-256, in memory, no network).
"""

from __future__ import annotations

import contextlib
import datetime
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from commandcentre.demo.processes import free_port, stop_process

MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = "/usr/bin/mosquitto_passwd"
MOSQUITTO_SUB = "/usr/bin/mosquitto_sub"
MOSQUITTO_PUB = "/usr/bin/mosquitto_pub"


class BrokerStartError(RuntimeError):
    """Mosquitto did not come up; the message carries its output."""


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return free_port()


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Pki:
    """PEM files: a CA, a server certificate for ``server_names``, a client certificate."""

    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    server_names: tuple[str, ...]


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _cert(
    subject_cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    dns_names: tuple[str, ...] = (),
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False
        )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory: Path, server_names: tuple[str, ...] = ("broker.test",)) -> Pki:
    """Write a CA, a server certificate (SAN = ``server_names`` only, so connecting to
    127.0.0.1 needs ``server_name``) and a client certificate (CN ``sensor-client``)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, server_key, client_key = _key(), _key(), _key()
    ca = _cert("commandcentre test CA", ca_key, None, ca_key, ca=True)
    server = _cert(
        server_names[0],
        server_key,
        ca.subject,
        ca_key,
        dns_names=server_names,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
    )
    client = _cert(
        "sensor-client", client_key, ca.subject, ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH
    )
    pki = Pki(
        ca_file=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        server_names=server_names,
    )
    pki.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.server_cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    pki.client_cert.write_bytes(client.public_bytes(serialization.Encoding.PEM))
    _write_key(server_key, pki.server_key)
    _write_key(client_key, pki.client_key)
    return pki


# --------------------------------------------------------------------------- the broker


class Mosquitto:
    """One Mosquitto process with a generated config; see the module docstring.

    ``users`` (name -> password) turns anonymous access off and writes a password
    file with ``mosquitto_passwd``. ``tls`` makes the listener TLS-only with the
    PKI's server certificate; ``require_certificate`` also demands a client
    certificate signed by the CA. ``extra`` lines are appended to the config.
    """

    def __init__(
        self,
        *,
        users: dict[str, str] | None = None,
        tls: Pki | None = None,
        require_certificate: bool = False,
        max_queued_messages: int = 1000,
        extra: tuple[str, ...] = (),
        start_timeout: float = 10.0,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self.users = users or {}
        self.tls = tls
        self.require_certificate = require_certificate
        self.max_queued_messages = max_queued_messages
        self.extra = extra
        self.start_timeout = start_timeout
        self.workdir = Path(tempfile.mkdtemp(prefix="cc-mosquitto-"))
        self.log_path = self.workdir / "mosquitto.log"
        self.conf_path = self.workdir / "mosquitto.conf"
        self.proc: subprocess.Popen[bytes] | None = None

    # -- config

    def config(self) -> str:
        lines = [
            f"listener {self.port} {self.host}",
            "persistence false",
            "user root",
            "sys_interval 1",
            f"max_queued_messages {self.max_queued_messages}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if self.users:
            pw = self.workdir / "passwd"
            pw.write_text("".join(f"{u}:{p}\n" for u, p in self.users.items()))
            pw.chmod(0o600)
            # -U hashes the plain-text file in place.
            subprocess.run([MOSQUITTO_PASSWD, "-U", str(pw)], check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.ca_file}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                f"require_certificate {'true' if self.require_certificate else 'false'}",
            ]
        lines += list(self.extra)
        return "\n".join(lines) + "\n"

    # -- life cycle

    def start(self) -> Self:
        """Start (or start again, on the same port) and wait until it accepts connections."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("mosquitto is already running")
        if not self.port:
            self.port = free_tcp_port()
        self.conf_path.write_text(self.config())
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.conf_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._wait_until_listening()
        return self

    def _wait_until_listening(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerStartError(
                    f"mosquitto exited with status {self.proc.returncode}:\n{self.output()}"
                )
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.settimeout(0.2)
                if s.connect_ex((self.host, self.port)) == 0:
                    return
            time.sleep(0.01)
        raise BrokerStartError(
            f"mosquitto did not listen on {self.host}:{self.port} within "
            f"{self.start_timeout:.0f} s:\n{self.output()}"
        )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within 5 s."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc)

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without closing anything gracefully."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        try:
            self.kill()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- inspection

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def sys_value(self, topic: str, timeout: float = 3.0) -> str | None:
        """The retained ``$SYS`` value of ``topic`` (anonymous plain listeners only)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            r = subprocess.run(
                [
                    MOSQUITTO_SUB,
                    "-h",
                    self.host,
                    "-p",
                    str(self.port),
                    "-t",
                    topic,
                    "-C",
                    "1",
                    "-W",
                    str(max(1, int(timeout))),
                ],
                capture_output=True,
                timeout=timeout + 2,
                check=False,
            )
            if r.returncode == 0:
                return r.stdout.decode().strip()
        return None

    def publish_lines(self, topic: str, lines: bytes, *, qos: int = 0) -> None:
        """Publish each line of ``lines`` as one message, from a separate process
        (``mosquitto_pub -l``), as fast as the broker takes them."""
        subprocess.run(
            [
                MOSQUITTO_PUB,
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-t",
                topic,
                "-q",
                str(qos),
                "-l",
            ],
            input=lines,
            capture_output=True,
            check=True,
            timeout=120,
        )
