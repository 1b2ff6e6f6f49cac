"""SQL of firmware images and campaigns: which devices a campaign targets, which of them
may be sent an update now, the rows a device's status is about, counts per wave."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.devices.scope import NETWORK
from kickstand.cloud.firmware.models import (
    IN_FLIGHT,
    LIVE_CAMPAIGN_STATES,
    FirmwareCampaign,
    FirmwareCampaignDevice,
    FirmwareImage,
    FirmwareWindow,
    UpdateState,
)
from kickstand.cloud.ingest.tables import CommandStatus, DeviceCommand
from kickstand.cloud.keyset import Keyset, page_query
from kickstand.cloud.liveness import online_clause
from kickstand.cloud.models import (
    ACTIVE_RENT_STATUSES,
    Cluster,
    Device,
    DeviceKind,
    Network,
    Rent,
    RentStatus,
    Spot,
    Station,
    Trip,
    TripStatus,
    Vehicle,
)

#: Trips during which a vehicle is ridden (or held by its rider): no update then.
RIDING = (TripStatus.RUNNING, TripStatus.ON_HOLD)


@dataclass(frozen=True, slots=True)
class Unit:
    """One thing a campaign updates: a device (spot 0) or one spot board of a station."""

    device_id: str
    spot: int
    firmware_version: str | None


@dataclass(frozen=True, slots=True)
class WaveCounts:
    total: int = 0
    pending: int = 0
    in_flight: int = 0
    confirmed: int = 0
    failed: int = 0
    cancelled: int = 0


def kind_of_target(target: str) -> DeviceKind:
    """The device a target's image is sent to: spot boards are staged by their station,
    a BMS by its vehicle's controller."""
    if target == "station-mainboard" or target.startswith("spot-board:"):
        return DeviceKind.STATION
    return DeviceKind.VEHICLE


def _devices(network_id: int, kind: DeviceKind) -> Select[str, str | None]:
    stmt = (
        select(Device.device_id, Device.firmware_version)
        .outerjoin(Station, Station.device_id == Device.device_id)
        .outerjoin(Cluster, Cluster.id == Station.cluster_id)
        .outerjoin(Vehicle, Vehicle.device_id == Device.device_id)
        .where(Device.kind == kind, NETWORK == network_id)
    )
    if kind is DeviceKind.STATION:
        stmt = stmt.where(Station.decommissioned_at.is_(None))
    return stmt


async def select_units(
    session: AsyncSession,
    network_id: int,
    target: str,
    version: str,
    *,
    models: Sequence[str] | None = None,
    from_versions: Sequence[str] | None = None,
    device_ids: Sequence[str] | None = None,
) -> list[Unit]:
    """The devices of the network a campaign of ``target`` reaches, filtered by vehicle
    model, current firmware version and an explicit list; those already running
    ``version`` are left out. A spot-board target gives one unit per spot of each station."""
    kind = kind_of_target(target)
    stmt = _devices(network_id, kind)
    if models:
        stmt = stmt.where(Vehicle.model.in_(list(models)))
    if from_versions:
        stmt = stmt.where(Device.firmware_version.in_(list(from_versions)))
    if device_ids:
        stmt = stmt.where(Device.device_id.in_(list(device_ids)))
    rows = (await session.execute(stmt.order_by(Device.device_id))).all()
    if not target.startswith("spot-board:"):
        return [Unit(d, 0, v) for d, v in rows if v != version]
    spots = (
        await session.execute(
            select(Station.device_id, Spot.displayed_number)
            .join(Spot, Spot.station_id == Station.id)
            .where(Station.device_id.in_([d for d, _ in rows]))
            .order_by(Station.device_id, Spot.displayed_number)
        )
    ).all()
    # A spot board's own version is the birth's inventory, not the registry's: all of them.
    return [Unit(d, n, None) for d, n in spots]


