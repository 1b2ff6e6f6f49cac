"""Device time is the truth for rents and trips (issue 13, point 1), SQLite and PostgreSQL.

A station offline past the unlock window: the sweep closes the rent on server time, only
provisionally; the removal stamped inside the window opens the trip whenever it arrives,
billed on device time, never an unauthorized removal. UnlockExpired from the device, or
its queue seen drained past the window, makes the expiry final.

Seed pricing on a weekday: unlock 1.00, 300 s included, 0.10/min riding; free-float lock
0.50. 2026-11-18 is a Wednesday (CET). Rents open at -1 min, unlock at -0.5 min with the
60 s window: the window is [-1, +0.5] min, ±30 s of clock skew.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import ScalarResult, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud import trips
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.ingest.tables import DeviceStatus
from kickstand.cloud.models import (
    OutboxEvent,
    Rent,
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
from kickstand.cloud.seed import ALICE_BADGE_UID

Maker = async_sessionmaker[AsyncSession]
T0 = datetime(2026, 11, 18, 10, 0, tzinfo=ZoneInfo("Europe/Paris"))


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture(params=["sqlite", "postgres"])
async def maker(request: pytest.FixtureRequest) -> AsyncIterator[Maker]:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_seeded_url")
    engine = create_engine(url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


async def user(session: AsyncSession, email: str = "alice@example.com") -> User:
    return (await session.scalars(select(User).where(User.email == email))).one()


async def spot_of(session: AsyncSession, device_id: str, number: int) -> Spot:
    stmt = (
        select(Spot)
        .join(Station)
        .where(Station.device_id == device_id, Spot.displayed_number == number)
    )
    return (await session.scalars(stmt)).one()


async def vehicle(session: AsyncSession, serial: str) -> Vehicle:
    return (await session.scalars(select(Vehicle).where(Vehicle.serial_number == serial))).one()


async def rent_at_spot(
    maker: Maker, device_id: str, number: int, *, email: str = "alice@example.com"
) -> int:
    """A rent opened at -1 min whose unlock the station confirmed at -0.5 min."""
    async with maker() as session, session.begin():
        spot = await spot_of(session, device_id, number)
        rent, _, _ = await open_rent(
            session, (await user(session, email)).id, spot_id=spot.id, now=at(-1)
        )
        await apply_unlock_outcome(session, rent.id, UnlockOutcome.unlocked(), now=at(-0.5))
        return rent.id


async def sweep(maker: Maker, now: datetime) -> list[int]:
    async with maker() as session, session.begin():
        return [r.id for r in await trips.expire_stale_rents(session, now)]


async def removed(
    maker: Maker, device_id: str, spot: int, serial: str, when: datetime, **kw: Any
) -> trips.TripEventResult:
    async with maker() as session, session.begin():
        return await trips.vehicle_removed(session, device_id, spot, serial, when, **kw)


async def docked(
    maker: Maker, device_id: str, spot: int, serial: str, when: datetime
) -> trips.TripEventResult:
    async with maker() as session, session.begin():
        return await trips.vehicle_docked(session, device_id, spot, serial, when)


async def rent_row(maker: Maker, rent_id: int) -> Rent:
    async with maker() as session:
        return await session.get_one(Rent, rent_id)


async def count(maker: Maker, model: type, *where: Any) -> int:
    async with maker() as session:
        stmt = select(func.count()).select_from(model)
        if where:
            stmt = stmt.where(*where)
        return int(await session.scalar(stmt) or 0)


async def unauthorized_removals(maker: Maker) -> int:
    async with maker() as session:
        payloads: ScalarResult[dict[str, Any]] = await session.scalars(
            select(OutboxEvent.payload).where(OutboxEvent.topic == "vehicule.updated")
        )
        return sum(1 for p in payloads if p.get("unauthorized_removal"))


async def wallet(maker: Maker, email: str = "alice@example.com") -> Decimal:
    async with maker() as session:
        return (await user(session, email)).wallet_balance


@pytest.mark.parametrize("dock_first", [False, True], ids=["removal-first", "dock-first"])
async def test_a_removal_stamped_in_the_window_starts_the_swept_rent(
    maker: Maker, dock_first: bool
) -> None:
    rent_id = await rent_at_spot(maker, "st-0001", 1)
    # The station went offline with the removal queued: the sweep closes the window.
    assert await sweep(maker, at(2)) == [rent_id]
    swept = await rent_row(maker, rent_id)
    assert swept.status == RentStatus.EXPIRED_NO_REMOVAL
    assert swept.reason == trips.EXPIRY_UNCONFIRMED
    assert await sweep(maker, at(5)) == []  # no device status: nothing to confirm

    if dock_first:  # the return station was online: its dock reaches the cloud first
        early = await docked(maker, "st-0003", 5, "LY0001", at(20))
        assert early.action == "updated" and early.trip is None
    # Back online 5 min later: the removal stamped at +0.2 min (command's rent id).
    late = await removed(maker, "st-0001", 1, "LY0001", at(0.2), rent_id=rent_id)
    assert late.trip is not None and late.trip.rent_id == rent_id
    assert late.trip.started_at == at(0.2)
    if dock_first:
        assert late.action == "reconciled"
    else:
        assert late.action == "created" and late.trip.status == TripStatus.RUNNING
        ended = await docked(maker, "st-0003", 5, "LY0001", at(20.2))
        assert ended.action == "ended"

    started = await rent_row(maker, rent_id)
    assert started.status == RentStatus.STARTED and started.reason is None
    assert started.ended_at == at(0.2)
    # Replays change nothing.
    assert (await removed(maker, "st-0001", 1, "LY0001", at(0.2), rent_id=rent_id)).action == (
        "duplicate"
    )
    assert (
        await docked(maker, "st-0003", 5, "LY0001", at(20.2 if not dock_first else 20))
    ).action == "duplicate"
    assert await sweep(maker, at(30)) == []

    async with maker() as session:
        trip = (await session.scalars(select(Trip))).one()
        # Device times: 1.00 + (20 − 5) × 0.10 = 2.50, charged once.
        assert trip.status == TripStatus.FINISHED and trip.cost == Decimal("2.50")
        assert trip.ended_at == (at(20) if dock_first else at(20.2))
        v = await vehicle(session, "LY0001")
        assert v.state == VehicleState.AVAILABLE
        assert v.spot_id == (await spot_of(session, "st-0003", 5)).id
    assert await wallet(maker) == Decimal("17.50")
    assert await count(maker, WalletTransaction) == 1
    assert await count(maker, OutboxEvent, OutboxEvent.topic == "trip.terminated") == 1
    assert await unauthorized_removals(maker) == 0
    # The rider's and the operator's view followed: created, unlocked, expired, started.
    async with maker() as session:
        payloads: ScalarResult[dict[str, Any]] = await session.scalars(
            select(OutboxEvent.payload)
            .where(OutboxEvent.topic.in_(["rent.created", "rent.updated"]))
            .order_by(OutboxEvent.id)
        )
        statuses = [p["status"] for p in payloads]
    assert statuses == ["pending", "unlocked", "expired-no-removal", "started"]


async def test_a_removal_stamped_after_the_window_stays_unauthorized(maker: Maker) -> None:
    rent_id = await rent_at_spot(maker, "st-0001", 2)
    assert await sweep(maker, at(2)) == [rent_id]
    # Window end +0.5 min, plus 30 s of skew: +1.1 min is somebody else.
    late = await removed(maker, "st-0001", 2, "LY0002", at(1.1), rent_id=rent_id)
    assert late.action == "ignored" and late.reason == "no-rent"
    assert await count(maker, Trip) == 0
    assert await unauthorized_removals(maker) == 1
    assert (await rent_row(maker, rent_id)).reason == trips.EXPIRY_UNCONFIRMED
    assert await wallet(maker) == Decimal("20.00")


async def test_a_removal_stamped_before_the_rent_is_not_its_ride(maker: Maker) -> None:
    """The vehicle was forced out before the rider asked for it (the cloud did not know)."""
    await rent_at_spot(maker, "st-0001", 3)
    early = await removed(maker, "st-0001", 3, "LY0003", at(-2))
    assert early.action == "ignored" and early.reason == "no-rent"
    assert await unauthorized_removals(maker) == 1


@pytest.mark.parametrize("swept_first", [False, True], ids=["device-only", "swept-then-device"])
async def test_unlock_expired_is_final(maker: Maker, swept_first: bool) -> None:
    rent_id = await rent_at_spot(maker, "st-0002", 1)
    if swept_first:
        assert await sweep(maker, at(2)) == [rent_id]
    async with maker() as session, session.begin():
        await trips.rent_expired(session, rent_id, at(0.5))  # the station's UnlockExpired
    final = await rent_row(maker, rent_id)
    assert final.status == RentStatus.EXPIRED_NO_REMOVAL
    assert final.reason == trips.EXPIRY_BY_DEVICE and final.ended_at == at(0.5)
    # A later removal (forced, or a device's contradiction) is not a ride of that rent.
    late = await removed(maker, "st-0002", 1, "LY0004", at(0.2), rent_id=rent_id)
    assert late.action == "ignored" and late.reason == "no-rent"
    late = await removed(maker, "st-0002", 1, "LY0004", at(0.3))
    assert late.action == "ignored"
    assert await count(maker, Trip) == 0 and await count(maker, WalletTransaction) == 0
    assert await wallet(maker) == Decimal("20.00")
    async with maker() as session, session.begin():  # its replay changes nothing
        await trips.rent_expired(session, rent_id, at(0.5))
    assert await count(maker, OutboxEvent, OutboxEvent.topic == "rent.updated") == (
        3 if swept_first else 2
    )


async def add_status(maker: Maker, device_id: str, stamped: datetime, received: datetime) -> None:
    async with maker() as session, session.begin():
        session.add(
            DeviceStatus(
                device_id=device_id,
                spot=0,
                boot_id=7,
                seq=40,
                ts_ms=int(stamped.timestamp() * 1000),
                state=1,
                received_at=received,
            )
        )


async def test_a_drained_queue_makes_the_sweeps_expiry_final(maker: Maker) -> None:
    rent_id = await rent_at_spot(maker, "st-0003", 1)
    assert await sweep(maker, at(2)) == [rent_id]
    # A status stamped inside the window (+1 min with the skew) proves nothing.
    await add_status(maker, "st-0003", at(0.9), at(1))
    assert await sweep(maker, at(20)) == []
    # Stamped after it, applied 1 min ago: another worker may still hold the removal.
    async with maker() as session, session.begin():
        status = await session.get_one(DeviceStatus, ("st-0003", 0))
        status.ts_ms = int(at(3).timestamp() * 1000)
        status.received_at = at(19)
    assert await sweep(maker, at(20)) == []
    assert (await rent_row(maker, rent_id)).reason == trips.EXPIRY_UNCONFIRMED
    # DRAIN_GRACE later: the queue has drained past the window; nobody took the vehicle.
    assert await sweep(maker, at(19) + trips.DRAIN_GRACE) == [rent_id]
    final = await rent_row(maker, rent_id)
    assert final.status == RentStatus.EXPIRED_NO_REMOVAL and final.reason == trips.EXPIRY_DRAINED
    assert await sweep(maker, at(60)) == []
    late = await removed(maker, "st-0003", 1, "LY0007", at(0.2), rent_id=rent_id)
    assert late.action == "ignored" and late.reason == "no-rent"
    assert await count(maker, Trip) == 0


async def test_a_removal_without_command_finds_the_swept_rent_not_a_later_one(
    maker: Maker,
) -> None:
    """Old firmware (no command id): the spot's rents are matched on the removal's time."""
    alice_rent = await rent_at_spot(maker, "st-0002", 2)
    assert await sweep(maker, at(2)) == [alice_rent]
    # The cloud still sees the vehicle in its spot: bob rents it at +3 min.
    async with maker() as session, session.begin():
        spot = await spot_of(session, "st-0002", 2)
        bob_rent, _, _ = await open_rent(
            session, (await user(session, "bob@example.com")).id, spot_id=spot.id, now=at(3)
        )
    late = await removed(maker, "st-0002", 2, "LY0005", at(0.1))
    assert late.action == "created" and late.trip is not None
    assert late.trip.rent_id == alice_rent
    assert (await rent_row(maker, bob_rent.id)).status == RentStatus.PENDING


async def test_the_dock_at_the_same_spot_before_the_removal_is_reconciled(maker: Maker) -> None:
    """Both events of one offline station reach two workers in the wrong order."""
    rent_id = await rent_at_spot(maker, "st-0004", 1)
    assert await sweep(maker, at(2)) == [rent_id]
    assert (await docked(maker, "st-0004", 1, "LY0010", at(12))).action == "updated"
    late = await removed(maker, "st-0004", 1, "LY0010", at(0.3), rent_id=rent_id)
    assert late.action == "reconciled" and late.trip is not None
    # 11.7 min on device time, every started minute counts: 1.00 + (12 − 5) × 0.10 = 1.70.
    assert late.trip.ended_at == at(12) and late.trip.status == TripStatus.FINISHED
    assert late.trip.cost == Decimal("1.70")
    async with maker() as session:
        v = await vehicle(session, "LY0010")
        assert v.spot_id == (await spot_of(session, "st-0004", 1)).id
        assert v.state == VehicleState.AVAILABLE
    assert await count(maker, WalletTransaction) == 1
    assert await unauthorized_removals(maker) == 0
    # Without a rent, a removal older than the spot's dock stays a stale replay.
    assert (await docked(maker, "st-0004", 2, "LY0011", at(12))).action == "updated"
    stale = await removed(maker, "st-0004", 2, "LY0011", at(0.3))
    assert stale.action == "ignored" and stale.reason == "stale-removal"


async def test_an_offline_badge_ride_docked_first_at_the_same_spot(maker: Maker) -> None:
    assert (await docked(maker, "st-0004", 3, "LY0012", at(9))).action == "updated"
    late = await removed(maker, "st-0004", 3, "LY0012", at(1), badge_uid=ALICE_BADGE_UID)
    assert late.action == "reconciled" and late.trip is not None
    assert late.trip.badge_id is not None and late.trip.ended_at == at(9)


async def test_a_free_floating_unlock_stamped_in_the_window_starts_the_swept_rent(
    maker: Maker,
) -> None:
    async with maker() as session, session.begin():
        v = await vehicle(session, "LYF002")
        rent, _, _ = await open_rent(session, (await user(session)).id, vehicle_id=v.id, now=at(-1))
        # The controller went quiet: the API gave up waiting (window from then: +0 min).
        await apply_unlock_outcome(session, rent.id, UnlockOutcome.timeout(), now=at(-1))
        rent_id = rent.id
    assert await sweep(maker, at(3)) == [rent_id]
    async with maker() as session, session.begin():
        started = await trips.vehicle_unlocked_freefloat(
            session, "vh-LYF002", at(-0.8), rent_id=rent_id
        )
    assert started.action == "created" and started.trip is not None
    assert started.trip.started_at == at(-0.8)
    async with maker() as session, session.begin():
        ended = await trips.vehicle_locked_freefloat(session, "vh-LYF002", at(9.2))
    assert ended.action == "ended" and ended.trip is not None
    # 1.00 + (10 − 5) × 0.10 + free-float lock 0.50 = 2.00.
    assert ended.trip.cost == Decimal("2.00")
    assert (await rent_row(maker, rent_id)).status == RentStatus.STARTED
    assert await unauthorized_removals(maker) == 0


async def next_rider_takes_it(maker: Maker, device_id: str, number: int, serial: str) -> int:
    """Bob rents the vehicle where it was docked (+4 min) and takes it (+4.2 min)."""
    async with maker() as session, session.begin():
        spot = await spot_of(session, device_id, number)
        bob = await user(session, "bob@example.com")
        rent, _, _ = await open_rent(session, bob.id, spot_id=spot.id, now=at(4))
        await apply_unlock_outcome(session, rent.id, UnlockOutcome.unlocked(), now=at(4))
        taken = await trips.vehicle_removed(
            session, device_id, number, serial, at(4.2), rent_id=rent.id
        )
    assert taken.action == "created" and taken.trip is not None
    return taken.trip.id


async def test_a_late_removal_after_the_next_rider_took_the_vehicle(maker: Maker) -> None:
    """Alice's station was offline; her dock at an online station arrived, then bob took
    the bike from there: her ride is the docking on record, bob's trip goes on."""
    rent_id = await rent_at_spot(maker, "st-0001", 3)
    assert await sweep(maker, at(2)) == [rent_id]
    assert (await docked(maker, "st-0003", 5, "LY0003", at(3))).action == "updated"
    bobs = await next_rider_takes_it(maker, "st-0003", 5, "LY0003")

    late = await removed(maker, "st-0001", 3, "LY0003", at(0.2), rent_id=rent_id)
    assert late.action == "reconciled" and late.trip is not None
    assert late.trip.started_at == at(0.2) and late.trip.ended_at == at(3)
    assert late.trip.cost == Decimal("1.00")  # 2.8 min: inside the included 5
    async with maker() as session:
        end_spot = await spot_of(session, "st-0003", 5)
        assert late.trip.end_spot_id == end_spot.id
        bob_trip = await session.get_one(Trip, bobs)
        assert bob_trip.status == TripStatus.RUNNING and bob_trip.started_at == at(4.2)
        assert (await vehicle(session, "LY0003")).state == VehicleState.RENTED
    assert await wallet(maker) == Decimal("19.00")
    assert (await removed(maker, "st-0001", 3, "LY0003", at(0.2), rent_id=rent_id)).action == (
        "duplicate"
    )
    ended = await docked(maker, "st-0001", 4, "LY0003", at(10))
    assert ended.action == "ended" and ended.trip is not None and ended.trip.id == bobs
    assert await count(maker, WalletTransaction) == 2


async def test_a_late_removal_whose_dock_is_no_longer_on_record_is_not_guessed(
    maker: Maker,
) -> None:
    """Bob rode the bike and docked it again before alice's removal arrived: her docking
    time is gone; no trip overlapping bob's, nothing billed to his end."""
    rent_id = await rent_at_spot(maker, "st-0002", 3)
    assert await sweep(maker, at(2)) == [rent_id]
    assert (await docked(maker, "st-0004", 5, "LY0006", at(3))).action == "updated"
    bobs = await next_rider_takes_it(maker, "st-0004", 5, "LY0006")
    assert (await docked(maker, "st-0004", 6, "LY0006", at(9))).action == "ended"

    late = await removed(maker, "st-0002", 3, "LY0006", at(0.2), rent_id=rent_id)
    assert late.action == "ignored" and late.reason == "removal-before-later-trip"
    async with maker() as session:
        assert [t.id for t in await session.scalars(select(Trip))] == [bobs]
    assert (await rent_row(maker, rent_id)).status == RentStatus.EXPIRED_NO_REMOVAL
    assert await wallet(maker) == Decimal("20.00")
