"""Trip history (keyset pagination as the seeds: page_size, last_primary_key) and detail;
hold and resume of the rider's running trip where its network allows trips on hold
(``networks.trip_on_hold``: the trip is billed at the rule's ``on_hold_price`` meanwhile,
and ended after ``trip_max_pause`` by the ingest sweep)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.api.deps import CurrentUser, GatewayDep, SessionDep
from kickstand.cloud.api.errors import device_offline, device_refused, device_timeout, not_found
from kickstand.cloud.api.ids import Id
from kickstand.cloud.api.openapi import error_responses
from kickstand.cloud.api.pagination import KeysetDep
from kickstand.cloud.api.schemas import Envelope, Page, TripDetail, TripPublic
from kickstand.cloud.api.views import money_str, trip_detail, trip_public
from kickstand.cloud.freefloat.service import reopen_own_lock
from kickstand.cloud.keyset import cut, page_query
from kickstand.cloud.models import Trip, TripStatus, Vehicle
from kickstand.cloud.operations import service
from kickstand.cloud.rent_gateway import UnlockResult
from kickstand.cloud.trips import price_trip

router = APIRouter(prefix="/trips", tags=["trips"])


@router.get("", response_model=Page[TripPublic], summary="My trips, newest first")
async def list_trips(
    user: CurrentUser,
    session: SessionDep,
    keyset: KeysetDep,
    state: Annotated[list[TripStatus] | None, Query()] = None,
) -> Page[TripPublic]:
    where = [Trip.user_id == user.id]
    if state:
        where.append(Trip.status.in_(state))
    total = int(await session.scalar(select(func.count()).select_from(Trip).where(*where)) or 0)
    stmt = select(Trip, Vehicle).join(Vehicle, Vehicle.id == Trip.vehicle_id).where(*where)
    rows, next_key = cut(
        (await session.execute(page_query(stmt, Trip.id, keyset))).all(),
        keyset,
        key=lambda row: row[0].id,
    )
    data = [trip_public(trip, vehicle) for trip, vehicle in rows]
    return Page(data=data, total=total, next_primary_key=next_key)


@router.get("/{trip_id}", response_model=Envelope[TripDetail], summary="Trip detail with its cost")
async def get_trip(
    user: CurrentUser, session: SessionDep, trip_id: Annotated[Id, Path()]
) -> Envelope[TripDetail]:
    trip = await session.get(Trip, trip_id)
    if trip is None or trip.user_id != user.id:
        raise not_found("trip", trip_id)
    return Envelope(data=await _detail(session, trip))


async def _detail(session: AsyncSession, trip: Trip) -> TripDetail:
    vehicle = await session.get_one(Vehicle, trip.vehicle_id)
    detail: dict[str, Any] | None
    if trip.ended_at is None:
        cost, detail = await price_trip(session, trip, datetime.now(UTC))
        cost_str = money_str(cost, trip.currency)
    else:
        cost_str = money_str(trip.cost, trip.currency)
        detail = trip.cost_detail
    return trip_detail(trip, vehicle, cost_str, detail)


@router.post(
    "/{trip_id}/hold",
    response_model=Envelope[TripDetail],
    responses=error_responses(409),
    summary="Put my running trip on hold (where the network allows it)",
)
async def hold_trip(
    user: CurrentUser, session: SessionDep, trip_id: Annotated[Id, Path()]
) -> Envelope[TripDetail]:
    result = await service.hold(session, user.id, trip_id)
    await session.commit()
    assert result.trip is not None
    return Envelope(data=await _detail(session, result.trip))


@router.post(
    "/{trip_id}/resume",
    response_model=Envelope[TripDetail],
    responses=error_responses(409, 503, 504),
    summary="Resume my trip on hold",
)
async def resume_trip(
    user: CurrentUser, session: SessionDep, gateway: GatewayDep, trip_id: Annotated[Id, Path()]
) -> Envelope[TripDetail]:
    """A hold is a temporary lock: a vehicle with its own lock (not docked) is unlocked
    again first, and the trip stays on hold when it cannot be (503 offline, 409 refused,
    504 no answer: the device's Unlocked, if it comes, resumes it)."""
    trip = await service.rider_trip(session, user.id, trip_id)
    vehicle = await session.get_one(Vehicle, trip.vehicle_id)
    if (
        trip.status == TripStatus.ON_HOLD
        and vehicle.device_id is not None
        and vehicle.spot_id is None
    ):
        outcome = await reopen_own_lock(session, gateway, vehicle, trip)  # commits
        data = {"trip_id": trip_id, "vehicle_id": vehicle.id}
        match outcome.result:
            case UnlockResult.DEVICE_OFFLINE:
                raise device_offline(f"the vehicle is offline: {outcome.reason}", data=data)
            case UnlockResult.TIMEOUT:
                raise device_timeout(f"the vehicle did not answer: {outcome.reason}", data=data)
            case UnlockResult.REFUSED:
                raise device_refused(f"the vehicle refused: {outcome.reason}", data=data)
    result = await service.resume(session, user.id, trip_id)
    await session.commit()
    assert result.trip is not None
    return Envelope(data=await _detail(session, result.trip))
