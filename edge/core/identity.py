"""The device's TLS identity and its renewal before expiry (issue 17, SPEC §7.7).

The device's certificate and key are the files of its settings (``mqtt_cert_file``,
``mqtt_key_file``), made at the bench. ``renew_before_days`` before the certificate's
notAfter, on an accepted session, the device makes a new key, keeps it beside the current
one (``<key>.next``, 0600) and sends a CertRenew with its CSR. The cloud answers with a
signed CertIssued; the device checks it (the public key of its pending key, its own CN),
installs it and reconnects with the new pair.

Installing is two renames, so a power cut may fall between them; :meth:`recover` (run at
start) finishes the job. The states on disk:

* ``<key>.next`` absent: no renewal under way.
* ``<key>.next`` present, the certificate holds the *old* key: a renewal asked for; the
  same request is sent again (same key) until a CertIssued arrives.
* ``<key>.next`` present, the certificate holds the *new* key: the certificate was renamed
  into place, the key not yet: :meth:`recover` renames it (rolls forward).

``cryptography`` is imported only when a key is made or read, or a certificate installed: an
agent without a client certificate does not pay for it, nor does an idle one (its hourly
look at the dates reads them with :mod:`.certdates`; a start without a pending key reads
no key).

The old certificate is never revoked by a renewal: until the new pair is in place the
device keeps using the old one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from kickstand.edge.core.certdates import file_validity
from kickstand.edge.core.clock import DeviceClock
from kickstand.edge.core.config import EdgeSettings
from kickstand.edge.core.errors import CommandRefused
from kickstand.edge.core.link import CloudLink, Outcome
from kickstand.protocol.v1.enums import RejectReason, ResultStatus
from kickstand.protocol.v1.messages import CertIssued, CertRenew, CommandEnvelope

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

log = logging.getLogger("kickstand.edge.core.identity")

#: SPEC §7.7: a device asks this long before its certificate's notAfter.
RENEW_BEFORE_DAYS = 30.0
#: How often an accepted device looks at its certificate's dates.
CHECK_EVERY_S = 3600.0
#: After a CertIssued is installed: time for its DONE to leave before the reconnection.
RECONNECT_AFTER_S = 0.5


class IdentityError(Exception):
    """A certificate the device will not install; ``reason`` is the refusal it answers."""

    def __init__(self, message: str, reason: RejectReason = RejectReason.INVALID_STATE) -> None:
        super().__init__(message)
        self.reason = reason


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _sync_dir(path.parent)


def _sync_dir(directory: Path) -> None:
    # The rename itself is durable only once the directory is synced.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _public_der(key: object) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if not isinstance(key, ec.EllipticCurvePublicKey):
        return b""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class DeviceIdentity:
    """The certificate and key files of one device, and their renewal."""

    def __init__(
        self,
        device_id: str,
        cert_file: Path,
        key_file: Path,
        *,
        renew_before_days: float = RENEW_BEFORE_DAYS,
        clock_ms: Callable[[], int] | None = None,
        check_every_s: float = CHECK_EVERY_S,
    ) -> None:
        self.device_id = device_id
        self.cert_file = cert_file
        self.key_file = key_file
        self.pending_key_file = key_file.with_name(key_file.name + ".next")
        self.renew_before = timedelta(days=renew_before_days)
        self.clock_ms = clock_ms or (lambda: int(datetime.now(UTC).timestamp() * 1000))
        self.check_every_s = check_every_s
        #: Counters for the health endpoint.
        self.counters: dict[str, int] = {"renewals_asked": 0, "installed": 0, "refused": 0}
        self._reconnect: Callable[[], None] | None = None

    @classmethod
    def of(cls, settings: EdgeSettings, clock: DeviceClock) -> DeviceIdentity | None:
        """The identity of an agent's settings (None: no client certificate configured,
        nothing to renew), on the device's clock; an interrupted renewal finished."""
        if settings.mqtt_cert_file is None or settings.mqtt_key_file is None:
            return None
        identity = cls(
            settings.device_id,
            settings.mqtt_cert_file,
            settings.mqtt_key_file,
            renew_before_days=float(getattr(settings, "cert_renew_before_days", RENEW_BEFORE_DAYS)),
            clock_ms=clock.now_ms,
        )
        identity.recover()
        return identity

    # ── files ───────────────────────────────────────────────────────────────────────

    def certificate(self) -> x509.Certificate | None:
        from cryptography import x509

        try:
            return x509.load_pem_x509_certificate(self.cert_file.read_bytes())
        except (OSError, ValueError):
            return None

    def _pending_key(self) -> ec.EllipticCurvePrivateKey | None:
        try:
            pem = self.pending_key_file.read_bytes()
        except OSError:
            return None  # the usual case: no renewal under way, nothing to load
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            return None
        return key if isinstance(key, ec.EllipticCurvePrivateKey) else None

    def recover(self) -> None:
        """Finish an installation a restart cut short (see the module)."""
        pending = self._pending_key()
        if pending is None:
            return
        cert = self.certificate()
        if cert is None:
            return
        if _public_der(cert.public_key()) == _public_der(pending.public_key()):
            os.replace(self.pending_key_file, self.key_file)
            _sync_dir(self.key_file.parent)
            log.warning(
                "identity_recovered device=%s: the renewed key put in place", self.device_id
            )

    # ── renewal ─────────────────────────────────────────────────────────────────────

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock_ms() / 1000, UTC)

    def due(self) -> bool:
        """The certificate expires within ``renew_before`` (by the device's clock)."""
        try:
            _, not_after = file_validity(self.cert_file)
        except (OSError, ValueError):
            return False  # as an unreadable certificate always was: nothing to renew from
        return self.now() >= not_after - self.renew_before

    def renewal_request(self) -> CertRenew:
        """The CertRenew to send: a CSR of the pending key (made now if there is none)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = self._pending_key()
        if key is None:
            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            _write_atomic(self.pending_key_file, pem, 0o600)
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.device_id)]))
            .sign(key, hashes.SHA256())
        )
        return CertRenew(csr.public_bytes(serialization.Encoding.DER))

    def install(self, der: bytes) -> x509.Certificate:
        """Check the CertIssued's certificate and put the new pair in place (or raise
        :class:`IdentityError`: nothing changed)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.x509.oid import NameOID

        pending = self._pending_key()
        if pending is None:
            raise IdentityError("no renewal under way: no pending key")
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError as exc:
            raise IdentityError(f"not a certificate: {exc}", RejectReason.MALFORMED) from None
        if _public_der(cert.public_key()) != _public_der(pending.public_key()):
            raise IdentityError("the certificate is not for the pending key")
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if [n.value for n in names] != [self.device_id]:
            raise IdentityError(f"the certificate does not name {self.device_id}")
        if self.now() >= cert.not_valid_after_utc:
            raise IdentityError("the certificate has expired")
        # Certificate first, then key; recover() finishes the second rename after a cut.
        _write_atomic(self.cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        os.replace(self.pending_key_file, self.key_file)
        _sync_dir(self.key_file.parent)
        return cert

    async def on_cert_issued(self, envelope: CommandEnvelope, cmd: CertIssued) -> Outcome:
        """The CertIssued command's handler (the agents register it on their router)."""
        try:
            cert = self.install(cmd.certificate)
        except IdentityError as exc:
            self.counters["refused"] += 1
            log.warning("identity_refused device=%s error=%s", self.device_id, exc)
            raise CommandRefused(exc.reason, str(exc)[:128]) from exc
        self.counters["installed"] += 1
        log.info(
            "identity_renewed device=%s serial=%x not_after=%s",
            self.device_id,
            cert.serial_number,
            cert.not_valid_after_utc.isoformat(),
        )
        if self._reconnect is not None:
            asyncio.get_running_loop().call_later(RECONNECT_AFTER_S, self._reconnect)
        return Outcome(ResultStatus.DONE, detail=f"serial {cert.serial_number:x}"[:128])

    async def run(self, link: CloudLink) -> None:
        """For ever: on each accepted session, and every ``check_every_s`` while it lasts,
        ask for a renewal when one is due (once per session: the request is an event,
        queued and delivered; asking again is for a session the answer did not reach)."""
        self._reconnect = lambda: reconnect(link)
        while True:
            await link.accepted.wait()
            if self.due():
                self.counters["renewals_asked"] += 1
                link.emit(self.renewal_request())
                log.info("identity_renewal_asked device=%s", self.device_id)
                await _session_ends(link)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_session_ends(link), self.check_every_s)


