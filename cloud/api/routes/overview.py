"""Seed 002 Overview: the state of the operator's networks now (stations, vehicles, trips,
users, the stations on the map). Figures from :mod:`kickstand.cloud.stats.service`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends

from kickstand.cloud.alerts.api import NetworksDep
from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.deps import SessionDep
from kickstand.cloud.api.pagination import keyset_of
from kickstand.cloud.api.schemas import Envelope, Page
from kickstand.cloud.keyset import Keyset
from kickstand.cloud.stats import service
from kickstand.cloud.stats.schemas import (
    MapStation,
    MapStationState,
    StationsInfo,
    TimezoneQuery,
    TripsInfo,
    UsersInfo,
    VehiclesInfo,
)

router = APIRouter(prefix="/dashboard/overview", tags=["overview"])
# The one operator access check (kickstand.cloud.api.access): `networks` is checked by it.
StationsOperator = Annotated[OperatorContext, Depends(Operator("stations"))]
VehiclesOperator = Annotated[OperatorContext, Depends(Operator("vehicles.manage"))]
TripsOperator = Annotated[OperatorContext, Depends(Operator("trips"))]
UsersOperator = Annotated[OperatorContext, Depends(Operator("users.list"))]


@router.get("/stations", response_model=Envelope[StationsInfo], summary="Get stations info")
async def get_stations_info(
    _operator: StationsOperator, session: SessionDep, networks: NetworksDep
) -> Envelope[StationsInfo]:
    return Envelope(data=await service.stations_info(session, networks, datetime.now(UTC)))


@router.get("/vehicles", response_model=Envelope[VehiclesInfo], summary="Get vehicles info")
async def get_vehicles_info(
    _operator: VehiclesOperator, session: SessionDep, networks: NetworksDep
) -> Envelope[VehiclesInfo]:
    return Envelope(data=await service.vehicles_info(session, networks))


@router.get("/trips", response_model=Envelope[TripsInfo], summary="Get trips info")
async def get_trips_info(
    _operator: TripsOperator, session: SessionDep, networks: NetworksDep, timezone: TimezoneQuery
) -> Envelope[TripsInfo]:
    return Envelope(data=await service.trips_info(session, networks, timezone, datetime.now(UTC)))


@router.get("/users", response_model=Envelope[UsersInfo], summary="Get users info")
async def get_users_info(
    _operator: UsersOperator, session: SessionDep, networks: NetworksDep, timezone: TimezoneQuery
) -> Envelope[UsersInfo]:
    return Envelope(data=await service.users_info(session, networks, timezone, datetime.now(UTC)))


@router.get("/map", response_model=Envelope[list[MapStation]], summary="Get map info")
async def get_map_info(
    _operator: StationsOperator, session: SessionDep, networks: NetworksDep
) -> Envelope[list[MapStation]]:
    return Envelope(data=await service.map_info(session, networks, datetime.now(UTC)))


#: A city's stations in one page: the map draws them all at once (the listings' 500 would
#: take two requests for a 1,000-station city).
MAP_PAGE_MAX = 1000
MapKeyset = Annotated[
    Keyset, Depends(keyset_of(max_page_size=MAP_PAGE_MAX, default_page_size=MAP_PAGE_MAX,
                              default_dir="ASC"))
]  # fmt: skip


@router.get(
    "/map/stations",
    response_model=Page[MapStationState],
    summary="Get map stations",
    description=(
        "Every station of the networks with what the map draws of it (liveness, spots, "
        "vehicles, open alerts), by station id in keyset pages of up to 1,000."
    ),
)
async def get_map_stations(
    _operator: StationsOperator,
    session: SessionDep,
    networks: NetworksDep,
    keyset: MapKeyset,
) -> Page[MapStationState]:
    stations, next_key = await service.map_stations(session, networks, keyset, datetime.now(UTC))
    return Page(data=stations, next_primary_key=next_key)
