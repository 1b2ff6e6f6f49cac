"""Trip engine on SQLite: rents, removal/dock, idempotency, late events, hold, billing.

Seed pricing on a weekday (see kickstand.cloud.seed): unlock 1.00, 300 s included,
0.10/min riding, 0.05/min on hold, free-float lock 0.50. 2026-11-18 is a Wednesday (CET).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import trips
from kickstand.cloud.errors import ConflictError
from kickstand.cloud.models import (
    OutboxEvent,
    Rent,
    RentKind,
    RentStatus,
    Spot,
    Station,
    Trip,
    TripStatus,
    User,
    Vehicle,
    VehicleState,
    WalletTransaction,
)
from kickstand.cloud.rent_gateway import UnlockOutcome
from kickstand.cloud.rents import apply_unlock_outcome, open_rent
from kickstand.cloud.seed import ALICE_BADGE_UID, DemoRefs

PARIS = ZoneInfo("Europe/Paris")
T0 = datetime(2026, 11, 18, 10, 0, tzinfo=PARIS)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


async def spot_of(session: AsyncSession, device_id: str, number: int) -> Spot:
    stmt = (
        select(Spot)
        .join(Station)
        .where(Station.device_id == device_id, Spot.displayed_number == number)
    )
    return (await session.scalars(stmt)).one()


async def vehicle(session: AsyncSession, serial: str) -> Vehicle:
    return (await session.scalars(select(Vehicle).where(Vehicle.serial_number == serial))).one()


async def alice(session: AsyncSession) -> User:
    return (await session.scalars(select(User).where(User.email == "alice@example.com"))).one()


async def rent_spot(session: AsyncSession, device_id: str, number: int, key: str = "k1") -> Rent:
    spot = await spot_of(session, device_id, number)
    rent, target, _ = await open_rent(
        session, (await alice(session)).id, spot_id=spot.id, idempotency_key=key, now=at(-1)
    )
    assert target.station_device_id == device_id and target.spot_number == number
    await apply_unlock_outcome(session, rent.id, UnlockOutcome.unlocked(), now=at(-0.5))
    await session.commit()
    return rent


async def topics(session: AsyncSession) -> list[str]:
    return list((await session.scalars(select(OutboxEvent.topic).order_by(OutboxEvent.id))).all())


async def count(session: AsyncSession, model: type) -> int:
    return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_journey_rent_remove_dock_elsewhere_is_billed(
    session: AsyncSession, demo: DemoRefs
) -> None:
    rent = await rent_spot(session, "st-0001", 1)
    started = await trips.vehicle_removed(session, "st-0001", 1, "LY0001", at(0))
    await session.commit()
    assert started.action == "created" and started.trip is not None
    assert started.trip.status == TripStatus.RUNNING and started.trip.rent_id == rent.id
    v = await vehicle(session, "LY0001")
    assert v.spot_id is None and v.state == VehicleState.RENTED
    assert (await session.get_one(Rent, rent.id)).status == RentStatus.STARTED

    # Docked 20 minutes later at another station: 1.00 + (20 − 5) × 0.10 = 2.50.
    ended = await trips.vehicle_docked(session, "st-0003", 5, "LY0001", at(20))
    await session.commit()
    assert ended.action == "ended" and ended.trip is not None
    trip = ended.trip
    assert trip.status == TripStatus.FINISHED
    assert trip.ended_at == at(20)
    assert trip.cost == Decimal("2.50")
    assert trip.end_cluster_id == demo.cluster_ids["Part-Dieu"]
    assert (await alice(session)).wallet_balance == Decimal("17.50")
    v = await vehicle(session, "LY0001")
    assert v.spot_id == (await spot_of(session, "st-0003", 5)).id
    assert v.state == VehicleState.AVAILABLE
    t = await topics(session)
    assert t.count("trip.created") == 1 and t.count("trip.terminated") == 1
    assert "dock.updated" in t and "rent.created" in t and "rent.updated" in t
    terminated: OutboxEvent = (
        await session.scalars(select(OutboxEvent).where(OutboxEvent.topic == "trip.terminated"))
    ).one()
    assert terminated.payload["cost"] == "2.50" and terminated.payload["serial_number"] == "LY0001"


async def test_same_events_twice_change_nothing(session: AsyncSession, demo: DemoRefs) -> None:
    await rent_spot(session, "st-0001", 2)
    first = await trips.vehicle_removed(session, "st-0001", 2, "LY0002", at(0))
    await session.commit()
    again = await trips.vehicle_removed(session, "st-0001", 2, "LY0002", at(0))
    await session.commit()
    assert first.action == "created" and again.action == "duplicate"
    assert again.trip is not None and first.trip is not None and again.trip.id == first.trip.id
    await trips.vehicle_docked(session, "st-0002", 6, "LY0002", at(12))
    await session.commit()
    n_outbox = await count(session, OutboxEvent)
    dup = await trips.vehicle_docked(session, "st-0002", 6, "LY0002", at(12))
    await session.commit()
    assert dup.action == "duplicate"
    assert await count(session, Trip) == 1
    assert await count(session, WalletTransaction) == 1
    assert await count(session, OutboxEvent) == n_outbox
    # 1.00 + 7 × 0.10 = 1.70, charged once.
    assert (await alice(session)).wallet_balance == Decimal("18.30")


async def test_unlock_without_removal_opens_no_trip(session: AsyncSession, demo: DemoRefs) -> None:
    rent = await rent_spot(session, "st-0002", 1)
    expired = await trips.expire_stale_rents(session, at(5))
    await session.commit()
    assert [r.id for r in expired] == [rent.id]
    assert expired[0].status == RentStatus.EXPIRED_NO_REMOVAL
    assert await count(session, Trip) == 0
    assert await count(session, WalletTransaction) == 0
    assert (await alice(session)).wallet_balance == Decimal("20.00")
    # The vehicle can be rented again.
    await rent_spot(session, "st-0002", 1, key="k2")


async def test_late_dock_ends_at_device_time(session: AsyncSession, demo: DemoRefs) -> None:
    await rent_spot(session, "st-0001", 3)
    await trips.vehicle_removed(session, "st-0001", 3, "LY0003", at(0))
    await session.commit()
    # The return station was offline: its dock event (device time +30 min) is processed
    # much later; the trip still ends at +30 min: 1.00 + 25 × 0.10 = 3.50.
    result = await trips.vehicle_docked(session, "st-0004", 6, "LY0003", at(30))
    await session.commit()
    assert result.trip is not None and result.trip.ended_at == at(30)
    assert result.trip.cost == Decimal("3.50")


async def test_dock_before_removal_is_reconciled(session: AsyncSession, demo: DemoRefs) -> None:
    """The start station was offline: the dock elsewhere arrives before the removal."""
    await rent_spot(session, "st-0002", 2)
    early = await trips.vehicle_docked(session, "st-0003", 4, "LY0005", at(20))
    await session.commit()
    assert early.action == "updated" and early.trip is None
    late = await trips.vehicle_removed(session, "st-0002", 2, "LY0005", at(0))
    await session.commit()
    assert late.action == "reconciled" and late.trip is not None
    assert late.trip.status == TripStatus.FINISHED
    assert late.trip.started_at == at(0) and late.trip.ended_at == at(20)
    assert late.trip.cost == Decimal("2.50")
    v = await vehicle(session, "LY0005")
    assert v.spot_id == (await spot_of(session, "st-0003", 4)).id
    assert v.state == VehicleState.AVAILABLE
    # Replaying either event changes nothing.
    assert (
        await trips.vehicle_removed(session, "st-0002", 2, "LY0005", at(0))
    ).action == "duplicate"
    assert (
        await trips.vehicle_docked(session, "st-0003", 4, "LY0005", at(20))
    ).action == "duplicate"
    await session.commit()
    assert await count(session, Trip) == 1


async def test_badge_rent_at_station(session: AsyncSession, demo: DemoRefs) -> None:
    result = await trips.vehicle_removed(
        session, "st-0004", 1, "LY0010", at(0), badge_uid=ALICE_BADGE_UID
    )
    await session.commit()
    assert result.action == "created" and result.trip is not None
    assert result.trip.user_id == demo.user_ids["alice@example.com"]
    assert result.trip.badge_id is not None


async def test_removal_without_rent_is_unauthorized(session: AsyncSession, demo: DemoRefs) -> None:
    before = trips.rejections["no-rent"]
    r = await trips.vehicle_removed(session, "st-0004", 2, "LY0011", at(0))
    await session.commit()
    assert r.action == "ignored" and r.reason == "no-rent"
    assert trips.rejections["no-rent"] == before + 1
    assert await count(session, Trip) == 0
    event: OutboxEvent = (
        await session.scalars(select(OutboxEvent).where(OutboxEvent.topic == "vehicule.updated"))
    ).one()
    assert event.payload["unauthorized_removal"] is True
    unknown = await trips.vehicle_removed(session, "st-9999", 1, "LY0011", at(1))
    assert unknown.action == "ignored" and unknown.reason == "unknown-spot"


async def test_offline_ride_of_an_unknown_badge_is_recorded_with_no_rider(
    session: AsyncSession, demo: DemoRefs
) -> None:
    """A station with a stale local list let a badge the cloud does not know ride: the trip
    is kept (never lost), with no rider to bill; ingest raises the operator's alert."""
    r = await trips.vehicle_removed(session, "st-0004", 2, "LY0011", at(0), badge_uid="DEADBEEF")
    await session.commit()
    assert r.action == "created" and r.trip is not None
    assert r.trip.user_id is None and r.trip.rent_id is None and r.trip.badge_id is None
    docked = await trips.vehicle_docked(session, "st-0004", 2, "LY0011", at(600))
    await session.commit()
    assert docked.action == "ended" and docked.trip is not None
    assert docked.trip.status == "finished" and docked.trip.user_id is None


