"""Rows → response schemas (shared by several routes)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from sqlalchemy import bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.api.geo import BBox, all_points, outer_ring
from kickstand.cloud.api.schemas import (
    ClusterPublic,
    ExceptionalOutOfOrder,
    NetworkPublic,
    RentPublic,
    TripDetail,
    TripPublic,
)
from kickstand.cloud.billing import round_money
from kickstand.cloud.geofence import store as zones
from kickstand.cloud.geofence import to_shape
from kickstand.cloud.geofence.geojson import parse_zone_shape
from kickstand.cloud.liveness import PRESENCE_COLUMNS, online_of
from kickstand.cloud.models import (
    ACTIVE_TRIP_STATUSES,
    Cluster,
    Device,
    Network,
    Rent,
    Spot,
    SpotState,
    Station,
    Trip,
    TripStatus,
    Vehicle,
)
from kickstand.cloud.networks import repository as networks_repo
from kickstand.cloud.networks.models import NetworkOutOfOrder
from kickstand.cloud.rentable import is_rentable
from kickstand.cloud.trips import STARTABLE_RENT_STATUSES, price_trip


def money_str(amount: Decimal | None, currency: str) -> str | None:
    """Money as a string in the currency's minor unit ("2.60", not "2.6000")."""
    return str(round_money(amount, currency)) if amount is not None else None


#: Summary for riders; the full rules are in kickstand.cloud.billing.
PRICING_NOTE = (
    "Unlock price and included time from the rule in force at the start (network local time); "
    "then each started minute at the per-minute or on-hold price of the rule in force when "
    "that minute starts; rounded once to the currency's minor unit (half up)."
)


def network_public(network: Network) -> NetworkPublic:
    return NetworkPublic(
        network_id=network.id,
        name=network.name,
        shape=outer_ring(network.border),
        center_latitude=network.center_latitude,
        center_longitude=network.center_longitude,
        currency=network.currency,
        timezone=network.timezone,
        max_simultaneous_rented_vehicle=network.max_simultaneous_rented_vehicle,
    )


async def clusters_public(
    session: AsyncSession, clusters: Sequence[Cluster]
) -> list[ClusterPublic]:
    ids = [c.id for c in clusters]
    if not ids:
        return []
    rows = (
        await session.execute(
            select(
                Station.cluster_id, Spot, Vehicle, Network.min_battery_to_rent, *PRESENCE_COLUMNS
            )
            .join(Spot, Spot.station_id == Station.id)
            .join(Cluster, Cluster.id == Station.cluster_id)
            .join(Network, Network.id == Cluster.network_id)
            .outerjoin(Vehicle, Vehicle.spot_id == Spot.id)
            .outerjoin(Device, Device.device_id == Station.device_id)
            # A decommissioned station is off the map (kickstand.cloud.stations).
            .where(Station.cluster_id.in_(ids), Station.decommissioned_at.is_(None))
        )
    ).all()
    stats: dict[int, dict[str, int]] = {
        i: {"total": 0, "free": 0, "avail": 0, "online": 0} for i in ids
    }
    now = datetime.now(UTC)
    out_of_order = await networks_repo.out_of_order_now(
        session, {c.network_id for c in clusters}, now
    )
    network_of = {c.id: c.network_id for c in clusters}
    for row in rows:
        cluster_id: int = row[0]
        spot: Spot = row[1]
        vehicle: Vehicle | None = row[2]
        s = stats[cluster_id]
        s["total"] += 1
        s["online"] += 1 if online_of(row[4:], now) else 0
        if vehicle is None and spot.state == SpotState.ACTIVE:
            s["free"] += 1
        if vehicle is not None and is_rentable(
            vehicle,
            spot.state,
            row[3],
            network_out_of_order=network_of[cluster_id] in out_of_order,
        ):
            s["avail"] += 1
    return [
        ClusterPublic(
            cluster_id=c.id,
            latitude=c.latitude,
            longitude=c.longitude,
            name=c.name,
            available_vehicles=stats[c.id]["avail"],
            total_spots=stats[c.id]["total"],
            free_spots=stats[c.id]["free"],
            cluster_is_down=stats[c.id]["online"] == 0,
            network_id=c.network_id,
            description=c.description,
            cluster_is_accessible=c.is_accessible,
            has_badge_reader=c.has_badge_reader,
            commissioning_date=c.commissioning_date,
            exceptional_out_of_order=exceptional_out_of_order(out_of_order.get(c.network_id)),
        )
        for c in clusters
    ]


