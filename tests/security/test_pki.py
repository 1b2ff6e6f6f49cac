"""The device CA (kickstand.cloud.pki): what it signs, what it refuses, files it writes."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kickstand.cloud.errors import CloudError
from kickstand.cloud.pki import (
    CertificateAuthority,
    CsrRefusedError,
    InvalidDeviceIdError,
    PkiMaterialError,
    certificate_cn,
    device_csr,
    device_key,
    init_directory,
    load_certificate,
    load_crl,
    load_csr,
    pem,
)

_DER = Encoding.DER
_SPKI = PublicFormat.SubjectPublicKeyInfo


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("test CA", valid_days=30)


def test_signed_device_certificate_names_the_device_and_chains_to_the_ca(
    ca: CertificateAuthority,
) -> None:
    key = device_key()
    cert = ca.sign_csr(device_csr(key, "st-0001"), "st-0001", valid_days=10)
    assert certificate_cn(cert) == "st-0001"
    assert cert.public_key() == key.public_key()
    assert ca.verify(cert)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=10) <= lifetime <= timedelta(days=10, minutes=6)


def test_certificate_never_outlives_the_ca(ca: CertificateAuthority) -> None:
    cert = ca.sign_csr(device_csr(device_key(), "st-0002"), "st-0002", valid_days=3650)
    assert cert.not_valid_after_utc == ca.certificate.not_valid_after_utc


def test_expired_certificate_can_be_made_for_tests(ca: CertificateAuthority) -> None:
    past = datetime.now(UTC) - timedelta(days=5)
    cert = ca.sign_csr(device_csr(device_key(), "st-0003"), "st-0003", 1, now=past)
    assert cert.not_valid_after_utc < datetime.now(UTC)


def test_csr_for_another_device_is_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(CsrRefusedError) as err:
        ca.sign_csr(device_csr(device_key(), "st-0002"), "st-0001", valid_days=10)
    assert err.value.reason == "cn-mismatch"
    assert isinstance(err.value, CloudError)


def test_csr_with_a_broken_signature_is_refused(ca: CertificateAuthority) -> None:
    good = pem(device_csr(device_key(), "st-0001"))
    # The CSR of one key with the public key of another: its self-signature fails.
    other = device_csr(device_key(), "st-0001")
    tampered_der = bytearray(good_der := load_csr(good).public_bytes(_DER))
    other_pub = other.public_key().public_bytes(_DER, _SPKI)
    this_pub = load_csr(good).public_key().public_bytes(_DER, _SPKI)
    at = bytes(tampered_der).index(this_pub)
    tampered_der[at : at + len(this_pub)] = other_pub
    assert bytes(tampered_der) != good_der
    with pytest.raises(CsrRefusedError) as err:
        ca.sign_csr(load_csr(bytes(tampered_der)), "st-0001", valid_days=10)
    assert err.value.reason == "bad-signature"


@pytest.mark.parametrize(
    "device_id", ["", "st-0002/evt", "st-+", "st-#", "x" * 65, "st 0001", "ST-0001"]
)
def test_device_id_that_is_not_a_client_id_is_refused(
    ca: CertificateAuthority, device_id: str
) -> None:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id[:64] or "x")]))
        .sign(device_key(), hashes.SHA256())
    )
    with pytest.raises(InvalidDeviceIdError):
        ca.sign_csr(csr, device_id, valid_days=10)


def test_server_certificate_names_hosts_and_ip(ca: CertificateAuthority) -> None:
    cert, key = ca.issue_server(["broker.example", "127.0.0.1"], valid_days=10)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["broker.example"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert cert.public_key() == key.public_key()
    assert ca.verify(cert)


def test_crl_lists_revoked_serials(ca: CertificateAuthority) -> None:
    cert = ca.sign_csr(device_csr(device_key(), "st-0004"), "st-0004", valid_days=10)
    crl = ca.crl([(cert.serial_number, datetime.now(UTC))])
    assert crl.is_signature_valid(ca.key.public_key())
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    assert len(ca.crl([])) == 0


def test_other_ca_does_not_verify(ca: CertificateAuthority) -> None:
    other = CertificateAuthority.create("other", valid_days=30)
    cert = other.sign_csr(device_csr(device_key(), "st-0001"), "st-0001", valid_days=10)
    assert not ca.verify(cert)


def test_init_directory_writes_broker_material_and_refuses_a_second_ca(tmp_path: Path) -> None:
    material = init_directory(tmp_path / "pki", ["localhost"])
    assert stat.S_IMODE((tmp_path / "pki" / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(material.key_file.stat().st_mode) == 0o600
    loaded = CertificateAuthority.load(tmp_path / "pki")
    assert loaded.verify(load_certificate(material.cert_file))
    assert len(load_crl(material.crl_file)) == 0
    with pytest.raises(PkiMaterialError):
        init_directory(tmp_path / "pki", ["localhost"])


def test_load_refuses_mismatched_key(tmp_path: Path) -> None:
    CertificateAuthority.create("a").save(tmp_path / "a")
    CertificateAuthority.create("b").save(tmp_path / "b")
    (tmp_path / "a" / "ca.key").write_bytes((tmp_path / "b" / "ca.key").read_bytes())
    with pytest.raises(PkiMaterialError):
        CertificateAuthority.load(tmp_path / "a")
    with pytest.raises(PkiMaterialError):
        CertificateAuthority.load(tmp_path / "missing")
