"""Seed 002 ``VehiclesExternalLocks``: register a code lock on a vehicle, decommission it,
change its code. A lock is addressed by its vehicle (one in use per vehicle, as the seed's
paths name the vehicle). The code is never sent back: the rider gets it on unlock.

Mounted by the app factory under ``/v1``: ``/v1/dashboard/vehicles/…external-lock…``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path

from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.deps import SessionDep, SettingsDep
from kickstand.cloud.api.ids import Id
from kickstand.cloud.api.openapi import error_responses
from kickstand.cloud.api.schemas import Envelope, OkEnvelope
from kickstand.cloud.config import Settings
from kickstand.cloud.vehicles import lockcodes, service
from kickstand.cloud.vehicles.schemas import (
    ExternalLockCode,
    ExternalLockCreate,
    ExternalLockPublic,
)

router = APIRouter(prefix="/dashboard/vehicles", tags=["vehicles-external-locks"])
# The one operator access check (kickstand.cloud.api.access).
LocksOperator = Annotated[OperatorContext, Depends(Operator("vehicles.manage"))]
VehicleId = Annotated[Id, Path(description="Identifier of the vehicle.")]


def _key(settings: Settings) -> bytes:
    if settings.JWT_SECRET is None:  # set by Settings outside development; never None here
        raise RuntimeError("JWT_SECRET is not set")
    return lockcodes.key_from_secret(settings.JWT_SECRET)


@router.post(
    "/external-locks",
    response_model=Envelope[ExternalLockPublic],
    summary="Register external lock",
    responses=error_responses(409),
)
async def register_external_lock(
    operator: LocksOperator, session: SessionDep, settings: SettingsDep, body: ExternalLockCreate
) -> Envelope[ExternalLockPublic]:
    vehicle = await service.get_vehicle(session, body.vehicle_id, lock=True)
    operator.check([vehicle.network_id])
    lock = await service.register_lock(
        session,
        _key(settings),
        service.LockRegistration(
            vehicle_id=vehicle.id,
            model=body.model,
            lock_type=body.type,
            serial_number=body.serial_number,
            code=body.code,
        ),
        operator.user_id,
        datetime.now(UTC),
    )
    await session.commit()
    return Envelope(data=service.lock_public(lock))


@router.delete(
    "/{vehicle_id}/external-lock", response_model=OkEnvelope, summary="Decommission lock"
)
async def decommission_external_lock(
    operator: LocksOperator, session: SessionDep, vehicle_id: VehicleId
) -> OkEnvelope:
    vehicle = await service.get_vehicle(session, vehicle_id, lock=True)
    operator.check([vehicle.network_id])
    await service.decommission_lock(session, vehicle.id, operator.user_id, datetime.now(UTC))
    await session.commit()
    return OkEnvelope()


@router.put(
    "/{vehicle_id}/external-lock/code", response_model=OkEnvelope, summary="Update lock code"
)
async def update_external_lock_code(
    operator: LocksOperator,
    session: SessionDep,
    settings: SettingsDep,
    vehicle_id: VehicleId,
    body: ExternalLockCode,
) -> OkEnvelope:
    vehicle = await service.get_vehicle(session, vehicle_id, lock=True)
    operator.check([vehicle.network_id])
    await service.set_lock_code(session, _key(settings), vehicle.id, body.code, datetime.now(UTC))
    await session.commit()
    return OkEnvelope()
