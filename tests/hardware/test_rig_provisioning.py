"""The rig's end-of-line provisioning steps (issue 17) against the real parts: the cloud's
API on the seeded PostgreSQL database with the installation's CA (in process), Mosquitto
with the deployment's TLS policy. The device's key is made in its key store, its CSR
signed, the certificate installed, and the device connects over TLS with it; a bench
account that may not provision fails the step with the cloud's reason."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from rich.console import Console
from sqlalchemy import select

from kickstand.cloud import pki
from kickstand.cloud.api import create_app
from kickstand.cloud.config import Settings
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.devices.certificates import DeviceCertificate
from kickstand.cloud.models import Device, User, UserRole
from kickstand.cloud.security import hash_password
from kickstand.rigs.config import Provisioning
from kickstand.rigs.provisioning import ProvisioningSteps
from kickstand.rigs.results import Outcome, RunReport
from kickstand.rigs.runner import Mode, SuiteRunner
from kickstand.testing import DeviceTls, MosquittoService
from tests.cloud.conftest import pg_seeded_url, pg_template

__all__ = ["pg_seeded_url", "pg_template"]  # the seeded PostgreSQL of tests/cloud

pytestmark = [pytest.mark.postgres, pytest.mark.mqtt]

DEVICE = "st-R1G0001"
PASSWORD = "bench-rig-password-1"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoService]:
    with MosquittoService(tls=DeviceTls.create(tmp_path / "pki")) as service:
        yield service


def runner() -> SuiteRunner:
    report = RunReport(
        "station",
        DEVICE,
        DEVICE,
        datetime.now(UTC),
        simulated=True,
        unattended=False,
        rig="test",
    )
    console = Console(file=io.StringIO(), width=120)
    return SuiteRunner(report, mode=Mode.SIMULATED, console=console, person_timeout_s=1)


async def test_the_bench_provisions_the_device_and_it_connects_over_tls(
    broker: MosquittoService,
    pg_seeded_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert broker.tls is not None and broker.tls_port is not None
    settings = Settings(
        DATABASE_URL=pg_seeded_url,
        VAR_DIR=tmp_path / "var",
        JWT_SECRET="test-secret-" + "x" * 40,
        DEVICE_CA_DIR=broker.tls.material.directory,
    )
    engine = create_engine(pg_seeded_url)
    maker = create_sessionmaker(engine)
    async with maker() as s:
        for email, role in (("bench@example.com", UserRole.ADMIN), ("op@example.com", None)):
            s.add(
                User(
                    email=email,
                    password_hash=hash_password(PASSWORD, demo=True),
                    role=role or UserRole.OPERATOR,
                    permissions=[],  # the operator: no grant at all
                    email_confirmed_at=datetime.now(UTC),
                )
            )
        await s.commit()
    monkeypatch.setenv("KICKSTAND_RIG_PASSWORD", PASSWORD)
    transport = httpx.ASGITransport(app=create_app(settings, engine=engine))
    try:
        steps = ProvisioningSteps(
            DEVICE,
            "station",
            Provisioning(
                api_url="http://kickstand.test",
                email="bench@example.com",
                tls_broker_url=f"mqtts://{broker.host}:{broker.tls_port}",
            ),
            tmp_path / "device",
            transport=transport,
        )
        run = runner()
        await steps.run(run)
        outcomes = {r.id: (r.outcome, r.message) for r in run.report.steps}
        assert outcomes == {
            "provision": (Outcome.PASSED, outcomes["provision"][1]),
            "tls_connect": (Outcome.PASSED, outcomes["tls_connect"][1]),
        }, outcomes
        # The key stayed on the device (0600); the certificate is its, signed by the CA.
        assert steps.key_file.stat().st_mode & 0o777 == 0o600
        cert = pki.load_certificate(steps.cert_file)
        assert pki.certificate_cn(cert) == DEVICE and broker.tls.ca.verify(cert)
        assert cert.public_key() == pki.load_private_key(steps.key_file).public_key()
        async with maker() as s:
            serials = (
                await s.scalars(
                    select(DeviceCertificate.serial_number)
                    .join(Device, Device.id == DeviceCertificate.device_id)
                    .where(Device.device_id == DEVICE)
                )
            ).all()
        assert serials == [format(cert.serial_number, "x")]

        # An account without the grant: the step fails with the cloud's reason.
        refused = ProvisioningSteps(
            "st-R1G0002",
            "station",
            Provisioning(api_url="http://kickstand.test", email="op@example.com"),
            tmp_path / "other",
            transport=transport,
        )
        run = runner()
        await refused.run(run)
        provision = run.report.step("provision")
        assert provision.outcome is Outcome.FAILED
        assert "refused" in provision.message and "403" in provision.message
        assert run.report.step("tls_connect").outcome is Outcome.SKIPPED

        # A bench without an API: no steps, a note.
        run = runner()
        await ProvisioningSteps(DEVICE, "station", Provisioning(), tmp_path / "none").run(run)
        assert run.report.steps == [] and "no provisioning" in run.report.notes[0]
    finally:
        await engine.dispose()
