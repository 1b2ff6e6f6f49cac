"""What support reads about a rider (seed 002 Users): the app devices it logged in with,
the wallets operators credited, and its rider API requests (migration 0018)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kickstand.cloud.models import Base, utcnow


class UserDevice(Base):
    """A phone/app a rider logged in with (``LoginDevice`` at login), seed 002 "Get user
    devices". One row per (user, device id); a new login refreshes it."""

    __tablename__ = "user_devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(String(128))
    os: Mapped[str | None] = mapped_column(String(32), default=None)
    model: Mapped[str | None] = mapped_column(String(64), default=None)
    app_version: Mapped[str | None] = mapped_column(String(32), default=None)
    first_login_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("user_id", "device_id", name="uq_user_devices_user_device"),)


class UserWallet(Base):
    """An amount an operator credited to a rider (seed 002 "Create user wallet"), with why.

    The money itself is in ``users.wallet_balance`` (what rents check and trips charge),
    moved by a ``wallet_transactions`` row of kind ``adjustment`` in the same transaction;
    this row keeps who credited it and why, and what is left of it to withdraw when an
    operator deletes it (``amount``: 0 once deleted)."""

    __tablename__ = "user_wallets"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    credited: Mapped[Decimal] = mapped_column()
    amount: Mapped[Decimal] = mapped_column()
    reason: Mapped[str] = mapped_column(String(1000))
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    deleted_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    delete_reason: Mapped[str | None] = mapped_column(String(1000), default=None)


class ApiRequest(Base):
    """One authenticated rider API request (seed 002 "Get user api requests"), written after
    the answer in batches by ``kickstand.cloud.access.log`` and kept ``API_REQUESTS_KEPT``."""

    __tablename__ = "user_api_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    # No foreign key: as the access log, a write must never fail on the account.
    user_id: Mapped[int] = mapped_column(Integer)
    target_path: Mapped[str] = mapped_column(String(2048))
    verb: Mapped[str] = mapped_column(String(10))
    user_agent: Mapped[str | None] = mapped_column(String(2048), default=None)
    ip: Mapped[str | None] = mapped_column(String(128), default=None)
    http_code: Mapped[int] = mapped_column(Integer)
    knot_code: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("ix_user_api_requests_user_id", "user_id", "id"),
        Index("ix_user_api_requests_created_at", "created_at"),
    )
