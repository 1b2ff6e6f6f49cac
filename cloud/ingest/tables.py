"""Tables of the ingest and command paths (on the shared ``Base.metadata``).

* ``ingested_messages`` — the dedupe arbiter: one row per applied sequenced message,
  primary key (device_id, boot_id, seq), inserted in the same transaction as the state
  change it caused. Two workers handed the same replayed message (shared subscriptions
  split one device's traffic) race on the key: one inserts, the other skips. Pruned
  after ``retention`` by the workers.
* ``device_boots`` — one row per (device, boot): the birth (firmware, inventory, device
  time), and its death. The current boot is ``devices.boot_id``.
* ``device_status`` — the last reported status per (device, spot) with its stamp, the
  device's "reported shadow": a status is applied only if it is newer (same boot: higher
  seq; another boot: later device time) than the stored one, so out-of-order delivery
  across workers never rolls state back.
* ``device_commands`` — every signed command sent, its rent, and the device's result.
* ``device_boot_counts`` — per (device, boot): how many of its sequenced messages reached
  the cloud (applied or kept as dead letters), to compare with the ``pending_from`` of the
  boot's last birth (:mod:`kickstand.cloud.ingest.gaps`).
* ``dead_letters`` — a device message ingest could not apply (undecodable, refused by a
  rule, or failing for good), with its raw bytes and the error, for an operator to see,
  replay or discard. A sequenced message has one row (a second failure counts on it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from kickstand.cloud.models import Base, utcnow


class IngestedMessage(Base):
    __tablename__ = "ingested_messages"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    boot_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ingested_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_ingested_messages_ingested_at", "ingested_at"),)


class DeviceBoot(Base):
    __tablename__ = "device_boots"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    boot_id: Mapped[int] = mapped_column(BigInteger)
    #: Device time of the (last) birth of this boot, ms since the epoch.
    birth_ts_ms: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    firmware: Mapped[str | None] = mapped_column(String(64), default=None)
    hardware: Mapped[str | None] = mapped_column(String(64), default=None)
    config_version: Mapped[int | None] = mapped_column(Integer, default=None)
    auth_list_version: Mapped[int | None] = mapped_column(Integer, default=None)
    #: [{"kind": "spot", "index": 1, "firmware": "1.2.0"}, …]
    inventory: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    pending_from: Mapped[int | None] = mapped_column(BigInteger, default=None)
    serial_number: Mapped[str | None] = mapped_column(String(16), default=None)
    accepted: Mapped[bool] = mapped_column(Boolean, default=True)
    died_at: Mapped[datetime | None] = mapped_column(default=None)
    #: Device time of the death (a Will carries the time of the connect that set it).
    death_ts_ms: Mapped[int | None] = mapped_column(BigInteger, default=None)
    death_reason: Mapped[str | None] = mapped_column(String(200), default=None)
    #: The birth said the device keeps its messages until the cloud's Ack (SPEC §4.6).
    acks: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))

    __table_args__ = (
        UniqueConstraint("device_id", "boot_id", name="uq_device_boots_device_boot"),
        # The gap check's sweep reads the births of the last day (migration 0006).
        Index("ix_device_boots_received_at", "received_at"),
    )


class DeviceBootCount(Base):
    __tablename__ = "device_boot_counts"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    boot_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    #: Distinct sequenced messages of the boot that reached the cloud.
    delivered: Mapped[int] = mapped_column(BigInteger, default=0)
    #: The boot's first birth was applied by a cloud that counts: every message of the boot
    #: is in ``delivered`` (a device sends none before its first birth is accepted, §4.3).
    #: Only such boots are checked (not those that began before the count, or while a
    #: worker that does not count applied their first birth).
    complete: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    #: The ``pending_from`` the gap check last compared with, and what it found missing then.
    checked_pending_from: Mapped[int | None] = mapped_column(BigInteger, default=None)
    missing: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))


class DeviceStatus(Base):
    __tablename__ = "device_status"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: 0 = the whole station / the vehicle.
    spot: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    boot_id: Mapped[int] = mapped_column(BigInteger)
    seq: Mapped[int] = mapped_column(BigInteger)
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    #: protocol SpotState (spot >= 1) or DeviceState (spot 0) code.
    state: Mapped[int] = mapped_column(Integer)
    lock: Mapped[int | None] = mapped_column(Integer, default=None)
    serial_number: Mapped[str | None] = mapped_column(String(16), default=None)
    fault: Mapped[str | None] = mapped_column(String(200), default=None)
    battery_pct: Mapped[int | None] = mapped_column(Integer, default=None)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class CommandStatus:
    PENDING = "pending"
    ACCEPTED = "accepted"
    DONE = "done"
    REJECTED = "rejected"
    FAILED = "failed"
    #: Never published: the device was known offline (or the broker unreachable).
    NOT_SENT = "not-sent"


class DeviceCommand(Base):
    __tablename__ = "device_commands"

    #: hex of the 16-byte command id.
    command_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    command_type: Mapped[str] = mapped_column(String(32))
    spot: Mapped[int | None] = mapped_column(Integer, default=None)
    rent_id: Mapped[int | None] = mapped_column(Integer, default=None, index=True)
    issued_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
    #: Which API process sent it (its MQTT client id): only it waits for the result.
    sent_by: Mapped[str | None] = mapped_column(String(64), default=None)
    status: Mapped[str] = mapped_column(String(16), default=CommandStatus.PENDING)
    reason: Mapped[str | None] = mapped_column(String(200), default=None)
    result_at: Mapped[datetime | None] = mapped_column(default=None)
    #: The operator who sent it from the dashboard (``cloud/devices``); None: the cloud's own.
    operator_id: Mapped[int | None] = mapped_column(Integer, default=None)

    #: A device's command history, newest first (migration 0015).
    __table_args__ = (Index("ix_device_commands_device_issued", "device_id", "issued_at"),)


class DeadLetterStatus:
    OPEN = "open"
    #: Applied by an operator's replay.
    REPLAYED = "replayed"
    DISCARDED = "discarded"


_SEQUENCED_SQL = "seq IS NOT NULL"


class DeadLetter(Base):
    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: None when the topic named no device.
    device_id: Mapped[str | None] = mapped_column(String(64), default=None)
    #: The device's network when it had one (operators see their networks' letters).
    network_id: Mapped[int | None] = mapped_column(Integer, default=None)
    topic: Mapped[str] = mapped_column(String(256))
    channel: Mapped[str | None] = mapped_column(String(16), default=None)
    #: The message as received (cut at ``PAYLOAD_MAX`` bytes: then not replayable).
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    payload_size: Mapped[int] = mapped_column(Integer)
    boot_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    seq: Mapped[int | None] = mapped_column(BigInteger, default=None)
    reason: Mapped[str] = mapped_column(String(48))
    error_class: Mapped[str] = mapped_column(String(120))
    error: Mapped[str] = mapped_column(String(1000))
    first_failed_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_failed_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default=DeadLetterStatus.OPEN)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    #: The operator who replayed or discarded it.
    resolved_by: Mapped[int | None] = mapped_column(Integer, default=None)

    __table_args__ = (
        Index(
            "uq_dead_letters_message",
            "device_id",
            "boot_id",
            "seq",
            unique=True,
            postgresql_where=text(_SEQUENCED_SQL),
            sqlite_where=text(_SEQUENCED_SQL),
        ),
        Index("ix_dead_letters_status_id", "status", "id"),
        Index("ix_dead_letters_device_id", "device_id", "id"),
    )


__all__ = [
    "CommandStatus",
    "DeadLetter",
    "DeadLetterStatus",
    "DeviceBoot",
    "DeviceBootCount",
    "DeviceCommand",
    "DeviceStatus",
    "IngestedMessage",
]
