"""Device identity (issue 17): the certificates the installation's CA signs for devices,
their registry, renewal, revocation, and telling the broker.

* **Issue** (:func:`issue`): the device's CSR (made with a key that never left it) signed
  by the CA with CN = its device id (:mod:`kickstand.cloud.pki`), recorded in
  ``device_certificates``; the certificates it had before (neither revoked nor already
  superseded) are marked superseded by it. The bench (an operator, ``issued_by``) and a
  renewal over the device's own identity (``CertRenew`` through ingest, ``issued_by``
  None) are the same rule. A decommissioned device gets none.
* **Revoke** (:func:`revoke`, :func:`revoke_device`): rows marked in the caller's
  transaction; after the commit :func:`publish_revocations` rewrites the CA's CRL from the
  registry (every revoked certificate not yet expired: the registry is the truth, the file
  is derived and can be rewritten at any time), tells the broker to reread it and drops
  the devices' live sessions (:class:`BrokerControl`).
* A device registered at the bench and attached to no station or vehicle is
  *provisioned, not commissioned*: commissioning a station or registering a vehicle with
  its device id adopts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar, Protocol

import aiomqtt
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from sqlalchemy import ScalarResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud import pki
from kickstand.cloud.broker import BrokerUrlError, MqttUrl
from kickstand.cloud.config import Settings
from kickstand.cloud.devices import repository as repo
from kickstand.cloud.devices.certificates import DeviceCertificate
from kickstand.cloud.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    UnavailableError,
)
from kickstand.cloud.models import Device, DeviceKind

log = logging.getLogger("kickstand.cloud.devices.identity")

#: Why a certificate was revoked (``revoke_reason``).
DECOMMISSIONED = "decommissioned"


def serial_hex(serial: int) -> str:
    """The registry's form of an x509 serial: lowercase hex, no leading zeros."""
    return format(serial, "x")


def fingerprint(certificate: x509.Certificate) -> str:
    return hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()


def is_decommissioned(device: Device) -> bool:
    # The stations' and vehicles' services mark it so (ingest's rule, DeviceInfo).
    return bool((device.credentials or {}).get("decommissioned"))


# ── the CA ───────────────────────────────────────────────────────────────────────────


def ca_directory(settings: Settings) -> Path:
    if settings.DEVICE_CA_DIR is None:
        raise UnavailableError("no device CA is configured (DEVICE_CA_DIR): nothing can be signed")
    return settings.DEVICE_CA_DIR


def load_ca(settings: Settings) -> pki.CertificateAuthority:
    """The installation's CA, or UnavailableError (not configured, or unreadable)."""
    directory = ca_directory(settings)
    try:
        return pki.CertificateAuthority.load(directory)
    except pki.PkiMaterialError as exc:
        log.error("event=device_ca_unreadable dir=%s error=%s", directory, exc)
        raise UnavailableError(f"the device CA in {directory} cannot be read") from exc


@dataclass(frozen=True, slots=True)
class DeviceCa:
    """Where ingest finds the CA for renewals (read at each renewal: rare, and a CA
    replaced on disk is picked up without a restart) and how long what it signs lasts."""

    directory: Path
    valid_days: int

    @classmethod
    def from_settings(cls, settings: Settings) -> DeviceCa | None:
        if settings.DEVICE_CA_DIR is None:
            return None
        return cls(settings.DEVICE_CA_DIR, settings.DEVICE_CERT_VALID_DAYS)

    def load(self) -> pki.CertificateAuthority:
        try:
            return pki.CertificateAuthority.load(self.directory)
        except pki.PkiMaterialError as exc:
            log.error("event=device_ca_unreadable dir=%s error=%s", self.directory, exc)
            raise UnavailableError(f"the device CA in {self.directory} cannot be read") from exc


def chain_pem(ca: pki.CertificateAuthority) -> bytes:
    """The CA chain a device installs to verify the broker (one level: the CA itself)."""
    return pki.pem(ca.certificate)


# ── issuing ──────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class Issued:
    row: DeviceCertificate
    certificate: x509.Certificate


