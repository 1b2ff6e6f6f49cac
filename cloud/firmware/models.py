"""The firmware tables: images (migration 0024), campaigns, their devices and the networks'
maintenance windows (migration 0025).

States are stored as their text (:class:`CampaignState`, :class:`UpdateState`): the service
is the only writer and checks every transition.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from kickstand.cloud.models import Base, StrEnum, utcnow


class CampaignState(StrEnum):
    READY = "ready"  # created, not started
    RUNNING = "running"
    PAUSED = "paused"  # no new update sent; those under way go on and are counted
    STOPPED = "stopped"  # by the error threshold, a failed wave or the operator's stop
    CANCELLED = "cancelled"  # by the operator; nothing more is sent
    COMPLETED = "completed"  # every wave done and over its success threshold


#: A campaign in one of these states may still send or count updates.
LIVE_CAMPAIGN_STATES = (CampaignState.RUNNING, CampaignState.PAUSED)
FINAL_CAMPAIGN_STATES = (CampaignState.STOPPED, CampaignState.CANCELLED, CampaignState.COMPLETED)


class UpdateState(StrEnum):
    """One device's update within a campaign."""

    PENDING = "pending"  # in a wave not reached yet, or held (window, rent, offline)
    SENT = "sent"  # FirmwareUpdate published, no status yet
    UPDATING = "updating"  # a stage reported (downloading … rebooting)
    CONFIRMED = "confirmed"
    FAILED = "failed"  # a *_FAILED stage, or no progress within the campaign's timeout
    ROLLED_BACK = "rolled-back"
    CANCELLED = "cancelled"  # the campaign ended before it was sent


IN_FLIGHT = (UpdateState.SENT, UpdateState.UPDATING)
FAILURES = (UpdateState.FAILED, UpdateState.ROLLED_BACK)
SETTLED = (UpdateState.CONFIRMED, *FAILURES, UpdateState.CANCELLED)


class FirmwareImage(Base):
    """An uploaded image, content-addressed by its SHA-256, with its signed manifest."""

    __tablename__ = "firmware_images"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Hex of the image's SHA-256: its name in the store and in the download URL.
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    #: "station-mainboard", "spot-board:<model>", "vehicle-controller:<model>", "bms:<model>".
    target: Mapped[str] = mapped_column(String(96))
    version: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    min_hardware: Mapped[str] = mapped_column(String(64), default="")
    min_bootloader: Mapped[str] = mapped_column(String(64), default="")
    url: Mapped[str] = mapped_column(String(500))
    #: The SignedManifest as devices receive it in FirmwareUpdate.
    manifest: Mapped[bytes] = mapped_column(LargeBinary)
    #: Hex of the signing key's id (first 8 bytes of SHA-256 of its public key).
    key_id: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("target", "version", name="uq_firmware_images_target"),)


class FirmwareCampaign(Base):
    """A rollout of one image to a selection of one network's devices, in waves."""

    __tablename__ = "firmware_campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("firmware_images.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), default=CampaignState.READY.value)
    #: What was asked: {"kinds", "models", "from_versions", "device_ids"} (lists or null).
    selection: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: Devices per wave, the canary first.
    wave_sizes: Mapped[list[int]] = mapped_column(JSON)
    #: % of a wave confirmed before the next one starts.
    success_threshold_pct: Mapped[int] = mapped_column(Integer)
    #: % of a wave failed or rolled back that stops the campaign.
    error_threshold_pct: Mapped[int] = mapped_column(Integer)
    #: A device without progress for this long has failed.
    device_timeout_s: Mapped[int] = mapped_column(Integer)
    #: The wave under way (1 = the canary; 0 before the start).
    current_wave: Mapped[int] = mapped_column(Integer, default=0)
    #: Why it stopped (the threshold crossed, the operator's word).
    reason: Mapped[str | None] = mapped_column(String(300), default=None)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (Index("ix_firmware_campaigns_state", "state"),)


class FirmwareCampaignDevice(Base):
    """One device (a spot board: its station and spot) of a campaign, with its progress."""

    __tablename__ = "firmware_campaign_devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("firmware_campaigns.id"))
    device_id: Mapped[str] = mapped_column(String(64))
    #: 0: the mainboard or controller itself; n: spot board n of the station.
    spot: Mapped[int] = mapped_column(Integer, default=0)
    wave: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default=UpdateState.PENDING.value)
    #: The last FirmwareState reported ("downloading", …, "confirmed", "rolled_back").
    stage: Mapped[str | None] = mapped_column(String(24), default=None)
    bytes_done: Mapped[int] = mapped_column(BigInteger, default=0)
    reason: Mapped[str | None] = mapped_column(String(200), default=None)
    #: The version the device ran when the campaign was created.
    from_version: Mapped[str | None] = mapped_column(String(64), default=None)
    #: Hex of the FirmwareUpdate's command id (its row in ``device_commands``).
    command_id: Mapped[str | None] = mapped_column(String(32), default=None)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    #: The last send or reported stage: the device timeout counts from here.
    progress_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (
        UniqueConstraint("campaign_id", "device_id", "spot", name="uq_firmware_campaign_devices"),
        Index("ix_firmware_campaign_devices_device", "device_id", "state"),
    )


class FirmwareWindow(Base):
    """A network's maintenance window: updates start only within [start, end) local time
    (an end before the start spans midnight). No row: any time."""

    __tablename__ = "firmware_windows"

    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), primary_key=True)
    #: "HH:MM", the network's local time.
    start_local: Mapped[str] = mapped_column(String(5))
    end_local: Mapped[str] = mapped_column(String(5))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


__all__ = [
    "FAILURES",
    "FINAL_CAMPAIGN_STATES",
    "IN_FLIGHT",
    "LIVE_CAMPAIGN_STATES",
    "SETTLED",
    "CampaignState",
    "FirmwareCampaign",
    "FirmwareCampaignDevice",
    "FirmwareImage",
    "FirmwareWindow",
    "UpdateState",
]
