"""A throw-away certificate authority and server certificate for the TLS tests, made with ``cryptography``.

The server certificate names ``contoso.servicebus.windows.net`` and ``127.0.0.1`` (the tests connect to the
loopback address), is signed by a fresh CA, and is written as ``tls.crt`` / ``tls.key``: the file names of a
``kubernetes.io/tls`` Secret, which the shipped TLS configs read from ``/etc/gateway-tls``.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["TlsMaterial", "make_tls_material"]


@dataclass(frozen=True)
class TlsMaterial:
    directory: Path  # holds tls.crt and tls.key
    ca_file: Path

    def client_context(self) -> ssl.SSLContext:
        """A client that trusts only the throw-away CA and checks the server's name."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.check_hostname = True
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_tls_material(directory: Path, *, hosts: tuple[str, ...] = ("contoso.servicebus.windows.net",)) -> TlsMaterial:
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("gateway-authz test CA"))
        .issuer_name(_name("gateway-authz test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in hosts]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "tls.crt").write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    (directory / "tls.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (directory / "tls.key").chmod(0o600)
    ca_file = directory / "ca.crt"
    ca_file.write_bytes(ca.public_bytes(pem))
    return TlsMaterial(directory, ca_file)
