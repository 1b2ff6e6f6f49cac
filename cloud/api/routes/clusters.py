"""Clusters: in an area, nearest, detail, their spots and vehicles (seed 001)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from sqlalchemy import select

from kickstand.cloud.api.deps import SessionDep
from kickstand.cloud.api.errors import not_found
from kickstand.cloud.api.geo import BBox, haversine_m
from kickstand.cloud.api.ids import Id
from kickstand.cloud.api.schemas import (
    ClusterNearby,
    ClusterPublic,
    ClusterVehicle,
    Envelope,
    SpotPublic,
)
from kickstand.cloud.api.views import clusters_public
from kickstand.cloud.liveness import PRESENCE_COLUMNS, online_of
from kickstand.cloud.models import (
    Cluster,
    Device,
    Network,
    Spot,
    SpotState,
    Station,
    Vehicle,
    VehicleState,
)
from kickstand.cloud.networks import repository as networks_repo
from kickstand.cloud.rentable import is_rentable

router = APIRouter(prefix="/clusters", tags=["clusters"])

Lat = Annotated[float, Query(ge=-90, le=90, description="latitude of the area's centre")]
Lng = Annotated[float, Query(ge=-180, le=180, description="longitude of the area's centre")]
ClusterId = Annotated[Id, Path(description="the cluster id")]


@router.get("", response_model=Envelope[list[ClusterPublic]], summary="Clusters in an area")
async def clusters_in_area(
    session: SessionDep,
    lat: Lat,
    lng: Lng,
    latDeg: Annotated[float, Query(ge=0, le=180, description="height of the area, degrees")],
    lngDeg: Annotated[float, Query(ge=0, le=360, description="width of the area, degrees")],
    network_id: Annotated[Id | None, Query()] = None,
) -> Envelope[list[ClusterPublic]]:
    box = BBox(lat, lng, latDeg, lngDeg)
    stmt = (
        select(Cluster)
        .where(
            Cluster.latitude.between(box.min_lat, box.max_lat),
            Cluster.longitude.between(box.min_lng, box.max_lng),
            Cluster.decommissioned_at.is_(None),
        )
        .order_by(Cluster.id)
        .limit(1000)
    )
    if network_id is not None:
        stmt = stmt.where(Cluster.network_id == network_id)
    clusters = (await session.scalars(stmt)).all()
    return Envelope(data=await clusters_public(session, clusters))


@router.get(
    "/nearby", response_model=Envelope[list[ClusterNearby]], summary="The 20 closest clusters"
)
async def clusters_nearby(session: SessionDep, lat: Lat, lng: Lng) -> Envelope[list[ClusterNearby]]:
    # A coarse box first (±0.5°, ~50 km) keeps this cheap; fall back to everything if empty.
    box = BBox(lat, lng, 1.0, 1.0)
    live = Cluster.decommissioned_at.is_(None)
    stmt = select(Cluster).where(
        Cluster.latitude.between(box.min_lat, box.max_lat),
        Cluster.longitude.between(box.min_lng, box.max_lng),
        live,
    )
    clusters = list((await session.scalars(stmt)).all()) or list(
        (await session.scalars(select(Cluster).where(live))).all()
    )
    clusters.sort(key=lambda c: haversine_m(lat, lng, c.latitude, c.longitude))
    nearest = clusters[:20]
    public = await clusters_public(session, nearest)
    return Envelope(
        data=[
            ClusterNearby(
                **p.model_dump(), distance=round(haversine_m(lat, lng, p.latitude, p.longitude))
            )
            for p in public
        ]
    )


async def _cluster(session: SessionDep, cluster_id: int) -> Cluster:
    cluster = await session.get(Cluster, cluster_id)
    if cluster is None:
        raise not_found("cluster", cluster_id)
    return cluster


@router.get("/{cluster_id}", response_model=Envelope[ClusterPublic], summary="Cluster detail")
async def cluster_detail(session: SessionDep, cluster_id: ClusterId) -> Envelope[ClusterPublic]:
    cluster = await _cluster(session, cluster_id)
    return Envelope(data=(await clusters_public(session, [cluster]))[0])


@router.get(
    "/{cluster_id}/spots", response_model=Envelope[list[SpotPublic]], summary="Spots of a cluster"
)
async def cluster_spots(session: SessionDep, cluster_id: ClusterId) -> Envelope[list[SpotPublic]]:
    await _cluster(session, cluster_id)
    rows = (
        await session.execute(
            select(Spot, Vehicle.id)
            .join(Station, Station.id == Spot.station_id)
            .outerjoin(Vehicle, Vehicle.spot_id == Spot.id)
            .where(Station.cluster_id == cluster_id, Station.decommissioned_at.is_(None))
            .order_by(Station.id, Spot.displayed_number)
        )
    ).all()
    return Envelope(
        data=[
            SpotPublic(
                spot_id=spot.id,
                station_id=spot.station_id,
                displayed_number=spot.displayed_number,
                lock_status=spot.lock_status,
                in_maintenance=spot.state == SpotState.MAINTENANCE,
                is_accessible=spot.state == SpotState.ACTIVE,
                vehicle_id=vehicle_id,
            )
            for spot, vehicle_id in rows
        ]
    )


@router.get(
    "/{cluster_id}/vehicles",
    response_model=Envelope[list[ClusterVehicle]],
    summary="Vehicles docked in a cluster",
)
async def cluster_vehicles(
    session: SessionDep, cluster_id: ClusterId
) -> Envelope[list[ClusterVehicle]]:
    await _cluster(session, cluster_id)
    rows = (
        await session.execute(
            select(Vehicle, Spot, Network.min_battery_to_rent, *PRESENCE_COLUMNS)
            .join(Spot, Spot.id == Vehicle.spot_id)
            .join(Station, Station.id == Spot.station_id)
            .join(Network, Network.id == Vehicle.network_id)
            .outerjoin(Device, Device.device_id == Vehicle.device_id)
            .where(
                Station.cluster_id == cluster_id,
                Station.decommissioned_at.is_(None),
                # A decommissioned vehicle left the fleet: off the map even while still
                # locked in a spot (kickstand.cloud.vehicles).
                Vehicle.state != VehicleState.DECOMMISSIONED,
            )
            .order_by(Station.id, Spot.displayed_number)
        )
    ).all()
    now = datetime.now(UTC)
    out_of_order = await networks_repo.out_of_order_now(
        session, {row[0].network_id for row in rows}, now
    )
    return Envelope(
        data=[
            ClusterVehicle(
                vehicle_id=v.id,
                serial_number=v.serial_number,
                battery_level=v.battery_level,
                vehicle_type=v.vehicle_type.value,
                vehicle_online=online_of(presence, now),
                spot_id=spot.id,
                station_id=spot.station_id,
                displayed_number=spot.displayed_number,
                in_maintenance=v.in_maintenance,
                is_accessible=is_rentable(
                    v, spot.state, min_battery, network_out_of_order=v.network_id in out_of_order
                ),
            )
            for v, spot, min_battery, *presence in rows
        ]
    )
