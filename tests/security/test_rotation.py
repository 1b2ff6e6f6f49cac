"""Rotation and revocation of device certificates with the REAL station agent (issue 17):
real Mosquitto with the deployment's TLS policy, PostgreSQL (a seeded database), the ingest
worker and the API (``tests.e2e.city``) with the installation's CA in ``DEVICE_CA_DIR``,
simulated spot boards.

- a station whose certificate is within its renewal window asks for a new one over its
  current identity (CertRenew), ingest signs it and sends CertIssued, the agent installs it
  and reconnects with it: online again, the registry holding the new certificate and the
  old one superseded;
- a station provisioned at the bench through the API and commissioned, then decommissioned
  while connected: its certificate revoked, the CRL rewritten, the broker reloaded and the
  live session dropped; its reconnection is refused (certificate revoked);
- the device's files (no broker): a renewal cut between its two renames is finished at the
  next start; a certificate for another key or another device is refused, nothing changed;
- the broker seam: a live session dropped (its client id taken over), and dropped again
  once after the broker's own CRL reload (no pid file: deploy/'s watcher).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from kickstand.cloud import pki
from kickstand.cloud.commands import load_signer
from kickstand.cloud.devices import identity
from kickstand.cloud.devices.certificates import DeviceCertificate
from kickstand.cloud.models import Cluster, Device, User, UserRole
from kickstand.cloud.security import hash_password
from kickstand.edge.core.identity import DeviceIdentity, IdentityError
from kickstand.protocol.v1 import messages as m
from kickstand.simulators.station.sim import StationRig
from kickstand.testing import DeviceTls, MosquittoService, PostgresServer
from tests.e2e.city import City, eventually, seeded_city

STATION = "st-0001"  # a seeded station with 6 spots
ADMIN, ADMIN_PASSWORD = "bench@example.com", "bench-rig-password-1"


class TlsStationRig(StationRig):
    """The simulators' rig, its agent on ``mqtts://``."""

    @property
    def mqtt_url(self) -> str:
        return super().mqtt_url.replace("mqtt://", "mqtts://", 1)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoService]:
    """A broker of the test's own (its CRL rewritten, reloaded) whose CA outlives what the
    renewal signs (a certificate never outlives its CA)."""
    ca = pki.CertificateAuthority.create("Kickstand rotation-test CA", valid_days=3650)
    with MosquittoService(tls=DeviceTls.create(tmp_path / "pki", ca=ca)) as service:
        yield service


def cloud_settings(broker: MosquittoService) -> dict[str, Any]:
    assert broker.tls is not None
    return {
        "DEVICE_CA_DIR": broker.tls.material.directory,
        "DEVICE_CERT_VALID_DAYS": 365,
        "BROKER_PID_FILE": broker.pid_file,
    }


def rig_for(city: City, broker: MosquittoService, device_id: str, workdir: Path) -> StationRig:
    assert broker.tls is not None and broker.tls_port is not None
    return TlsStationRig(
        device_id,
        broker.host,
        broker.tls_port,
        command_keys=[load_signer(city.settings).public_key.hex()],
        workdir=workdir,
        spots=2,
        nfc=False,
        mqtt_ca_file=str(broker.tls.ca_file),
        mqtt_cert_file=str(workdir / "device.pem"),
        mqtt_key_file=str(workdir / "device.key"),
    )


async def registry(city: City, device_id: str) -> list[DeviceCertificate]:
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        rows = await s.scalars(
            select(DeviceCertificate)
            .join(Device, Device.id == DeviceCertificate.device_id)
            .where(Device.device_id == device_id)
            .order_by(DeviceCertificate.id)
        )
        return list(rows)


