"""Operators put a spot, or a whole station, in or out of maintenance (seed 002 has no such
operation: clean REST paths in its vocabulary). ``PUT /v1/dashboard/spots/{spot_id}/
maintenance`` and ``PUT /v1/dashboard/stations/{station_id}/maintenance``.

One way with the maintenance records (:mod:`kickstand.cloud.operations.service`): putting
a spot or a station in maintenance opens a record of the built-in type
``spot-out-of-service`` / ``station-out-of-service`` (by whom, when, the reason as its
comment); taking it out resolves the target's open out-of-service records. The cloud's
record changes at once (the rent path refuses a spot in maintenance); the station is told
with a signed SetMaintenance and its answer is reported. A station that
is offline or does not answer in time is told again when it next reports the spot in
service (SPEC §4.4).
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from kickstand.cloud import maintenance
from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.deps import GatewayDep, SessionmakerDep
from kickstand.cloud.api.errors import not_found
from kickstand.cloud.api.ids import Id, Text
from kickstand.cloud.api.schemas import Envelope
from kickstand.cloud.errors import NotFoundError
from kickstand.cloud.models import SpotState
from kickstand.cloud.operations import service
from kickstand.cloud.operations.models import MaintenanceTarget
from kickstand.cloud.operations.schemas import ANSWER, StationTold
from kickstand.cloud.rent_gateway import CommandGateway, IssuedCommand

router = APIRouter(prefix="/dashboard", tags=["maintenances"])
# The one operator access check (kickstand.cloud.api.access).
MaintenanceOperator = Annotated[OperatorContext, Depends(Operator("maintenances"))]

SpotId = Annotated[Id, Path()]
StationId = Annotated[Id, Path()]


class SpotMaintenanceUpdate(BaseModel):
    in_maintenance: bool
    reason: Text | None = Field(default=None, max_length=64)


class SpotMaintenancePublic(StationTold):
    spot_id: int
    station_id: int
    displayed_number: int
    in_maintenance: bool
    #: ``operator`` / ``device`` (the station's own) / null.
    maintenance_source: str | None


class StationSpotPublic(BaseModel):
    spot_id: int
    displayed_number: int
    in_maintenance: bool
    #: ``station`` (held with the whole station), ``operator`` (on its own), ``device``.
    maintenance_source: str | None


class StationMaintenancePublic(StationTold):
    station_id: int
    in_maintenance: bool
    spots: list[StationSpotPublic]


T = TypeVar("T", bound=StationTold)


async def _tell(gateway: CommandGateway, issued: IssuedCommand | None, public: T) -> Envelope[T]:
    """Send the command after the commit: the decision stands whatever the answer."""
    assert issued is not None  # a spot or a station is always told
    outcome = await gateway.send_command(issued)
    public.station_answer = ANSWER[outcome.result]
    public.station_reason = outcome.reason
    return Envelope(data=public)


@router.put(
    "/spots/{spot_id}/maintenance",
    response_model=Envelope[SpotMaintenancePublic],
    summary="Put a spot in or out of maintenance (the operator owns maintenance)",
)
async def put_spot_maintenance(
    spot_id: SpotId,
    body: SpotMaintenanceUpdate,
    operator: MaintenanceOperator,
    maker: SessionmakerDep,
    gateway: GatewayDep,
) -> Envelope[SpotMaintenancePublic]:
    async with maker() as session:
        try:
            target = await service.target(session, MaintenanceTarget.SPOT, spot_id)
        except NotFoundError as exc:
            raise not_found("spot", spot_id) from exc
        operator.check([target.network_id])
        change = await service.set_held(
            session,
            gateway,
            target,
            body.in_maintenance,
            user_id=operator.user_id,
            reason=body.reason,
        )
        assert target.spot is not None
        ref = target.spot
        public = SpotMaintenancePublic(
            spot_id=ref.spot.id,
            station_id=ref.station.id,
            displayed_number=ref.spot.displayed_number,
            in_maintenance=ref.spot.state == SpotState.MAINTENANCE,
            maintenance_source=ref.spot.maintenance_source,
            station_answer="device-offline",
        )
        await session.commit()
    return await _tell(gateway, change.command, public)


@router.put(
    "/stations/{station_id}/maintenance",
    response_model=Envelope[StationMaintenancePublic],
    summary="Put a whole station in or out of maintenance (SetMaintenance spot 0)",
)
async def put_station_maintenance(
    station_id: StationId,
    body: SpotMaintenanceUpdate,
    operator: MaintenanceOperator,
    maker: SessionmakerDep,
    gateway: GatewayDep,
) -> Envelope[StationMaintenancePublic]:
    async with maker() as session:
        try:
            target = await service.target(session, MaintenanceTarget.STATION, station_id)
        except NotFoundError as exc:
            raise not_found("station", station_id) from exc
        operator.check([target.network_id])
        change = await service.set_held(
            session,
            gateway,
            target,
            body.in_maintenance,
            user_id=operator.user_id,
            reason=body.reason,
        )
        assert target.station is not None
        ref = target.station
        public = StationMaintenancePublic(
            station_id=ref.station.id,
            in_maintenance=maintenance.station_in_maintenance(ref),
            spots=[
                StationSpotPublic(
                    spot_id=spot.id,
                    displayed_number=spot.displayed_number,
                    in_maintenance=spot.state == SpotState.MAINTENANCE,
                    maintenance_source=spot.maintenance_source,
                )
                for spot in ref.spots
            ],
            station_answer="device-offline",
        )
        await session.commit()
    return await _tell(gateway, change.command, public)
