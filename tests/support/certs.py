"""A throwaway test PKI: one CA and one server certificate signed by it.

Usage::

    pki = make_test_pki(tmp_path, ["origin.test", "listed.test", "*.listed.test"])
    pki.ca_cert       # PEM path: give it to curl --cacert, ssl cafile, mitmproxy
                      # --set ssl_verify_upstream_trusted_ca=...
    pki.server_cert   # PEM path: leaf certificate (the Origin's HTTPS certificate)
    pki.server_key    # PEM path: its private key (unencrypted)

The server certificate always carries, besides the given names, the SANs DNS:localhost,
IP:127.0.0.1 and IP:::1. Keys are ECDSA P-256 (fast to make; every client we drive accepts them).

Wildcards are accepted as given, but note that verifiers refuse a wildcard directly under a
top-level label: OpenSSL (curl, Python ssl, mitmproxy) and Chromium do not let ``*.test`` match
``listed.test``. List the exact names a test uses, and use wildcards only one level deeper
(``*.listed.test``).

`spki_sha256(cert_path)` gives the base64 SHA-256 of a certificate's public key, the form
Chromium's ``--ignore-certificate-errors-spki-list`` expects (see `clients.chromium_load`).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["TestPKI", "make_test_pki", "spki_sha256", "CA_COMMON_NAME", "ALWAYS_SANS"]

CA_COMMON_NAME = "urlwarden test CA"
SERVER_COMMON_NAME = "urlwarden test origin"
ALWAYS_SANS = ("localhost", "127.0.0.1", "::1")
VALIDITY = datetime.timedelta(days=30)
BACKDATE = datetime.timedelta(days=1)  # tolerate clock skew between processes and the VM


@dataclass(frozen=True)
class TestPKI:
    """Paths of the PEM files written by `make_test_pki`."""

    __test__ = False  # not a pytest test class, despite the name

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    names: tuple[str, ...]  # the DNS names asked for (without the ALWAYS_SANS)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        os.chmod(path, 0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _san_entries(names: list[str]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    seen: set[str] = set()
    for name in [*names, *ALWAYS_SANS]:
        if name in seen:
            continue
        seen.add(name)
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return entries


def make_test_pki(dir: str | os.PathLike[str], names: list[str]) -> TestPKI:
    """Write ca.pem, ca-key.pem, server.pem, server-key.pem into `dir` (created if missing)."""
    out = Path(dir)
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = _key()
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_COMMON_NAME)]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_san_entries(list(names))), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    pki = TestPKI(
        ca_cert=out / "ca.pem",
        ca_key=out / "ca-key.pem",
        server_cert=out / "server.pem",
        server_key=out / "server-key.pem",
        names=tuple(names),
    )
    _write(pki.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(pki.ca_key, _key_pem(ca_key), private=True)
    _write(pki.server_cert, server_cert.public_bytes(serialization.Encoding.PEM))
    _write(pki.server_key, _key_pem(server_key), private=True)
    return pki


def spki_sha256(cert_path: str | os.PathLike[str]) -> str:
    """Base64 SHA-256 of the certificate's SubjectPublicKeyInfo (Chromium's SPKI pin format)."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")