def exceptional_out_of_order(period: NetworkOutOfOrder | None) -> ExceptionalOutOfOrder | None:
    """The seeds' ``exceptional_out_of_order`` of a network's period on now (None: none)."""
    if period is None:
        return None
    return ExceptionalOutOfOrder(
        exceptional_out_of_order_id=period.id, type=period.type, reason=period.reason
    )


def trip_duration(trip: Trip, now: datetime | None = None) -> int:
    end = trip.ended_at or now or datetime.now(UTC)
    return max(0, int((end - trip.started_at).total_seconds()))


def trip_public(trip: Trip, vehicle: Vehicle) -> TripPublic:
    return TripPublic(
        trip_id=trip.id,
        state=trip.status.value,
        vehicle_id=vehicle.id,
        serial_number=vehicle.serial_number,
        vehicle_type=vehicle.vehicle_type.value,
        network_id=trip.network_id,
        start_date=trip.started_at,
        end_date=trip.ended_at,
        duration=trip_duration(trip),
        cluster_start_id=trip.start_cluster_id,
        cluster_end_id=trip.end_cluster_id,
        free_floating_end=trip.free_floating_end,
        cost=money_str(trip.cost, trip.currency),
        currency=trip.currency,
    )


def trip_detail(
    trip: Trip, vehicle: Vehicle, cost: str | None, detail: dict[str, Any] | None
) -> TripDetail:
    base = trip_public(trip, vehicle).model_dump()
    base["cost"] = cost
    return TripDetail(
        **base,
        billing_time_stop=trip.billing_stopped_at,
        on_hold_since=trip.on_hold_since,
        hold_periods=list(trip.hold_periods or []),
        start_latitude=trip.start_latitude,
        start_longitude=trip.start_longitude,
        end_latitude=trip.end_latitude,
        end_longitude=trip.end_longitude,
        cost_detail=detail,
        pricing_note=PRICING_NOTE,
    )


def in_area(network: Network, box: BBox) -> bool:
    """Does the network (its border, else its centre) reach into the box?"""
    points = all_points(network.border)
    if points:
        lngs, lats = [p[0] for p in points], [p[1] for p in points]
        return box.intersects(min(lats), min(lngs), max(lats), max(lngs))
    return box.contains(network.center_latitude, network.center_longitude)


# -- rents ------------------------------------------------------------------------------


async def rent_public(
    session: AsyncSession, rent: Rent | None, trip: Trip | None = None
) -> RentPublic:
    vehicle_id = trip.vehicle_id if trip is not None else rent.vehicle_id if rent else None
    vehicle = await session.get_one(Vehicle, vehicle_id)
    spot_id = rent.spot_id if rent is not None else trip.start_spot_id if trip else None
    spot = await session.get(Spot, spot_id) if spot_id is not None else None
    cost = None
    if trip is not None:
        cost, _ = await price_trip(session, trip, datetime.now(UTC))
    return public_of(rent, vehicle, spot, trip, cost)


