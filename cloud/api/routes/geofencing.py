"""Geofencing (seed 002 group): network border, speed zones, virtual parkings, forbidden zones.

Operators only (role operator/admin, network in their permissions). Shapes are accepted in
both forms: the seeds' list of ``[lon, lat]`` points, or a GeoJSON Polygon / MultiPolygon;
answers carry ``shape`` as GeoJSON. Bad shapes and out-of-range fields come back as the
validation envelope naming the field (``errors[].field``), from the geofence library's
typed errors. Every change bumps the network's zones version (the ingest's cached index
is rebuilt) and writes ``zone.created`` / ``zone.updated`` / ``zone.deleted``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.deps import SessionDep
from kickstand.cloud.api.errors import ApiError, invalid_fields, not_found
from kickstand.cloud.api.ids import MAX_ID, Id, Text
from kickstand.cloud.api.schemas import Envelope, OkEnvelope
from kickstand.cloud.geofence import (
    CoordinateRangeError,
    GeofenceError,
    ZoneAttributeError,
    ZoneOutsideBorderError,
    ZoneType,
)
from kickstand.cloud.geofence import store as zones
from kickstand.cloud.models import Network

router = APIRouter(prefix="/dashboard/geofencing", tags=["geofencing"])

NetworkIdQuery = Annotated[Id, Query(description="Identifier of the network.")]
ZoneIdPath = Annotated[Id, Path()]


# ── errors and access ─────────────────────────────────────────────────────────────────


def _kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower().removesuffix("-error")


def geofence_error(exc: GeofenceError, shape_field: str = "shape") -> ApiError:
    """A geofence library error as the validation envelope, naming the field."""
    if isinstance(exc, ZoneAttributeError):
        field = exc.field
    else:
        field = shape_field
    detail: dict[str, str] = {"field": field, "message": exc.message}
    if isinstance(exc, CoordinateRangeError) and exc.index is not None:
        detail["index"] = str(exc.index)
    if isinstance(exc, ZoneOutsideBorderError):
        detail["likely_swapped"] = str(exc.likely_swapped).lower()
    return invalid_fields(f"invalid {field}: {exc}", [detail], reason=_kebab(type(exc).__name__))


# The one operator access check (kickstand.cloud.api.access); `network_id` in the query is
# checked by it, a body's network by `check_network`.
OperatorDep = Annotated[OperatorContext, Depends(Operator("networks.manage"))]


async def check_network(session: AsyncSession, user: OperatorContext, network_id: int) -> Network:
    network = await session.get(Network, network_id)
    if network is None:
        raise not_found("network", network_id)
    user.check([network_id])
    return network


def _cache_of(request: Request) -> zones.GeofenceCache | None:
    cache: zones.GeofenceCache | None = getattr(request.app.state, "geofence_cache", None)
    return cache


async def _commit(request: Request, session: AsyncSession, network_id: int) -> None:
    await session.commit()
    cache = _cache_of(request)
    if cache is not None:
        cache.invalidate(network_id)


# ── schemas ───────────────────────────────────────────────────────────────────────────

Shape = Annotated[
    Any,
    Field(
        description="List of [lon, lat] points making a polygon (seeds), or a GeoJSON "
        "Polygon / MultiPolygon geometry."
    ),
]


class BorderSettings(BaseModel):
    trigger_alert: bool
    notify_user: bool
    reduce_vehicle_speed: bool
    play_vehicle_sound: bool
    lock_vehicle: bool
    #: Ours: a free-float return outside the border is refused (trip goes on) or alerted.
    outside_return_policy: str = "refuse"
    #: Ours: km/h sent to a vehicle leaving its last speed zone (None: the vehicle's own).
    default_max_speed: int | None = None


class BorderPublic(BorderSettings):
    network_id: int
    shape: dict[str, Any] | None
    version: int


class BorderShapeUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network_id: Id
    shape: Shape


class BorderSettingsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network_id: Id
    trigger_alert: bool
    notify_user: bool
    reduce_vehicle_speed: bool
    play_vehicle_sound: bool
    lock_vehicle: bool
    outside_return_policy: Text | None = None
    default_max_speed: int | None = None


class SpeedZoneCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network_id: Id
    shape: Shape
    max_speed: int


class SpeedZoneUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shape: Shape = None
    max_speed: int | None = None


class VirtualParkingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network_id: Id
    shape: Shape
    capacity: int = Field(ge=0, le=MAX_ID)  # seed 002: integer >= 0; stored as an integer
    cluster_id: Id | None = None


class VirtualParkingUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shape: Shape
    capacity: int = Field(ge=0, le=MAX_ID)  # seed 002: integer >= 0; stored as an integer


class ForbiddenZoneCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network_id: Id
    shape: Shape
    name: Text = ""


class ForbiddenZoneUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shape: Shape = None
    name: Text | None = None


# ── border ────────────────────────────────────────────────────────────────────────────


async def _border_public(session: AsyncSession, network: Network) -> BorderPublic:
    settings = await zones.settings_row(session, network.id)
    return BorderPublic(
        network_id=network.id,
        shape=network.border,
        version=settings.version,
        trigger_alert=settings.trigger_alert,
        notify_user=settings.notify_user,
        reduce_vehicle_speed=settings.reduce_vehicle_speed,
        play_vehicle_sound=settings.play_vehicle_sound,
        lock_vehicle=settings.lock_vehicle,
        outside_return_policy=settings.outside_return_policy,
        default_max_speed=settings.default_max_speed,
    )


@router.get("/border", response_model=Envelope[BorderPublic], summary="Get network border")
async def get_border(
    user: OperatorDep, session: SessionDep, network_id: NetworkIdQuery
) -> Envelope[BorderPublic]:
    network = await check_network(session, user, network_id)
    data = await _border_public(session, network)
    await session.commit()  # the settings row may have just been created
    return Envelope(data=data)


@router.put("/border/shape", response_model=OkEnvelope, summary="Update border shape")
async def update_border_shape(
    body: BorderShapeUpdate, user: OperatorDep, session: SessionDep, request: Request
) -> OkEnvelope:
    await check_network(session, user, body.network_id)
    try:
        await zones.set_border_shape(session, body.network_id, body.shape)
    except GeofenceError as exc:
        raise geofence_error(exc) from exc
    await _commit(request, session, body.network_id)
    return OkEnvelope()


@router.put("/border/settings", response_model=OkEnvelope, summary="Update border settings")
async def update_border_settings(
    body: BorderSettingsUpdate, user: OperatorDep, session: SessionDep, request: Request
) -> OkEnvelope:
    await check_network(session, user, body.network_id)
    values = body.model_dump(exclude={"network_id"})
    if "default_max_speed" not in body.model_fields_set:
        values.pop("default_max_speed")
    try:
        await zones.set_border_settings(session, body.network_id, **values)
    except GeofenceError as exc:
        raise geofence_error(exc) from exc
    await _commit(request, session, body.network_id)
    return OkEnvelope()


@router.get(
    "/zones",
    response_model=Envelope[dict[str, Any]],
    summary="Every zone of a network as a GeoJSON FeatureCollection (border first)",
)
async def get_zones(
    user: OperatorDep, session: SessionDep, network_id: NetworkIdQuery
) -> Envelope[dict[str, Any]]:
    await check_network(session, user, network_id)
    return Envelope(data=(await zones.load_zones(session, network_id)).to_feature_collection())


# ── zones ─────────────────────────────────────────────────────────────────────────────


async def _zone_for(
    session: AsyncSession, user: OperatorContext, kind: ZoneType, zone_id: int
) -> zones.ZoneRow:
    try:
        row = await zones.get_zone(session, kind, zone_id)
    except zones.ZoneNotFoundError as exc:
        raise not_found(kind.value.replace("_", " "), zone_id) from exc
    await check_network(session, user, row.network_id)
    return row


async def _list(
    session: AsyncSession, user: OperatorContext, network_id: int, kind: ZoneType
) -> list[dict[str, Any]]:
    await check_network(session, user, network_id)
    rows: list[Any]
    if kind is ZoneType.SPEED_ZONE:
        rows = await zones.list_speed_zones(session, network_id)
    elif kind is ZoneType.VIRTUAL_PARKING:
        rows = await zones.list_virtual_parkings(session, network_id)
    else:
        rows = await zones.list_forbidden_zones(session, network_id)
    return [_public(r) for r in rows]


def _public(row: zones.ZoneRow) -> dict[str, Any]:
    from kickstand.cloud.outbox import jsonable

    data: dict[str, Any] = jsonable(zones.zone_payload(row))
    return data


async def _saved(
    request: Request, session: AsyncSession, change: Awaitable[zones.ZoneRow]
) -> Envelope[dict[str, Any]]:
    """Apply a zone change; the library's errors become an envelope naming the field."""
    try:
        row = await change
    except GeofenceError as exc:
        raise geofence_error(exc) from exc
    data = _public(row)
    await _commit(request, session, row.network_id)
    return Envelope(data=data)


