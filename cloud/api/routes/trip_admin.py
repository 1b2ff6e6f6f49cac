"""Seed 002 ``Trips`` for operators: ``GET /v1/dashboard/trips`` (the seed's filters, keyset
pages), ``GET /v1/dashboard/trips/{trip_id}`` (price breakdown, billing stops, positions)
and ``PUT /v1/dashboard/trips/{trip_id}/billing-stop`` ("Stop trip billing", with a reason).

The seed's ``sort_by`` / ``sort_dir`` are not offered: keyset pages run on the trip id
only; ``distance_*``, ``model_name`` and ``demo`` name data trips do not hold.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.alerts.api import NetworksDep
from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.deps import SessionDep
from kickstand.cloud.api.errors import invalid
from kickstand.cloud.api.ids import Id, Text
from kickstand.cloud.api.pagination import KeysetDep
from kickstand.cloud.api.schemas import Envelope, OkEnvelope, Page
from kickstand.cloud.api.views import money_str, trip_detail, trip_public
from kickstand.cloud.keyset import cut
from kickstand.cloud.models import Trip, TripStatus, User, Vehicle
from kickstand.cloud.operations import repository, service
from kickstand.cloud.operations.schemas import (
    BillingStopPublic,
    BillingStopUpdate,
    OperatorTripDetail,
    OperatorTripPublic,
    TripPosition,
)
from kickstand.cloud.telemetry import TelemetryError, TelemetryStore
from kickstand.cloud.trips import get_trip, price_trip

log = logging.getLogger("kickstand.cloud.api.routes.trip_admin")

router = APIRouter(prefix="/dashboard/trips", tags=["trips"])
# The one operator access check (kickstand.cloud.api.access).
TripsOperator = Annotated[OperatorContext, Depends(Operator("trips"))]
TripIdPath = Annotated[Id, Path(description="Identifier of the trip.")]
#: Positions given with the detail; the telemetry route pages the rest.
POSITIONS_IN_DETAIL = 1000


def _states(values: list[str] | None) -> list[TripStatus] | None:
    """``state=running,on-hold`` or ``state=running&state=on-hold``."""
    parts = [p for v in values or [] for p in v.replace(" ", "").split(",") if p]
    try:
        return [TripStatus(p) for p in parts] or None
    except ValueError as exc:
        allowed = ", ".join(s.value for s in TripStatus)
        raise invalid("state", f"states are among: {allowed}") from exc


def _public(trip: Trip, vehicle: Vehicle, email: str | None) -> OperatorTripPublic:
    return OperatorTripPublic(
        **trip_public(trip, vehicle).model_dump(),
        user_id=trip.user_id,
        email=email,
        billing_time_stop=trip.billing_stopped_at,
    )


@router.get("", response_model=Page[OperatorTripPublic], summary="Get trips")
async def get_trips(
    operator: TripsOperator,
    session: SessionDep,
    keyset: KeysetDep,
    networks: NetworksDep,
    state: Annotated[
        list[Annotated[Text, Field(max_length=100)]] | None,
        Query(description="States of the trips to show (`running,on-hold`)."),
    ] = None,
    start_date_min: datetime | None = None,
    start_date_max: datetime | None = None,
    end_date_min: datetime | None = None,
    end_date_max: datetime | None = None,
    trip_id_min: Annotated[Id | None, Query()] = None,
    trip_id_max: Annotated[Id | None, Query()] = None,
    serial_number: Annotated[Text | None, Query(min_length=1, max_length=10)] = None,
    email: Annotated[Text | None, Query(min_length=1, max_length=255)] = None,
    user_id: Annotated[Id | None, Query()] = None,
    cluster_start_name: Annotated[Text | None, Query(min_length=1, max_length=50)] = None,
    cluster_start_id: Annotated[Id | None, Query()] = None,
    cluster_end_name: Annotated[Text | None, Query(min_length=1, max_length=50)] = None,
    cluster_end_id: Annotated[Id | None, Query()] = None,
    duration_min: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    duration_max: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
) -> Page[OperatorTripPublic]:
    filters = repository.TripFilters(
        state=_states(state),
        start_date_min=_aware(start_date_min),
        start_date_max=_aware(start_date_max),
        end_date_min=_aware(end_date_min),
        end_date_max=_aware(end_date_max),
        trip_id_min=trip_id_min,
        trip_id_max=trip_id_max,
        serial_number=serial_number,
        email=email,
        user_id=user_id,
        cluster_start_name=cluster_start_name,
        cluster_start_id=cluster_start_id,
        cluster_end_name=cluster_end_name,
        cluster_end_id=cluster_end_id,
        duration_min=duration_min,
        duration_max=duration_max,
    )
    rows, total = await repository.operator_trips(session, filters, networks, keyset)
    page, next_key = cut(rows, keyset, key=lambda row: row[0].id)
    return Page(
        data=[_public(trip, vehicle, mail) for trip, vehicle, mail in page],
        total=total,
        next_primary_key=next_key,
    )


def _aware(value: datetime | None) -> datetime | None:
    # A date without an offset is read as UTC (the stored times are UTC).
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def telemetry_store(request: Request) -> TelemetryStore | None:
    """The app's telemetry store, if it opened (the detail answers without positions)."""
    store: TelemetryStore | None = getattr(request.app.state, "telemetry_store", None)
    return store


