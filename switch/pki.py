"""The switch's own certificate authority for mutual TLS.

Every front-end machine holds a client certificate issued here whose subject
common name is its institution code; the server trusts only this CA and binds
each request to that code. Private keys are written 0600 and never
overwritten silently. EC P-256 keys: small, fast handshakes, supported by
every gRPC stack.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ledger.bankfiles.files import write_atomically

CA_VALID_DAYS = 3650
LEAF_VALID_DAYS = 825
DEFAULT_HOSTS = ("localhost", "127.0.0.1")
INSTITUTION_CODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")


class PkiError(Exception):
    """A PKI operation that cannot be done (missing CA, bad code, existing file)."""


@dataclass(frozen=True, slots=True)
class TlsPaths:
    tls_dir: Path

    @property
    def ca_crt(self) -> Path:
        return self.tls_dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.tls_dir / "ca.key"

    @property
    def server_crt(self) -> Path:
        return self.tls_dir / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.tls_dir / "server.key"

    def client_crt(self, code: str) -> Path:
        return self.tls_dir / "clients" / f"{code}.crt"

    def client_key(self, code: str) -> Path:
        return self.tls_dir / "clients" / f"{code}.key"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # A new 0600 file, renamed over any old one: never a moment where the key
    # is readable by others, not even through a handle opened on an old,
    # looser file of the same name.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # a new file renamed into place: a symlink planted at `path` is replaced,
    # never written through
    write_atomically(path, cert.public_bytes(serialization.Encoding.PEM))


def _load_ca(paths: TlsPaths) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if not paths.ca_crt.exists() or not paths.ca_key.exists():
        raise PkiError(f"no CA in {paths.tls_dir}: run `medswitch pki init` first")
    cert = x509.load_pem_x509_certificate(paths.ca_crt.read_bytes())
    key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{paths.ca_key}: not an EC private key")
    return cert, key


def _leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    usage: x509.ObjectIdentifier,
    hosts: tuple[str, ...] = (),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=LEAF_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if hosts:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def init(tls_dir: Path, hosts: tuple[str, ...] = (), *, force: bool = False) -> TlsPaths:
    """Creates the CA and the server certificate (SANs: localhost, 127.0.0.1, hosts)."""
    paths = TlsPaths(tls_dir)
    if paths.ca_key.exists() and not force:
        raise PkiError(f"{paths.ca_key} exists: the CA is already initialised")
    tls_dir.mkdir(parents=True, exist_ok=True)
    ca_key = _new_key()
    now = _now()
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "MedSwitch"),
            x509.NameAttribute(NameOID.COMMON_NAME, "MedSwitch CA"),
        ]
    )
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(paths.ca_key, ca_key)
    _write_cert(paths.ca_crt, ca_cert)
    all_hosts = tuple(dict.fromkeys((*DEFAULT_HOSTS, *hosts)))
    server_cert, server_key = _leaf(
        ca_cert, ca_key, "medswitch-server", ExtendedKeyUsageOID.SERVER_AUTH, all_hosts
    )
    _write_key(paths.server_key, server_key)
    _write_cert(paths.server_crt, server_cert)
    return paths


def issue(tls_dir: Path, code: str, *, force: bool = False) -> tuple[Path, Path]:
    """Issues clients/CODE.crt and .key: a client certificate whose CN is CODE.

    An institution that already has one keeps it unless `force` (a key the
    front-end machine holds is never replaced by a mistyped command).
    """
    if not INSTITUTION_CODE_RE.fullmatch(code):
        raise PkiError(f"institution code {code!r}: letters, digits, - and _ only, 1-32")
    paths = TlsPaths(tls_dir)
    if paths.client_key(code).exists() and not force:
        raise PkiError(
            f"{paths.client_key(code)} exists: {code} already has a certificate"
            " (--force replaces it)"
        )
    ca_cert, ca_key = _load_ca(paths)
    cert, key = _leaf(ca_cert, ca_key, code, ExtendedKeyUsageOID.CLIENT_AUTH)
    _write_key(paths.client_key(code), key)
    _write_cert(paths.client_crt(code), cert)
    return paths.client_crt(code), paths.client_key(code)


def common_name(cert_pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem)
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""
