"""SQL of the stations package: cluster pages, a cluster's stations and spots, outages."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from kickstand.cloud.keyset import Keyset, page_query
from kickstand.cloud.liveness import PRESENCE_COLUMNS
from kickstand.cloud.models import (
    ACTIVE_TRIP_STATUSES,
    Cluster,
    Device,
    Spot,
    SpotState,
    Station,
    Trip,
    Vehicle,
)
from kickstand.cloud.stations.models import ClusterPicture, DeviceOutage


async def cluster_page(
    session: AsyncSession,
    keyset: Keyset,
    *,
    networks: Collection[int] | None,
    name: str | None = None,
    badge_reader: bool | None = None,
    decommissioned: bool = False,
) -> Sequence[Cluster]:
    """Clusters of ``networks`` (None: every network), by id; ``name`` matches a part of
    the name, case-insensitively (seed 002 "Search cluster")."""
    stmt = select(Cluster)
    if networks is not None:
        stmt = stmt.where(Cluster.network_id.in_(sorted(networks)))
    if name is not None:
        stmt = stmt.where(func.lower(Cluster.name).contains(name.lower(), autoescape=True))
    if badge_reader is not None:
        stmt = stmt.where(Cluster.has_badge_reader.is_(badge_reader))
    if not decommissioned:
        stmt = stmt.where(Cluster.decommissioned_at.is_(None))
    return (await session.scalars(page_query(stmt, Cluster.id, keyset))).all()


async def live_stations(session: AsyncSession, cluster_id: int) -> Sequence[Station]:
    """The cluster's stations in service (not decommissioned), by id."""
    stmt = (
        select(Station)
        .where(Station.cluster_id == cluster_id, Station.decommissioned_at.is_(None))
        .order_by(Station.id)
    )
    return (await session.scalars(stmt)).all()


async def station_spots(
    session: AsyncSession, station_ids: Collection[int]
) -> Sequence[tuple[Spot, Vehicle | None]]:
    """The spots of these stations with the vehicle docked in each (by station, number)."""
    if not station_ids:
        return []
    stmt = (
        select(Spot, Vehicle)
        .outerjoin(Vehicle, Vehicle.spot_id == Spot.id)
        .where(Spot.station_id.in_(sorted(station_ids)))
        .order_by(Spot.station_id, Spot.displayed_number)
    )
    return [(spot, vehicle) for spot, vehicle in (await session.execute(stmt)).all()]


async def presence(session: AsyncSession, device_ids: Collection[str]) -> dict[str, Any]:
    """The :data:`PRESENCE_COLUMNS` of each device (judged by ``liveness.online_of``)."""
    if not device_ids:
        return {}
    stmt = select(Device.device_id, *PRESENCE_COLUMNS).where(
        Device.device_id.in_(sorted(device_ids))
    )
    return {row[0]: tuple(row[1:]) for row in (await session.execute(stmt)).all()}


async def count_live_stations(session: AsyncSession, cluster_id: int) -> int:
    return (await live_station_counts(session, [cluster_id])).get(cluster_id, 0)


async def live_station_counts(
    session: AsyncSession, cluster_ids: Collection[int]
) -> dict[int, int]:
    """Stations in service per cluster, one statement for a whole page (a cluster without
    any is absent)."""
    if not cluster_ids:
        return {}
    stmt = (
        select(Station.cluster_id, func.count())
        .where(Station.cluster_id.in_(cluster_ids), Station.decommissioned_at.is_(None))
        .group_by(Station.cluster_id)
    )
    return {cluster_id: int(n) for cluster_id, n in (await session.execute(stmt)).all()}


async def open_trips_from(session: AsyncSession, station_id: int) -> int:
    """Trips still running (or on hold) that started at one of the station's spots."""
    stmt = (
        select(func.count())
        .select_from(Trip)
        .join(Spot, Spot.id == Trip.start_spot_id)
        .where(Spot.station_id == station_id, Trip.status.in_(ACTIVE_TRIP_STATUSES))
    )
    return int(await session.scalar(stmt) or 0)


