"""Spot maintenance, owned by the operator (SPEC §4.4).

The operator puts a spot in or out of maintenance here; the cloud records it at once (a
spot in maintenance is not rented, whatever the station says) and tells the station with
a signed SetMaintenance, whose MAINTENANCE status is the echo. A station that reports the
spot in service while the operator holds it in maintenance is told again by ingest
(:func:`kickstand.cloud.ingest.handlers.status.spot_state`); a station's own MAINTENANCE
(a technician at the cabinet) lasts until the station reports anything else, or until the
operator ends it here.

A whole station (SetMaintenance spot 0) is held the same way: each of its spots is held
in maintenance with the source ``station`` (so the rent path, the map and the counts need
no other rule), a spot the operator holds on its own keeps its own decision, and ending
the station's maintenance frees only the spots it held (ending a held spot's own
maintenance leaves it held: the station refuses every unlock meanwhile). A station that
reports its spot 0 in any other state while the cloud holds it is told again by ingest.
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


@dataclass(frozen=True, slots=True)
class StationRef:
    station: Station
    network_id: int
    #: Its spots (locked for update), by displayed number.
    spots: list[Spot]


async def station_ref(session: AsyncSession, station_id: int) -> StationRef:
    """The station, its network and its spots (locked); NotFoundError if none."""
    row = (
        await session.execute(
            select(Station, Cluster.network_id)
            .join(Cluster, Cluster.id == Station.cluster_id)
            .where(Station.id == station_id)
        )
    ).first()
    if row is None:
        raise NotFoundError("station", station_id)
    spots = await session.scalars(
        select(Spot)
        .where(Spot.station_id == station_id)
        .order_by(Spot.displayed_number)
        .with_for_update()
    )
    return StationRef(row[0], row[1], list(spots))


def station_in_maintenance(ref: StationRef) -> bool:
    """The operator holds the whole station in maintenance."""
    return any(s.maintenance_source == MaintenanceSource.STATION for s in ref.spots)


async def set_station_maintenance(
    session: AsyncSession,
    gateway: CommandGateway,
    ref: StationRef,
    on: bool,
    reason: str | None = None,
) -> IssuedCommand:
    """Like :func:`set_spot_maintenance` for the whole station (SetMaintenance spot 0):
    every spot it changes is told (``dock.updated``)."""
    changed: list[Spot] = []
    for spot in ref.spots:
        if on and spot.maintenance_source != MaintenanceSource.OPERATOR:
            spot.state = SpotState.MAINTENANCE
            spot.maintenance_source = MaintenanceSource.STATION
            changed.append(spot)
        elif not on and spot.maintenance_source == MaintenanceSource.STATION:
            spot.state = SpotState.ACTIVE
            spot.maintenance_source = None
            changed.append(spot)
    command = m.SetMaintenance(spot=0, on=on, reason=reason or "")
    issued = gateway.issue_command(ref.station.device_id, command)
    await record_command(session, issued)
    held = {
        v.spot_id: v
        for v in await session.scalars(
            select(Vehicle).where(Vehicle.spot_id.in_([s.id for s in changed]))
        )
    }
    for spot in changed:
        payload = dock_payload(spot, ref.station, ref.network_id, held.get(spot.id), reason=reason)
        outbox.emit(session, ev.DOCK_UPDATED, spot.id, payload)
    return issued


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
    elif spot.maintenance_source != MaintenanceSource.STATION:
        # A spot held with its whole station stays so (the station refuses every unlock
        # until the station's maintenance ends).
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


__all__ = [
    "SpotRef",
    "StationRef",
    "set_spot_maintenance",
    "set_station_maintenance",
    "spot_ref",
    "station_in_maintenance",
    "station_ref",
]
