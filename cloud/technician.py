"""A technician's unlock of a spot (issue 19): the operator opens one spot of a station
without a rent, to take the vehicle out for repair or to free a jammed latch.

The Unlock is signed by the API's gateway, recorded on the device's command history with
the operator's id (``device_commands.operator_id``) and committed before it leaves; the
operator gets the station's answer (or a timeout). That row is also what tells ingest
what the vehicle leaving the spot is: a removal whose command is an operator's unlock
without a rent is the vehicle taken by the operator (:func:`kickstand.cloud.trips.
vehicle_removed` with ``by_operator``): no rider trip, no unauthorized-removal flag on
``vehicule.updated``, the spot emptied. Once the station confirms the unlock, the vehicle
that stood in the spot is held out of service by the one maintenance path (a record of the
built-in ``vehicle-out-of-service`` type, the technician's reason as its comment): no
rider rents it until an operator resolves that record.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import maintenance
from kickstand.cloud.commands.records import record_command
from kickstand.cloud.devices import repository as devices
from kickstand.cloud.errors import ConflictError
from kickstand.cloud.models import Rent, RentStatus, Vehicle
from kickstand.cloud.operations import service as operations
from kickstand.cloud.operations.models import MaintenanceTarget
from kickstand.cloud.rent_gateway import CommandGateway, IssuedCommand
from kickstand.protocol.v1 import messages as m

log = logging.getLogger("kickstand.cloud.technician")

#: A rider's unlock still open at the spot: the station may hand the vehicle to the rider.
_OPEN_RENTS = (RentStatus.PENDING, RentStatus.UNLOCKED, RentStatus.UNLOCK_TIMEOUT)


@dataclass(frozen=True, slots=True)
class SpotUnlock:
    """The Unlock to send after the commit, and what the spot held when it was issued."""

    issued: IssuedCommand
    spot: maintenance.SpotRef
    vehicle_id: int | None
    serial_number: str | None


async def unlock_spot(
    session: AsyncSession,
    gateway: CommandGateway,
    ref: maintenance.SpotRef,
    *,
    operator_id: int,
    window_s: int,
) -> SpotUnlock:
    """Issue and record (in the caller's transaction) a technician's Unlock of the spot.

    ConflictError ``rent-in-progress`` while a rider's unlock is open at the spot (the
    station would not tell the two apart) and ``no-device`` for a station without one."""
    station = ref.station
    if not station.device_id:
        raise ConflictError(f"station {station.name} has no mainboard", reason="no-device")
    busy = await session.scalar(
        select(Rent.id).where(Rent.spot_id == ref.spot.id, Rent.status.in_(_OPEN_RENTS)).limit(1)
    )
    if busy is not None:
        raise ConflictError(
            f"a rider's unlock (rent {busy}) is open at this spot", reason="rent-in-progress"
        )
    vehicle = (
        await session.execute(
            select(Vehicle.id, Vehicle.serial_number).where(Vehicle.spot_id == ref.spot.id)
        )
    ).first()
    issued = gateway.issue_command(
        station.device_id, m.Unlock(spot=ref.spot.displayed_number, window_s=window_s)
    )
    await record_command(session, issued)
    await devices.mark_operator(session, issued.command_id.hex(), operator_id)
    log.info(
        "event=technician_unlock_issued station=%s spot=%s vehicle=%s operator=%s command=%s",
        station.device_id,
        ref.spot.displayed_number,
        vehicle.serial_number if vehicle else None,
        operator_id,
        issued.command_id.hex(),
    )
    return SpotUnlock(
        issued,
        ref,
        vehicle.id if vehicle else None,
        vehicle.serial_number if vehicle else None,
    )


async def hold_vehicle(
    session: AsyncSession,
    gateway: CommandGateway,
    vehicle_id: int,
    *,
    operator_id: int,
    reason: str,
) -> IssuedCommand | None:
    """The unlocked vehicle out of service (the operator's maintenance record), in the
    caller's transaction; the command to its controller (if any) to send after commit."""
    target = await operations.target(session, MaintenanceTarget.VEHICLE, vehicle_id)
    change = await operations.set_held(
        session, gateway, target, True, user_id=operator_id, reason=reason
    )
    return change.command


__all__ = ["SpotUnlock", "hold_vehicle", "unlock_spot"]
