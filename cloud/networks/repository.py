"""The SQL of networks and pricing rules for operators (rules in ``service``)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ScalarSelect, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.keyset import Keyset, page_query
from kickstand.cloud.models import (
    ACTIVE_TRIP_STATUSES,
    Cluster,
    Network,
    PricingRule,
    Station,
    Trip,
    TripStatus,
    Vehicle,
    VehicleState,
)
from kickstand.cloud.networks.models import (
    BalancingDiscount,
    ClusterBalancing,
    NetworkAccessRule,
    NetworkNotificationSetting,
    NetworkNotificationTarget,
    NetworkOutOfOrder,
    NetworkSpeedSettings,
    NetworkVehicleModel,
)


@dataclass(frozen=True, slots=True)
class Indicators:
    stations: int
    vehicles: int
    trips: int


def _stations(network_id: Any) -> ScalarSelect[int]:
    return (
        select(func.count(Station.id))
        .join(Cluster, Cluster.id == Station.cluster_id)
        .where(Cluster.network_id == network_id)
        .scalar_subquery()
    )


def _vehicles(network_id: Any) -> ScalarSelect[int]:
    return select(func.count(Vehicle.id)).where(Vehicle.network_id == network_id).scalar_subquery()


def _trips(network_id: Any) -> ScalarSelect[int]:
    return select(func.count(Trip.id)).where(Trip.network_id == network_id).scalar_subquery()


async def network_page(
    session: AsyncSession, networks: frozenset[int] | None, keyset: Keyset
) -> Sequence[tuple[Network, Indicators]]:
    """Open networks within ``networks`` (None: all), a keyset page, with their counts."""
    stmt = select(
        Network,
        _stations(Network.id).label("stations"),
        _vehicles(Network.id).label("vehicles"),
        _trips(Network.id).label("trips"),
    ).where(Network.closed_at.is_(None))
    if networks is not None:
        stmt = stmt.where(Network.id.in_(networks))
    rows = (await session.execute(page_query(stmt, Network.id, keyset))).all()
    return [
        (row[0], Indicators(int(row[1] or 0), int(row[2] or 0), int(row[3] or 0))) for row in rows
    ]


async def open_networks(
    session: AsyncSession, networks: frozenset[int] | None
) -> Sequence[tuple[int, str]]:
    stmt = select(Network.id, Network.name).where(Network.closed_at.is_(None))
    if networks is not None:
        stmt = stmt.where(Network.id.in_(networks))
    return [(int(r[0]), str(r[1])) for r in (await session.execute(stmt.order_by(Network.name)))]


async def name_taken(session: AsyncSession, name: str, but: int | None = None) -> bool:
    stmt = select(Network.id).where(func.lower(Network.name) == name.lower())
    if but is not None:
        stmt = stmt.where(Network.id != but)
    return (await session.scalar(stmt.limit(1))) is not None


async def in_use(session: AsyncSession, network_id: int) -> dict[str, int]:
    """What keeps a network open: its stations, vehicles and running trips."""
    row = (
        await session.execute(
            select(
                _stations(network_id).label("stations"),
                _vehicles(network_id).label("vehicles"),
                select(func.count(Trip.id))
                .where(Trip.network_id == network_id, Trip.status.in_(ACTIVE_TRIP_STATUSES))
                .scalar_subquery()
                .label("open_trips"),
            )
        )
    ).one()
    return {"stations": row.stations, "vehicles": row.vehicles, "open trips": row.open_trips}


async def current_rules(
    session: AsyncSession, network_ids: Collection[int], *, lock: bool = False
) -> Sequence[PricingRule]:
    """The rules in force now (``valid_until`` null) of these networks, by id."""
    stmt = (
        select(PricingRule)
        .where(PricingRule.network_id.in_(network_ids), PricingRule.valid_until.is_(None))
        .order_by(PricingRule.network_id, PricingRule.id)
    )
    if lock:
        # Two edits of one network's rules at once would each miss the other's overlap.
        stmt = stmt.with_for_update()
    return (await session.scalars(stmt)).all()


async def lock_network(session: AsyncSession, network_id: int) -> Network | None:
    """The network row, locked: edits of its pricing are serialized on it (PostgreSQL)."""
    return await session.scalar(select(Network).where(Network.id == network_id).with_for_update())


async def access_rules(session: AsyncSession, network_id: int) -> Sequence[NetworkAccessRule]:
    stmt = select(NetworkAccessRule).where(NetworkAccessRule.network_id == network_id)
    return (await session.scalars(stmt.order_by(NetworkAccessRule.id))).all()


async def speed_settings(session: AsyncSession, network_id: int) -> Sequence[NetworkSpeedSettings]:
    stmt = select(NetworkSpeedSettings).where(NetworkSpeedSettings.network_id == network_id)
    return (await session.scalars(stmt.order_by(NetworkSpeedSettings.vehicle_type))).all()


async def notifications(
    session: AsyncSession, network_id: int
) -> list[tuple[NetworkNotificationSetting, list[NetworkNotificationTarget]]]:
    settings: Sequence[NetworkNotificationSetting] = (
        await session.scalars(
            select(NetworkNotificationSetting)
            .where(NetworkNotificationSetting.network_id == network_id)
            .order_by(NetworkNotificationSetting.id)
        )
    ).all()
    targets = await targets_of(session, [s.id for s in settings])
    return [(s, [t for t in targets if t.notification_id == s.id]) for s in settings]


async def targets_of(
    session: AsyncSession, notification_ids: Collection[int]
) -> Sequence[NetworkNotificationTarget]:
    if not notification_ids:
        return []
    stmt = select(NetworkNotificationTarget).where(
        NetworkNotificationTarget.notification_id.in_(notification_ids)
    )
    return (await session.scalars(stmt.order_by(NetworkNotificationTarget.id))).all()


async def find_target(
    session: AsyncSession, notification_id: int, user_id: int | None, email: str | None
) -> NetworkNotificationTarget | None:
    stmt = select(NetworkNotificationTarget).where(
        NetworkNotificationTarget.notification_id == notification_id
    )
    if user_id is not None:
        stmt = stmt.where(NetworkNotificationTarget.user_id == user_id)
    else:
        stmt = stmt.where(func.lower(NetworkNotificationTarget.email) == (email or "").lower())
    return await session.scalar(stmt.limit(1))


async def cluster_networks(session: AsyncSession, cluster_ids: Collection[int]) -> dict[int, int]:
    """Cluster id -> its network id, for the clusters that exist."""
    rows = await session.execute(
        select(Cluster.id, Cluster.network_id).where(Cluster.id.in_(cluster_ids))
    )
    return {int(r[0]): int(r[1]) for r in rows}


async def trip_durations(
    session: AsyncSession, network_id: int, donor: int, receiver: int
) -> list[float]:
    """Seconds of the finished trips from ``donor`` to ``receiver``, fastest first."""
    rows = await session.execute(
        select(Trip.started_at, Trip.ended_at).where(
            Trip.network_id == network_id,
            Trip.start_cluster_id == donor,
            Trip.end_cluster_id == receiver,
            Trip.status == TripStatus.FINISHED,
            Trip.ended_at.is_not(None),
        )
    )
    spans: list[tuple[datetime, datetime | None]] = [(r[0], r[1]) for r in rows]
    return sorted(max(0.0, (end - start).total_seconds()) for start, end in spans if end)


async def vehicles_to_reset(session: AsyncSession, network_id: int) -> Sequence[Vehicle]:
    """The network's vehicles with a controller, not decommissioned, not in a trip."""
    in_trip = select(Trip.id).where(
        Trip.vehicle_id == Vehicle.id, Trip.status.in_(ACTIVE_TRIP_STATUSES)
    )
    stmt = select(Vehicle).where(
        Vehicle.network_id == network_id,
        Vehicle.device_id.is_not(None),
        Vehicle.state != VehicleState.DECOMMISSIONED,
        ~in_trip.exists(),
    )
    return (await session.scalars(stmt.order_by(Vehicle.id))).all()