async def _deleted(
    request: Request, session: AsyncSession, user: OperatorContext, kind: ZoneType, zone_id: int
) -> OkEnvelope:
    row = await _zone_for(session, user, kind, zone_id)
    await zones.delete_zone(session, kind, zone_id)
    await _commit(request, session, row.network_id)
    return OkEnvelope()


@router.get(
    "/speed-zones", response_model=Envelope[list[dict[str, Any]]], summary="Get speed zones"
)
async def list_speed_zones(
    user: OperatorDep, session: SessionDep, network_id: NetworkIdQuery
) -> Envelope[list[dict[str, Any]]]:
    return Envelope(data=await _list(session, user, network_id, ZoneType.SPEED_ZONE))


@router.post(
    "/speed-zones",
    status_code=201,
    response_model=Envelope[dict[str, Any]],
    summary="Create speed zone",
)
async def create_speed_zone(
    body: SpeedZoneCreate, user: OperatorDep, session: SessionDep, request: Request
) -> Envelope[dict[str, Any]]:
    await check_network(session, user, body.network_id)
    return await _saved(
        request,
        session,
        zones.create_speed_zone(session, body.network_id, body.shape, body.max_speed),
    )


@router.patch(
    "/speed-zones/{zone_id}", response_model=Envelope[dict[str, Any]], summary="Update speed zone"
)
async def update_speed_zone(
    zone_id: ZoneIdPath,
    body: SpeedZoneUpdate,
    user: OperatorDep,
    session: SessionDep,
    request: Request,
) -> Envelope[dict[str, Any]]:
    await _zone_for(session, user, ZoneType.SPEED_ZONE, zone_id)
    return await _saved(
        request,
        session,
        zones.update_speed_zone(session, zone_id, shape=body.shape, max_speed=body.max_speed),
    )