def parse_csr(data: bytes) -> x509.CertificateSigningRequest:
    try:
        return pki.load_csr(data)
    except pki.CsrRefusedError as exc:
        raise InvalidInputError(str(exc), field="csr", reason=exc.reason) from exc


async def issue(
    session: AsyncSession,
    ca: pki.CertificateAuthority,
    device: Device,
    csr: x509.CertificateSigningRequest,
    *,
    valid_days: int,
    issued_by: int | None,
    now: datetime | None = None,
) -> Issued:
    """Sign ``csr`` for ``device`` and record it (in the caller's transaction); the older
    live certificates of the device are superseded by it."""
    if is_decommissioned(device):
        raise ConflictError(
            f"device {device.device_id} is decommissioned: it gets no certificate",
            reason="device-decommissioned",
        )
    now = now or datetime.now(UTC)
    try:
        certificate = ca.sign_csr(csr, device.device_id, valid_days, now)
    except pki.CsrRefusedError as exc:
        raise InvalidInputError(str(exc), field="csr", reason=exc.reason) from exc
    row = DeviceCertificate(
        device_id=device.id,
        serial_number=serial_hex(certificate.serial_number),
        subject_cn=device.device_id,
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        fingerprint_sha256=fingerprint(certificate),
        issued_at=now,
        issued_by=issued_by,
    )
    session.add(row)
    await session.flush()
    await session.execute(
        update(DeviceCertificate)
        .where(
            DeviceCertificate.device_id == device.id,
            DeviceCertificate.id != row.id,
            DeviceCertificate.superseded_by.is_(None),
            DeviceCertificate.revoked_at.is_(None),
        )
        .values(superseded_by=row.id),
        execution_options={"synchronize_session": False},
    )
    log.info(
        "event=device_certificate_issued device=%s serial=%s not_after=%s by=%s",
        device.device_id,
        row.serial_number,
        row.not_after.isoformat(),
        issued_by if issued_by is not None else "device",
    )
    return Issued(row, certificate)


def check_csr(csr: x509.CertificateSigningRequest, device_id: str) -> None:
    """Refuse (422) a CSR that is not the device's own, before anything else is decided:
    its self-signature must hold and its CN be ``device_id`` (the CA checks both again)."""
    if not csr.is_signature_valid:
        raise InvalidInputError(
            "the CSR's signature does not match its public key", field="csr", reason="bad-signature"
        )
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = names[0].value if len(names) == 1 else None
    if cn != device_id:
        raise InvalidInputError(
            f"the CSR names {cn!r}, not the device {device_id!r}", field="csr", reason="cn-mismatch"
        )


@dataclass(frozen=True, slots=True)
class Provisioning:
    device: Device
    issued: Issued
    #: Attached to no station or vehicle: provisioned, not commissioned.
    unattached: bool


async def provision(
    session: AsyncSession,
    ca: pki.CertificateAuthority,
    *,
    device_id: str,
    kind: DeviceKind,
    csr_pem: bytes,
    networks: frozenset[int] | None,
    issued_by: int | None,
    valid_days: int,
    now: datetime | None = None,
) -> Provisioning:
    """The bench's end-of-line step: the device registered if it is new (kind ``kind``,
    attached to nothing), its CSR signed and recorded; committed.

    A new device is in no network: only a caller unrestricted in networks (``networks``
    None, a global grant) registers it. A device already registered is re-provisioned (a
    replaced mainboard) by a caller who sees it; one of another kind is a conflict."""
    csr = parse_csr(csr_pem)
    check_csr(csr, device_id)
    device = await session.scalar(select(Device).where(Device.device_id == device_id))
    if device is None:
        if networks is not None:
            raise ForbiddenError(
                f"{device_id} is not registered: a new device is in no network, only a global "
                "operator provisions it",
                reason="global-grant-required",
            )
        device = Device(device_id=device_id, kind=kind)
        session.add(device)
        await session.flush()
    else:
        if device.kind != kind:
            raise ConflictError(
                f"{device_id} is registered as a {device.kind.value} device",
                reason="wrong-device-kind",
            )
        row = await repo.get_device(session, device.id)
        if row is None or not (
            networks is None or (row.network_id is not None and row.network_id in networks)
        ):
            raise NotFoundError("device", device_id)
    issued = await issue(
        session, ca, device, csr, valid_days=valid_days, issued_by=issued_by, now=now
    )
    attached = await repo.get_device(session, device.id)
    unattached = attached is None or (attached.station_id is None and attached.vehicle_id is None)
    await session.commit()
    return Provisioning(device, issued, unattached)


