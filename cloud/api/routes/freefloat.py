"""Free-floating for riders: unlock by serial number or QR code, return check, vehicle, zones.

``POST /v1/freefloat/unlock`` resolves the vehicle and goes through the very same rent flow
as ``POST /v1/rents`` (:mod:`kickstand.cloud.rent_flow` via
:mod:`kickstand.cloud.api.rent_answers`: Idempotency-Key claim and replay, one rent per
vehicle, the command gateway's ``unlock_vehicle``); the trip starts at the vehicle's
Unlocked event and ends at its Locked event (see :mod:`kickstand.cloud.freefloat`). For a
vehicle of the rider's own running trip (e.g. locked outside the network where the return
was refused) it re-sends the unlock instead.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select

from kickstand.cloud.api.deps import (
    ClaimsDep,
    CurrentUser,
    GatewayDep,
    SessionDep,
    SettingsDep,
)
from kickstand.cloud.api.errors import ApiError, invalid, not_found
from kickstand.cloud.api.idempotency import RentIdempotency
from kickstand.cloud.api.ids import Id, Text
from kickstand.cloud.api.openapi import error_responses
from kickstand.cloud.api.rent_answers import outcome_error, unlock_response
from kickstand.cloud.api.schemas import Envelope, MapVehicle, RentCreate, RentPublic
from kickstand.cloud.api.views import RiderZones, rent_public, rider_zones
from kickstand.cloud.errors import NotFoundError
from kickstand.cloud.freefloat import VehicleCodeError, find_vehicle, return_check
from kickstand.cloud.freefloat.service import active_trip, reopen_own_lock
from kickstand.cloud.geofence import store as zones
from kickstand.cloud.liveness import PRESENCE_COLUMNS, online_of
from kickstand.cloud.models import Device, Network, Rent, Trip, Vehicle, VehicleState
from kickstand.cloud.rent_gateway import UnlockResult

router = APIRouter(prefix="/freefloat", tags=["free-floating"])
log = logging.getLogger("kickstand.cloud.api.freefloat")


def geofence_cache(request: Request) -> zones.GeofenceCache:
    """The app's shared cache (created on first use)."""
    cache: zones.GeofenceCache | None = getattr(request.app.state, "geofence_cache", None)
    if cache is None:
        cache = zones.GeofenceCache()
        request.app.state.geofence_cache = cache
    return cache


def _code_error(exc: VehicleCodeError) -> ApiError:
    return invalid(exc.field, exc.message, reason="vehicle-code")


class FreeFloatUnlock(BaseModel):
    model_config = ConfigDict(extra="forbid")

    serial_number: Text | None = Field(default=None, max_length=32)
    #: The text of the vehicle's QR code: the serial, or a URL carrying it.
    qr_code: Text | None = Field(default=None, max_length=512)

    @model_validator(mode="after")
    def _one(self) -> FreeFloatUnlock:
        if (self.serial_number is None) == (self.qr_code is None):
            raise ValueError("give serial_number or qr_code (exactly one)")
        return self


@router.post(
    "/unlock",
    status_code=201,
    response_model=Envelope[RentPublic],
    responses={
        200: {"model": Envelope[RentPublic], "description": "your running trip's lock re-opened"},
        **error_responses(402, 409, 504),
    },
    summary="Unlock (rent) a vehicle by its serial number or QR code",
    description="Requires an `Idempotency-Key` header, as `POST /v1/rents` (same flow).",
)
async def unlock(
    body: FreeFloatUnlock,
    user: CurrentUser,
    claims: ClaimsDep,
    session: SessionDep,
    settings: SettingsDep,
    gateway: GatewayDep,
    idem: RentIdempotency,
) -> JSONResponse:
    try:
        vehicle = await find_vehicle(
            session, serial_number=body.serial_number, qr_code=body.qr_code
        )
    except VehicleCodeError as exc:
        raise _code_error(exc) from exc
    except NotFoundError as exc:
        raise not_found("vehicle", exc.key) from exc
    trip = await active_trip(session, vehicle.id)
    if trip is not None and trip.user_id == user.id and vehicle.device_id is not None:
        return await _unlock_own(session, gateway, vehicle, trip)
    vehicle_id = vehicle.id
    await session.close()  # the rent flow opens its own sessions
    return await unlock_response(RentCreate(vehicle_id=vehicle_id), claims, idem, settings, gateway)