async def images(session: AsyncSession, keyset: Keyset, target: str | None) -> list[FirmwareImage]:
    stmt = select(FirmwareImage)
    if target is not None:
        stmt = stmt.where(FirmwareImage.target == target)
    return list((await session.scalars(page_query(stmt, FirmwareImage.id, keyset))).all())


async def image_by_digest(session: AsyncSession, sha256_hex: str) -> FirmwareImage | None:
    found: FirmwareImage | None = await session.scalar(
        select(FirmwareImage).where(FirmwareImage.sha256 == sha256_hex)
    )
    return found


async def image_of_version(session: AsyncSession, target: str, version: str) -> int | None:
    found: int | None = await session.scalar(
        select(FirmwareImage.id).where(
            FirmwareImage.target == target, FirmwareImage.version == version
        )
    )
    return found


async def campaigns_using(session: AsyncSession, image_id: int) -> list[int]:
    rows = await session.scalars(
        select(FirmwareCampaign.id)
        .where(FirmwareCampaign.image_id == image_id)
        .order_by(FirmwareCampaign.id)
    )
    return list(rows.all())


async def campaigns(
    session: AsyncSession,
    keyset: Keyset,
    networks: Collection[int] | None,
    state: str | None,
) -> list[FirmwareCampaign]:
    stmt = select(FirmwareCampaign)
    if networks is not None:
        stmt = stmt.where(FirmwareCampaign.network_id.in_(sorted(networks)))
    if state is not None:
        stmt = stmt.where(FirmwareCampaign.state == state)
    return list((await session.scalars(page_query(stmt, FirmwareCampaign.id, keyset))).all())


async def campaign_devices(
    session: AsyncSession, campaign_id: int, keyset: Keyset, state: str | None
) -> list[FirmwareCampaignDevice]:
    stmt = select(FirmwareCampaignDevice).where(FirmwareCampaignDevice.campaign_id == campaign_id)
    if state is not None:
        stmt = stmt.where(FirmwareCampaignDevice.state == state)
    return list((await session.scalars(page_query(stmt, FirmwareCampaignDevice.id, keyset))).all())


async def wave_counts(
    session: AsyncSession, campaign_id: int, wave: int | None = None
) -> WaveCounts:
    """The campaign's devices by state (of one wave, or all)."""
    stmt = (
        select(FirmwareCampaignDevice.state, func.count())
        .where(FirmwareCampaignDevice.campaign_id == campaign_id)
        .group_by(FirmwareCampaignDevice.state)
    )
    if wave is not None:
        stmt = stmt.where(FirmwareCampaignDevice.wave == wave)
    return _counts({UpdateState(s): n for s, n in (await session.execute(stmt)).all()})


async def campaign_counts(
    session: AsyncSession, campaign_ids: Collection[int]
) -> dict[int, WaveCounts]:
    """Each listed campaign's devices by state, in one statement (a page of campaigns)."""
    by_campaign: dict[int, dict[UpdateState, int]] = {cid: {} for cid in campaign_ids}
    if campaign_ids:
        stmt = (
            select(FirmwareCampaignDevice.campaign_id, FirmwareCampaignDevice.state, func.count())
            .where(FirmwareCampaignDevice.campaign_id.in_(list(campaign_ids)))
            .group_by(FirmwareCampaignDevice.campaign_id, FirmwareCampaignDevice.state)
        )
        for cid, state, n in (await session.execute(stmt)).all():
            by_campaign[cid][UpdateState(state)] = n
    return {cid: _counts(by_state) for cid, by_state in by_campaign.items()}


def _counts(by_state: dict[UpdateState, int]) -> WaveCounts:
    return WaveCounts(
        total=sum(by_state.values()),
        pending=by_state.get(UpdateState.PENDING, 0),
        in_flight=sum(by_state.get(s, 0) for s in IN_FLIGHT),
        confirmed=by_state.get(UpdateState.CONFIRMED, 0),
        failed=by_state.get(UpdateState.FAILED, 0) + by_state.get(UpdateState.ROLLED_BACK, 0),
        cancelled=by_state.get(UpdateState.CANCELLED, 0),
    )