@router.delete("/speed-zones/{zone_id}", response_model=OkEnvelope, summary="Delete speed zone")
async def delete_speed_zone(
    zone_id: ZoneIdPath, user: OperatorDep, session: SessionDep, request: Request
) -> OkEnvelope:
    return await _deleted(request, session, user, ZoneType.SPEED_ZONE, zone_id)


@router.get(
    "/virtual-parkings",
    response_model=Envelope[list[dict[str, Any]]],
    summary="Get virtual parking",
)
async def list_virtual_parkings(
    user: OperatorDep, session: SessionDep, network_id: NetworkIdQuery
) -> Envelope[list[dict[str, Any]]]:
    return Envelope(data=await _list(session, user, network_id, ZoneType.VIRTUAL_PARKING))


@router.post(
    "/virtual-parkings",
    status_code=201,
    response_model=Envelope[dict[str, Any]],
    summary="Create virtual parking",
)
async def create_virtual_parking(
    body: VirtualParkingCreate, user: OperatorDep, session: SessionDep, request: Request
) -> Envelope[dict[str, Any]]:
    await check_network(session, user, body.network_id)
    return await _saved(
        request,
        session,
        zones.create_virtual_parking(
            session, body.network_id, body.shape, body.capacity, body.cluster_id
        ),
    )


@router.put(
    "/virtual-parkings/{zone_id}",
    response_model=Envelope[dict[str, Any]],
    summary="Update virtual parking",
)
async def update_virtual_parking(
    zone_id: ZoneIdPath,
    body: VirtualParkingUpdate,
    user: OperatorDep,
    session: SessionDep,
    request: Request,
) -> Envelope[dict[str, Any]]:
    await _zone_for(session, user, ZoneType.VIRTUAL_PARKING, zone_id)
    return await _saved(
        request,
        session,
        zones.update_virtual_parking(session, zone_id, shape=body.shape, capacity=body.capacity),
    )


@router.delete(
    "/virtual-parkings/{zone_id}", response_model=OkEnvelope, summary="Delete virtual parking"
)
async def delete_virtual_parking(
    zone_id: ZoneIdPath, user: OperatorDep, session: SessionDep, request: Request
) -> OkEnvelope:
    return await _deleted(request, session, user, ZoneType.VIRTUAL_PARKING, zone_id)


@router.get(
    "/forbidden-zones",
    response_model=Envelope[list[dict[str, Any]]],
    summary="Get forbidden zones",
)
async def list_forbidden_zones(
    user: OperatorDep, session: SessionDep, network_id: NetworkIdQuery
) -> Envelope[list[dict[str, Any]]]:
    return Envelope(data=await _list(session, user, network_id, ZoneType.FORBIDDEN_ZONE))


@router.post(
    "/forbidden-zones",
    status_code=201,
    response_model=Envelope[dict[str, Any]],
    summary="Create forbidden zone",
)
async def create_forbidden_zone(
    body: ForbiddenZoneCreate, user: OperatorDep, session: SessionDep, request: Request
) -> Envelope[dict[str, Any]]:
    await check_network(session, user, body.network_id)
    return await _saved(
        request,
        session,
        zones.create_forbidden_zone(session, body.network_id, body.shape, body.name),
    )


@router.patch(
    "/forbidden-zones/{zone_id}",
    response_model=Envelope[dict[str, Any]],
    summary="Update forbidden zone",
)
async def update_forbidden_zone(
    zone_id: ZoneIdPath,
    body: ForbiddenZoneUpdate,
    user: OperatorDep,
    session: SessionDep,
    request: Request,
) -> Envelope[dict[str, Any]]:
    await _zone_for(session, user, ZoneType.FORBIDDEN_ZONE, zone_id)
    return await _saved(
        request,
        session,
        zones.update_forbidden_zone(session, zone_id, shape=body.shape, name=body.name),
    )


@router.delete(
    "/forbidden-zones/{zone_id}", response_model=OkEnvelope, summary="Delete forbidden zone"
)
async def delete_forbidden_zone(
    zone_id: ZoneIdPath, user: OperatorDep, session: SessionDep, request: Request
) -> OkEnvelope:
    return await _deleted(request, session, user, ZoneType.FORBIDDEN_ZONE, zone_id)
