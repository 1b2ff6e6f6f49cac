"""The device contract through ingest (PostgreSQL, the applier as a worker drives it):

* status is authoritative for what a spot holds, newest device stamp wins, trips untouched;
* maintenance: a station's own MAINTENANCE lasts until it reports otherwise; the operator's
  holds whatever the station says, and the station is sent SetMaintenance again;
* ``lock_status`` carries the protocol's LockState codes;
* clock: a dock stamped before its removal (a clock stepped back) or ahead of its arrival
  ends the trip by what the cloud received, flagged;
* an unlock the API stopped waiting for keeps its rent open past the command's expiry, and
  the device's late result resolves it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.alerts.engine import AlertEngine
from kickstand.cloud.alerts.models import FleetAlert
from kickstand.cloud.alerts.types import AlertState, AlertType
from kickstand.cloud.commands import trusted_keys
from kickstand.cloud.commands.issuer import CommandIssuer
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.ingest import repository as repo
from kickstand.cloud.ingest.apply import BatchApplier, Inbound, IngestStats
from kickstand.cloud.ingest.tables import CommandStatus, DeviceCommand
from kickstand.cloud.models import (
    Device,
    LockStatus,
    MaintenanceSource,
    OutboxEvent,
    Rent,
    RentStatus,
    Spot,
    SpotState,
    Station,
    Trip,
    TripStatus,
    User,
    Vehicle,
    VehicleState,
    utcnow,
)
from kickstand.cloud.rent_gateway import UnlockOutcome
from kickstand.cloud.rents import apply_unlock_outcome, open_rent
from kickstand.protocol import topics
from kickstand.protocol.signing import (
    CommandSigner,
    CommandVerifier,
    MemoryReplayGuard,
    generate_private_key,
)
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import enums as pe
from kickstand.protocol.v1 import messages as m

pytestmark = pytest.mark.postgres

Maker = async_sessionmaker[AsyncSession]
BOOT = 91
SIGNER = CommandSigner(generate_private_key())


@pytest.fixture
async def maker(pg_seeded_url: str) -> AsyncIterator[Maker]:
    engine = create_engine(pg_seeded_url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def applier(maker: Maker) -> AsyncIterator[BatchApplier]:
    applier = BatchApplier(
        maker, IngestStats(), issuer=CommandIssuer(SIGNER, valid_s=30, sent_by="ingest-test")
    )
    yield applier
    await applier.release()


def message(
    device: str, seq: int, stamped: datetime, body: m.UpBody, received: datetime | None = None
) -> Inbound:
    channel = {m.Status: Channel.STATUS, m.CommandResult: Channel.RESULT}.get(
        type(body), Channel.EVENT
    )
    stamp = m.Stamp(BOOT, seq, int(stamped.timestamp() * 1000))
    item = Inbound(device, channel, m.UpMessage(stamp, body))
    if received is not None:
        item.received_ms = int(received.timestamp() * 1000)
    return item


def docked(spot: int, serial: str, lock: pe.LockState = pe.LockState.LOCKED) -> m.Status:
    return m.Status(spot, pe.SpotState.DOCKED_LOCKED, lock, serial)


async def spot_row(maker: Maker, device: str, number: int) -> Spot:
    async with maker() as s:
        spot: Spot = (
            await s.scalars(
                select(Spot)
                .join(Station)
                .where(Station.device_id == device, Spot.displayed_number == number)
            )
        ).one()
        return spot


async def vehicle(maker: Maker, serial: str) -> Vehicle:
    async with maker() as s:
        found: Vehicle = (
            await s.scalars(select(Vehicle).where(Vehicle.serial_number == serial))
        ).one()
        return found


def now() -> datetime:
    return utcnow().replace(microsecond=0)


# -- status is authoritative for occupancy ---------------------------------------------


async def test_a_status_moves_the_vehicle_and_an_empty_spot_is_emptied(
    maker: Maker, applier: BatchApplier
) -> None:
    t = now()
    # The seed has LY0008 in st-0003 spot 2; the station says spot 4, and spot 2 empty.
    await applier.apply(
        [
            message("st-0003", 1, t, docked(4, "LY0008")),
            message("st-0003", 2, t, m.Status(2, pe.SpotState.EMPTY, pe.LockState.LOCKED)),
        ]
    )
    spot4 = await spot_row(maker, "st-0003", 4)
    assert (await vehicle(maker, "LY0008")).spot_id == spot4.id
    # Spot 1 reported empty: LY0007 (seeded there) is no longer in it.
    await applier.apply([message("st-0003", 3, t, m.Status(1, pe.SpotState.EMPTY))])
    assert (await vehicle(maker, "LY0007")).spot_id is None
    # Trips are not touched by a status.
    async with maker() as s:
        assert (await s.scalars(select(Trip))).first() is None


async def test_a_status_older_than_the_last_dock_moves_nothing(
    maker: Maker, applier: BatchApplier
) -> None:
    t = now()
    await applier.apply([message("st-0003", 5, t, m.VehicleDocked(5, "LY0009"))])
    spot5 = await spot_row(maker, "st-0003", 5)
    assert (await vehicle(maker, "LY0009")).spot_id == spot5.id
    # A status stamped before that dock (delivered late) says it is still in spot 3.
    await applier.apply([message("st-0003", 4, t - timedelta(seconds=20), docked(3, "LY0009"))])
    assert (await vehicle(maker, "LY0009")).spot_id == spot5.id
    assert applier.stats.ignored["status-stale-status"] == 1


async def test_a_vehicle_in_a_running_trip_is_left_to_its_dock_event(
    maker: Maker, applier: BatchApplier
) -> None:
    async with maker() as s, s.begin():
        await s.execute(
            update(Vehicle)
            .where(Vehicle.serial_number == "LY0010")
            .values(state=VehicleState.RENTED, spot_id=None)
        )
    await applier.apply([message("st-0004", 1, now(), docked(5, "LY0010"))])
    assert (await vehicle(maker, "LY0010")).spot_id is None
    assert applier.stats.ignored["status-vehicle-in-trip"] == 1


# -- maintenance and lock codes -------------------------------------------------------


async def test_a_stations_own_maintenance_ends_when_it_reports_otherwise(
    maker: Maker, applier: BatchApplier
) -> None:
    t = now()
    await applier.apply([message("st-0002", 1, t, m.Status(5, pe.SpotState.MAINTENANCE))])
    spot = await spot_row(maker, "st-0002", 5)
    assert spot.state == SpotState.MAINTENANCE
    assert spot.maintenance_source == MaintenanceSource.DEVICE
    await applier.apply([message("st-0002", 2, t, m.Status(5, pe.SpotState.EMPTY))])
    spot = await spot_row(maker, "st-0002", 5)
    assert spot.state == SpotState.ACTIVE and spot.maintenance_source is None


async def test_the_operators_maintenance_holds_and_the_station_is_told_again(
    maker: Maker, applier: BatchApplier
) -> None:
    spot = await spot_row(maker, "st-0002", 6)
    async with maker() as s, s.begin():
        await s.execute(
            update(Spot)
            .where(Spot.id == spot.id)
            .values(state=SpotState.MAINTENANCE, maintenance_source=MaintenanceSource.OPERATOR)
        )
    out = await applier.apply([message("st-0002", 1, now(), m.Status(6, pe.SpotState.EMPTY))])
    spot = await spot_row(maker, "st-0002", 6)
    assert spot.state == SpotState.MAINTENANCE
    assert spot.maintenance_source == MaintenanceSource.OPERATOR
    (reply,) = [r for r in out.replies if r.topic == topics.down("st-0002", Channel.COMMAND)]
    verifier = CommandVerifier("st-0002", trusted_keys(SIGNER), MemoryReplayGuard())
    envelope = verifier.verify(reply.payload)
    assert envelope.command == m.SetMaintenance(spot=6, on=True)
    async with maker() as s:
        row = await s.get_one(DeviceCommand, envelope.command_id.hex())
        assert row.command_type == "setmaintenance" and row.device_id == "st-0002"
    # The echo ends the disagreement: nothing more is sent.
    out = await applier.apply([message("st-0002", 2, now(), m.Status(6, pe.SpotState.MAINTENANCE))])
    assert [r for r in out.replies if r.topic.endswith("/cmd")] == []


async def test_lock_status_is_the_protocols_lock_state_code(
    maker: Maker, applier: BatchApplier
) -> None:
    t = now()
    expected = {
        pe.LockState.LOCKED: LockStatus.LOCKED,
        pe.LockState.OPEN: LockStatus.UNLOCKED,
        pe.LockState.JAMMED: LockStatus.JAMMED,
    }
    for seq, (lock, status) in enumerate(expected.items(), start=1):
        await applier.apply([message("st-0001", seq, t, docked(1, "LY0001", lock))])
        row = await spot_row(maker, "st-0001", 1)
        assert row.lock_status == int(lock) == int(status)


# -- clock: the trip's end bounded by what was received -------------------------------


async def _riding(maker: Maker, applier: BatchApplier, started: datetime) -> int:
    """A rent at st-0001 spot 2 (LY0002), its Unlock confirmed, the vehicle removed at
    ``started`` (device time); returns the trip id."""
    command_id = uuid.uuid4().bytes
    async with maker() as session, session.begin():
        alice = (await session.scalars(select(User).where(User.email == "alice@example.com"))).one()
        spot = (await spot_row(maker, "st-0001", 2)).id
        rent, _, _ = await open_rent(session, alice.id, spot_id=spot, now=started)
        session.add(
            DeviceCommand(
                command_id=command_id.hex(),
                device_id="st-0001",
                command_type="unlock",
                spot=2,
                rent_id=rent.id,
                issued_at=started,
                expires_at=started + timedelta(seconds=30),
                status=CommandStatus.DONE,
            )
        )
        await apply_unlock_outcome(session, rent.id, UnlockOutcome.unlocked(), now=started)
    await applier.apply(
        [message("st-0001", 1, started, m.VehicleRemoved(2, "LY0002", None, command_id))]
    )
    async with maker() as s:
        trip = (await s.scalars(select(Trip))).one()
        assert trip.status == TripStatus.RUNNING
        return trip.id


async def _trip(maker: Maker, trip_id: int) -> Trip:
    async with maker() as s:
        return await s.get_one(Trip, trip_id)


async def test_a_dock_stamped_before_its_removal_ends_the_trip_by_what_was_received(
    maker: Maker, applier: BatchApplier
) -> None:
    started = now()
    trip_id = await _riding(maker, applier, started)
    created = (await _trip(maker, trip_id)).created_at
    # The station's clock stepped back 10 min mid-ride; the dock arrives 90 s later.
    arrived = created + timedelta(seconds=90)
    await applier.apply(
        [
            message(
                "st-0001",
                2,
                started - timedelta(minutes=10),
                m.VehicleDocked(4, "LY0002"),
                received=arrived,
            )
        ]
    )
    trip = await _trip(maker, trip_id)
    assert trip.status == TripStatus.FINISHED  # not running forever
    assert trip.ended_at is not None
    assert abs((trip.ended_at - trip.started_at).total_seconds() - 90) < 1
    assert trip.cost_detail is not None and trip.cost_detail["clock"]["rule"] == "stepped-back"
    assert applier.stats.clock_flagged == 1


async def test_a_dock_stamped_ahead_bills_no_time_past_its_arrival(
    maker: Maker, applier: BatchApplier
) -> None:
    started = now() - timedelta(seconds=2)
    trip_id = await _riding(maker, applier, started)
    arrived = started + timedelta(seconds=2)
    # Stamped 9 min ahead (inside the 10 min the device-time rule tolerates).
    await applier.apply(
        [
            message(
                "st-0001",
                2,
                arrived + timedelta(minutes=9),
                m.VehicleDocked(4, "LY0002"),
                received=arrived,
            )
        ]
    )
    trip = await _trip(maker, trip_id)
    assert trip.status == TripStatus.FINISHED and trip.ended_at == arrived
    assert trip.cost_detail is not None and trip.cost_detail["clock"]["rule"] == "ahead"
    # A 2 s ride costs the unlock price only (seed: 300 s included on weekdays, none but
    # 0.15/min at weekends: one started minute at most).
    assert trip.cost is not None and trip.cost <= 1


# -- an unlock the API stopped waiting for --------------------------------------------


async def _timed_out_rent(maker: Maker, number: int) -> tuple[int, bytes, datetime]:
    t0 = now()
    command_id = uuid.uuid4().bytes
    async with maker() as session, session.begin():
        bob = (await session.scalars(select(User).where(User.email == "bob@example.com"))).one()
        spot = (await spot_row(maker, "st-0002", number)).id
        rent, _, _ = await open_rent(session, bob.id, spot_id=spot, now=t0)
        session.add(
            DeviceCommand(
                command_id=command_id.hex(),
                device_id="st-0002",
                command_type="unlock",
                spot=number,
                rent_id=rent.id,
                issued_at=t0,
                expires_at=t0 + timedelta(seconds=30),
                status=CommandStatus.PENDING,
            )
        )
        updated = await apply_unlock_outcome(
            session,
            rent.id,
            UnlockOutcome.timeout(),
            now=t0 + timedelta(seconds=5),
            unlock_window_s=60,
            may_open_until=t0 + timedelta(seconds=30),
        )
        # Open until the command's expiry plus the unlock window.
        assert updated.expires_at == t0 + timedelta(seconds=90)
    return rent.id, command_id, t0


async def _rent(maker: Maker, rent_id: int) -> Rent:
    async with maker() as s:
        return await s.get_one(Rent, rent_id)


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (m.CommandResult(b"", pe.ResultStatus.DONE), RentStatus.UNLOCKED),
        (
            m.CommandResult(b"", pe.ResultStatus.REJECTED, pe.RejectReason.EXPIRED),
            RentStatus.REFUSED,
        ),
    ],
)
async def test_the_late_result_of_a_timed_out_unlock_resolves_its_rent(
    maker: Maker, applier: BatchApplier, result: m.CommandResult, expected: RentStatus
) -> None:
    rent_id, command_id, t0 = await _timed_out_rent(maker, 1)
    assert (await _rent(maker, rent_id)).status == RentStatus.UNLOCK_TIMEOUT
    late: Any = m.CommandResult(command_id, result.status, result.reason)
    await applier.apply([message("st-0002", 1, t0 + timedelta(seconds=12), late)])
    rent = await _rent(maker, rent_id)
    assert rent.status == expected
    if expected == RentStatus.REFUSED:
        assert rent.reason == "expired"


# -- the alerts ask the same liveness rule ---------------------------------------------


async def test_a_silent_station_raises_station_offline_until_it_is_heard_again(
    maker: Maker,
) -> None:
    engine = AlertEngine()
    t = utcnow()
    async with maker() as s, s.begin():
        # st-0001 booted (heartbeat 30 s) and was last heard 91 s ago; the others never
        # had a birth (no outage to report).
        await s.execute(
            update(Device)
            .where(Device.device_id == "st-0001")
            .values(
                boot_id="5", online=True, heartbeat_s=30, last_seen_at=t - timedelta(seconds=91)
            )
        )
    async with maker() as s, s.begin():
        changes = await engine.sweep(s, t)
    (raised,) = [c.alert for c in changes if c.alert.alert_type == AlertType.STATION_OFFLINE]
    assert raised.device_id == "st-0001" and raised.state == AlertState.NEW
    assert "silent for more than 90 s" in (raised.message or "")
    async with maker() as s, s.begin():
        await s.execute(update(Device).where(Device.device_id == "st-0001").values(last_seen_at=t))
        changes = await engine.sweep(s, t + timedelta(seconds=1))
    (stopped,) = [c.alert for c in changes if c.alert.alert_type == AlertType.STATION_OFFLINE]
    assert stopped.id == raised.id and stopped.state == AlertState.STOPPED


# -- a silence is told as a death is; a status that moves a vehicle tells both spots ----


async def device(maker: Maker, device_id: str) -> Device:
    async with maker() as s:
        found: Device = (await s.scalars(select(Device).where(Device.device_id == device_id))).one()
        return found


async def outbox(maker: Maker, topic: str, resource_id: int) -> list[dict[str, Any]]:
    async with maker() as s:
        rows = await s.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.topic == topic, OutboxEvent.resource_id == str(resource_id))
            .order_by(OutboxEvent.id)
        )
        return [row.payload for row in rows]


async def booted_and_silent(maker: Maker, device: str, silent_s: float) -> datetime:
    """The device's boot BOOT accepted (heartbeat 30 s), last heard ``silent_s`` ago."""
    t = utcnow()
    async with maker() as s, s.begin():
        await s.execute(
            update(Device)
            .where(Device.device_id == device)
            .values(
                boot_id=str(BOOT),
                online=True,
                heartbeat_s=30,
                last_seen_at=t - timedelta(seconds=silent_s),
            )
        )
    return t


