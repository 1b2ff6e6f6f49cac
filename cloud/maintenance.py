"""Spot maintenance, owned by the operator (SPEC §4.4).

The operator puts a spot in or out of maintenance here; the cloud records it at once (a
spot in maintenance is not rented, whatever the station says) and tells the station with
a signed SetMaintenance, whose MAINTENANCE status is the echo. A station that reports the
spot in service while the operator holds it in maintenance is told again by ingest
(:func:`kickstand.cloud.ingest.handlers.status.spot_state`); a station's own MAINTENANCE
(a technician at the cabinet) lasts until the station reports anything else, or until the
operator ends it here.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import outbox
from kickstand.cloud.commands.records import record_command
from kickstand.cloud.errors import NotFoundError
from kickstand.cloud.events import catalogue as ev
from kickstand.cloud.models import Cluster, MaintenanceSource, Spot, SpotState, Station, Vehicle
from kickstand.cloud.rent_gateway import CommandGateway, IssuedCommand
from kickstand.cloud.trips import dock_payload
from kickstand.protocol.v1 import messages as m


@dataclass(frozen=True, slots=True)
class SpotRef:
    spot: Spot
    station: Station
    network_id: int


async def spot_ref(session: AsyncSession, spot_id: int) -> SpotRef:
    """The spot (locked for update), its station and network; NotFoundError if none."""
    row = (
        await session.execute(
            select(Spot, Station, Cluster.network_id)
            .join(Station, Station.id == Spot.station_id)
            .join(Cluster, Cluster.id == Station.cluster_id)
            .where(Spot.id == spot_id)
            .with_for_update(of=Spot)
        )
    ).first()
    if row is None:
        raise NotFoundError("spot", spot_id)
    return SpotRef(row[0], row[1], row[2])


async def set_spot_maintenance(
    session: AsyncSession,
    gateway: CommandGateway,
    ref: SpotRef,
    on: bool,
    reason: str | None = None,
) -> IssuedCommand:
    """Record the operator's decision and its SetMaintenance (its audit row), in the
    caller's transaction; the caller commits, then sends the returned command."""
    spot = ref.spot
    if on:
        spot.state = SpotState.MAINTENANCE
        spot.maintenance_source = MaintenanceSource.OPERATOR
    else:
        if spot.state == SpotState.MAINTENANCE:
            spot.state = SpotState.ACTIVE
        spot.maintenance_source = None
    command = m.SetMaintenance(spot=spot.displayed_number, on=on, reason=reason or "")
    issued = gateway.issue_command(ref.station.device_id, command)
    await record_command(session, issued)
    vehicle = await session.scalar(select(Vehicle).where(Vehicle.spot_id == spot.id))
    payload = dock_payload(spot, ref.station, ref.network_id, vehicle, reason=reason)
    outbox.emit(session, ev.DOCK_UPDATED, spot.id, payload)
    return issued


__all__ = ["SpotRef", "set_spot_maintenance", "spot_ref"]
