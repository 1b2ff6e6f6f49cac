"""Device time through ingest, on PostgreSQL with the alert rules on: a station that comes
back online minutes after the sweep closed its rider's unlock window (issue 13, point 1).

The messages go through :class:`BatchApplier` as a worker hands them over (the command
id → rent mapping, dedupe, the sweep), stamped in the past as a drained queue is.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import ScalarResult, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud import trips
from kickstand.cloud.alerts.engine import AlertEngine
from kickstand.cloud.alerts.models import FleetAlert
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.ingest.apply import BatchApplier, Inbound, IngestStats
from kickstand.cloud.ingest.tables import CommandStatus, DeviceCommand
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
    WalletTransaction,
    utcnow,
)
from kickstand.cloud.rent_gateway import UnlockOutcome
from kickstand.cloud.rents import apply_unlock_outcome, open_rent
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import enums as pe
from kickstand.protocol.v1 import messages as m

pytestmark = pytest.mark.postgres

Maker = async_sessionmaker[AsyncSession]
BOOT = 77


@pytest.fixture
async def maker(pg_seeded_url: str) -> AsyncIterator[Maker]:
    engine = create_engine(pg_seeded_url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def applier(maker: Maker) -> AsyncIterator[BatchApplier]:
    applier = BatchApplier(maker, IngestStats(), alerts=AlertEngine(), alert_sample_s=0)
    yield applier
    await applier.release()


def message(device: str, seq: int, stamped: datetime, body: m.UpBody) -> Inbound:
    channel = Channel.STATUS if isinstance(body, m.Status) else Channel.EVENT
    stamp = m.Stamp(BOOT, seq, int(stamped.timestamp() * 1000))
    return Inbound(device, channel, m.UpMessage(stamp, body))


async def unlocked_rent(maker: Maker, t0: datetime, station: str, spot: int) -> tuple[int, bytes]:
    """A rent at ``t0`` whose Unlock (its command id returned) the station confirmed."""
    command_id = uuid.uuid4().bytes
    async with maker() as session, session.begin():
        alice = (await session.scalars(select(User).where(User.email == "alice@example.com"))).one()
        spot_id = (
            await session.scalars(
                select(Spot.id)
                .join(Station)
                .where(Station.device_id == station, Spot.displayed_number == spot)
            )
        ).one()
        rent, _, _ = await open_rent(session, alice.id, spot_id=spot_id, now=t0)
        session.add(
            DeviceCommand(
                command_id=command_id.hex(),
                device_id=station,
                command_type="unlock",
                spot=spot,
                rent_id=rent.id,
                issued_at=t0,
                expires_at=t0 + timedelta(seconds=30),
                status=CommandStatus.DONE,
            )
        )
        await apply_unlock_outcome(session, rent.id, UnlockOutcome.unlocked(), now=t0)
    return rent.id, command_id


async def rent_row(maker: Maker, rent_id: int) -> Rent:
    async with maker() as session:
        return await session.get_one(Rent, rent_id)


async def count(maker: Maker, model: type, *where: object) -> int:
    async with maker() as session:
        stmt = select(func.count()).select_from(model)
        if where:
            stmt = stmt.where(*where)  # type: ignore[arg-type]
        return int(await session.scalar(stmt) or 0)


async def unauthorized_removals(maker: Maker) -> int:
    async with maker() as session:
        payloads: ScalarResult[dict[str, Any]] = await session.scalars(
            select(OutboxEvent.payload).where(OutboxEvent.topic == "vehicule.updated")
        )
        return sum(1 for p in payloads if p.get("unauthorized_removal"))


async def device_events(maker: Maker, event: str) -> int:
    async with maker() as session:
        payloads: ScalarResult[dict[str, Any]] = await session.scalars(
            select(OutboxEvent.payload).where(OutboxEvent.topic == "device.event")
        )
        return sum(1 for p in payloads if p.get("event") == event)


async def alerts_about(maker: Maker, station: str, serial: str) -> list[str]:
    async with maker() as session:
        vehicle_id = (
            await session.scalars(select(Vehicle.id).where(Vehicle.serial_number == serial))
        ).one()
        rows = await session.scalars(
            select(FleetAlert.alert_type).where(
                or_(FleetAlert.device_id == station, FleetAlert.vehicle_id == vehicle_id)
            )
        )
        return [str(t) for t in rows]


async def test_a_station_back_after_the_sweep_opens_and_bills_the_ride_once(
    maker: Maker, applier: BatchApplier
) -> None:
    t0 = (utcnow() - timedelta(minutes=10)).replace(microsecond=0)  # whole ms, as stamped
    rent_id, command_id = await unlocked_rent(maker, t0, "st-0001", 1)
    # The station drops off with the removal queued; two minutes on, the sweep runs.
    await applier.sweep(now=t0 + timedelta(minutes=2))
    assert (await rent_row(maker, rent_id)).reason == trips.EXPIRY_UNCONFIRMED

    # It comes back: its queue, in seq order, as a worker receives it — and again.
    backlog = [
        message(
            "st-0001",
            1,
            t0 + timedelta(seconds=10),
            m.VehicleRemoved(1, "LY0001", None, command_id),
        ),
        message("st-0001", 2, t0 + timedelta(seconds=10), m.Status(1, pe.SpotState.EMPTY)),
    ]
    await applier.apply(backlog)
    await applier.apply(backlog)
    assert await device_events(maker, "VehicleRemoved") == 1  # the replay was recognised
    # Docked elsewhere four minutes after the removal, device time.
    await applier.apply(
        [message("st-0003", 1, t0 + timedelta(minutes=4, seconds=10), m.VehicleDocked(5, "LY0001"))]
    )

    async with maker() as session:
        trip = (await session.scalars(select(Trip))).one()
    assert trip.rent_id == rent_id and trip.status == TripStatus.FINISHED
    assert trip.started_at == t0 + timedelta(seconds=10)
    assert trip.ended_at == t0 + timedelta(minutes=4, seconds=10)
    assert trip.cost is not None and trip.cost > 0
    assert (await rent_row(maker, rent_id)).status == RentStatus.STARTED
    assert await count(maker, WalletTransaction) == 1
    assert await count(maker, OutboxEvent, OutboxEvent.topic == "trip.terminated") == 1
    # A ride with a rent: no theft-like webhook, no alert.
    assert await unauthorized_removals(maker) == 0
    assert await alerts_about(maker, "st-0001", "LY0001") == []


async def test_unlock_expired_from_the_station_then_a_removal_is_no_ride(
    maker: Maker, applier: BatchApplier
) -> None:
    t0 = (utcnow() - timedelta(minutes=10)).replace(microsecond=0)  # whole ms, as stamped
    rent_id, command_id = await unlocked_rent(maker, t0, "st-0002", 1)
    await applier.sweep(now=t0 + timedelta(minutes=2))
    await applier.apply(
        [message("st-0002", 1, t0 + timedelta(seconds=60), m.UnlockExpired(1, command_id))]
    )
    assert (await rent_row(maker, rent_id)).reason == trips.EXPIRY_BY_DEVICE
    # Forced out later: not a ride of that rent, an unauthorized removal as before.
    await applier.apply(
        [message("st-0002", 2, t0 + timedelta(seconds=70), m.VehicleRemoved(1, "LY0004"))]
    )
    assert await count(maker, Trip) == 0 and await count(maker, WalletTransaction) == 0
    assert await unauthorized_removals(maker) == 1


async def test_a_status_past_the_window_makes_the_expiry_final_after_the_grace(
    maker: Maker, applier: BatchApplier
) -> None:
    t0 = (utcnow() - timedelta(minutes=10)).replace(microsecond=0)  # whole ms, as stamped
    rent_id, command_id = await unlocked_rent(maker, t0, "st-0003", 1)
    await applier.sweep(now=t0 + timedelta(minutes=2))
    # The station's birth burst after the outage: statuses stamped well past the window.
    await applier.apply(
        [message("st-0003", 3, t0 + timedelta(minutes=5), m.Status(1, pe.SpotState.DOCKED_LOCKED))]
    )
    await applier.sweep(now=utcnow())
    assert (await rent_row(maker, rent_id)).reason == trips.EXPIRY_UNCONFIRMED
    await applier.sweep(now=utcnow() + trips.DRAIN_GRACE + timedelta(seconds=1))
    assert (await rent_row(maker, rent_id)).reason == trips.EXPIRY_DRAINED
    # A removal claiming the window after that is not the rider's ride.
    await applier.apply(
        [
            message(
                "st-0003",
                1,
                t0 + timedelta(seconds=5),
                m.VehicleRemoved(1, "LY0007", None, command_id),
            )
        ]
    )
    assert await count(maker, Trip) == 0
