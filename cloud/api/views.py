"""Rows → response schemas (shared by several routes)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.api.geo import outer_ring
from kickstand.cloud.api.schemas import ClusterPublic, NetworkPublic, TripDetail, TripPublic
from kickstand.cloud.billing import round_money
from kickstand.cloud.liveness import PRESENCE_COLUMNS, online_of
from kickstand.cloud.models import (
    Cluster,
    Device,
    Network,
    Spot,
    SpotState,
    Station,
    Trip,
    Vehicle,
)
from kickstand.cloud.rentable import is_rentable


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
            .where(Station.cluster_id.in_(ids))
        )
    ).all()
    stats: dict[int, dict[str, int]] = {
        i: {"total": 0, "free": 0, "avail": 0, "online": 0} for i in ids
    }
    now = datetime.now(UTC)
    for row in rows:
        cluster_id: int = row[0]
        spot: Spot = row[1]
        vehicle: Vehicle | None = row[2]
        s = stats[cluster_id]
        s["total"] += 1
        s["online"] += 1 if online_of(row[4:], now) else 0
        if vehicle is None and spot.state == SpotState.ACTIVE:
            s["free"] += 1
        if vehicle is not None and is_rentable(vehicle, spot.state, row[3]):
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
        )
        for c in clusters
    ]


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
