"""SQL of field operations: the operator's trip listing, maintenance and report listings.

Every listing is a keyset page (:func:`kickstand.cloud.keyset.page_query` on the id) and
filters in SQL before the page, so a filter never shortens a page.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal, TypedDict, Unpack

from sqlalchemy import ColumnElement, Row, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from kickstand.cloud.keyset import Keyset, page_query
from kickstand.cloud.models import Cluster, Spot, Station, Trip, TripStatus, User, Vehicle
from kickstand.cloud.operations.models import Maintenance, MaintenanceTarget, Report
from kickstand.cloud.stats.repository import network_trip_count


def _contains(column: Any, text: str) -> ColumnElement[bool]:
    return func.lower(column).contains(text.lower(), autoescape=True)


# ── trips ─────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class TripFilters:
    """Seed 002 "Get trips" query parameters we hold data for."""

    state: Sequence[TripStatus] | None = None
    start_date_min: datetime | None = None
    start_date_max: datetime | None = None
    end_date_min: datetime | None = None
    end_date_max: datetime | None = None
    trip_id_min: int | None = None
    trip_id_max: int | None = None
    serial_number: str | None = None
    email: str | None = None
    user_id: int | None = None
    cluster_start_name: str | None = None
    cluster_start_id: int | None = None
    cluster_end_name: str | None = None
    cluster_end_id: int | None = None
    duration_min: int | None = None
    duration_max: int | None = None


def _duration_s(dialect: str) -> ColumnElement[Any]:
    """A trip's duration in seconds (a running trip's: until now)."""
    if dialect == "sqlite":
        # Stored as naive UTC text (dbtypes.UTCDateTime): julianday reads it.
        end = func.coalesce(Trip.ended_at, func.datetime("now"))
        return (func.julianday(end) - func.julianday(Trip.started_at)) * 86400
    return func.extract("epoch", func.coalesce(Trip.ended_at, func.now()) - Trip.started_at)


StartCluster = aliased(Cluster, name="start_cluster")
EndCluster = aliased(Cluster, name="end_cluster")


async def operator_trips(
    session: AsyncSession,
    f: TripFilters,
    networks: Collection[int] | None,
    keyset: Keyset,
) -> tuple[Sequence[Row[Trip, Vehicle, str | None]], int]:
    """A page of (trip, vehicle, rider email) and the count of every match."""
    where: list[ColumnElement[bool]] = []
    if networks is not None:
        where.append(Trip.network_id.in_(sorted(networks)))
    if f.state:
        where.append(Trip.status.in_(f.state))
    for column, low, high in (
        (Trip.started_at, f.start_date_min, f.start_date_max),
        (Trip.ended_at, f.end_date_min, f.end_date_max),
        (Trip.id, f.trip_id_min, f.trip_id_max),
    ):
        if low is not None:
            where.append(column >= low)
        if high is not None:
            where.append(column <= high)
    if f.serial_number is not None:
        where.append(_contains(Vehicle.serial_number, f.serial_number))
    if f.user_id is not None:
        where.append(Trip.user_id == f.user_id)
    if f.email is not None:
        where.append(_contains(User.email, f.email))
    if f.cluster_start_id is not None:
        where.append(Trip.start_cluster_id == f.cluster_start_id)
    if f.cluster_end_id is not None:
        where.append(Trip.end_cluster_id == f.cluster_end_id)
    if f.cluster_start_name is not None:
        where.append(_contains(StartCluster.name, f.cluster_start_name))
    if f.cluster_end_name is not None:
        where.append(_contains(EndCluster.name, f.cluster_end_name))
    if f.duration_min is not None or f.duration_max is not None:
        duration = _duration_s(session.get_bind().dialect.name)
        if f.duration_min is not None:
            where.append(duration >= f.duration_min)
        if f.duration_max is not None:
            where.append(duration <= f.duration_max)

    def joined(stmt: Any) -> Any:
        stmt = stmt.join(Vehicle, Vehicle.id == Trip.vehicle_id).outerjoin(
            User, User.id == Trip.user_id
        )
        if f.cluster_start_name is not None:
            stmt = stmt.outerjoin(StartCluster, StartCluster.id == Trip.start_cluster_id)
        if f.cluster_end_name is not None:
            stmt = stmt.outerjoin(EndCluster, EndCluster.id == Trip.end_cluster_id)
        return stmt.where(*where)

    # The count joins only when a filter reads a joined table: every trip has its vehicle
    # (a NOT NULL key) and the rider is an outer join, so neither changes the count, and
    # over a year of a city's trips the joins were most of the list's time.
    by_joined = (
        f.serial_number,
        f.email,
        f.cluster_start_name,
        f.cluster_end_name,
    )
    unfiltered = not f.state and all(
        getattr(f, field.name) is None for field in fields(f) if field.name != "state"
    )
    if unfiltered and networks is not None:
        # Every trip of the networks: counted from the usage rollup (exact; a year of a
        # city's trips took 350 ms to count, EXPLAIN ANALYZE in benchmarks/).
        total = await network_trip_count(session, sorted(networks))
    else:
        counted = (
            joined(select(func.count(Trip.id)).select_from(Trip))
            if any(v is not None for v in by_joined)
            else select(func.count()).select_from(Trip).where(*where)
        )
        total = int(await session.scalar(counted) or 0)
    stmt = joined(select(Trip, Vehicle, User.email).select_from(Trip))
    rows = (await session.execute(page_query(stmt, Trip.id, keyset))).all()
    return rows, total


# ── maintenances ──────────────────────────────────────────────────────────────────────


MaintenanceState = Literal["current", "resolved", "all"]


class MaintenanceOf(TypedDict, total=False):
    """The one thing whose maintenances are asked for (a cluster: its stations and spots)."""

    cluster_id: int
    station_id: int
    spot_id: int
    vehicle_id: int


async def maintenances(
    session: AsyncSession,
    keyset: Keyset,
    *,
    networks: Collection[int] | None = None,
    state: MaintenanceState = "current",
    target_type: MaintenanceTarget | None = None,
    **target: Unpack[MaintenanceOf],
) -> Sequence[Maintenance]:
    stmt = select(Maintenance)
    if networks is not None:
        stmt = stmt.where(Maintenance.network_id.in_(sorted(networks)))
    if state == "current":
        stmt = stmt.where(Maintenance.stopped_at.is_(None))
    elif state == "resolved":
        stmt = stmt.where(Maintenance.stopped_at.is_not(None))
    if target_type is not None:
        stmt = stmt.where(Maintenance.target_type == target_type)
    cluster_id = target.get("cluster_id")
    station_id = target.get("station_id")
    spot_id = target.get("spot_id")
    vehicle_id = target.get("vehicle_id")
    if cluster_id is not None:
        # The cluster's stations and their spots.
        stations = select(Station.id).where(Station.cluster_id == cluster_id)
        stmt = stmt.where(Maintenance.station_id.in_(stations))
    if station_id is not None:
        stmt = stmt.where(
            Maintenance.station_id == station_id,
            Maintenance.target_type == MaintenanceTarget.STATION,
        )
    if spot_id is not None:
        stmt = stmt.where(Maintenance.spot_id == spot_id)
    if vehicle_id is not None:
        stmt = stmt.where(Maintenance.vehicle_id == vehicle_id)
    return (await session.scalars(page_query(stmt, Maintenance.id, keyset))).all()


async def cluster_network(session: AsyncSession, cluster_id: int) -> int | None:
    network_id: int | None = await session.scalar(
        select(Cluster.network_id).where(Cluster.id == cluster_id)
    )
    return network_id


async def station_network(session: AsyncSession, station_id: int) -> int | None:
    network_id: int | None = await session.scalar(
        select(Cluster.network_id)
        .join(Station, Station.cluster_id == Cluster.id)
        .where(Station.id == station_id)
    )
    return network_id


async def spot_network(session: AsyncSession, spot_id: int) -> int | None:
    network_id: int | None = await session.scalar(
        select(Cluster.network_id)
        .join(Station, Station.cluster_id == Cluster.id)
        .join(Spot, Spot.station_id == Station.id)
        .where(Spot.id == spot_id)
    )
    return network_id


async def vehicle_network(session: AsyncSession, vehicle_id: int) -> int | None:
    network_id: int | None = await session.scalar(
        select(Vehicle.network_id).where(Vehicle.id == vehicle_id)
    )
    return network_id


# ── reports ───────────────────────────────────────────────────────────────────────────


async def reports(
    session: AsyncSession,
    keyset: Keyset,
    *,
    networks: Collection[int] | None = None,
    user_id: int | None = None,
    email: str | None = None,
    archived: bool | None = None,
) -> tuple[Sequence[Row[Report, str]], int]:
    """A page of (report, rider email) and the count of every match."""
    where: list[ColumnElement[bool]] = []
    if networks is not None:
        where.append(Report.network_id.in_(sorted(networks)))
    if user_id is not None:
        where.append(Report.user_id == user_id)
    if email is not None:
        where.append(_contains(User.email, email))
    if archived is True:
        where.append(Report.resolved_at.is_not(None))
    elif archived is False:
        where.append(Report.resolved_at.is_(None))
    base = select(Report, User.email).join(User, User.id == Report.user_id).where(*where)
    count = select(func.count(Report.id)).join(User, User.id == Report.user_id).where(*where)
    total = int(await session.scalar(count) or 0)
    rows = (await session.execute(page_query(base, Report.id, keyset))).all()
    return rows, total
