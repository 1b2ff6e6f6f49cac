"""The certificate dates an idle agent reads without cryptography.x509 (edge/core/certdates)
agree with cryptography's on the certificates it makes; anything else is a ValueError."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kickstand.edge.core.certdates import der_validity, file_validity, pem_validity


def _certificate(not_before: datetime, not_after: datetime) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "st-0001")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


@pytest.mark.parametrize(
    ("not_before", "not_after"),
    [
        # UTCTime both (years 1950-2049), its two centuries, GeneralizedTime from 2050
        (datetime(2026, 12, 6, 23, 59, 58, tzinfo=UTC), datetime(2027, 1, 5, 0, 0, 1, tzinfo=UTC)),
        (datetime(1950, 1, 1, tzinfo=UTC), datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)),
        (datetime(2030, 6, 1, 12, 30, tzinfo=UTC), datetime(2051, 2, 28, 8, 7, 6, tzinfo=UTC)),
    ],
)
def test_dates_agree_with_cryptography(
    tmp_path: Path, not_before: datetime, not_after: datetime
) -> None:
    cert = _certificate(not_before, not_after)
    expected = (cert.not_valid_before_utc, cert.not_valid_after_utc)
    assert expected == (not_before, not_after)
    assert der_validity(cert.public_bytes(serialization.Encoding.DER)) == expected
    pem = cert.public_bytes(serialization.Encoding.PEM)
    path = tmp_path / "device.pem"
    path.write_bytes(b"subject=CN = st-0001\n" + pem + pem)  # text before, a chain: the first
    assert pem_validity(path.read_bytes()) == expected
    assert file_validity(path) == expected


def test_not_a_certificate_is_a_value_error(tmp_path: Path) -> None:
    cert = _certificate(datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    der = cert.public_bytes(serialization.Encoding.DER)
    for bad in (b"", der[:40], der[:-1] + b"", b"\x30\x80" + der[2:], b"\x02\x01\x00"):
        with pytest.raises(ValueError):
            der_validity(bad)
    with pytest.raises(ValueError):
        pem_validity(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ValueError):
        pem_validity(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n")
    with pytest.raises(OSError):
        file_validity(tmp_path / "missing.pem")


def test_the_link_and_identity_read_dates_without_x509(tmp_path: Path) -> None:
    """What an idle TLS agent does with its certificate (the connection's report, the
    hourly renewal check, the start's recovery without a pending key) loads no
    cryptography.x509: its memory, issue 17's station footprint figure."""
    cert = _certificate(datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    cert_file = tmp_path / "device.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = tmp_path / "device.key"
    key_file.write_bytes(b"not read")
    script = f"""
import sys
from datetime import UTC, datetime
from pathlib import Path
from kickstand.edge.core.identity import DeviceIdentity
from kickstand.edge.core.link import certificate_validity
now = datetime(2026, 12, 20, tzinfo=UTC)
identity = DeviceIdentity("st-0001", Path({str(cert_file)!r}), Path({str(key_file)!r}),
                          clock_ms=lambda: int(now.timestamp() * 1000))
identity.recover()
assert identity.due()
assert certificate_validity({str(cert_file)!r}, now) is None
late = certificate_validity({str(cert_file)!r}, datetime(2027, 2, 1, tzinfo=UTC))
assert late is not None and late.reason == "expired"
print(sorted(m for m in sys.modules if m.startswith("cryptography.x509")))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
