"""Trip history (keyset pagination as the seeds: page_size, last_primary_key) and detail."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from sqlalchemy import func, select

from kickstand.cloud.api.deps import CurrentUser, SessionDep
from kickstand.cloud.api.errors import not_found
from kickstand.cloud.api.ids import Id
from kickstand.cloud.api.pagination import KeysetDep
from kickstand.cloud.api.schemas import Envelope, Page, TripDetail, TripPublic
from kickstand.cloud.api.views import money_str, trip_detail, trip_public
from kickstand.cloud.keyset import cut, page_query
from kickstand.cloud.models import Trip, TripStatus, Vehicle
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
    vehicle = await session.get_one(Vehicle, trip.vehicle_id)
    detail: dict[str, Any] | None
    if trip.ended_at is None:
        cost, detail = await price_trip(session, trip, datetime.now(UTC))
        cost_str = money_str(cost, trip.currency)
    else:
        cost_str = money_str(trip.cost, trip.currency)
        detail = trip.cost_detail
    return Envelope(data=trip_detail(trip, vehicle, cost_str, detail))
