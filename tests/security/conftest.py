"""Fixtures of the security tests: the installation's device CA and a real Mosquitto with the
TLS policy deploy/ ships (kickstand.testing.MosquittoService(tls=DeviceTls))."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from kickstand.cloud.pki import CertificateAuthority, device_csr, device_key, write_pem
from kickstand.testing import DeviceTls, MosquittoService
from tests.cloud.conftest import pg_template

__all__ = ["pg_template"]  # the seeded PostgreSQL template of the end-to-end tests


@dataclass(frozen=True)
class DeviceCert:
    device_id: str
    cert_file: Path
    key_file: Path
    serial: int

    def context(self, ca_file: Path) -> ssl.SSLContext:
        """A device's TLS context: the broker verified against ``ca_file``, this identity."""
        context = ssl.create_default_context(cafile=str(ca_file))
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


IssueCert = Callable[..., DeviceCert]


@pytest.fixture(scope="session")
def device_ca() -> CertificateAuthority:
    # One CA for the session: P-256 makes it in milliseconds, but a session's certificates
    # must all chain to the broker's CA.
    return CertificateAuthority.create("Kickstand security-test CA", valid_days=30)


@pytest.fixture(scope="session")
def certs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("device-certs")


@pytest.fixture(scope="session")
def issue_cert(device_ca: CertificateAuthority, certs_dir: Path) -> IssueCert:
    """``issue_cert("st-0001", valid_days=1, now=None, ca=None)``: key made, CSR signed."""
    count = 0

    def issue(
        device_id: str,
        *,
        valid_days: int = 1,
        now: datetime | None = None,
        ca: CertificateAuthority | None = None,
    ) -> DeviceCert:
        nonlocal count
        count += 1
        key = device_key()
        cert = (ca or device_ca).sign_csr(device_csr(key, device_id), device_id, valid_days, now)
        base = certs_dir / f"{count:03d}-{device_id}"
        write_pem(base.with_suffix(".pem"), cert)
        write_pem(base.with_suffix(".key"), key)
        return DeviceCert(
            device_id, base.with_suffix(".pem"), base.with_suffix(".key"), cert.serial_number
        )

    return issue


@pytest.fixture(scope="session")
def tls_broker(
    device_ca: CertificateAuthority, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MosquittoService]:
    """The session's broker with the deployment's TLS policy (never stopped by a test)."""
    tls = DeviceTls.create(tmp_path_factory.mktemp("broker-pki"), ca=device_ca)
    with MosquittoService(tls=tls) as broker:
        yield broker


@pytest.fixture
def tls_broker_private(
    device_ca: CertificateAuthority, tmp_path: Path
) -> Iterator[MosquittoService]:
    """A TLS broker of the test's own (its CRL changed, reloaded, stopped)."""
    tls = DeviceTls.create(tmp_path / "broker-pki", ca=device_ca)
    with MosquittoService(tls=tls) as broker:
        yield broker
