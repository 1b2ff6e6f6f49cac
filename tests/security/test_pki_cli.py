"""`python -m kickstand.cloud pki init | sign-csr`: the documented commands of a deployment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from kickstand.cloud.__main__ import main
from kickstand.cloud.pki import (
    CertificateAuthority,
    certificate_cn,
    device_csr,
    device_key,
    load_certificate,
    pem,
)


def test_init_then_sign_a_devices_csr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pki = tmp_path / "pki"
    assert (
        main(
            [
                "pki",
                "init",
                "--dir",
                str(pki),
                "--broker-host",
                "mqtt.city.example",
                "--broker-host",
                "10.0.0.5",
            ]
        )
        == 0
    )
    assert {p.name for p in pki.iterdir()} == {
        "ca.pem",
        "ca.key",
        "server.pem",
        "server.key",
        "crl.pem",
    }
    server = load_certificate(pki / "server.pem")
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mqtt.city.example"]
    # A second init would orphan every device certificate: refused.
    assert main(["pki", "init", "--dir", str(pki), "--broker-host", "x"]) == 1
    assert "already holds a CA" in capsys.readouterr().err

    key = device_key()  # on the device: only the CSR leaves it
    (tmp_path / "st.csr").write_bytes(pem(device_csr(key, "st-0042")))
    out = tmp_path / "st.pem"
    assert (
        main(
            [
                "pki",
                "sign-csr",
                "--dir",
                str(pki),
                "--device-id",
                "st-0042",
                "--csr",
                str(tmp_path / "st.csr"),
                "--days",
                "30",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    cert = load_certificate(out)
    assert certificate_cn(cert) == "st-0042"
    assert cert.public_key() == key.public_key()
    assert CertificateAuthority.load(pki).verify(cert)

    # A CSR for one device presented as another's is refused, nothing written.
    assert (
        main(
            [
                "pki",
                "sign-csr",
                "--dir",
                str(pki),
                "--device-id",
                "st-0043",
                "--csr",
                str(tmp_path / "st.csr"),
                "--out",
                str(tmp_path / "x.pem"),
            ]
        )
        == 1
    )
    assert "not the device" in capsys.readouterr().err
    assert not (tmp_path / "x.pem").exists()


def test_module_entry_point_prints_the_certificate(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    run = [sys.executable, "-m", "kickstand.cloud", "pki"]
    subprocess.run(
        [*run, "init", "--dir", str(pki), "--broker-host", "localhost"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    csr = pem(device_csr(device_key(), "vh-AB123456"))
    result = subprocess.run(
        [*run, "sign-csr", "--dir", str(pki), "--device-id", "vh-AB123456", "--csr", "-"],
        input=csr,
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert certificate_cn(x509.load_pem_x509_certificate(result.stdout)) == "vh-AB123456"