async def test_hold_and_resume_are_billed_at_hold_price(
    session: AsyncSession, demo: DemoRefs
) -> None:
    await rent_spot(session, "st-0001", 1)
    started = await trips.vehicle_removed(session, "st-0001", 1, "LY0001", at(0))
    assert started.trip is not None
    trip_id = started.trip.id
    await trips.hold_trip(session, trip_id, at(10))
    assert (await trips.hold_trip(session, trip_id, at(10))).action == "duplicate"
    await trips.resume_trip(session, trip_id, at(20))
    await session.commit()
    ended = await trips.vehicle_docked(session, "st-0001", 4, "LY0001", at(30))
    await session.commit()
    # 1.00 + 5 riding × 0.10 + 10 on hold × 0.05 + 10 riding × 0.10 = 3.00.
    assert ended.trip is not None and ended.trip.cost == Decimal("3.00")
    assert ended.trip.cost_detail is not None and ended.trip.cost_detail["on_hold_minutes"] == 10


async def test_stop_billing(session: AsyncSession, demo: DemoRefs) -> None:
    await rent_spot(session, "st-0001", 2)
    started = await trips.vehicle_removed(session, "st-0001", 2, "LY0002", at(0))
    assert started.trip is not None
    await trips.vehicle_docked(session, "st-0001", 5, "LY0002", at(30))
    await session.commit()
    assert (await alice(session)).wallet_balance == Decimal("16.50")  # 1.00 + 25 × 0.10
    await trips.stop_billing(session, started.trip.id, at(10))
    await session.commit()
    trip = await session.get_one(Trip, started.trip.id)
    assert trip.cost == Decimal("1.50")  # 1.00 + 5 × 0.10
    assert (await alice(session)).wallet_balance == Decimal("18.50")
    assert await count(session, WalletTransaction) == 1


