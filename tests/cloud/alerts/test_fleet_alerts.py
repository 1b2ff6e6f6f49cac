"""Issue 16's fleet alerts, each raised, deduplicated, stopped when it clears and written
to the outbox (``fleet_alert.*``, delivered as webhooks): a device offline too long (the
sweep, by the one liveness rule), a spot whose lock fails (BoardFault, a JAMMED status
through ingest), a vehicle reported in a spot while the cloud holds it in another (ingest's
statuses and docks: the vehicle is still moved)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from sqlalchemy import ScalarResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.alerts.engine import AlertConfig, AlertEngine
from kickstand.cloud.alerts.models import FleetAlert
from kickstand.cloud.alerts.types import AlertState, AlertType
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.ingest.apply import BatchApplier, Inbound, IngestStats
from kickstand.cloud.models import Device, OutboxEvent, Spot, Station, Vehicle, utcnow
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import enums as pe
from kickstand.protocol.v1 import messages as m

NOW = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)
_seq = count(1)
Maker = async_sessionmaker[AsyncSession]


def up(body: m.UpBody) -> m.UpMessage:
    return m.UpMessage(m.Stamp(boot_id=1, seq=next(_seq), ts_ms=int(NOW.timestamp() * 1000)), body)


async def of_type(session: AsyncSession, alert_type: AlertType) -> list[FleetAlert]:
    rows: ScalarResult[FleetAlert] = await session.scalars(
        select(FleetAlert)
        .where(FleetAlert.alert_type == alert_type)
        .order_by(FleetAlert.id)
        .execution_options(populate_existing=True)
    )
    return list(rows)


async def alert_topics(session: AsyncSession, alert: FleetAlert) -> list[str]:
    rows: ScalarResult[str] = await session.scalars(
        select(OutboxEvent.topic)
        .where(OutboxEvent.topic.like("fleet_alert.%"), OutboxEvent.resource_id == str(alert.id))
        .order_by(OutboxEvent.id)
    )
    return list(rows)


async def seen(session: AsyncSession, device_id: str, ago: timedelta) -> None:
    await session.execute(
        update(Device)
        .where(Device.device_id == device_id)
        .values(boot_id="1", online=True, heartbeat_s=30, last_seen_at=NOW - ago)
    )
    await session.commit()


async def test_a_device_offline_too_long(session: AsyncSession) -> None:
    rules = AlertEngine(AlertConfig(offline_too_long_s=3600))
    await seen(session, "st-0001", timedelta(hours=2))  # offline for long
    await seen(session, "st-0002", timedelta(minutes=30))  # offline, not for long yet
    await seen(session, "st-0003", timedelta(seconds=10))  # online
    await seen(session, "vh-LYF001", timedelta(hours=3))
    await rules.sweep(session, NOW)
    await session.commit()
    raised = await of_type(session, AlertType.DEVICE_OFFLINE_TOO_LONG)
    assert sorted(a.device_id or "" for a in raised) == ["st-0001", "vh-LYF001"]
    station_alert = next(a for a in raised if a.device_id == "st-0001")
    assert station_alert.station_id is not None and station_alert.network_id is not None
    assert next(a for a in raised if a.device_id == "vh-LYF001").vehicle_id is not None
    # The next sweeps count nothing new: one alert per outage.
    await rules.sweep(session, NOW + timedelta(minutes=1))
    await session.commit()
    again = await of_type(session, AlertType.DEVICE_OFFLINE_TOO_LONG)
    assert [a.id for a in again] == [a.id for a in raised]
    assert all(a.occurrences == 1 for a in again)
    # st-0002 passes the threshold; st-0001 is heard again.
    later = NOW + timedelta(minutes=40)
    await session.execute(
        update(Device).where(Device.device_id == "st-0001").values(last_seen_at=later)
    )
    await session.commit()
    await rules.sweep(session, later)
    await session.commit()
    final = {a.device_id: a for a in await of_type(session, AlertType.DEVICE_OFFLINE_TOO_LONG)}
    assert final["st-0001"].state == AlertState.STOPPED
    assert final["st-0002"].state == AlertState.NEW
    assert final["vh-LYF001"].state == AlertState.NEW
    assert await alert_topics(session, final["st-0001"]) == [
        "fleet_alert.created",
        "fleet_alert.stopped",
    ]


async def test_a_board_fault_and_a_jammed_lock(session: AsyncSession) -> None:
    rules = AlertEngine()
    await rules.on_device_message(session, "st-0001", up(m.BoardFault(2, "latch motor")), now=NOW)
    await rules.on_device_message(session, "st-0001", up(m.BoardFault(2, "latch motor")), now=NOW)
    await session.commit()
    (fault,) = await of_type(session, AlertType.SPOT_LOCK_FAULT)
    assert fault.spot_number == 2 and fault.occurrences == 2 and fault.state == AlertState.NEW
    assert fault.extra["fault"] == "latch motor" and fault.spot_id is not None
    await rules.on_device_message(session, "st-0001", up(m.BoardRecovered(2)), now=NOW)
    await session.commit()
    (fault,) = await of_type(session, AlertType.SPOT_LOCK_FAULT)
    assert fault.state == AlertState.STOPPED
    assert await alert_topics(session, fault) == ["fleet_alert.created", "fleet_alert.stopped"]

    station: Station = (
        await session.scalars(select(Station).where(Station.device_id == "st-0002"))
    ).one()
    await rules.on_spot_lock(session, "st-0002", station.id, 4, pe.LockState.JAMMED, now=NOW)
    await session.commit()
    jammed = [a for a in await of_type(session, AlertType.SPOT_LOCK_FAULT) if a.id != fault.id]
    assert len(jammed) == 1 and jammed[0].extra["fault"] == "jammed"
    await rules.on_spot_lock(session, "st-0002", station.id, 4, pe.LockState.LOCKED, now=NOW)
    await session.commit()
    (cleared,) = [a for a in await of_type(session, AlertType.SPOT_LOCK_FAULT) if a.id != fault.id]
    assert cleared.state == AlertState.STOPPED


# -- through ingest (PostgreSQL, as the ingest tests) ------------------------------------

BOOT = 93


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


def message(device: str, seq: int, body: m.UpBody) -> Inbound:
    channel = Channel.STATUS if isinstance(body, m.Status) else Channel.EVENT
    stamp = m.Stamp(BOOT, seq, int(utcnow().timestamp() * 1000))
    return Inbound(device, channel, m.UpMessage(stamp, body))


async def spot_id(maker: Maker, device: str, number: int) -> int:
    async with maker() as s:
        found: int = (
            await s.scalars(
                select(Spot.id)
                .join(Station)
                .where(Station.device_id == device, Spot.displayed_number == number)
            )
        ).one()
        return found


async def serial_spot(maker: Maker, serial: str) -> int | None:
    async with maker() as s:
        found: int | None = await s.scalar(
            select(Vehicle.spot_id).where(Vehicle.serial_number == serial)
        )
        return found


@pytest.mark.postgres
async def test_a_jammed_status_raises_through_ingest(maker: Maker, applier: BatchApplier) -> None:
    await applier.apply(
        [message("st-0002", 1, m.Status(5, pe.SpotState.EMPTY, pe.LockState.JAMMED))]
    )
    async with maker() as s:
        (alert,) = await of_type(s, AlertType.SPOT_LOCK_FAULT)
        assert alert.state == AlertState.NEW and alert.spot_number == 5
    await applier.apply(
        [message("st-0002", 2, m.Status(5, pe.SpotState.EMPTY, pe.LockState.LOCKED))]
    )
    async with maker() as s:
        (alert,) = await of_type(s, AlertType.SPOT_LOCK_FAULT)
        assert alert.state == AlertState.STOPPED


@pytest.mark.postgres
async def test_a_vehicle_in_two_spots(maker: Maker, applier: BatchApplier) -> None:
    # The seed docks LY0001 in st-0001 spot 1; st-0002 reports it in its spot 5.
    before = await spot_id(maker, "st-0001", 1)
    assert await serial_spot(maker, "LY0001") == before
    docked = m.Status(5, pe.SpotState.DOCKED_LOCKED, pe.LockState.LOCKED, "LY0001")
    await applier.apply([message("st-0002", 1, docked)])
    assert await serial_spot(maker, "LY0001") == await spot_id(maker, "st-0002", 5)  # moved
    async with maker() as s:
        (alert,) = await of_type(s, AlertType.VEHICLE_IN_TWO_SPOTS)
        assert alert.extra["previous_spot_id"] == before and alert.vehicle_id is not None
        assert await alert_topics(s, alert) == ["fleet_alert.created"]
    # st-0001 still claims it in spot 1: the sweep keeps the alert; a dock event there
    # moves it back and counts again on the same alert.
    docked_back = m.Status(1, pe.SpotState.DOCKED_LOCKED, pe.LockState.LOCKED, "LY0001")
    await applier.apply([message("st-0001", 1, docked_back)])
    await applier.sweep()
    async with maker() as s:
        (alert,) = await of_type(s, AlertType.VEHICLE_IN_TWO_SPOTS)
        assert alert.state == AlertState.NEW and alert.occurrences == 2
    # st-0002's spot 5 is reported empty: nothing claims it twice any more.
    await applier.apply([message("st-0002", 2, m.Status(5, pe.SpotState.EMPTY))])
    await applier.sweep()
    async with maker() as s:
        (alert,) = await of_type(s, AlertType.VEHICLE_IN_TWO_SPOTS)
        assert alert.state == AlertState.STOPPED
