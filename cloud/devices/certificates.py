"""The registry of device certificates (issue 17): every client certificate the
installation's CA signed for a station's mainboard or a vehicle's controller, whether at
the bench (provisioning), by a renewal over the device's own identity (``CertRenew``), or
by an operator; revoked on decommission; superseded by its renewal.

The certificates themselves are not kept: the device holds its certificate and key, the
broker checks them against the CA and its CRL. What the cloud needs is what it signed
(serial, CN, validity, fingerprint), who asked, and what became of it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from kickstand.cloud.models import Base, utcnow

#: An x509 serial is a positive integer of up to 159 bits (RFC 5280 allows 20 octets): kept
#: as lowercase hex without leading zeros (≤ 40 characters), never as a number.
SERIAL_HEX_MAX = 40


class DeviceCertificate(Base):
    __tablename__ = "device_certificates"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The device's registry id (``devices.id``).
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    serial_number: Mapped[str] = mapped_column(String(SERIAL_HEX_MAX), unique=True)
    #: The subject's CN: the device id (``devices.device_id``) the broker binds it to.
    subject_cn: Mapped[str] = mapped_column(String(64))
    not_before: Mapped[datetime]
    not_after: Mapped[datetime]
    #: SHA-256 of the certificate's DER, lowercase hex.
    fingerprint_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: The operator (bench rig account) who asked; None: the device's own renewal.
    issued_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    revoke_reason: Mapped[str | None] = mapped_column(String(64), default=None)
    #: The certificate that renewed this one.
    superseded_by: Mapped[int | None] = mapped_column(
        ForeignKey("device_certificates.id"), default=None
    )

    __table_args__ = (
        # The expiry sweep: each device's certificates by validity.
        Index("ix_device_certificates_device_not_after", "device_id", "not_after"),
    )


__all__ = ["SERIAL_HEX_MAX", "DeviceCertificate"]