def out_of_order_on(network_id: Any, at: Any) -> Any:
    """SQL: a period of the network (``network_id``: a column or a value) is on at ``at``
    (start included, end excluded, no end: until further notice)."""
    return (
        select(NetworkOutOfOrder.id)
        .where(
            NetworkOutOfOrder.network_id == network_id,
            NetworkOutOfOrder.start_date <= at,
            NetworkOutOfOrder.end_date.is_(None) | (NetworkOutOfOrder.end_date > at),
        )
        .exists()
    )


async def out_of_order_now(
    session: AsyncSession, network_ids: Collection[int], now: datetime
) -> dict[int, NetworkOutOfOrder]:
    """The period on at ``now`` of each of these networks that has one (periods of one
    network never overlap: ``service.set_out_of_order``)."""
    if not network_ids:
        return {}
    rows = await session.scalars(
        select(NetworkOutOfOrder).where(
            NetworkOutOfOrder.network_id.in_(network_ids),
            NetworkOutOfOrder.start_date <= now,
            NetworkOutOfOrder.end_date.is_(None) | (NetworkOutOfOrder.end_date > now),
        )
    )
    return {p.network_id: p for p in rows}


async def out_of_orders(session: AsyncSession, network_id: int) -> Sequence[NetworkOutOfOrder]:
    stmt = select(NetworkOutOfOrder).where(NetworkOutOfOrder.network_id == network_id)
    return (await session.scalars(stmt.order_by(NetworkOutOfOrder.start_date))).all()


async def balancings(session: AsyncSession, network_id: int) -> Sequence[ClusterBalancing]:
    stmt = select(ClusterBalancing).where(ClusterBalancing.network_id == network_id)
    return (await session.scalars(stmt.order_by(ClusterBalancing.cluster_id))).all()


async def discounts(session: AsyncSession, network_id: int) -> Sequence[BalancingDiscount]:
    stmt = select(BalancingDiscount).where(BalancingDiscount.network_id == network_id)
    return (
        await session.scalars(
            stmt.order_by(BalancingDiscount.donor_cluster_id, BalancingDiscount.receiver_cluster_id)
        )
    ).all()


async def vehicle_models(session: AsyncSession, network_id: int) -> Sequence[NetworkVehicleModel]:
    stmt = select(NetworkVehicleModel).where(NetworkVehicleModel.network_id == network_id)
    return (await session.scalars(stmt.order_by(NetworkVehicleModel.model_id))).all()