def heartbeat(device: str, at: datetime) -> Inbound:
    stamp = m.Stamp(BOOT, 0, int(at.timestamp() * 1000))
    return Inbound(device, Channel.HEARTBEAT, m.UpMessage(stamp, m.Heartbeat()))


async def test_a_silent_station_is_told_offline_once_and_online_with_its_next_heartbeat(
    maker: Maker, applier: BatchApplier
) -> None:
    t = await booted_and_silent(maker, "st-0001", 91)
    async with maker() as s:
        station = (await s.scalars(select(Station).where(Station.device_id == "st-0001"))).one()
    await applier.sweep(t - timedelta(seconds=2))  # 89 s: still online, nothing told
    assert await outbox(maker, "station.updated", station.id) == []
    await applier.sweep(t)
    await applier.sweep(t + timedelta(seconds=60))  # the same silence: told once
    (offline,) = await outbox(maker, "station.updated", station.id)
    assert offline["online"] is False and offline["device_id"] == "st-0001"
    assert offline["network_id"] is not None
    assert (await device(maker, "st-0001")).online is False
    await applier.apply([heartbeat("st-0001", t)])
    told = await outbox(maker, "station.updated", station.id)
    assert [e["online"] for e in told] == [False, True]
    assert (await device(maker, "st-0001")).online is True
    await applier.apply([heartbeat("st-0001", t)])  # online already: nothing more
    assert len(await outbox(maker, "station.updated", station.id)) == 2


