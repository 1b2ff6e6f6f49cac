"""The map: clusters, free-floating vehicles, my rents and networks in an area."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import select

from kickstand.cloud.api.deps import CurrentUser, SessionDep
from kickstand.cloud.api.geo import BBox
from kickstand.cloud.api.schemas import (
    ClusterPublic,
    Envelope,
    MapVehicle,
    NetworkPublic,
    RentPublic,
)
from kickstand.cloud.api.views import (
    clusters_public,
    exceptional_out_of_order,
    in_area,
    network_public,
    rider_rents,
    rider_zones,
)
from kickstand.cloud.liveness import PRESENCE_COLUMNS, online_of
from kickstand.cloud.models import Cluster, Device, Network, Vehicle, VehicleState
from kickstand.cloud.networks import repository as networks_repo
from kickstand.cloud.rentable import is_rentable

router = APIRouter(prefix="/map", tags=["map"])


class MapData(BaseModel):
    clusters: list[ClusterPublic]
    vehicles: list[MapVehicle]
    rents: list[RentPublic]
    networks: list[NetworkPublic]
    #: Seed 001: the virtual parkings and speed zones of the networks in the area.
    parkings: list[dict[str, Any]] = []
    speed_zones: list[dict[str, Any]] = []


@router.get("", response_model=Envelope[MapData], summary="Map elements in an area")
async def get_map(
    user: CurrentUser,
    session: SessionDep,
    lat: Annotated[float, Query(ge=-90, le=90)],
    lng: Annotated[float, Query(ge=-180, le=180)],
    latdeg: Annotated[float, Query(ge=0, le=180)],
    lngdeg: Annotated[float, Query(ge=0, le=360)],
) -> Envelope[MapData]:
    box = BBox(lat, lng, latdeg, lngdeg)
    now = datetime.now(UTC)
    clusters = (
        await session.scalars(
            select(Cluster)
            .where(
                Cluster.latitude.between(box.min_lat, box.max_lat),
                Cluster.longitude.between(box.min_lng, box.max_lng),
                Cluster.decommissioned_at.is_(None),  # "Delete cluster": off the map
            )
            .order_by(Cluster.id)
            .limit(1000)
        )
    ).all()
    rows = (
        await session.execute(
            select(Vehicle, Network.min_battery_to_rent, *PRESENCE_COLUMNS)
            .join(Network, Network.id == Vehicle.network_id)
            .outerjoin(Device, Device.device_id == Vehicle.device_id)
            .where(
                Vehicle.spot_id.is_(None),
                Vehicle.state == VehicleState.AVAILABLE,
                Vehicle.latitude.between(box.min_lat, box.max_lat),
                Vehicle.longitude.between(box.min_lng, box.max_lng),
            )
            .order_by(Vehicle.id)
            .limit(2000)
        )
    ).all()
    out_of_order = await networks_repo.out_of_order_now(
        session, {row[0].network_id for row in rows} | {c.network_id for c in clusters}, now
    )
    vehicles = [
        MapVehicle(
            vehicle_id=v.id,
            serial_number=v.serial_number,
            latitude=v.latitude,
            longitude=v.longitude,
            connected=online_of(presence, now),
            network_id=v.network_id,
            battery_level=v.battery_level,
            vehicle_type=v.vehicle_type.value,
            state=v.state.value,
            is_accessible=not v.in_maintenance,
            is_available=is_rentable(  # free-floating: no spot
                v, None, min_battery, network_out_of_order=v.network_id in out_of_order
            ),
            exceptional_out_of_order=exceptional_out_of_order(out_of_order.get(v.network_id)),
        )
        for v, min_battery, *presence in rows
    ]
    networks = [n for n in (await session.scalars(select(Network))).all() if in_area(n, box)]
    rents = await rider_rents(session, user.id)
    zones = [await rider_zones(session, n.id) for n in networks]
    return Envelope(
        data=MapData(
            clusters=await clusters_public(session, clusters),
            vehicles=vehicles,
            rents=rents,
            networks=[network_public(n) for n in networks],
            parkings=[p for z in zones for p in z.parkings],
            speed_zones=[sz for z in zones for sz in z.speed_zones],
        )
    )
