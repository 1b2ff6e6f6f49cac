"""Operators put a spot in or out of maintenance (seed 002 has no such operation: a clean
REST path in its vocabulary). ``PUT /v1/dashboard/spots/{spot_id}/maintenance``.

The cloud's record changes at once (the rent path refuses a spot in maintenance); the
station is told with a signed SetMaintenance and its answer is reported. A station that
is offline or does not answer in time is told again when it next reports the spot in
service (SPEC §4.4).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from kickstand.cloud import maintenance
from kickstand.cloud.alerts.api import OperatorUser, check_networks
from kickstand.cloud.api.deps import GatewayDep, SessionmakerDep
from kickstand.cloud.api.errors import not_found
from kickstand.cloud.api.ids import Id, Text
from kickstand.cloud.api.schemas import Envelope
from kickstand.cloud.errors import NotFoundError
from kickstand.cloud.models import SpotState
from kickstand.cloud.rent_gateway import UnlockResult

router = APIRouter(prefix="/dashboard/spots", tags=["maintenances"])

SpotId = Annotated[Id, Path()]


class SpotMaintenanceUpdate(BaseModel):
    in_maintenance: bool
    reason: Text | None = Field(default=None, max_length=64)


class SpotMaintenancePublic(BaseModel):
    spot_id: int
    station_id: int
    displayed_number: int
    in_maintenance: bool
    #: ``operator`` / ``device`` (the station's own) / null.
    maintenance_source: str | None
    #: What the station answered: ``done``, ``refused``, ``device-offline`` (told when it
    #: is back), ``timeout`` (it may still apply it).
    station_answer: Literal["done", "refused", "device-offline", "timeout"]
    station_reason: str | None = None


_ANSWER: dict[UnlockResult, Literal["done", "refused", "device-offline", "timeout"]] = {
    UnlockResult.UNLOCKED: "done",
    UnlockResult.REFUSED: "refused",
    UnlockResult.DEVICE_OFFLINE: "device-offline",
    UnlockResult.TIMEOUT: "timeout",
}


@router.put(
    "/{spot_id}/maintenance",
    response_model=Envelope[SpotMaintenancePublic],
    summary="Put a spot in or out of maintenance (the operator owns maintenance)",
)
async def put_spot_maintenance(
    spot_id: SpotId,
    body: SpotMaintenanceUpdate,
    operator: OperatorUser,
    maker: SessionmakerDep,
    gateway: GatewayDep,
) -> Envelope[SpotMaintenancePublic]:
    async with maker() as session:
        try:
            ref = await maintenance.spot_ref(session, spot_id)
        except NotFoundError as exc:
            raise not_found("spot", spot_id) from exc
        check_networks(operator, [ref.network_id])
        issued = await maintenance.set_spot_maintenance(
            session, gateway, ref, body.in_maintenance, body.reason
        )
        public = SpotMaintenancePublic(
            spot_id=ref.spot.id,
            station_id=ref.station.id,
            displayed_number=ref.spot.displayed_number,
            in_maintenance=ref.spot.state == SpotState.MAINTENANCE,
            maintenance_source=ref.spot.maintenance_source,
            station_answer="device-offline",
        )
        await session.commit()
    # After the commit: the decision stands whatever the station answers.
    outcome = await gateway.send_command(issued)
    public.station_answer = _ANSWER[outcome.result]
    public.station_reason = outcome.reason
    return Envelope(data=public)
