"""`medswitch pki init|issue` as an operator runs them (docs/operations.md, Files)."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from switch import pki
from tests.cli import medswitch


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_init_and_issue(tmp_path: Path) -> None:
    """CA + server cert with SANs; a client cert whose CN is the code; keys 0600."""
    env = {"MEDSWITCH_DATA_DIR": str(tmp_path)}
    init = medswitch("pki", "init", "--host", "switch.example", "--host", "10.1.2.3", env=env)
    assert init.returncode == 0, init.stderr
    issue = medswitch("pki", "issue", "H33039900001", env=env)
    assert issue.returncode == 0, issue.stderr
    tls = tmp_path / "tls"
    for key in ("ca.key", "server.key", "clients/H33039900001.key"):
        assert stat.S_IMODE((tls / key).stat().st_mode) == 0o600, key
    ca = _cert(tls / "ca.crt")
    server = _cert(tls / "server.crt")
    client = _cert(tls / "clients/H33039900001.crt")
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"localhost", "switch.example"}
    assert set(sans.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("10.1.2.3"),
    }
    cn = client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "H33039900001"
    usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usage
    for cert in (server, client):
        assert cert.issuer == ca.subject
        cert.verify_directly_issued_by(ca)


def test_refusals(tmp_path: Path) -> None:
    """No CA yet, a bad code, or a second init: exit 2 with a message, nothing overwritten."""
    env = {"MEDSWITCH_TLS_DIR": str(tmp_path / "tls")}
    no_ca = medswitch("pki", "issue", "P1", env=env)
    assert no_ca.returncode == 2 and "pki init" in no_ca.stderr
    assert medswitch("pki", "init", env=env).returncode == 0
    ca_before = (tmp_path / "tls" / "ca.crt").read_bytes()
    again = medswitch("pki", "init", env=env)
    assert again.returncode == 2 and "already" in again.stderr
    assert (tmp_path / "tls" / "ca.crt").read_bytes() == ca_before
    bad = medswitch("pki", "issue", "../etc/passwd", env=env)
    assert bad.returncode == 2


def test_a_certificate_is_replaced_only_when_asked_and_never_readable(tmp_path: Path) -> None:
    env = {"MEDSWITCH_TLS_DIR": str(tmp_path / "tls")}
    assert medswitch("pki", "init", env=env).returncode == 0
    assert medswitch("pki", "issue", "H1", env=env).returncode == 0
    key = tmp_path / "tls" / "clients" / "H1.key"
    before = key.read_bytes()
    again = medswitch("pki", "issue", "H1", env=env)
    assert again.returncode == 2 and "already has a certificate" in again.stderr
    assert key.read_bytes() == before
    # an old copy left readable (restored from a backup, say), opened by someone
    key.chmod(0o644)
    with key.open("rb") as spy:
        assert medswitch("pki", "issue", "--force", "H1", env=env).returncode == 0
        assert spy.read() == before  # the open handle still sees only the old key
    assert key.read_bytes() != before
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_a_symlink_planted_at_a_certificate_path_is_replaced_not_written_through(
    tmp_path: Path,
) -> None:
    tls = tmp_path / "tls"
    pki.init(tls)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    crt = pki.TlsPaths(tls).client_crt("P33039900005")
    crt.parent.mkdir(parents=True, exist_ok=True)
    crt.symlink_to(victim)
    pki.issue(tls, "P33039900005", force=True)
    assert victim.read_text() == "keep me"
    assert not crt.is_symlink()
    assert pki.common_name(crt.read_bytes()) == "P33039900005"
