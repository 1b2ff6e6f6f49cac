"""Tables of the vehicle registry: decommission records and external locks.

The vehicle itself is the core's :class:`~kickstand.cloud.models.Vehicle`; a decommissioned
one keeps its row (trips and alerts name it) in state ``decommissioned``, and its record
here says why, when, by whom and for how much.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, LargeBinary, String, text
from sqlalchemy.orm import Mapped, mapped_column

from kickstand.cloud.models import Base, StrEnum, _enum, utcnow


class DecommissionReason(StrEnum):
    """Seed 002 "Decommission vehicle" ``reason``."""

    LOST_OR_STOLEN = "lost-or-stolen"
    SOLD = "sold"
    IRREPARABLE = "irreparable"
    ECONOMICAL = "economical"


class ExternalLockType(StrEnum):
    """Seed 002 ``VehicleExternalLockType``."""

    U = "u"
    FOLDABLE = "foldable"
    FLEXIBLE = "flexible"
    CHAIN = "chain"
    FRAME = "frame"


class VehicleDecommission(Base):
    __tablename__ = "vehicle_decommissions"

    id: Mapped[int] = mapped_column(primary_key=True)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"), unique=True)
    #: The vehicle's network when it was decommissioned (the amount's currency).
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), index=True)
    reason: Mapped[DecommissionReason] = mapped_column(
        _enum(DecommissionReason, "decommission_reason")
    )
    comment: Mapped[str | None] = mapped_column(String(200), default=None)
    #: Sold for (positive) or cost of recycling (negative), in ``currency``.
    amount: Mapped[Decimal | None] = mapped_column(default=None)
    currency: Mapped[str] = mapped_column(String(3))
    decommissioned_at: Mapped[datetime] = mapped_column(default=utcnow)
    decommissioned_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)


#: Locks still on their vehicle.
ACTIVE_LOCK = "decommissioned_at IS NULL"


class VehicleExternalLock(Base):
    """A lock the rider opens with a code (a U-lock, a chain…), installed on a vehicle.

    The code is a secret the rider is shown on unlock: stored encrypted
    (:mod:`kickstand.cloud.vehicles.secrets`), never sent in a listing or a detail.
    """

    __tablename__ = "vehicle_external_locks"

    id: Mapped[int] = mapped_column(primary_key=True)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"), index=True)
    model: Mapped[str] = mapped_column(String(64))
    lock_type: Mapped[ExternalLockType] = mapped_column(
        _enum(ExternalLockType, "external_lock_type")
    )
    serial_number: Mapped[str] = mapped_column(String(64))
    #: AES-GCM nonce + ciphertext of the code (``secrets.seal``).
    code_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    code_updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    registered_at: Mapped[datetime] = mapped_column(default=utcnow)
    registered_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    decommissioned_at: Mapped[datetime | None] = mapped_column(default=None)
    decommissioned_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)

    __table_args__ = (
        # One lock in use per vehicle, and a lock's serial number in use once.
        Index(
            "uq_vehicle_external_locks_vehicle_active",
            "vehicle_id",
            unique=True,
            postgresql_where=text(ACTIVE_LOCK),
            sqlite_where=text(ACTIVE_LOCK),
        ),
        Index(
            "uq_vehicle_external_locks_serial_active",
            "serial_number",
            unique=True,
            postgresql_where=text(ACTIVE_LOCK),
            sqlite_where=text(ACTIVE_LOCK),
        ),
    )