async def test_a_station_heard_just_before_the_sweep_is_not_told_offline(
    maker: Maker, applier: BatchApplier
) -> None:
    t = await booted_and_silent(maker, "st-0001", 91)
    async with maker() as s, s.begin():
        # A message received while the sweep judges the silence (compare and set).
        assert not await repo.silenced(s, "st-0001", t - timedelta(seconds=95))
    assert (await device(maker, "st-0001")).online is True


async def test_a_silent_vehicle_raises_lock_shutdown_and_is_told_offline(
    maker: Maker,
) -> None:
    applier = BatchApplier(maker, IngestStats(), alerts=AlertEngine())
    try:
        t = await booted_and_silent(maker, "vh-LY0001", 91)
        lock = await vehicle(maker, "LY0001")
        await applier.sweep(t)
        await applier.sweep(t + timedelta(seconds=60))
        (told,) = await outbox(maker, "vehicule.updated", lock.id)
        assert told["online"] is False and told["serial_number"] == "LY0001"
        async with maker() as s:
            (alert,) = (
                await s.scalars(
                    select(FleetAlert).where(
                        FleetAlert.alert_type == AlertType.LOCK_SHUTDOWN,
                        FleetAlert.vehicle_id == lock.id,
                    )
                )
            ).all()
        assert alert.state == AlertState.NEW and "silent" in (alert.message or "")
        await applier.apply([heartbeat("vh-LY0001", t + timedelta(seconds=61))])
        assert [e["online"] for e in await outbox(maker, "vehicule.updated", lock.id)] == [
            False,
            True,
        ]
        await applier.sweep(t + timedelta(seconds=62))
        async with maker() as s:
            assert (await s.get_one(FleetAlert, alert.id)).state == AlertState.STOPPED
    finally:
        await applier.release()