async def _unlock_own(
    session: SessionDep, gateway: GatewayDep, vehicle: Vehicle, trip: Trip
) -> JSONResponse:
    outcome = await reopen_own_lock(session, gateway, vehicle, trip)
    rent = await session.get(Rent, trip.rent_id) if trip.rent_id is not None else None
    public = await rent_public(session, rent, trip)
    if outcome.result == UnlockResult.UNLOCKED:
        return JSONResponse({"code": 0, "data": public.model_dump(mode="json")}, status_code=200)
    error = outcome_error(outcome, public, 0)
    assert error is not None
    return error.response()


@router.get(
    "/trips/{trip_id}/return",
    response_model=Envelope[dict[str, Any]],
    summary="Where my trip would end if I locked the vehicle now",
    description="`kind`: normal (inside a virtual parking), outside-parking (the free-float "
    "lock price is added), outside-network (`refused`: the lock will not end the trip; "
    "otherwise it ends and an alert is raised).",
)
async def trip_return(
    user: CurrentUser,
    session: SessionDep,
    request: Request,
    trip_id: Annotated[Id, Path()],
) -> Envelope[dict[str, Any]]:
    trip = await session.get(Trip, trip_id)
    if trip is None or trip.user_id != user.id:
        raise not_found("trip", trip_id)
    vehicle = await session.get_one(Vehicle, trip.vehicle_id)
    check = await return_check(
        session,
        geofence_cache(request),
        vehicle,
        datetime.now(UTC),
        trip_started_at=trip.started_at,
    )
    return Envelope(data={"trip_id": trip.id, "status": trip.status.value, **check.as_json()})


def vehicle_state(vehicle: Vehicle) -> str:
    """Seeds' vehicle state: maintenance wins over the rent state."""
    if vehicle.in_maintenance:
        return VehicleState.MAINTENANCE.value
    return vehicle.state.value


@router.get(
    "/vehicles/{serial_number}",
    response_model=Envelope[MapVehicle],
    summary="A vehicle by serial number: position, battery, online, state",
)
async def get_vehicle(
    user: CurrentUser, session: SessionDep, serial_number: Annotated[Text, Path(max_length=32)]
) -> Envelope[MapVehicle]:
    try:
        vehicle = await find_vehicle(session, serial_number=serial_number)
    except VehicleCodeError as exc:
        raise _code_error(exc) from exc
    except NotFoundError as exc:
        raise not_found("vehicle", exc.key) from exc
    online = False
    if vehicle.device_id is not None:
        presence = (
            await session.execute(
                select(*PRESENCE_COLUMNS).where(Device.device_id == vehicle.device_id)
            )
        ).first()
        online = presence is not None and online_of(presence, datetime.now(UTC))
    state = vehicle_state(vehicle)
    return Envelope(
        data=MapVehicle(
            vehicle_id=vehicle.id,
            serial_number=vehicle.serial_number,
            latitude=vehicle.latitude,
            longitude=vehicle.longitude,
            connected=online,
            network_id=vehicle.network_id,
            battery_level=vehicle.battery_level,
            vehicle_type=vehicle.vehicle_type.value,
            state=state,
            is_accessible=not vehicle.in_maintenance,
            is_available=state == VehicleState.AVAILABLE.value and vehicle.spot_id is None,
        )
    )


@router.get(
    "/zones",
    response_model=Envelope[RiderZones],
    summary="Virtual parkings, speed zones and forbidden zones of a network (for the map)",
)
async def get_rider_zones(
    user: CurrentUser, session: SessionDep, network_id: Annotated[Id, Query()]
) -> Envelope[RiderZones]:
    if await session.get(Network, network_id) is None:
        raise not_found("network", network_id)
    return Envelope(data=await rider_zones(session, network_id))
