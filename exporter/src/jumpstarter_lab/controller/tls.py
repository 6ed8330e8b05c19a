"""Certificates for a small lab: a CA and the server certificates it signs."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _builder(subject: str, issuer: x509.Name | None, public_key, days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(public_key)
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days)))


def make_ca(directory: Path, name: str = "jumpstarter-lab CA", days: int = 3650) -> tuple[Path, Path]:
    """Write ca.crt and ca.key (0600) into directory."""
    directory.mkdir(parents=True, exist_ok=True)
    key = _key()
    cert = (_builder(name, None, key.public_key(), days)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(_pem_key(key))
    return cert_path, key_path


def _issue(directory: Path, ca_cert: Path, ca_key: Path, subject: str, extensions: list, name: str,
           days: int) -> tuple[Path, Path]:
    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    signer = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    key = _key()
    builder = _builder(subject, ca.subject, key.public_key(), days).add_extension(
        x509.BasicConstraints(ca=False, path_length=None), critical=True)
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    cert = builder.sign(signer, hashes.SHA256())
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(_pem_key(key))
    return cert_path, key_path


def issue_server_cert(directory: Path, ca_cert: Path, ca_key: Path, hosts: list[str], name: str = "server",
                      days: int = 825) -> tuple[Path, Path]:
    """Write NAME.crt and NAME.key (0600) for the given DNS names / IP addresses."""
    alt_names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    return _issue(directory, ca_cert, ca_key, hosts[0],
                  [x509.SubjectAlternativeName(alt_names), x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])],
                  name, days)


def issue_client_cert(directory: Path, ca_cert: Path, ca_key: Path, client: str, days: int = 825) -> tuple[Path, Path]:
    """Write CLIENT.crt and CLIENT.key (0600): a certificate for mutual TLS, naming the client."""
    return _issue(directory, ca_cert, ca_key, client, [x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])],
                  client, days)
