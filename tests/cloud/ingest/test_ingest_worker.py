"""Ingest workers against real Mosquitto and PostgreSQL."""

from __future__ import annotations

import logging

import cbor2
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.alerts.models import FleetAlert
from kickstand.cloud.alerts.types import AlertType
from kickstand.cloud.ingest import IngestWorker
from kickstand.cloud.ingest.tables import DeadLetter, DeviceBoot, DeviceStatus, IngestedMessage
from kickstand.cloud.models import Device, LockStatus, OutboxEvent, Spot, SpotState, Station
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import enums as pe
from kickstand.protocol.v1 import messages as m
from kickstand.testing import MosquittoService
from tests.cloud.ingest.conftest import WorkerFactory
from tests.cloud.ingest.fakes import FakeDevice, eventually, now_ms

Maker = async_sessionmaker[AsyncSession]


def birth(kind: pe.DeviceKind = pe.DeviceKind.STATION) -> m.Birth:
    return m.Birth(
        kind=kind,
        firmware="1.4.2",
        hardware="station-v1",
        config_version=3,
        inventory=(m.Component("spot", 1, "2.0.1"), m.Component("spot", 2, "2.0.1")),
        pending_from=1,
    )


async def device_row(maker: Maker, device_id: str) -> Device:
    async with maker() as s:
        device = (await s.scalars(select(Device).where(Device.device_id == device_id))).one()
        return device


async def spot_row(maker: Maker, device_id: str, number: int) -> Spot:
    async with maker() as s:
        return (
            await s.scalars(
                select(Spot)
                .join(Station, Station.id == Spot.station_id)
                .where(Station.device_id == device_id, Spot.displayed_number == number)
            )
        ).one()


async def test_birth_of_known_device_accepted_unknown_rejected(
    mosquitto: MosquittoService, start_worker: WorkerFactory, pg_sessionmaker: Maker
) -> None:
    worker = await start_worker()
    async with FakeDevice(mosquitto.host, mosquitto.port, "st-0001", boot_id=77) as station:
        await station.send(birth())
        reply = await station.expect(Channel.BOOT)
        assert reply.status is pe.BootStatus.ACCEPTED
        assert reply.boot_id == 77 and reply.heartbeat_s == 30
        device = await device_row(pg_sessionmaker, "st-0001")
        assert device.online and device.boot_id == "77" and device.firmware_version == "1.4.2"
        async with pg_sessionmaker() as s:
            boot = (await s.scalars(select(DeviceBoot).where(DeviceBoot.boot_id == 77))).one()
        assert [c["index"] for c in boot.inventory] == [1, 2]

        await station.send(m.Heartbeat())
        time_reply = await station.expect(Channel.TIME)
        assert abs(time_reply.server_time_ms - now_ms()) < 5_000

    async with FakeDevice(mosquitto.host, mosquitto.port, "st-9999") as stranger:
        await stranger.send(birth())
        reply = await stranger.expect(Channel.BOOT)
        assert reply.status is pe.BootStatus.REJECTED
        assert reply.retry_after_s and reply.retry_after_s > 0
    assert worker.stats.rejected["unknown-device"] == 1


async def test_vehicle_birth_from_a_station_id_is_rejected(
    mosquitto: MosquittoService, start_worker: WorkerFactory, pg_sessionmaker: Maker
) -> None:
    worker = await start_worker()
    async with FakeDevice(mosquitto.host, mosquitto.port, "st-0002") as dev:
        await dev.send(birth(pe.DeviceKind.VEHICLE))
        assert (await dev.expect(Channel.BOOT)).status is pe.BootStatus.REJECTED
    assert worker.stats.rejected["kind-mismatch"] == 1
    assert not (await device_row(pg_sessionmaker, "st-0002")).online


async def test_stale_death_of_an_old_boot_does_not_mark_the_new_boot_offline(
    mosquitto: MosquittoService, start_worker: WorkerFactory, pg_sessionmaker: Maker
) -> None:
    worker = await start_worker()
    async with FakeDevice(mosquitto.host, mosquitto.port, "st-0001", boot_id=1) as old:
        t0 = now_ms()
        await old.send(birth(), ts_ms=t0)
        await old.expect(Channel.BOOT)
        old.boot_id = 2  # rebooted
        await old.send(birth(), ts_ms=t0 + 10_000)
        await old.expect(Channel.BOOT)
        # The broker publishes the Will of boot 1 only now (late).
        old.boot_id = 1
        await old.send(m.Death(), ts_ms=t0)
        await eventually(lambda: _ignored(worker, "stale-death", 1))
        device = await device_row(pg_sessionmaker, "st-0001")
        assert device.online and device.boot_id == "2"

        # A Will of the current boot, stamped at connect (just before its birth): applies.
        old.boot_id = 2
        await old.send(m.Death(), ts_ms=t0 + 10_000 - 500)

        async def offline() -> bool:
            return not (await device_row(pg_sessionmaker, "st-0001")).online

        await eventually(offline)
        # A late heartbeat older than the death does not bring it back.
        await old.send(m.Heartbeat(), ts_ms=t0 + 9_000)
        await old.expect(Channel.TIME)
        assert not (await device_row(pg_sessionmaker, "st-0001")).online


