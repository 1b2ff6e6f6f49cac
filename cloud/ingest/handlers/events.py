"""Events (SPEC §4.5), one handler per event type and device kind; the trip engine
(:mod:`kickstand.cloud.trips`) decides on device time. Every event, handled or not, is
then shown to the fleet alert rules and recorded as ``device.event``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import trips
from kickstand.cloud.events import catalogue as ev
from kickstand.cloud.events import payloads as p
from kickstand.cloud.ingest import repository as repo
from kickstand.cloud.ingest.batch import DeviceInfo, Inbound
from kickstand.cloud.ingest.handlers.registry import handlers
from kickstand.cloud.models import DeviceKind
from kickstand.protocol.v1 import messages as m

if TYPE_CHECKING:
    from kickstand.cloud.ingest.apply import BatchApplier

STATION = DeviceKind.STATION
VEHICLE = DeviceKind.VEHICLE


@handlers.on(m.VehicleDocked, kind=STATION)
async def docked(
    ctx: BatchApplier, session: AsyncSession, item: Inbound, info: DeviceInfo, body: m.VehicleDocked
) -> None:
    received = datetime.fromtimestamp(item.received_ms / 1000, UTC) if item.received_ms else None
    # Where the cloud held the vehicle before this dock moves it (vehicle-in-two-spots).
    alerts = ctx.alerts
    before = await alerts.spot_of_vehicle(session, body.serial_number) if alerts else None
    r = await trips.vehicle_docked(
        session, item.device_id, body.spot, body.serial_number, item.at, received_at=received
    )
    if alerts is not None and r.action in ("ended", "updated"):
        await alerts.on_vehicle_placed(session, body.serial_number, before)
    if r.reason == "clock-bounded" and item.flagged_ts_ms is None:
        # The trip's end was bounded by what the cloud saw: the station's clock is wrong.
        ctx.stats.clock_flagged += 1
        item.flagged_ts_ms = item.msg.stamp.ts_ms
    await trip_result(ctx, session, item, r)


@handlers.on(m.VehicleRemoved, kind=STATION)
async def removed(
    ctx: BatchApplier,
    session: AsyncSession,
    item: Inbound,
    info: DeviceInfo,
    body: m.VehicleRemoved,
) -> None:
    rent_id, by_operator = (
        (None, False)
        if body.command_id is None
        else await repo.owner_of_command(session, body.command_id)
    )
    r = await trips.vehicle_removed(
        session,
        item.device_id,
        body.spot,
        body.serial_number,
        item.at,
        badge_uid=body.badge_uid.hex().upper() if body.badge_uid else None,
        rent_id=rent_id,
        by_operator=by_operator,
    )
    await trip_result(ctx, session, item, r)


@handlers.on(m.UnlockExpired, kind=STATION)
async def unlock_expired(
    ctx: BatchApplier, session: AsyncSession, item: Inbound, info: DeviceInfo, body: m.UnlockExpired
) -> None:
    rent_id = await rent_of_command(session, body.command_id)
    if rent_id is None:
        rent_id = await repo.open_rent_at_spot(session, item.device_id, body.spot)
    if rent_id is None:
        ctx.stats.ignore("unlock-expired-without-rent", device=item.device_id, spot=body.spot)
        return
    await trips.rent_expired(session, rent_id, item.at)


@handlers.on(m.Unlocked, kind=VEHICLE)
async def vehicle_unlocked(
    ctx: BatchApplier, session: AsyncSession, item: Inbound, info: DeviceInfo, body: m.Unlocked
) -> None:
    r = await trips.vehicle_unlocked_freefloat(
        session,
        item.device_id,
        item.at,
        rent_id=await rent_of_command(session, body.command_id),
        latitude=None,
        longitude=None,
    )
    if ctx.freefloat is not None:
        await ctx.freefloat.on_unlocked(session, item.device_id, r)  # the ride's speed limit
    await trip_result(ctx, session, item, r)


@handlers.on(m.Locked, kind=VEHICLE)
async def vehicle_locked(
    ctx: BatchApplier, session: AsyncSession, item: Inbound, info: DeviceInfo, body: m.Locked
) -> None:
    if ctx.freefloat is not None:
        r = await ctx.freefloat.on_locked(session, item.device_id, item.at)
    else:
        r = await trips.vehicle_locked_freefloat(session, item.device_id, item.at)
    await trip_result(ctx, session, item, r)


@handlers.after_every_event
async def alert_and_record(
    ctx: BatchApplier, session: AsyncSession, item: Inbound, info: DeviceInfo
) -> None:
    await ctx.alert(session, item, info)
    body = item.msg.body
    event = p.DeviceEvent(
        device_id=item.device_id,
        network_id=info.network_id,
        event=type(body).__name__,
        at=item.at,
        boot_id=item.msg.stamp.boot_id,
        seq=item.msg.stamp.seq,
        data=event_data(body),
    )
    record: repo.Record = (ev.DEVICE_EVENT, item.device_id, event)
    await repo.record(session, [record])


async def trip_result(
    ctx: BatchApplier, session: AsyncSession, item: Inbound, result: trips.TripEventResult
) -> None:
    if result.action in ("ended", "reconciled") and result.trip is not None:
        if ctx.alerts is not None:
            await ctx.alerts.on_trip_terminated(session, result.trip)
    if result.action == "ignored":
        ctx.stats.ignore(
            f"trip-{result.reason or 'ignored'}",
            device=item.device_id,
            event=type(item.msg.body).__name__,
        )


async def rent_of_command(session: AsyncSession, command_id: bytes | None) -> int | None:
    return None if command_id is None else await repo.rent_of_command(session, command_id)


def event_data(body: object) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name in getattr(body, "__slots__", ()):
        value = getattr(body, name)
        if isinstance(value, bytes):
            value = value.hex().upper()
        elif isinstance(value, Enum):
            value = value.name.lower()
        data[name] = value
    return data


__all__ = ["event_data", "trip_result"]