async def images_by_id(
    session: AsyncSession, image_ids: Collection[int]
) -> dict[int, FirmwareImage]:
    """The listed images, in one statement."""
    if not image_ids:
        return {}
    found = await session.scalars(select(FirmwareImage).where(FirmwareImage.id.in_(image_ids)))
    return {image.id: image for image in found}


async def live_campaign_ids(session: AsyncSession) -> list[int]:
    rows = await session.scalars(
        select(FirmwareCampaign.id)
        .where(FirmwareCampaign.state.in_([s.value for s in LIVE_CAMPAIGN_STATES]))
        .order_by(FirmwareCampaign.id)
    )
    return list(rows.all())


async def lock_campaign(session: AsyncSession, campaign_id: int) -> FirmwareCampaign | None:
    """The campaign, locked for this transaction; None when another runner holds it (it
    advances it now) or it is over."""
    found: FirmwareCampaign | None = await session.scalar(
        select(FirmwareCampaign)
        .where(
            FirmwareCampaign.id == campaign_id,
            FirmwareCampaign.state.in_([s.value for s in LIVE_CAMPAIGN_STATES]),
        )
        .with_for_update(skip_locked=True)
    )
    return found


async def stalled(
    session: AsyncSession, campaign_id: int, before: datetime
) -> list[FirmwareCampaignDevice]:
    rows = await session.scalars(
        select(FirmwareCampaignDevice).where(
            FirmwareCampaignDevice.campaign_id == campaign_id,
            FirmwareCampaignDevice.state.in_([s.value for s in IN_FLIGHT]),
            FirmwareCampaignDevice.progress_at < before,
        )
    )
    return list(rows.all())


async def pending_rows(
    session: AsyncSession, campaign_id: int, wave: int
) -> list[FirmwareCampaignDevice]:
    rows = await session.scalars(
        select(FirmwareCampaignDevice)
        .where(
            FirmwareCampaignDevice.campaign_id == campaign_id,
            FirmwareCampaignDevice.wave == wave,
            FirmwareCampaignDevice.state == UpdateState.PENDING.value,
        )
        .order_by(FirmwareCampaignDevice.id)
    )
    return list(rows.all())


async def cancel_pending(session: AsyncSession, campaign_id: int, now: datetime) -> None:
    rows = await session.scalars(
        select(FirmwareCampaignDevice).where(
            FirmwareCampaignDevice.campaign_id == campaign_id,
            FirmwareCampaignDevice.state == UpdateState.PENDING.value,
        )
    )
    for row in rows.all():
        row.state = UpdateState.CANCELLED.value
        row.finished_at = now


async def ready_devices(
    session: AsyncSession, device_ids: Collection[str], kind: DeviceKind, now: datetime
) -> set[str]:
    """Those of ``device_ids`` that may be sent an update now: online (the one liveness
    rule), updating nothing else, and — a station — none of its spots unlocking or held by
    a rent, or — a vehicle — not rented or ridden."""
    if not device_ids:
        return set()
    alive = online_clause(session.get_bind().dialect.name, now)
    updating = exists().where(
        FirmwareCampaignDevice.device_id == Device.device_id,
        FirmwareCampaignDevice.state.in_([s.value for s in IN_FLIGHT]),
    )
    # An unlock that timed out may still open the lock until the rent expires.
    rent_open = or_(
        Rent.status.in_(ACTIVE_RENT_STATUSES),
        and_(
            Rent.status == RentStatus.UNLOCK_TIMEOUT,
            or_(Rent.expires_at.is_(None), Rent.expires_at > now),
        ),
    )
    busy: ColumnElement[bool]
    if kind is DeviceKind.STATION:
        busy = exists().where(
            Station.device_id == Device.device_id,
            Spot.station_id == Station.id,
            Rent.spot_id == Spot.id,
            rent_open,
        )
    else:
        busy = or_(
            exists().where(
                Vehicle.device_id == Device.device_id, Rent.vehicle_id == Vehicle.id, rent_open
            ),
            exists().where(
                Vehicle.device_id == Device.device_id,
                Trip.vehicle_id == Vehicle.id,
                Trip.status.in_(RIDING),
            ),
        )
    rows = await session.scalars(
        select(Device.device_id).where(
            Device.device_id.in_(sorted(device_ids)), alive, ~updating, ~busy
        )
    )
    return set(rows.all())


