"""Seed 002 Overview: the state of the operator's networks now (stations, vehicles, trips,
users, the stations on the map). Figures from :mod:`kickstand.cloud.stats.service`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends

from kickstand.cloud.alerts.api import NetworksDep
from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.deps import SessionDep
from kickstand.cloud.api.schemas import Envelope
from kickstand.cloud.stats import service
from kickstand.cloud.stats.schemas import (
    MapStation,
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