# ── the registry ─────────────────────────────────────────────────────────────────────


async def certificates_of(session: AsyncSession, device_pk: int) -> list[DeviceCertificate]:
    """A device's certificates, newest first."""
    rows: ScalarResult[DeviceCertificate] = await session.scalars(
        select(DeviceCertificate)
        .where(DeviceCertificate.device_id == device_pk)
        .order_by(DeviceCertificate.issued_at.desc(), DeviceCertificate.id.desc())
    )
    return list(rows)


async def live_certificate(
    session: AsyncSession, device_pk: int, now: datetime
) -> DeviceCertificate | None:
    """The device's newest certificate neither revoked nor expired (what it may renew
    over), or None."""
    found: DeviceCertificate | None = await session.scalar(
        select(DeviceCertificate)
        .where(
            DeviceCertificate.device_id == device_pk,
            DeviceCertificate.revoked_at.is_(None),
            DeviceCertificate.not_after > now,
        )
        .order_by(DeviceCertificate.not_after.desc(), DeviceCertificate.id.desc())
        .limit(1)
    )
    return found


async def certificate_of(
    session: AsyncSession, device_pk: int, serial: str
) -> DeviceCertificate | None:
    found: DeviceCertificate | None = await session.scalar(
        select(DeviceCertificate).where(
            DeviceCertificate.device_id == device_pk,
            DeviceCertificate.serial_number == serial.lower().lstrip("0"),
        )
    )
    return found


def state_of(row: DeviceCertificate, now: datetime) -> str:
    """valid, expired, revoked or superseded (revoked wins: the broker refuses it)."""
    if row.revoked_at is not None:
        return "revoked"
    not_after = row.not_after if row.not_after.tzinfo else row.not_after.replace(tzinfo=UTC)
    if not_after <= now:
        return "expired"
    return "superseded" if row.superseded_by is not None else "valid"


def revoke(row: DeviceCertificate, reason: str, now: datetime) -> bool:
    """Mark ``row`` revoked (False: it already was; its first reason stays)."""
    if row.revoked_at is not None:
        return False
    row.revoked_at = now
    row.revoke_reason = reason[:64]
    return True


async def revoke_device(
    session: AsyncSession, device_pk: int, reason: str, now: datetime
) -> list[str]:
    """Revoke every certificate of the device not yet revoked (in the caller's
    transaction); the serials revoked."""
    rows = await certificates_of(session, device_pk)
    return [row.serial_number for row in rows if revoke(row, reason, now)]


async def revoked_serials(session: AsyncSession, now: datetime) -> list[tuple[int, datetime]]:
    """What the CRL lists: every revoked certificate that has not expired (an expired one
    is refused by its dates anyway)."""
    rows = await session.execute(
        select(DeviceCertificate.serial_number, DeviceCertificate.revoked_at).where(
            DeviceCertificate.revoked_at.is_not(None), DeviceCertificate.not_after > now
        )
    )
    return [(int(serial, 16), at) for serial, at in rows.all() if at is not None]


# ── the broker ───────────────────────────────────────────────────────────────────────


class BrokerControl(Protocol):
    """What the cloud asks of the broker after a revocation (one seam: Mosquitto in a
    deployment and the tests, nothing for the embedded broker of ``make run``)."""

    async def reload(self) -> None:
        """Reread the CRL: a revoked certificate is refused at its next connection."""

    async def drop(self, device_ids: Sequence[str]) -> None:
        """End the live sessions of these devices (a reload does not: Mosquitto checks the
        CRL at the TLS handshake only)."""