async def test_a_status_that_moves_a_vehicle_tells_the_spot_it_left_and_the_one_it_is_in(
    maker: Maker, applier: BatchApplier
) -> None:
    spot2, spot4 = await spot_row(maker, "st-0003", 2), await spot_row(maker, "st-0003", 4)
    lock = await vehicle(maker, "LY0008")
    assert lock.spot_id == spot2.id
    await applier.apply([message("st-0003", 1, now(), docked(4, "LY0008"))])
    (left,) = await outbox(maker, "dock.updated", spot2.id)
    (arrived,) = await outbox(maker, "dock.updated", spot4.id)
    assert left["contained_vehicle_id"] is None and left["displayed_number"] == 2
    assert arrived["contained_vehicle_id"] == lock.id and arrived["serial_number"] == "LY0008"
    assert left["network_id"] == arrived["network_id"] is not None


async def test_the_whole_stations_maintenance_holds_and_the_station_is_told_again(
    maker: Maker, applier: BatchApplier
) -> None:
    async with maker() as s, s.begin():
        station = (await s.scalars(select(Station).where(Station.device_id == "st-0002"))).one()
        await s.execute(
            update(Spot)
            .where(Spot.station_id == station.id)
            .values(state=SpotState.MAINTENANCE, maintenance_source=MaintenanceSource.STATION)
        )
    t = now()
    out = await applier.apply(
        [
            message("st-0002", 1, t, m.Status(0, pe.DeviceState.OPERATIVE)),
            # Its spots in their real state: held all the same, not told spot by spot.
            message("st-0002", 2, t, m.Status(6, pe.SpotState.EMPTY)),
        ]
    )
    spot = await spot_row(maker, "st-0002", 6)
    assert (spot.state, spot.maintenance_source) == (
        SpotState.MAINTENANCE,
        MaintenanceSource.STATION,
    )
    (reply,) = [r for r in out.replies if r.topic == topics.down("st-0002", Channel.COMMAND)]
    verifier = CommandVerifier("st-0002", trusted_keys(SIGNER), MemoryReplayGuard())
    assert verifier.verify(reply.payload).command == m.SetMaintenance(spot=0, on=True)
    # The echo ends the disagreement.
    out = await applier.apply([message("st-0002", 3, t, m.Status(0, pe.DeviceState.MAINTENANCE))])
    assert [r for r in out.replies if r.topic.endswith("/cmd")] == []
    # A station nobody holds in maintenance is told nothing.
    out = await applier.apply([message("st-0003", 1, t, m.Status(0, pe.DeviceState.OPERATIVE))])
    assert [r for r in out.replies if r.topic.endswith("/cmd")] == []