async def test_hold_refused_when_network_forbids(session: AsyncSession, demo: DemoRefs) -> None:
    from kickstand.cloud.models import Network

    network = await session.get_one(Network, demo.network_id)
    network.trip_on_hold = False
    await rent_spot(session, "st-0001", 3)
    started = await trips.vehicle_removed(session, "st-0001", 3, "LY0003", at(0))
    assert started.trip is not None
    with pytest.raises(ConflictError) as err:
        await trips.hold_trip(session, started.trip.id, at(5))
    assert err.value.reason == "hold-not-allowed"


async def test_one_vehicle_never_in_two_trips_db_constraint(
    session: AsyncSession, demo: DemoRefs
) -> None:
    v = await vehicle(session, "LY0006")
    for minute in (0, 1):
        session.add(
            Trip(
                vehicle_id=v.id,
                network_id=v.network_id,
                status=TripStatus.RUNNING,
                started_at=at(minute),
                currency="EUR",
                hold_periods=[],
            )
        )
    with pytest.raises(IntegrityError):
        await session.flush()


async def test_free_floating_rent_hold_and_end(session: AsyncSession, demo: DemoRefs) -> None:
    v = await vehicle(session, "LYF001")
    rent, target, _ = await open_rent(
        session, (await alice(session)).id, vehicle_id=v.id, now=at(-1)
    )
    assert target.vehicle_device_id == "vh-LYF001"
    await apply_unlock_outcome(session, rent.id, UnlockOutcome.unlocked(), now=at(-1))
    started = await trips.vehicle_unlocked_freefloat(session, "vh-LYF001", at(0))
    assert started.action == "created" and started.trip is not None
    held = await trips.vehicle_locked_freefloat(session, "vh-LYF001", at(10), hold=True)
    assert held.action == "updated" and held.trip is not None
    assert held.trip.status == TripStatus.ON_HOLD
    resumed = await trips.vehicle_unlocked_freefloat(session, "vh-LYF001", at(20))
    assert resumed.trip is not None and resumed.trip.status == TripStatus.RUNNING
    ended = await trips.vehicle_locked_freefloat(
        session, "vh-LYF001", at(30), latitude=45.76, longitude=4.84
    )
    await session.commit()
    # 1.00 + 0.50 + 10 × 0.05 + 1.00 + free-float lock 0.50 = 3.50.
    assert ended.action == "ended" and ended.trip is not None
    assert ended.trip.cost == Decimal("3.50")
    assert ended.trip.free_floating_end