async def _positions(
    store: TelemetryStore | None, serial: str, trip: Trip
) -> tuple[list[TripPosition] | None, datetime | None]:
    if store is None:
        return None, None
    end = trip.ended_at or datetime.now(UTC)
    try:
        samples = await store.vehicle_timeline(
            serial, trip.started_at, end, limit=POSITIONS_IN_DETAIL + 1
        )
    except TelemetryError as exc:
        # The trip's own data stands; the positions route reports the store's failure.
        log.warning("event=trip_detail_positions_unavailable trip_id=%s error=%s", trip.id, exc)
        return None, None
    positions = [TripPosition.of(s) for s in samples[:POSITIONS_IN_DETAIL]]
    more = len(samples) > POSITIONS_IN_DETAIL
    return positions, (samples[POSITIONS_IN_DETAIL - 1].time if more else None)


async def _trip_in_scope(session: AsyncSession, operator: OperatorContext, trip_id: int) -> Trip:
    trip = await get_trip(session, trip_id)
    operator.check([trip.network_id])
    return trip


@router.get("/{trip_id}", response_model=Envelope[OperatorTripDetail], summary="Get trip detail")
async def get_trip_detail(
    operator: TripsOperator,
    session: SessionDep,
    trip_id: TripIdPath,
    store: Annotated[TelemetryStore | None, Depends(telemetry_store)],
) -> Envelope[OperatorTripDetail]:
    trip = await _trip_in_scope(session, operator, trip_id)
    vehicle = await session.get_one(Vehicle, trip.vehicle_id)
    user = await session.get(User, trip.user_id) if trip.user_id is not None else None
    detail: dict[str, Any] | None
    if trip.ended_at is None:
        cost, detail = await price_trip(session, trip, datetime.now(UTC))
        cost_str = money_str(cost, trip.currency)
    else:
        cost_str, detail = money_str(trip.cost, trip.currency), trip.cost_detail
    stops = [
        BillingStopPublic(
            stop_date=s.stop_at, reason=s.reason, user_id=s.user_id, date=s.created_at
        )
        for s in await service.billing_stops(session, trip.id)
    ]
    await session.commit()  # hold no transaction while the telemetry store answers
    positions, next_date_min = await _positions(store, vehicle.serial_number, trip)
    return Envelope(
        data=OperatorTripDetail(
            **trip_detail(trip, vehicle, cost_str, detail).model_dump(),
            user_id=trip.user_id,
            email=user.email if user is not None else None,
            billing_stops=stops,
            positions=positions,
            positions_next_date_min=next_date_min,
        )
    )


@router.put(
    "/{trip_id}/billing-stop",
    response_model=OkEnvelope,
    summary="Stop trip billing (a null date erases a previous stop)",
)
async def stop_trip_billing(
    operator: TripsOperator, session: SessionDep, trip_id: TripIdPath, body: BillingStopUpdate
) -> OkEnvelope:
    trip = await _trip_in_scope(session, operator, trip_id)
    await service.stop_trip_billing(
        session, trip, body.date, reason=body.reason, user_id=operator.user_id
    )
    await session.commit()
    return OkEnvelope()