def on_disk(workdir: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((workdir / "device.pem").read_bytes())


@pytest.mark.slow
@pytest.mark.mqtt
@pytest.mark.postgres
async def test_rotation_before_expiry_keeps_the_station_online(
    broker: MosquittoService, pg_server: PostgresServer, pg_template: str, tmp_path: Path
) -> None:
    assert broker.tls is not None
    workdir = tmp_path / STATION
    workdir.mkdir()
    async with seeded_city(
        broker, pg_server, pg_template, tmp_path, stations={}, settings=cloud_settings(broker)
    ) as city:
        # Provisioned 10 days before its expiry: inside the 30-day renewal window.
        assert city.sessionmaker is not None
        key = pki.device_key()
        async with city.sessionmaker() as s:
            device = (await s.scalars(select(Device).where(Device.device_id == STATION))).one()
            first = await identity.issue(
                s,
                broker.tls.ca,
                device,
                pki.device_csr(key, STATION),
                valid_days=10,
                issued_by=None,
            )
            await s.commit()
        pki.write_pem(workdir / "device.pem", first.certificate)
        pki.write_pem(workdir / "device.key", key)
        rig = rig_for(city, broker, STATION, workdir)
        await rig.start()
        try:
            assert rig.agent is not None
            link = rig.agent.link

            async def renewed_and_back() -> bool:
                return (
                    on_disk(workdir).serial_number != first.certificate.serial_number
                    and link.counters.connects >= 2
                    and link.accepted.is_set()
                )

            await eventually(renewed_and_back, 30)
            new = on_disk(workdir)
            assert link.tls_error is None
            assert pki.certificate_cn(new) == STATION and broker.tls.ca.verify(new)
            assert new.not_valid_after_utc > first.certificate.not_valid_after_utc
            assert (new.not_valid_after_utc - new.not_valid_before_utc).days >= 364
            # The key on disk is the new certificate's; no pending key is left behind.
            loaded = pki.load_private_key(workdir / "device.key")
            assert loaded.public_key() == new.public_key()
            assert not (workdir / "device.key.next").exists()
            old, renewed = await registry(city, STATION)
            assert old.serial_number == identity.serial_hex(first.certificate.serial_number)
            assert renewed.serial_number == identity.serial_hex(new.serial_number)
            assert old.superseded_by == renewed.id and renewed.issued_by is None
            connects = link.counters.connects
            # Renewed: not asked again on the new session.
            await city.settled()
            assert len(await registry(city, STATION)) == 2
            assert link.counters.connects == connects and link.connected.is_set()
        finally:
            await rig.stop()


async def add_admin(city: City) -> dict[str, str]:
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        s.add(
            User(
                email=ADMIN,
                password_hash=hash_password(ADMIN_PASSWORD, demo=True),
                role=UserRole.ADMIN,
                permissions=[],
                email_confirmed_at=datetime.now(UTC),
            )
        )
        await s.commit()
    return await city.login(ADMIN, ADMIN_PASSWORD)


@pytest.mark.slow
@pytest.mark.mqtt
@pytest.mark.postgres
async def test_decommission_revokes_and_drops_the_live_session(
    broker: MosquittoService, pg_server: PostgresServer, pg_template: str, tmp_path: Path
) -> None:
    device_id = "st-R3V0K01"
    workdir = tmp_path / device_id
    workdir.mkdir()
    async with seeded_city(
        broker, pg_server, pg_template, tmp_path, stations={}, settings=cloud_settings(broker)
    ) as city:
        admin = await add_admin(city)
        key = pki.device_key()
        r = await city.client().post(
            "/v1/dashboard/devices/provision",
            json={
                "device_id": device_id,
                "kind": "station",
                "csr": pki.pem(pki.device_csr(key, device_id)).decode(),
            },
            headers=admin,
        )
        assert r.status_code == 200, r.text
        (workdir / "device.pem").write_text(r.json()["data"]["certificate_pem"])
        pki.write_pem(workdir / "device.key", key)
        assert city.sessionmaker is not None
        async with city.sessionmaker() as s:
            cluster_id = (await s.scalars(select(Cluster.id).order_by(Cluster.id))).first()
        r = await city.client().post(
            "/v1/dashboard/stations",
            json={"cluster_id": cluster_id, "device_id": device_id, "name": "Revoked", "spots": 2},
            headers=admin,
        )
        assert r.status_code == 200, r.text
        station_id = r.json()["data"]["station_id"]
        rig = rig_for(city, broker, device_id, workdir)
        await rig.start()
        try:
            await rig.accepted(within=20)
            assert rig.agent is not None
            link = rig.agent.link
            assert link.counters.connects == 1
            r = await city.client().delete(f"/v1/dashboard/stations/{station_id}", headers=admin)
            assert r.status_code == 200, r.text
            [row] = await registry(city, device_id)
            assert row.revoked_at is not None
            assert broker.tls is not None
            crl = pki.load_crl(broker.tls.material.crl_file)
            assert int(row.serial_number, 16) in {c.serial_number for c in crl}

            async def dropped_and_refused() -> bool:
                return (
                    not link.connected.is_set()
                    and link.tls_error is not None
                    and link.tls_error.reason == "refused"
                )

            await eventually(dropped_and_refused, 20)
            assert "revoked" in str(link.tls_error)
            assert link.counters.connects == 1  # never back
        finally:
            await rig.stop()


# ── the device's files (edge/core/identity.py), no broker ────────────────────────────


def identity_in(
    workdir: Path, valid_days: int = 10
) -> tuple[DeviceIdentity, pki.CertificateAuthority]:
    ca = pki.CertificateAuthority.create("Kickstand identity-test CA", valid_days=3650)
    key = pki.device_key()
    pki.write_pem(
        workdir / "device.pem", ca.sign_csr(pki.device_csr(key, STATION), STATION, valid_days)
    )
    pki.write_pem(workdir / "device.key", key)
    return DeviceIdentity(STATION, workdir / "device.pem", workdir / "device.key"), ca


def signed_for(
    ca: pki.CertificateAuthority, request: m.CertRenew, device_id: str = STATION
) -> bytes:
    """The request's key certified as ``device_id`` (the CA refuses another CN: built by
    hand for the device's own check)."""
    csr = x509.load_der_x509_csr(request.csr)
    if device_id == STATION:
        return ca.sign_csr(csr, device_id, 365).public_bytes(Encoding.DER)
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
        .issuer_name(ca.certificate.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=365))
        .sign(ca.key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.DER)


