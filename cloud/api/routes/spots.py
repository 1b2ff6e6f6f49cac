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

``POST /v1/dashboard/spots/{spot_id}/unlock`` (issue 19): a technician's unlock of one
spot, with a reason and an Idempotency-Key (it moves hardware), for an operator holding
seed 002's ``unlock.admin`` (in the operator role since migration 0028). The rules are
:mod:`kickstand.cloud.technician`'s: the Unlock is recorded on the station's command
history with the operator's id, the station's answer is awaited (``COMMAND_TIMEOUT_S``),
the vehicle taken out is no rider's trip and is held out of service. An unlock not sent (the
station offline, 503) releases its Idempotency-Key: the retry with the same key runs again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from kickstand.cloud import maintenance, technician
from kickstand.cloud.api.access import Operator, OperatorContext, scope_of
from kickstand.cloud.api.command_answers import command_error, command_sent
from kickstand.cloud.api.deps import GatewayDep, SessionmakerDep, SettingsDep
from kickstand.cloud.api.errors import not_found, to_api_error
from kickstand.cloud.api.idempotency import Idempotency, idempotency, request_hash
from kickstand.cloud.api.ids import Id, Text
from kickstand.cloud.api.openapi import error_responses
from kickstand.cloud.api.schemas import Envelope
from kickstand.cloud.devices import service as device_commands
from kickstand.cloud.devices.schemas import CommandSent
from kickstand.cloud.errors import ConflictError, NotFoundError
from kickstand.cloud.models import SpotState
from kickstand.cloud.operations import repository, service
from kickstand.cloud.operations.models import MaintenanceTarget
from kickstand.cloud.operations.schemas import ANSWER, StationTold
from kickstand.cloud.rent_gateway import CommandGateway, IssuedCommand

router = APIRouter(prefix="/dashboard", tags=["maintenances"])
# The one operator access check (kickstand.cloud.api.access).
MaintenanceOperator = Annotated[OperatorContext, Depends(Operator("maintenances"))]
StationsOperator = Annotated[OperatorContext, Depends(Operator("stations"))]
TechnicianOperator = Annotated[OperatorContext, Depends(Operator("unlock.admin"))]
UNLOCK_OPERATION = "POST /v1/dashboard/spots/unlock"
UnlockIdempotency = Annotated[
    Idempotency, Depends(idempotency(UNLOCK_OPERATION, "unique per unlock attempt"))
]
#: How long a repeat waits for the first request's answer: the station's, plus margin.
REPLAY_WAIT_S = 15.0

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


class TechnicianUnlockAccess(BaseModel):
    station_id: int
    network_id: int
    #: The caller holds ``unlock.admin`` with write on the station's network: its spots'
    #: technician unlock would not be refused for want of a permission.
    allowed: bool


@router.get(
    "/stations/{station_id}/technician-unlock",
    response_model=Envelope[TechnicianUnlockAccess],
    summary="May I unlock this station's spots for a technician (unlock.admin with write)?",
)
async def get_technician_unlock_access(
    station_id: StationId, operator: StationsOperator, maker: SessionmakerDep
) -> Envelope[TechnicianUnlockAccess]:
    async with maker() as session:
        network_id = await repository.station_network(session, station_id)
    if network_id is None:
        raise not_found("station", station_id)
    operator.check([network_id])
    networks = scope_of(operator.user, "unlock.admin", write=True)
    allowed = networks is None or network_id in networks
    return Envelope(
        data=TechnicianUnlockAccess(station_id=station_id, network_id=network_id, allowed=allowed)
    )


class SpotUnlockBody(BaseModel):
    #: Why the technician opens it (kept as the vehicle's maintenance comment).
    reason: Text = Field(min_length=1, max_length=64)


class SpotUnlockPublic(BaseModel):
    spot_id: int
    station_id: int
    displayed_number: int
    #: The vehicle in the spot when the unlock was sent (none: an empty spot).
    vehicle_id: int | None
    serial_number: str | None
    #: The vehicle is held out of service (a maintenance record) until an operator
    #: resolves it: true once the station confirmed the unlock.
    vehicle_held: bool
    command: CommandSent


@router.post(
    "/spots/{spot_id}/unlock",
    response_model=Envelope[SpotUnlockPublic],
    summary="Unlock a spot for a technician: no rider's trip; the vehicle held in maintenance",
    responses=error_responses(409, 503, 504),
)
async def unlock_spot(
    spot_id: SpotId,
    body: SpotUnlockBody,
    operator: TechnicianOperator,
    idem: UnlockIdempotency,
    maker: SessionmakerDep,
    gateway: GatewayDep,
    settings: SettingsDep,
) -> Any:
    digest = request_hash(body)
    async with maker() as session:
        key_id = await idem.claim(session, digest, datetime.now(UTC))
        if key_id is None:
            return await idem.replay(digest, wait_s=REPLAY_WAIT_S)
        try:
            ref = await maintenance.spot_ref(session, spot_id)
        except NotFoundError as exc:
            raise not_found("spot", spot_id) from exc
        operator.check([ref.network_id])
        try:
            unlock = await technician.unlock_spot(
                session,
                gateway,
                ref,
                operator_id=operator.user_id,
                window_s=settings.RENT_UNLOCK_WINDOW_S,
            )
        except ConflictError as exc:
            await session.rollback()  # nothing recorded; the refusal stored under the key
            key_id = await idem.claim(session, digest, datetime.now(UTC))
            if key_id is None:  # a repeat claimed it meanwhile
                return await idem.replay(digest, wait_s=REPLAY_WAIT_S)
            refusal = to_api_error(exc)
            await idem.store(session, key_id, refusal.status, refusal.body())
            await session.commit()
            raise refusal from exc
        await session.commit()
    # Nothing held while the station is awaited; the answer lands on the command's row.
    commands = device_commands.DeviceCommands(maker, gateway, operator.user_id)
    answer = await commands.send_recorded(unlock.issued)
    public = SpotUnlockPublic(
        spot_id=ref.spot.id,
        station_id=ref.station.id,
        displayed_number=ref.spot.displayed_number,
        vehicle_id=unlock.vehicle_id,
        serial_number=unlock.serial_number,
        vehicle_held=False,
        command=command_sent(answer),
    )
    what = f"unlock of spot {public.displayed_number} ({answer.command_id})"
    error = command_error(answer, what, public.model_dump(mode="json"))
    held = None
    async with maker() as session:
        if error is None and unlock.vehicle_id is not None:
            held = await technician.hold_vehicle(
                session,
                gateway,
                unlock.vehicle_id,
                operator_id=operator.user_id,
                reason=f"technician unlock: {body.reason}"[:64],
            )
            public.vehicle_held = True
        envelope = Envelope(data=public)
        status, stored = (
            (error.status, error.body()) if error else (200, envelope.model_dump(mode="json"))
        )
        if answer.outcome == device_commands.OFFLINE:
            # Not sent: a 503 "try again", so the retry with this key runs again. Sent but
            # unanswered (504) stays stored: the station may still open the spot.
            await idem.release(session, key_id)
        else:
            await idem.store(session, key_id, status, stored)
        await session.commit()
    if held is not None:
        await gateway.send_command(held)  # the controller told; the cloud's record holds
    if error is not None:
        raise error
    return JSONResponse(stored)
