"""The ingest worker's periodic sweep: an unlock window that closed without any event from
the station (lost, or the station died) frees the vehicle and costs nothing."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.ingest.apply import BatchApplier, IngestStats
from kickstand.cloud.models import Rent, RentStatus, Trip, User, utcnow
from kickstand.cloud.rent_gateway import UnlockOutcome
from kickstand.cloud.rents import apply_unlock_outcome, open_rent
from kickstand.cloud.seed import DemoRefs


async def test_sweep_expires_a_rent_whose_window_closed_silently(
    sessionmaker: async_sessionmaker[AsyncSession], demo: DemoRefs
) -> None:
    t0 = utcnow()
    async with sessionmaker() as session, session.begin():
        alice = await session.get(User, demo.user_ids["alice@example.com"])
        assert alice is not None
        rent, _, _ = await open_rent(session, alice.id, spot_id=1, now=t0, unlock_window_s=30)
        await apply_unlock_outcome(
            session, rent.id, UnlockOutcome.unlocked(), now=t0, unlock_window_s=30
        )
        rent_id = rent.id
    applier = BatchApplier(sessionmaker, IngestStats())

    assert await applier.sweep(now=t0 + timedelta(seconds=10)) == 0  # still in its window
    assert await applier.sweep(now=t0 + timedelta(seconds=45)) == 1
    assert await applier.sweep(now=t0 + timedelta(seconds=50)) == 0  # applied once
    async with sessionmaker() as session:
        rent = await session.get(Rent, rent_id)
        assert rent is not None and rent.status is RentStatus.EXPIRED_NO_REMOVAL
        assert (await session.scalars(select(Trip))).all() == []