async def test_concurrent_rents_one_wins(session: AsyncSession, demo: DemoRefs) -> None:
    from kickstand.cloud.errors import ConflictError as Conflict

    spot = await spot_of(session, "st-0002", 3)
    bob: User = (await session.scalars(select(User).where(User.email == "bob@example.com"))).one()
    await open_rent(session, (await alice(session)).id, spot_id=spot.id, now=at(0))
    await session.commit()
    with pytest.raises(Conflict):
        await open_rent(session, bob.id, spot_id=spot.id, now=at(0))


async def test_rent_insert_without_on_conflict_uses_a_savepoint(
    session: AsyncSession, demo: DemoRefs
) -> None:
    """The path for databases without INSERT … ON CONFLICT: a clash costs the savepoint only."""
    from kickstand.cloud.rents import _insert_rent_in_savepoint

    spot = await spot_of(session, "st-0002", 3)
    first = await open_rent(session, (await alice(session)).id, spot_id=spot.id, now=at(0))
    bob: User = (await session.scalars(select(User).where(User.email == "bob@example.com"))).one()
    values = {
        "user_id": bob.id,
        "vehicle_id": first.rent.vehicle_id,
        "kind": RentKind.APP_SPOT,
        "status": RentStatus.PENDING,
        "created_at": at(0),
    }
    assert await _insert_rent_in_savepoint(session, values) is None
    other = await spot_of(session, "st-0002", 2)
    vehicle = (await session.scalars(select(Vehicle).where(Vehicle.spot_id == other.id))).one()
    new_id = await _insert_rent_in_savepoint(session, {**values, "vehicle_id": vehicle.id})
    assert new_id is not None and new_id != first.rent.id
    assert (await session.get_one(Rent, first.rent.id)).status == RentStatus.PENDING


async def test_overdue_hold_ends_the_trip_at_the_max_pause(
    session: AsyncSession, demo: DemoRefs
) -> None:
    # Demo network: trip_max_pause = 1800 s.
    v = await vehicle(session, "LYF003")
    rent, _, _ = await open_rent(session, (await alice(session)).id, vehicle_id=v.id, now=at(-1))
    await apply_unlock_outcome(session, rent.id, UnlockOutcome.unlocked(), now=at(-1))
    started = await trips.vehicle_unlocked_freefloat(session, "vh-LYF003", at(0))
    await trips.vehicle_locked_freefloat(session, "vh-LYF003", at(10), hold=True)
    await session.commit()
    assert await trips.end_overdue_holds(session, at(39)) == []
    ended = await trips.end_overdue_holds(session, at(90))
    await session.commit()
    assert started.trip is not None and [t.id for t in ended] == [started.trip.id]
    trip = ended[0]
    assert trip.status == TripStatus.FINISHED and trip.ended_at == at(40)
    # 1.00 + 5 riding × 0.10 + 30 on hold × 0.05 + free-float lock 0.50 = 3.50.
    assert trip.cost == Decimal("3.50")
    assert (await vehicle(session, "LYF003")).state == VehicleState.AVAILABLE
    assert await trips.end_overdue_holds(session, at(120)) == []


async def test_removal_with_a_closed_rent_id_falls_back_to_the_spot(
    session: AsyncSession, demo: DemoRefs
) -> None:
    rent = await rent_spot(session, "st-0003", 1)
    result = await trips.vehicle_removed(session, "st-0003", 1, "LY0007", at(0), rent_id="999999")
    assert result.action == "created" and result.trip is not None
    assert result.trip.rent_id == rent.id


async def test_a_stale_unlock_does_not_hold_the_vehicle(
    session: AsyncSession, demo: DemoRefs
) -> None:
    spot = await spot_of(session, "st-0002", 3)
    bob: User = (await session.scalars(select(User).where(User.email == "bob@example.com"))).one()
    first, _, _ = await open_rent(session, (await alice(session)).id, spot_id=spot.id, now=at(0))
    await session.commit()
    # No removal, no expiry event: two minutes later (window 60 s) bob can rent it.
    second, _, _ = await open_rent(session, bob.id, spot_id=spot.id, now=at(2))
    await session.commit()
    assert (await session.get_one(Rent, first.id)).status == RentStatus.EXPIRED_NO_REMOVAL
    assert second.status == RentStatus.PENDING