# ── at the bench (issue 17): the first identity ─────────────────────────────────────


def bench_request(device_id: str, key_file: Path) -> bytes:
    """The device's side of provisioning at the bench: its key made here (kept if it
    exists: a rerun of the step asks again for the same key), the CSR returned (PEM). The
    key never leaves this function's file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    try:
        loaded = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        key = loaded if isinstance(loaded, ec.EllipticCurvePrivateKey) else None
    except (OSError, ValueError, TypeError):
        key = None
    if key is None:
        key = ec.generate_private_key(ec.SECP256R1())
        key_file.parent.mkdir(parents=True, exist_ok=True)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_atomic(key_file, pem, 0o600)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def bench_install(
    device_id: str, key_file: Path, cert_file: Path, ca_file: Path, cert_pem: bytes, ca_pem: bytes
) -> x509.Certificate:
    """Install the certificate the bench got for :func:`bench_request`'s key (and the CA
    the broker is verified against), after checking it is that key's and names the device;
    :class:`IdentityError` otherwise (nothing written)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        x509.load_pem_x509_certificate(ca_pem)
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise IdentityError(f"cannot install: {exc}", RejectReason.MALFORMED) from None
    if _public_der(cert.public_key()) != _public_der(key.public_key()):
        raise IdentityError("the certificate is not for the device's key")
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if [n.value for n in names] != [device_id]:
        raise IdentityError(f"the certificate does not name {device_id}")
    _write_atomic(ca_file, ca_pem, 0o644)
    _write_atomic(cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert


async def _session_ends(link: CloudLink) -> None:
    # CloudLink has an event for "accepted", none for its end: looked at once a second.
    while link.accepted.is_set():  # noqa: ASYNC110
        await asyncio.sleep(1.0)


def reconnect(link: CloudLink) -> None:
    """End the link's MQTT connection: the link reconnects at once, reading the certificate
    files again."""
    link.reconnect()


__all__ = [
    "CHECK_EVERY_S",
    "RENEW_BEFORE_DAYS",
    "DeviceIdentity",
    "IdentityError",
    "bench_install",
    "bench_request",
    "reconnect",
]