async def test_renewal_files_survive_a_cut_and_refuse_what_is_not_theirs(tmp_path: Path) -> None:
    device, ca = identity_in(tmp_path)
    assert device.due()  # 10 days left, renewed from 30 days before
    old_serial = on_disk(tmp_path).serial_number
    request = device.renewal_request()
    assert device.pending_key_file.stat().st_mode & 0o777 == 0o600
    # Asked again (a new session, a restart): the same pending key.
    again = device.renewal_request()
    assert (
        x509.load_der_x509_csr(again.csr).public_key()
        == x509.load_der_x509_csr(request.csr).public_key()
    )
    # A certificate for another key (another device's CSR) is refused; nothing changes.
    other = ca.sign_csr(pki.device_csr(pki.device_key(), STATION), STATION, 365)
    with pytest.raises(IdentityError):
        device.install(other.public_bytes(Encoding.DER))
    with pytest.raises(IdentityError):
        device.install(signed_for(ca, device.renewal_request(), "st-0002"))
    assert on_disk(tmp_path).serial_number == old_serial
    # Cut between the two renames: the new certificate is in place, the key not yet.
    der = signed_for(ca, request)
    new = x509.load_der_x509_certificate(der)
    pki.write_pem(tmp_path / "device.pem", new)
    assert pki.load_private_key(tmp_path / "device.key").public_key() != new.public_key()
    restarted = DeviceIdentity(STATION, tmp_path / "device.pem", tmp_path / "device.key")
    restarted.recover()
    assert pki.load_private_key(tmp_path / "device.key").public_key() == new.public_key()
    assert not restarted.pending_key_file.exists() and not restarted.due()
    # With nothing pending, a CertIssued is refused.
    with pytest.raises(IdentityError):
        restarted.install(der)


# ── the broker seam: dropping a live session, and again after the broker's own reload ──


async def _dropped(client: aiomqtt.Client, within: float) -> bool:
    """Whether the broker ends ``client``'s connection within ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            async for _ in client.messages:
                pass
    except TimeoutError:
        return False
    except aiomqtt.MqttError:
        return True
    return True


@pytest.mark.mqtt
async def test_the_session_is_dropped_and_dropped_again_after_the_reload(
    mosquitto_private: MosquittoService,
) -> None:
    broker = mosquitto_private
    control = identity.MosquittoControl(None, broker.url, redrop_after_s=1.0)

    def device() -> aiomqtt.Client:
        return aiomqtt.Client(broker.host, broker.port, identifier="st-D7OP01", timeout=5)

    async with device() as first:
        await first.subscribe("ks/v1/c/st-D7OP01/+")
        await control.drop(["st-D7OP01"])
        assert await _dropped(first, 5)
    # Back at once (as if the broker had not reread its CRL yet): dropped again later.
    async with device() as again:
        await again.subscribe("ks/v1/c/st-D7OP01/+")
        assert await _dropped(again, 5)
    # Once only: a third connection stays.
    async with device() as third:
        await third.subscribe("ks/v1/c/st-D7OP01/+")
        assert not await _dropped(third, 2)