async def _ignored(worker: object, reason: str, count: int) -> bool:
    return worker.stats.ignored[reason] >= count  # type: ignore[attr-defined]


async def test_replays_split_across_two_workers_apply_once(
    mosquitto: MosquittoService, start_worker: WorkerFactory, pg_sessionmaker: Maker
) -> None:
    w1 = await start_worker()
    w2 = await start_worker()
    events = [m.AlarmTriggered(reason=f"tamper {i}") for i in range(60)]
    async with FakeDevice(mosquitto.host, mosquitto.port, "st-0003", boot_id=5) as dev:
        await dev.send(birth())
        await dev.expect(Channel.BOOT)
        for i, event in enumerate(events, start=1):
            await dev.send(event, seq=i)
        # Reconnect replay: the whole queue again, interleaved with the new tail.
        for i, event in enumerate(events, start=1):
            await dev.send(event, seq=i)

        async def all_seen() -> bool:
            return (
                w1.stats.applied + w1.stats.duplicates + w2.stats.applied + w2.stats.duplicates
                >= 1 + 2 * len(events)
            )

        await eventually(all_seen)
    assert w1.stats.received > 0 and w2.stats.received > 0, "the shared subscription splits"
    assert w1.stats.duplicates + w2.stats.duplicates == len(events)
    async with pg_sessionmaker() as s:
        outbox = await s.scalar(
            select(func.count())
            .select_from(OutboxEvent)
            .where(OutboxEvent.resource_id == "st-0003", OutboxEvent.topic == "device.event")
        )
        keys = await s.scalar(
            select(func.count())
            .select_from(IngestedMessage)
            .where(IngestedMessage.device_id == "st-0003")
        )
    assert outbox == len(events)
    assert keys == len(events)
    async with pg_sessionmaker() as s:
        alert = (
            await s.scalars(select(FleetAlert).where(FleetAlert.device_id == "st-0003"))
        ).one()
    assert alert.alert_type == AlertType.STATION_ALARM_TRIGGERED
    assert alert.occurrences == len(events)


async def test_status_applies_newest_only_whatever_the_arrival_order(
    mosquitto: MosquittoService, start_worker: WorkerFactory, pg_sessionmaker: Maker
) -> None:
    worker = await start_worker()
    async with FakeDevice(mosquitto.host, mosquitto.port, "st-0004", boot_id=9) as dev:
        await dev.send(birth())
        await dev.expect(Channel.BOOT)
        fault = m.Status(spot=4, state=pe.SpotState.FAULT, lock=pe.LockState.OPEN, fault="jam")
        await dev.send(fault, seq=2)
        older = m.Status(spot=4, state=pe.SpotState.EMPTY, lock=pe.LockState.LOCKED)
        await dev.send(older, seq=1)  # arrives later, is older: ignored

        async def settled() -> bool:
            return worker.stats.by_channel["status"] + worker.stats.ignored["stale-status"] >= 2

        await eventually(settled)
        spot = await spot_row(pg_sessionmaker, "st-0004", 4)
        assert spot.state == SpotState.OUT_OF_ORDER
        assert spot.lock_status == LockStatus.UNLOCKED
        recovered = m.Status(spot=4, state=pe.SpotState.EMPTY, lock=pe.LockState.LOCKED)
        await dev.send(recovered, seq=3)

        async def back() -> bool:
            s = await spot_row(pg_sessionmaker, "st-0004", 4)
            return s.state == SpotState.ACTIVE and s.lock_status == LockStatus.LOCKED

        await eventually(back)
    async with pg_sessionmaker() as s:
        row = await s.get(DeviceStatus, ("st-0004", 4))
    assert row is not None and row.seq == 3


