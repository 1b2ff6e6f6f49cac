"""An event that fails to apply is counted and dropped, its (device, boot, seq) claimed, the
rest of its batch applied: whether it came alone (applied with no savepoint, the batch run
again without it) or with others (rolled back to its savepoint). PostgreSQL and SQLite."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.ingest.apply import BatchApplier, Inbound, IngestStats
from kickstand.cloud.ingest.tables import CommandStatus, DeviceCommand, IngestedMessage
from kickstand.cloud.models import OutboxEvent, utcnow
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import enums as pe
from kickstand.protocol.v1 import messages as m

Maker = async_sessionmaker[AsyncSession]
STATION = "st-0001"


@pytest.fixture(params=["sqlite", "postgres"])
async def maker(request: pytest.FixtureRequest) -> AsyncIterator[Maker]:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_seeded_url")
    engine = create_engine(url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


async def broken_command(maker: Maker) -> bytes:
    """An unlock command whose rent is gone: the UnlockExpired naming it cannot be applied."""
    command_id = uuid.uuid4().bytes
    now = utcnow()
    async with maker() as session, session.begin():
        session.add(
            DeviceCommand(
                command_id=command_id.hex(),
                device_id=STATION,
                command_type="unlock",
                spot=1,
                rent_id=999_999,
                issued_at=now,
                expires_at=now + timedelta(minutes=1),
                status=CommandStatus.PENDING,
            )
        )
    return command_id


def event(seq: int, body: m.UpBody) -> Inbound:
    return Inbound(
        STATION, Channel.EVENT, m.UpMessage(m.Stamp(5, seq, int(time.time() * 1000)), body)
    )


async def counts(maker: Maker) -> tuple[int, list[str]]:
    async with maker() as session:
        claimed = await session.scalar(
            select(func.count())
            .select_from(IngestedMessage)
            .where(IngestedMessage.device_id == STATION)
        )
        events: list[str] = [
            str(e["event"])
            for e in await session.scalars(
                select(OutboxEvent.payload)
                .where(OutboxEvent.topic == "device.event")
                .order_by(OutboxEvent.id)
            )
        ]
    return int(claimed or 0), events


async def test_a_failing_event_alone_or_among_others_is_dropped_and_claimed(maker: Maker) -> None:
    command_id = await broken_command(maker)
    stats = IngestStats()
    applier = BatchApplier(maker, stats, hold_connection=True)
    try:
        expired = m.UnlockExpired(1, command_id)
        await applier.apply([event(1, expired)])  # alone
        assert stats.rejected["event-apply-failed"] == 1
        assert await counts(maker) == (1, [])

        await applier.apply([event(1, expired)])  # its replay
        assert stats.duplicates == 1 and stats.rejected["event-apply-failed"] == 1

        locked = m.Locked(2, pe.LockCause.AUTO_RELOCK)
        await applier.apply([event(2, expired), event(3, locked)])  # among others
        assert stats.rejected["event-apply-failed"] == 2
        assert await counts(maker) == (3, ["Locked"])

        await applier.apply([event(4, locked)])  # the worker's connection still serves
        assert await counts(maker) == (4, ["Locked", "Locked"])
        assert stats.rejected["event-apply-failed"] == 2 and stats.applied == 4
    finally:
        await applier.release()