async def docked_vehicles(session: AsyncSession, station_id: int) -> int:
    stmt = (
        select(func.count())
        .select_from(Vehicle)
        .join(Spot, Spot.id == Vehicle.spot_id)
        .where(Spot.station_id == station_id)
    )
    return int(await session.scalar(stmt) or 0)


async def spots_in_maintenance(
    session: AsyncSession, cluster_id: int
) -> Sequence[tuple[Spot, Station]]:
    stmt = (
        select(Spot, Station)
        .join(Station, Station.id == Spot.station_id)
        .where(
            Station.cluster_id == cluster_id,
            Station.decommissioned_at.is_(None),
            Spot.state != SpotState.ACTIVE,
        )
        .order_by(Station.id, Spot.displayed_number)
    )
    return [(spot, station) for spot, station in (await session.execute(stmt)).all()]


async def cluster_outages(
    session: AsyncSession, cluster_id: int, limit: int
) -> Sequence[tuple[DeviceOutage, Station]]:
    """Outages of every station ever in the cluster (decommissioned ones too), newest first."""
    stmt = (
        select(DeviceOutage, Station)
        .join(Station, Station.device_id == DeviceOutage.device_id)
        .where(Station.cluster_id == cluster_id)
        .order_by(DeviceOutage.started_at.desc(), DeviceOutage.id.desc())
        .limit(limit)
    )
    return [(o, s) for o, s in (await session.execute(stmt)).all()]


async def open_outages(session: AsyncSession, device_ids: Collection[str]) -> dict[str, datetime]:
    if not device_ids:
        return {}
    stmt = select(DeviceOutage.device_id, DeviceOutage.started_at).where(
        DeviceOutage.device_id.in_(sorted(device_ids)), DeviceOutage.ended_at.is_(None)
    )
    rows: Any = (await session.execute(stmt)).all()
    return {str(d): at for d, at in rows}


# ── written by ingest (the device's session, kickstand.cloud.ingest.handlers.session) ──


async def outage_started(session: AsyncSession, device_id: str, at: datetime) -> None:
    """The device went offline at ``at``: an outage opens (unless one is open already)."""
    open_one = await session.scalar(
        select(DeviceOutage.id).where(
            DeviceOutage.device_id == device_id, DeviceOutage.ended_at.is_(None)
        )
    )
    if open_one is None:
        session.add(DeviceOutage(device_id=device_id, started_at=at))
        await session.flush()


async def outage_ended(session: AsyncSession, device_id: str, at: datetime) -> None:
    """The device is back at ``at``: its open outage closes."""
    await session.execute(
        update(DeviceOutage)
        .where(DeviceOutage.device_id == device_id, DeviceOutage.ended_at.is_(None))
        .values(ended_at=at)
    )


# ── pictures ──────────────────────────────────────────────────────────────────────────


async def pictures(session: AsyncSession, cluster_id: int) -> Sequence[ClusterPicture]:
    return (await pictures_of(session, [cluster_id])).get(cluster_id, [])


async def pictures_of(
    session: AsyncSession, cluster_ids: Collection[int]
) -> dict[int, list[ClusterPicture]]:
    """Each cluster's pictures in upload order, one statement for a whole page (a cluster
    without any is absent)."""
    if not cluster_ids:
        return {}
    stmt = (
        select(ClusterPicture)
        .options(defer(ClusterPicture.data))  # a listing: keys and sizes, not the bytes
        .where(ClusterPicture.cluster_id.in_(cluster_ids))
        .order_by(ClusterPicture.id)
    )
    found: dict[int, list[ClusterPicture]] = {}
    for picture in (await session.scalars(stmt)).all():
        found.setdefault(picture.cluster_id, []).append(picture)
    return found


async def picture_by_key(session: AsyncSession, cluster_id: int, key: str) -> ClusterPicture | None:
    stmt = select(ClusterPicture).where(
        ClusterPicture.cluster_id == cluster_id, ClusterPicture.key == key
    )
    picture: ClusterPicture | None = await session.scalar(stmt)
    return picture