async def test_malformed_payloads_are_counted_and_do_not_stop_the_worker(
    mosquitto: MosquittoService, start_worker: WorkerFactory, pg_sessionmaker: Maker
) -> None:
    worker = await start_worker()
    async with FakeDevice(mosquitto.host, mosquitto.port, "st-0002", boot_id=3) as dev:
        await dev.raw(Channel.STATUS, b"\xff\x00garbage")
        await dev.raw(Channel.STATUS, cbor2.dumps({"not": "a status"}))
        await dev.raw(Channel.EVENT, cbor2.dumps([3, 1, now_ms(), {0: 999}]))
        await dev.raw(Channel.STATUS, b"")
        await dev.send(birth())
        assert (await dev.expect(Channel.BOOT)).status is pe.BootStatus.ACCEPTED
    rejected = worker.stats.rejected
    assert sum(rejected.values()) == 4, rejected
    assert rejected["unknown-type"] == 1
    assert rejected["malformed"] + rejected["schema"] == 3


async def test_a_worker_that_leaves_strands_nothing(
    mosquitto: MosquittoService, start_worker: WorkerFactory, pg_sessionmaker: Maker
) -> None:
    """Clean sessions: a worker gone from the shared subscription gets no share of what
    comes next (a persistent session would keep half of it queued for its return)."""
    leaving = await start_worker(client_id="ingest-leaving-a")
    staying = await start_worker(group=leaving.topic.split("/")[1])
    await leaving.stop()
    async with FakeDevice(mosquitto.host, mosquitto.port, "st-0001", boot_id=11) as dev:
        await dev.send(birth())
        await dev.expect(Channel.BOOT)
        for i in range(1, 11):
            await dev.send(m.PowerCut(), seq=i)

        async def applied() -> bool:
            return staying.stats.applied >= 11

        await eventually(applied)
    assert leaving.stats.received == 0
    assert (await device_row(pg_sessionmaker, "st-0001")).online


async def test_worker_reconnects_after_a_broker_restart(
    mosquitto_private: MosquittoService, pg_sessionmaker: Maker
) -> None:
    broker = mosquitto_private
    async with IngestWorker(broker.url, pg_sessionmaker, client_id="ingest-restart-b") as worker:
        broker.stop()
        broker.start()  # same port, persisted sessions
        # Mosquitto 2.0 does not restore shared subscriptions from its persistence: the
        # worker re-subscribes on reconnect. A birth sent in that gap is lost, and the
        # device's boot gating (retry until a BootReply) is what makes that harmless.
        await eventually(lambda: _true(worker.subscribed and worker._consumer.connections >= 2),
                         wait_s=30)
        async with FakeDevice(broker.host, broker.port, "st-0002", boot_id=21) as dev:
            await dev.send(birth())
            assert (await dev.expect(Channel.BOOT, wait_s=15)).status is pe.BootStatus.ACCEPTED


async def _true(value: bool) -> bool:
    return value


async def test_a_garbage_flood_is_bounded_in_storage_and_in_the_log(
    mosquitto: MosquittoService,
    start_worker: WorkerFactory,
    pg_sessionmaker: Maker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="kickstand.cloud.ingest")
    worker = await start_worker(dead_letters_per_hour=20)
    async with FakeDevice(mosquitto.host, mosquitto.port, "st-0002", boot_id=3) as dev:
        for _ in range(300):
            await dev.raw(Channel.STATUS, b"\xff\x00garbage")
        long_topic = "ks/v1/d/st-0002/" + "x" * 60_000  # the device's own tree: the ACL lets it
        for _ in range(3):
            await dev._client.publish(long_topic, b"\x00", qos=1)
        await dev.send(birth())
        assert (await dev.expect(Channel.BOOT)).status is pe.BootStatus.ACCEPTED
    assert worker.stats.rejected["malformed"] == 300
    assert worker.stats.rejected["bad-topic"] == 3
    assert worker.stats.dead_lettered == {"malformed": 20, "bad-topic": 3}
    assert worker.stats.dead_dropped["malformed"] == 280
    async with pg_sessionmaker() as s:
        stored = (await s.scalars(select(DeadLetter).order_by(DeadLetter.id))).all()
    assert len(stored) == 23
    assert stored[0].payload == b"\xff\x00garbage" and stored[0].device_id == "st-0002"
    assert len(stored[-1].topic) == 256  # cut
    rejected_lines = [r for r in caplog.records if "ingest_rejected" in r.getMessage()]
    assert 1 <= len(rejected_lines) <= 4, [r.getMessage()[:200] for r in rejected_lines]
    assert all(len(r.getMessage()) < 1000 for r in caplog.records)
