"""`python -m kickstand.cloud pki init | sign-csr`: the documented commands of a deployment."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from sqlalchemy import select

from kickstand.cloud.__main__ import main
from kickstand.cloud.config import get_settings
from kickstand.cloud.db import create_engine
from kickstand.cloud.devices.certificates import DeviceCertificate
from kickstand.cloud.devices.identity import serial_hex
from kickstand.cloud.migrations import upgrade
from kickstand.cloud.models import Device
from kickstand.cloud.pki import (
    CertificateAuthority,
    certificate_cn,
    device_csr,
    device_key,
    load_certificate,
    pem,
)


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A migrated registry as DATABASE_URL (sign-csr records what it signs)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.sqlite3'}"
    asyncio.run(upgrade(url))
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def _recorded(url: str) -> list[tuple[str, str, str]]:
    async def read() -> list[tuple[str, str, str]]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    select(Device.device_id, Device.kind, DeviceCertificate.serial_number).join(
                        Device, Device.id == DeviceCertificate.device_id
                    )
                )
                return [(d, str(k), s) for d, k, s in rows.all()]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_init_then_sign_a_devices_csr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], registry: str
) -> None:
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
                "--kind",
                "station",
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
    # In the registry, as the bench's provisioning records it: renewable, revocable.
    assert _recorded(registry) == [("st-0042", "station", serial_hex(cert.serial_number))]

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
                "--kind",
                "station",
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


def test_module_entry_point_prints_the_certificate(tmp_path: Path, registry: str) -> None:
    env = {**os.environ, "DATABASE_URL": registry}
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
        [
            *run,
            "sign-csr",
            *("--dir", str(pki), "--device-id", "vh-AB123456", "--kind", "vehicle", "--csr", "-"),
        ],
        env=env,
        input=csr,
        capture_output=True,
        timeout=60,
        check=True,
    )
    cert = x509.load_pem_x509_certificate(result.stdout)
    assert certificate_cn(cert) == "vh-AB123456"
    assert _recorded(registry) == [("vh-AB123456", "vehicle", serial_hex(cert.serial_number))]