class NoBrokerControl:
    """The embedded broker has no TLS listener, no CRL: nothing to tell it."""

    async def reload(self) -> None:
        log.info("event=broker_reload_skipped reason=no-broker-control")

    async def drop(self, device_ids: Sequence[str]) -> None:
        if device_ids:
            log.info("event=broker_drop_skipped devices=%s reason=no-broker-control", device_ids)


class MosquittoControl:
    """Mosquitto: SIGHUP to the pid in its pid file rereads ``crlfile``; a live session is
    ended by taking its client id over with the cloud's own account (Mosquitto closes the
    older connection of a client id; the device's reconnection is then refused by the CRL).
    Measured on Mosquitto 2.0.11: a reload alone leaves the revoked device connected."""

    #: Drops still to come (kept referenced until done).
    _pending: ClassVar[set[asyncio.Task[None]]] = set()

    def __init__(
        self, pid_file: Path | None, mqtt_url: str | None, redrop_after_s: float | None = None
    ) -> None:
        """``redrop_after_s``: without a pid file the broker rereads the CRL on its own (a
        watcher, deploy/: within 10 s); a device dropped before that may reconnect with
        the old CRL, so it is dropped again this long after."""
        self.pid_file = pid_file
        self.mqtt_url = mqtt_url
        self.redrop_after_s = redrop_after_s

    async def reload(self) -> None:
        if self.pid_file is None:
            return
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, signal.SIGHUP)
        except (OSError, ValueError) as exc:
            # The CRL file is written: the broker rereads it at its next restart or reload.
            log.error("event=broker_reload_failed pid_file=%s error=%s", self.pid_file, exc)
            return
        log.info("event=broker_reloaded pid=%s", pid)

    async def drop(self, device_ids: Sequence[str]) -> None:
        await self._drop(device_ids)
        if device_ids and self.redrop_after_s is not None:
            task = asyncio.create_task(self._later(list(device_ids), self.redrop_after_s))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _later(self, device_ids: list[str], after_s: float) -> None:
        await asyncio.sleep(after_s)
        await self._drop(device_ids)

    async def _drop(self, device_ids: Sequence[str]) -> None:
        if not device_ids or self.mqtt_url is None:
            return
        try:
            url = MqttUrl.parse(self.mqtt_url)
        except BrokerUrlError as exc:
            log.error("event=broker_drop_failed error=%s", exc)
            return
        for device_id in device_ids:
            try:
                async with aiomqtt.Client(
                    url.host,
                    url.port,
                    identifier=device_id,
                    username=url.username,
                    password=url.password,
                    clean_session=True,  # nothing of the device's session is kept
                    timeout=5,
                    tls_context=url.tls_context(),  # mqtts:// (None: plain)
                ):
                    pass
            except (aiomqtt.MqttError, TimeoutError) as exc:
                log.error("event=broker_drop_failed device=%s error=%s", device_id, exc)
                continue
            log.info("event=device_session_dropped device=%s", device_id)


#: Without a pid file, a second drop this long after the first (see MosquittoControl).
REDROP_AFTER_S = 15.0


def broker_control(settings: Settings) -> BrokerControl:
    if settings.BROKER_PID_FILE is None and settings.MQTT_URL is None:
        return NoBrokerControl()
    redrop = None if settings.BROKER_PID_FILE is not None else REDROP_AFTER_S
    return MosquittoControl(settings.BROKER_PID_FILE, settings.MQTT_URL, redrop)


#: A CRL's nextUpdate (see pki.CRL_VALID_DAYS): rewritten well before, whether or not
#: anything was revoked (:func:`crl_keeper`).
CRL_VALID_DAYS = pki.CRL_VALID_DAYS
#: The keeper rewrites a CRL with less than this left.
CRL_REFRESH_BEFORE = timedelta(days=15)
#: How often the keeper looks.
CRL_CHECK_EVERY_S = 3600.0


