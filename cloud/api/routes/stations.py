"""Seed 002 Stations, for operators: commission a station in a cluster (its mainboard's
device id and N spots), its details, decommission it (seed "Decommission station").
The rules are in :mod:`kickstand.cloud.stations.service`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.deps import SessionDep, SettingsDep
from kickstand.cloud.api.ids import Id
from kickstand.cloud.api.openapi import error_responses
from kickstand.cloud.api.schemas import Envelope
from kickstand.cloud.devices import identity
from kickstand.cloud.stations import schemas as s
from kickstand.cloud.stations import service

router = APIRouter(prefix="/dashboard/stations", tags=["stations"])
# The one operator access check (kickstand.cloud.api.access): commissioning hardware.
StationsOperator = Annotated[OperatorContext, Depends(Operator("stations"))]
AdvancedOperator = Annotated[OperatorContext, Depends(Operator("stations.advanced"))]
StationId = Annotated[Id, Path(description="Identifier of the station.")]


async def _admin(session: SessionDep, view: service.StationView) -> s.StationAdmin:
    (admin,) = await service.stations_of(session, [view.station], view.network_id)
    return admin


@router.post(
    "",
    response_model=Envelope[s.StationAdmin],
    summary="Commission a station (mainboard device id, N spots)",
    responses=error_responses(409),
)
async def commission_station(
    operator: AdvancedOperator, session: SessionDep, body: s.StationCreate
) -> Envelope[s.StationAdmin]:
    view = await service.commission(session, body, operator.check)
    return Envelope(data=await _admin(session, view))


@router.get("/{station_id}", response_model=Envelope[s.StationAdmin], summary="Station details")
async def get_station(
    operator: StationsOperator, session: SessionDep, station_id: StationId
) -> Envelope[s.StationAdmin]:
    view = await service.station(session, station_id, operator.check)
    return Envelope(data=await _admin(session, view))


@router.delete(
    "/{station_id}",
    response_model=Envelope[s.StationAdmin],
    summary="Decommission station",
    responses=error_responses(409),
)
async def decommission_station(
    operator: AdvancedOperator, session: SessionDep, settings: SettingsDep, station_id: StationId
) -> Envelope[s.StationAdmin]:
    view = await service.decommission(session, station_id, operator.check)
    # Its certificates were revoked with it: the CRL, the broker, its live session.
    await identity.publish_revocations(session, settings, [view.station.device_id])
    return Envelope(data=await _admin(session, view))
