"""Trip engine on PostgreSQL: concurrent workers applying the same events, schema guards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud import trips
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.errors import ConflictError
from kickstand.cloud.models import (
    OutboxEvent,
    Rent,
    RentStatus,
    Trip,
    TripStatus,
    User,
    Vehicle,
    WalletTransaction,
)
from kickstand.cloud.rent_gateway import UnlockOutcome
from kickstand.cloud.rents import apply_unlock_outcome, open_rent

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 11, 18, 10, 0, tzinfo=ZoneInfo("Europe/Paris"))


@pytest.fixture
async def maker(pg_seeded_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(pg_seeded_url)
    yield create_sessionmaker(engine)
    await engine.dispose()


async def _user(session: AsyncSession, email: str) -> User:
    return (await session.scalars(select(User).where(User.email == email))).one()


async def _count(maker: async_sessionmaker[AsyncSession], model: type, *where: object) -> int:
    async with maker() as session:
        stmt = select(func.count()).select_from(model)
        if where:
            stmt = stmt.where(*where)  # type: ignore[arg-type]
        return int(await session.scalar(stmt) or 0)


async def test_two_workers_apply_the_same_events_once(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    async with maker() as session:
        vehicle: Vehicle = (
            await session.scalars(select(Vehicle).where(Vehicle.serial_number == "LY0004"))
        ).one()
        rent, _, _ = await open_rent(
            session, (await _user(session, "alice@example.com")).id, vehicle_id=vehicle.id, now=T0
        )
        await apply_unlock_outcome(session, rent.id, UnlockOutcome.unlocked(), now=T0)
        await session.commit()

    async def apply(event: str) -> str:
        async with maker() as session:
            if event == "removed":
                result = await trips.vehicle_removed(session, "st-0002", 1, "LY0004", T0)
            else:
                result = await trips.vehicle_docked(
                    session, "st-0003", 6, "LY0004", T0 + timedelta(minutes=15)
                )
            await session.commit()
            return result.action

    removed = await asyncio.gather(*(apply("removed") for _ in range(4)))
    assert sorted(removed) == ["created", "duplicate", "duplicate", "duplicate"]
    docked = await asyncio.gather(*(apply("docked") for _ in range(4)))
    assert sorted(docked) == ["duplicate", "duplicate", "duplicate", "ended"]
    assert await _count(maker, Trip) == 1
    assert await _count(maker, WalletTransaction) == 1
    assert await _count(maker, OutboxEvent, OutboxEvent.topic == "trip.terminated") == 1
    async with maker() as session:
        trip: Trip = (await session.scalars(select(Trip))).one()
        # 1.00 + (15 − 5) × 0.10 = 2.00, on PostgreSQL NUMERIC as exact as on SQLite.
        assert trip.cost == Decimal("2.00") and trip.status == TripStatus.FINISHED
        assert (await _user(session, "alice@example.com")).wallet_balance == Decimal("18.00")


async def test_concurrent_rents_for_one_vehicle_one_wins(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    async def attempt(email: str) -> str:
        async with maker() as session:
            vehicle: Vehicle = (
                await session.scalars(select(Vehicle).where(Vehicle.serial_number == "LY0007"))
            ).one()
            try:
                await open_rent(
                    session, (await _user(session, email)).id, vehicle_id=vehicle.id, now=T0
                )
                await session.commit()
                return "won"
            except ConflictError:
                return "lost"

    results = await asyncio.gather(attempt("alice@example.com"), attempt("bob@example.com"))
    assert sorted(results) == ["lost", "won"]
    assert await _count(maker, Rent) == 1


async def test_partial_unique_index_holds_on_postgres(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    async with maker() as session:
        vehicle: Vehicle = (
            await session.scalars(select(Vehicle).where(Vehicle.serial_number == "LY0008"))
        ).one()
        for minute in (0, 1):
            session.add(
                Trip(
                    vehicle_id=vehicle.id,
                    network_id=vehicle.network_id,
                    status=TripStatus.ON_HOLD if minute else TripStatus.RUNNING,
                    started_at=T0 + timedelta(minutes=minute),
                    currency="EUR",
                    hold_periods=[],
                )
            )
        with pytest.raises(IntegrityError):
            await session.flush()


async def test_workers_racing_the_sweep_with_a_late_removal_open_one_trip(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    """The sweep closes the window while the station's late removal (stamped inside it)
    reaches four workers: whatever the order, one trip at device time, the rent started."""
    async with maker() as session:
        vehicle: Vehicle = (
            await session.scalars(select(Vehicle).where(Vehicle.serial_number == "LY0005"))
        ).one()
        rent, _, _ = await open_rent(
            session, (await _user(session, "bob@example.com")).id, vehicle_id=vehicle.id, now=T0
        )
        await apply_unlock_outcome(session, rent.id, UnlockOutcome.unlocked(), now=T0)
        await session.commit()

    async def sweep() -> str:
        async with maker() as session:
            expired = await trips.expire_stale_rents(session, T0 + timedelta(minutes=2))
            await session.commit()
            return f"swept {len(expired)}"

    async def removed() -> str:
        async with maker() as session:
            result = await trips.vehicle_removed(
                session, "st-0002", 2, "LY0005", T0 + timedelta(seconds=20), rent_id=rent.id
            )
            await session.commit()
            return result.action

    outcomes = await asyncio.gather(sweep(), *(removed() for _ in range(4)))
    assert sorted(outcomes[1:]) == ["created", "duplicate", "duplicate", "duplicate"]
    assert await _count(maker, Trip) == 1
    async with maker() as session:
        trip: Trip = (await session.scalars(select(Trip))).one()
        assert trip.started_at == T0 + timedelta(seconds=20) and trip.rent_id == rent.id
        assert (await session.get_one(Rent, rent.id)).status == RentStatus.STARTED