async def publish_revocations(
    session: AsyncSession,
    settings: Settings,
    device_ids: Iterable[str],
    *,
    broker: BrokerControl | None = None,
    now: datetime | None = None,
) -> Path | None:
    """After the commit of a revocation: the CRL rewritten from the registry into the CA
    directory (``crl.pem``), the broker told to reread it, the devices' sessions dropped.
    No CA configured: nothing was ever signed, nothing to revoke (None). The CRL cannot be
    written (CA unreadable, disk): logged, None; the keeper (:func:`crl_keeper`) rewrites
    it from the registry at its next round."""
    ids = list(device_ids)
    if settings.DEVICE_CA_DIR is None:
        log.info("event=crl_not_written reason=no-device-ca devices=%s", ids)
        return None
    now = now or datetime.now(UTC)
    revoked = await revoked_serials(session, now)
    path = settings.DEVICE_CA_DIR / pki.CRL_FILE
    try:
        ca = load_ca(settings)
        crl = ca.crl(revoked, next_update_days=CRL_VALID_DAYS, now=now)
        # A file write: off the event loop.
        await asyncio.to_thread(pki.write_pem, path, crl)
    except (UnavailableError, OSError) as exc:
        # The revocation is committed; the keeper rewrites the CRL from the registry at
        # its next round (it compares the two).
        log.error("event=crl_write_failed path=%s error=%s", path, exc)
        return None
    log.info("event=crl_written path=%s revoked=%d", path, len(revoked))
    control = broker or broker_control(settings)
    await control.reload()
    await control.drop(ids)
    return path


async def crl_due(session: AsyncSession, settings: Settings, now: datetime) -> str | None:
    """Why the CA directory's CRL must be rewritten (None: it need not): missing or
    unreadable, near its nextUpdate, or not listing what the registry has revoked."""
    if settings.DEVICE_CA_DIR is None:
        return None
    try:
        crl = pki.load_crl(settings.DEVICE_CA_DIR / pki.CRL_FILE)
    except pki.PkiMaterialError:
        return "unreadable"
    if crl.next_update_utc is None or crl.next_update_utc - now < CRL_REFRESH_BEFORE:
        return "expiring"
    listed = {entry.serial_number for entry in crl}
    if listed != {serial for serial, _ in await revoked_serials(session, now)}:
        return "out-of-date"
    return None


async def refresh_crl(
    maker: async_sessionmaker[AsyncSession], settings: Settings, now: datetime | None = None
) -> str | None:
    """One round of the keeper: the CRL rewritten (and the broker told) when due; why."""
    now = now or datetime.now(UTC)
    async with maker() as session:
        why = await crl_due(session, settings, now)
        if why is not None:
            log.info("event=crl_refresh reason=%s", why)
            await publish_revocations(session, settings, [], now=now)
        await session.commit()
    return why


@asynccontextmanager
async def crl_keeper(
    maker: async_sessionmaker[AsyncSession],
    settings: Settings,
    every_s: float = CRL_CHECK_EVERY_S,
) -> AsyncIterator[None]:
    """While open: :func:`refresh_crl` at once and every ``every_s`` (the API runs it;
    several API processes rewriting the same file from the same registry is harmless)."""
    if settings.DEVICE_CA_DIR is None:
        yield
        return

    async def loop() -> None:
        while True:
            try:
                await refresh_crl(maker, settings)
            except Exception:  # the database may be away; the next round tries again
                log.exception("event=crl_refresh_failed")
            await asyncio.sleep(every_s)

    task = asyncio.create_task(loop(), name="crl-keeper")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


__all__ = [
    "CRL_CHECK_EVERY_S",
    "CRL_REFRESH_BEFORE",
    "CRL_VALID_DAYS",
    "DECOMMISSIONED",
    "REDROP_AFTER_S",
    "BrokerControl",
    "DeviceCa",
    "Issued",
    "MosquittoControl",
    "NoBrokerControl",
    "Provisioning",
    "broker_control",
    "ca_directory",
    "certificate_of",
    "certificates_of",
    "chain_pem",
    "check_csr",
    "crl_due",
    "crl_keeper",
    "fingerprint",
    "is_decommissioned",
    "issue",
    "live_certificate",
    "load_ca",
    "parse_csr",
    "provision",
    "publish_revocations",
    "refresh_crl",
    "revoke",
    "revoke_device",
    "revoked_serials",
    "serial_hex",
    "state_of",
]