def public_of(
    rent: Rent | None,
    vehicle: Vehicle,
    spot: Spot | None,
    trip: Trip | None = None,
    cost: Decimal | None = None,
) -> RentPublic:
    assert rent is not None or trip is not None
    return RentPublic(
        rent_id=rent.id if rent is not None else None,
        status=trip.status.value if trip is not None else rent.status.value if rent else "",
        vehicle_id=vehicle.id,
        serial_number=vehicle.serial_number,
        vehicle_type=vehicle.vehicle_type.value,
        free_floating=spot is None,
        being_rented=trip is not None,
        spot_id=spot.id if spot is not None else None,
        displayed_number=spot.displayed_number if spot is not None else None,
        lock_status=spot.lock_status if spot is not None else None,
        trip_id=trip.id if trip is not None else None,
        time_start=trip.started_at if trip is not None else None,
        billing_time_stop=trip.billing_stopped_at if trip is not None else None,
        on_hold_since=trip.on_hold_since if trip is not None else None,
        on_hold_activated=trip is not None and trip.status == TripStatus.ON_HOLD,
        network_id=vehicle.network_id,
        battery_level=vehicle.battery_level,
        expires_at=rent.expires_at if rent is not None and trip is None else None,
        reason=rent.reason if rent is not None else None,
        cost_so_far=money_str(cost, trip.currency) if trip is not None else None,
        currency=trip.currency if trip is not None else None,
    )


async def rider_rents(session: AsyncSession, user_id: int) -> list[RentPublic]:
    """A rider's trips in progress, then their rents still waiting for the vehicle."""
    items: list[RentPublic] = []
    active_trips: Sequence[Trip] = (
        await session.scalars(_ACTIVE_TRIPS, {"user_id": user_id})
    ).all()
    for trip in active_trips:
        rent = await session.get(Rent, trip.rent_id) if trip.rent_id is not None else None
        items.append(await rent_public(session, rent, trip))
    rows = await session.execute(_OPEN_RENTS, {"user_id": user_id, "now": datetime.now(UTC)})
    items.extend(public_of(rent, vehicle, spot) for rent, vehicle, spot in rows)
    return items


#: A rider's trips in progress.
_ACTIVE_TRIPS = (
    select(Trip)
    .where(Trip.user_id == bindparam("user_id"), Trip.status.in_(ACTIVE_TRIP_STATUSES))
    .order_by(Trip.id)
)
#: A rider's rents still waiting for the vehicle to leave, with their vehicle and spot.
_OPEN_RENTS = (
    select(Rent, Vehicle, Spot)
    .join(Vehicle, Vehicle.id == Rent.vehicle_id)
    .outerjoin(Spot, Spot.id == Rent.spot_id)
    .where(
        Rent.user_id == bindparam("user_id"),
        Rent.status.in_(STARTABLE_RENT_STATUSES),
        or_(Rent.expires_at.is_(None), Rent.expires_at >= bindparam("now")),
    )
    .order_by(Rent.id)
)


# -- zones for riders -------------------------------------------------------------------


def _seed_shape(geo: dict[str, Any]) -> Any:
    """The seeds' list-of-points form when the shape fits it, else the GeoJSON geometry."""
    try:
        return to_shape(parse_zone_shape(geo))
    except ValueError:
        return geo


class RiderZones(BaseModel):
    network_id: int
    parkings: list[dict[str, Any]]
    speed_zones: list[dict[str, Any]]
    forbidden_zones: list[dict[str, Any]]


async def rider_zones(session: AsyncSession, network_id: int) -> RiderZones:
    """Seed 001 map items ``parkings`` and ``speed_zones`` (plus forbidden zones)."""
    return RiderZones(
        network_id=network_id,
        parkings=[
            {
                "virtual_parking_id": p.id,
                "cluster_id": p.cluster_id,
                "network_id": p.network_id,
                "shape": _seed_shape(p.shape),
                "capacity": p.capacity,
                "is_accessible": True,
            }
            for p in await zones.list_virtual_parkings(session, network_id)
        ],
        speed_zones=[
            {"speed_zone_id": z.id, "shape": _seed_shape(z.shape), "max_speed": z.max_speed}
            for z in await zones.list_speed_zones(session, network_id)
        ],
        forbidden_zones=[
            {"forbidden_zone_id": f.id, "name": f.name, "shape": _seed_shape(f.shape)}
            for f in await zones.list_forbidden_zones(session, network_id)
        ],
    )
