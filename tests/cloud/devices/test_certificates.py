"""Device certificates (issue 17) on PostgreSQL: provisioning at the bench through the
API (CN = device id, listed, the device registered unattached and adopted by
commissioning), a CSR for another id refused, revocation (the row marked, the serial in the
CRL the CA directory holds), decommissioning a station revokes its certificates, renewal
through ingest (CertRenew in, a signed CertIssued out, a new row, the old superseded), and
the device-certificate-expiring alert raised and stopped by the renewal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud import pki
from kickstand.cloud.alerts.engine import AlertConfig, AlertEngine
from kickstand.cloud.alerts.models import FleetAlert
from kickstand.cloud.alerts.types import AlertState, AlertType
from kickstand.cloud.api import create_app
from kickstand.cloud.commands.issuer import CommandIssuer
from kickstand.cloud.config import Settings
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.devices import identity
from kickstand.cloud.devices.certificates import DeviceCertificate
from kickstand.cloud.ingest.apply import BatchApplier, IngestStats
from kickstand.cloud.models import Device
from kickstand.protocol import topics
from kickstand.protocol.signing import CommandSigner, MemoryReplayGuard, generate_private_key
from kickstand.protocol.signing import CommandVerifier as Verifier
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import messages as m
from tests.cloud.api.support import Api, FakeGateway
from tests.cloud.conftest import demo_refs
from tests.cloud.devices.test_device_registry import add_admin
from tests.cloud.ingest.fakes import inbound

pytestmark = pytest.mark.postgres

Maker = async_sessionmaker[AsyncSession]
OPERATOR = "operator@example.com"
STATION = "st-0001"  # the seed's first station, in the demo network
SECOND = "st-0002"
SIGNER = CommandSigner(generate_private_key())


@dataclass
class Bench:
    api: Api
    ca_dir: Path
    settings: Settings
    _admin: dict[str, str] | None = None

    async def admin(self) -> dict[str, str]:
        """A global admin's headers (the bench rig's account)."""
        if self._admin is None:
            self._admin = await add_admin(self.api)
        return self._admin

    @property
    def ca(self) -> pki.CertificateAuthority:
        return pki.CertificateAuthority.load(self.ca_dir)

    def crl_serials(self) -> set[int]:
        crl = pki.load_crl(self.ca_dir / pki.CRL_FILE)
        assert crl.is_signature_valid(self.ca.key.public_key())
        return {r.serial_number for r in crl}


@pytest.fixture
async def bench(pg_seeded_url: str, tmp_path: Path) -> AsyncIterator[Bench]:
    ca_dir = tmp_path / "pki"
    pki.init_directory(ca_dir, ["127.0.0.1"])
    settings = Settings(
        DATABASE_URL=pg_seeded_url,
        VAR_DIR=tmp_path / "var",
        JWT_SECRET="test-secret-" + "x" * 40,
        DEVICE_CA_DIR=ca_dir,
        DEVICE_CERT_VALID_DAYS=90,
    )
    engine = create_engine(pg_seeded_url)
    app = create_app(settings, command_gateway=FakeGateway(), engine=engine)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://kickstand.test") as client:
        api = Api(
            client,
            FakeGateway(),
            create_sessionmaker(engine),
            demo_refs(pg_seeded_url),
            "postgres",
        )
        yield Bench(api, ca_dir, settings)
    await engine.dispose()


def csr_pem(device_id: str) -> str:
    """What the device does: a key of its own (kept), a CSR (sent)."""
    return pki.pem(pki.device_csr(pki.device_key(), device_id)).decode()


async def provision(
    bench: Bench, headers: dict[str, str], device_id: str, kind: str = "station", **extra: Any
) -> httpx.Response:
    body = {"device_id": device_id, "kind": kind, "csr": csr_pem(device_id), **extra}
    return await bench.api.client.post(
        "/v1/dashboard/devices/provision", json=body, headers=headers
    )


async def device_pk(maker: Maker, device_id: str) -> int:
    async with maker() as s:
        pk: int = (await s.scalars(select(Device.id).where(Device.device_id == device_id))).one()
        return pk


async def certificates(bench: Bench, headers: dict[str, str], pk: int) -> list[dict[str, Any]]:
    r = await bench.api.client.get(f"/v1/dashboard/devices/{pk}/certificates", headers=headers)
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


async def provisioning_signs_the_device_id_and_lists_it(bench: Bench) -> None:
    admin = await bench.admin()
    r = await provision(bench, admin, "st-B3NCH01")
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    cert = x509.load_pem_x509_certificate(data["certificate_pem"].encode())
    assert pki.certificate_cn(cert) == "st-B3NCH01"
    assert bench.ca.verify(cert)
    assert x509.load_pem_x509_certificate(data["ca_chain_pem"].encode()) == bench.ca.certificate
    assert data["unattached"] is True and data["kind"] == "station"
    validity = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=89) < validity < timedelta(days=91)  # DEVICE_CERT_VALID_DAYS
    # Provisioned, not commissioned: in the registry, attached to nothing.
    detail = await bench.api.client.get(f"/v1/dashboard/devices/{data['id']}", headers=admin)
    assert detail.status_code == 200, detail.text
    assert set(detail.json()["data"]["attached"].values()) == {None}
    [listed] = await certificates(bench, admin, data["id"])
    assert listed["serial_number"] == format(cert.serial_number, "x")
    assert listed["subject_cn"] == "st-B3NCH01" and listed["state"] == "valid"
    assert listed["revoked"] is False and listed["issued_by"] is not None
    assert listed["fingerprint_sha256"] == identity.fingerprint(cert)
    # Commissioning the station adopts the provisioned mainboard.
    r = await bench.api.client.post(
        "/v1/dashboard/stations",
        json={
            "cluster_id": next(iter(bench.api.demo.cluster_ids.values())),
            "device_id": "st-B3NCH01",
            "name": "Bench",
            "spots": 2,
        },
        headers=admin,
    )
    assert r.status_code == 200, r.text
    detail = await bench.api.client.get(f"/v1/dashboard/devices/{data['id']}", headers=admin)
    assert detail.json()["data"]["attached"]["station_id"] == r.json()["data"]["station_id"]


async def another_id_a_network_operator_and_a_kind_mismatch_are_refused(bench: Bench) -> None:
    admin = await bench.admin()
    body = {"device_id": "st-B3NCH02", "kind": "station", "csr": csr_pem("st-0TH3R")}
    r = await bench.api.client.post("/v1/dashboard/devices/provision", json=body, headers=admin)
    assert r.status_code == 422, r.text
    assert r.json()["reason"] == "cn-mismatch"
    r = await bench.api.client.post(
        "/v1/dashboard/devices/provision",
        json={**body, "csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"},
        headers=admin,
    )
    assert r.status_code == 422, r.text
    # A network's operator reaches its own station's device, not a new one (in no network).
    operator = await bench.api.login(OPERATOR)
    r = await provision(bench, operator, "st-B3NCH03")
    assert r.status_code == 403, r.text
    assert r.json()["reason"] == "global-grant-required"
    r = await provision(bench, operator, STATION)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["unattached"] is False
    r = await provision(bench, admin, STATION, kind="vehicle")
    assert r.status_code == 409, r.text
    async with bench.api.sessionmaker() as s:
        rows = (await s.scalars(select(DeviceCertificate.subject_cn))).all()
    assert not {"st-B3NCH02", "st-B3NCH03"} & set(rows)  # nothing signed for them


async def revoking_marks_the_row_and_lists_the_serial_in_the_crl(bench: Bench) -> None:
    admin = await bench.admin()
    first = (await provision(bench, admin, STATION)).json()["data"]
    second = (await provision(bench, admin, STATION)).json()["data"]
    pk = second["id"]
    listed = await certificates(bench, admin, pk)
    assert [c["id"] for c in listed] == [second["certificate"]["id"], first["certificate"]["id"]]
    assert listed[1]["state"] == "superseded"
    assert listed[1]["superseded_by"] == second["certificate"]["id"]
    before = bench.crl_serials()
    serial = first["certificate"]["serial_number"]
    r = await bench.api.client.post(
        f"/v1/dashboard/devices/{pk}/certificates/{serial}/revoke",
        json={"reason": "key-compromise"},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["revoked"] is True and r.json()["data"]["state"] == "revoked"
    assert r.json()["data"]["revoke_reason"] == "key-compromise"
    assert bench.crl_serials() == before | {int(serial, 16)}
    # Revoked once: its first reason stays.
    r = await bench.api.client.post(
        f"/v1/dashboard/devices/{pk}/certificates/{serial}/revoke", json={}, headers=admin
    )
    assert r.status_code == 200 and r.json()["data"]["revoke_reason"] == "key-compromise"
    r = await bench.api.client.post(
        f"/v1/dashboard/devices/{pk}/certificates/abc123/revoke", json={}, headers=admin
    )
    assert r.status_code == 404, r.text


async def decommissioning_a_station_revokes_its_certificates(bench: Bench) -> None:
    admin = await bench.admin()
    provisioned = (await provision(bench, admin, "st-D3C0M01")).json()["data"]
    r = await bench.api.client.post(
        "/v1/dashboard/stations",
        json={
            "cluster_id": next(iter(bench.api.demo.cluster_ids.values())),
            "device_id": "st-D3C0M01",
            "name": "Gone",
            "spots": 1,
        },
        headers=admin,
    )
    assert r.status_code == 200, r.text
    station_id = r.json()["data"]["station_id"]
    r = await bench.api.client.delete(f"/v1/dashboard/stations/{station_id}", headers=admin)
    assert r.status_code == 200, r.text
    [listed] = await certificates(bench, admin, provisioned["id"])
    assert listed["revoked"] is True and listed["revoke_reason"] == identity.DECOMMISSIONED
    assert int(provisioned["certificate"]["serial_number"], 16) in bench.crl_serials()
    # A decommissioned device gets no new certificate.
    r = await provision(bench, admin, "st-D3C0M01")
    assert r.status_code == 409, r.text
    # A vehicle's controller: provisioned, adopted at registration, revoked with it.
    controller = (await provision(bench, admin, "vh-KS0D3C01", kind="vehicle")).json()["data"]
    assert controller["unattached"] is True
    r = await bench.api.client.post(
        "/v1/dashboard/vehicles",
        json={
            "serial_number": "KS0D3C01",
            "vehicle_type": "kick-scooter",
            "model": "bench",
            "network_id": bench.api.demo.network_id,
            "device_id": "vh-KS0D3C01",
        },
        headers=admin,
    )
    assert r.status_code == 200, r.text
    r = await bench.api.client.post(
        f"/v1/dashboard/vehicles/{r.json()['data']['vehicle_id']}/decommission",
        params={"reason": "sold"},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    [listed] = await certificates(bench, admin, controller["id"])
    assert listed["revoked"] is True and listed["revoke_reason"] == identity.DECOMMISSIONED
    assert int(controller["certificate"]["serial_number"], 16) in bench.crl_serials()


def applier(bench: Bench) -> BatchApplier:
    return BatchApplier(
        bench.api.sessionmaker,
        IngestStats(),
        issuer=CommandIssuer(SIGNER, sent_by="ingest-test"),
        device_ca=identity.DeviceCa(bench.ca_dir, 90),
    )


def issued_commands(replies: list[Any], device_id: str) -> list[m.CommandBody]:
    verifier = Verifier(device_id, {SIGNER.kid: SIGNER.public_key}, MemoryReplayGuard())
    cmd_topic = topics.down(device_id, Channel.COMMAND)
    return [verifier.verify(r.payload).command for r in replies if r.topic == cmd_topic]


async def renew(bench: Bench, device_id: str, seq: int) -> tuple[Any, x509.Certificate | None]:
    key = pki.device_key()
    csr = pki.device_csr(key, device_id).public_bytes(Encoding.DER)
    out = await applier(bench).apply([inbound(device_id, m.CertRenew(csr), seq)])
    commands = issued_commands(out.replies, device_id)
    if not commands:
        return out, None
    [command] = commands
    assert isinstance(command, m.CertIssued)
    cert = x509.load_der_x509_certificate(command.certificate)
    assert cert.public_key() == key.public_key()  # the key the device made, nothing else
    return out, cert


async def renewal_through_ingest_supersedes_the_old_certificate(bench: Bench) -> None:
    admin = await bench.admin()
    # Without a certificate of ours the device cannot renew: a dead letter, nothing sent.
    out, cert = await renew(bench, STATION, 1)
    assert cert is None and len(out.dead) == 1
    first = (await provision(bench, admin, STATION)).json()["data"]
    out, cert = await renew(bench, STATION, 2)
    assert cert is not None and pki.certificate_cn(cert) == STATION and bench.ca.verify(cert)
    listed = await certificates(bench, admin, first["id"])
    assert [c["serial_number"] for c in listed] == [
        format(cert.serial_number, "x"),
        first["certificate"]["serial_number"],
    ]
    assert listed[0]["issued_by"] is None and listed[0]["state"] == "valid"
    assert listed[1]["superseded_by"] == listed[0]["id"] and listed[1]["state"] == "superseded"
    # Recorded in the device's command history like every command the cloud sends.
    r = await bench.api.client.get(f"/v1/dashboard/devices/{first['id']}/commands", headers=admin)
    assert [c["command_type"] for c in r.json()["data"]] == ["certissued"]
    # A CSR naming another device is refused (kept as a dead letter), nothing signed.
    other = pki.device_csr(pki.device_key(), "st-0002").public_bytes(Encoding.DER)
    out = await applier(bench).apply([inbound(STATION, m.CertRenew(other), 3)])
    assert out.replies == [] and len(out.dead) == 1
    assert len(await certificates(bench, admin, first["id"])) == 2


async def alerts(maker: Maker) -> list[FleetAlert]:
    async with maker() as s:
        rows = await s.scalars(
            select(FleetAlert).where(FleetAlert.alert_type == AlertType.DEVICE_CERTIFICATE_EXPIRING)
        )
        return list(rows)


async def expiry_alert_raised_before_expiry_and_stopped_by_the_renewal(bench: Bench) -> None:
    admin = await bench.admin()
    provisioned = (await provision(bench, admin, SECOND)).json()["data"]
    maker = bench.api.sessionmaker
    rules = AlertEngine(AlertConfig(certificate_expiring_days=14))
    now = datetime.now(UTC)
    async with maker() as s:
        await rules.sweep(s, now)
        await s.commit()
    assert await alerts(maker) == []  # 90 days left
    async with maker() as s:
        await s.execute(
            update(DeviceCertificate)
            .where(DeviceCertificate.id == provisioned["certificate"]["id"])
            .values(not_after=now + timedelta(days=5))
        )
        await s.commit()
    async with maker() as s:
        await rules.sweep(s, now)
        await s.commit()
    [alert] = await alerts(maker)
    assert alert.device_id == SECOND and alert.state == AlertState.NEW
    assert alert.network_id == bench.api.demo.network_id and alert.station_id is not None
    _, cert = await renew(bench, SECOND, 1)
    assert cert is not None
    async with maker() as s:
        await rules.sweep(s, now)
        await s.commit()
    [alert] = await alerts(maker)
    assert alert.state == AlertState.STOPPED


async def the_crl_is_kept_fresh_and_in_step_with_the_registry(bench: Bench) -> None:
    """OpenSSL refuses every client certificate once the broker's CRL is past its
    nextUpdate: the keeper rewrites it well before, and when it misses a revocation."""
    maker = bench.api.sessionmaker
    now = datetime.now(UTC)
    assert await identity.refresh_crl(maker, bench.settings, now) is None  # in step, fresh
    # Revoked in the registry, the CRL not written (a failed write): out of date.
    admin = await bench.admin()
    provisioned = (await provision(bench, admin, "st-CRL0001")).json()["data"]
    async with maker() as s:
        row = await s.get_one(DeviceCertificate, provisioned["certificate"]["id"])
        identity.revoke(row, "test", now)
        await s.commit()
    serial = int(provisioned["certificate"]["serial_number"], 16)
    assert serial not in bench.crl_serials()
    assert await identity.refresh_crl(maker, bench.settings, now) == "out-of-date"
    assert serial in bench.crl_serials()
    assert await identity.refresh_crl(maker, bench.settings, now) is None
    # 16 days on, the 30-day CRL is rewritten; its new nextUpdate is 30 days from then.
    later = now + timedelta(days=16)
    assert await identity.refresh_crl(maker, bench.settings, later) == "expiring"
    crl = pki.load_crl(bench.ca_dir / pki.CRL_FILE)
    assert crl.next_update_utc is not None
    assert crl.next_update_utc - later > timedelta(days=29)
    assert serial in {r.serial_number for r in crl}


# Three tests, each on a fresh clone of the seeded database (the clone is most of the cost).


async def test_provisioning_at_the_bench(bench: Bench) -> None:
    await provisioning_signs_the_device_id_and_lists_it(bench)
    await another_id_a_network_operator_and_a_kind_mismatch_are_refused(bench)


async def test_revocation_by_hand_and_on_decommission(bench: Bench) -> None:
    await revoking_marks_the_row_and_lists_the_serial_in_the_crl(bench)
    await decommissioning_a_station_revokes_its_certificates(bench)
    await the_crl_is_kept_fresh_and_in_step_with_the_registry(bench)


async def test_renewal_through_ingest_and_the_expiry_alert(bench: Bench) -> None:
    await renewal_through_ingest_supersedes_the_old_certificate(bench)
    await expiry_alert_raised_before_expiry_and_stopped_by_the_renewal(bench)