async def refused(
    session: AsyncSession, campaign_id: int
) -> list[tuple[FirmwareCampaignDevice, str, str | None]]:
    """Sent updates whose command the device refused or failed (a manifest it would not
    take: wrong target, unknown key, a spot board that refuses the image), with the
    command's status and reason as ingest recorded them (``"unknown-key: …"``)."""
    rows = await session.execute(
        select(FirmwareCampaignDevice, DeviceCommand.status, DeviceCommand.reason)
        .join(DeviceCommand, DeviceCommand.command_id == FirmwareCampaignDevice.command_id)
        .where(
            FirmwareCampaignDevice.campaign_id == campaign_id,
            FirmwareCampaignDevice.state == UpdateState.SENT.value,
            DeviceCommand.status.in_([CommandStatus.REJECTED, CommandStatus.FAILED]),
        )
    )
    return [(row, status, why) for row, status, why in rows]


async def attached(session: AsyncSession, device_id: str) -> tuple[int | None, int | None]:
    """The station and the vehicle a device is the mainboard or controller of."""
    station_id = await session.scalar(select(Station.id).where(Station.device_id == device_id))
    vehicle_id = await session.scalar(select(Vehicle.id).where(Vehicle.device_id == device_id))
    return station_id, vehicle_id


async def window_of(session: AsyncSession, network_id: int) -> tuple[FirmwareWindow | None, str]:
    """The network's maintenance window (None: none) and its timezone."""
    row = (
        await session.execute(
            select(FirmwareWindow, Network.timezone)
            .select_from(Network)
            .outerjoin(FirmwareWindow, FirmwareWindow.network_id == Network.id)
            .where(Network.id == network_id)
        )
    ).first()
    if row is None:
        return None, "UTC"
    return row[0], row[1]


async def in_flight_row(
    session: AsyncSession, device_id: str, spot: int, version: str
) -> tuple[FirmwareCampaignDevice, FirmwareCampaign] | None:
    """The update a device's status is about: its row for that spot and version not
    settled yet, whatever its campaign's state (an update under way when the campaign
    was paused, stopped or cancelled goes on, and is counted)."""
    row = (
        await session.execute(
            select(FirmwareCampaignDevice, FirmwareCampaign)
            .join(FirmwareCampaign, FirmwareCampaign.id == FirmwareCampaignDevice.campaign_id)
            .join(FirmwareImage, FirmwareImage.id == FirmwareCampaign.image_id)
            .where(
                FirmwareCampaignDevice.device_id == device_id,
                FirmwareCampaignDevice.spot == spot,
                FirmwareCampaignDevice.state.in_([s.value for s in IN_FLIGHT]),
                FirmwareImage.version == version,
            )
            .order_by(FirmwareCampaignDevice.id.desc())
            .limit(1)
            .with_for_update(of=FirmwareCampaignDevice)
        )
    ).first()
    return (row[0], row[1]) if row is not None else None


__all__ = [
    "RIDING",
    "Unit",
    "WaveCounts",
    "attached",
    "campaign_devices",
    "campaigns",
    "campaigns_using",
    "cancel_pending",
    "image_by_digest",
    "image_of_version",
    "images",
    "in_flight_row",
    "kind_of_target",
    "live_campaign_ids",
    "lock_campaign",
    "pending_rows",
    "ready_devices",
    "refused",
    "select_units",
    "stalled",
    "wave_counts",
    "window_of",
]
