"""Dead letters and per-message checks of the batch applier, on PostgreSQL: a batch mixing
good and unstorable messages applies the good ones in one pass; rules refuse a spot status
from a vehicle and messages of a device never booted; a failing event is stored with its
raw bytes; a flood is bounded per device, reason and hour."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.ingest.apply import BatchApplier, Inbound, IngestStats
from kickstand.cloud.ingest.deadletters import DeadLetterBudget, Letter, store
from kickstand.cloud.ingest.tables import (
    DeadLetter,
    DeadLetterStatus,
    DeviceStatus,
    IngestedMessage,
)
from kickstand.cloud.models import Device, utcnow
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1 import enums as pe
from kickstand.protocol.v1 import messages as m
from tests.cloud.ingest.fakes import inbound
from tests.cloud.ingest.test_ingest_event_failure import broken_command

Maker = async_sessionmaker[AsyncSession]
STATION = "st-0001"
VEHICLE = "vh-LY0001"


def status(spot: int, seq: int, **kw: object) -> Inbound:
    body = m.Status(spot=spot, state=pe.SpotState.EMPTY, lock=pe.LockState.LOCKED, **kw)  # type: ignore[arg-type]
    return inbound(STATION, body, seq)


async def letters(maker: Maker) -> list[DeadLetter]:
    async with maker() as session:
        return list(await session.scalars(select(DeadLetter).order_by(DeadLetter.id)))


async def count(maker: Maker, model: type, *where: object) -> int:
    async with maker() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)  # type: ignore[arg-type]


async def test_unstorable_messages_are_dead_letters_and_the_batch_applies_in_one_pass(
    maker: Maker,
) -> None:
    stats = IngestStats()
    applier = BatchApplier(maker, stats)
    good = [status(spot, seq=spot) for spot in range(1, 5)]
    bad = [
        status(5, seq=5, fault="jam\x00"),  # a NUL PostgreSQL cannot store
        inbound(STATION, m.AlarmTriggered(reason="\x00"), seq=6),
        inbound(STATION, m.PowerCut(), seq=2**63 + 7),  # beyond bigint
        inbound(STATION, m.PowerCut(), seq=8, boot=2**64 - 1),
    ]
    bad[0].raw = b"\x84\x05\x05as received"
    out = await applier.apply([*good[:2], *bad, *good[2:]])
    assert stats.applied == len(good)
    assert await count(maker, DeviceStatus, DeviceStatus.device_id == STATION) == 4
    stored = await letters(maker)
    assert [lt.reason for lt in stored] == ["unstorable"] * 4
    assert stats.dead_lettered["unstorable"] == 4 and len(out.dead) == 4
    assert "NUL" in stored[0].error and stored[0].seq == 5 and stored[0].boot_id == 5
    assert stored[0].payload == bad[0].raw  # the bytes as they came
    assert stored[2].seq is None and stored[3].boot_id is None  # not storable as bigint


async def test_rules_refuse_vehicle_spot_status_and_messages_of_a_device_never_booted(
    maker: Maker,
) -> None:
    stats = IngestStats()
    applier = BatchApplier(maker, stats, require_boot=True)
    async with maker() as session, session.begin():
        device = (await session.scalars(select(Device).where(Device.device_id == VEHICLE))).one()
        device.boot_id = "5"
    spot_status = m.Status(spot=2, state=pe.SpotState.FAULT)
    vehicle = m.Status(spot=0, state=pe.DeviceState.LOCKED, battery_pct=80)
    await applier.apply(
        [
            inbound(VEHICLE, spot_status, seq=1),
            inbound(VEHICLE, vehicle, seq=2),
            inbound(STATION, m.PowerCut(), seq=1),  # st-0001 never had a birth accepted
        ]
    )
    assert {(lt.device_id, lt.reason) for lt in await letters(maker)} == {
        (VEHICLE, "vehicle-spot-status"),
        (STATION, "no-boot"),
    }
    assert await count(maker, DeviceStatus, DeviceStatus.device_id == VEHICLE) == 1
    network = (await letters(maker))[0].network_id
    assert network is not None  # operators of the vehicle's network see it

    # Its birth, then its messages, in one batch: applied.
    birth = m.Birth(kind=pe.DeviceKind.STATION, firmware="1", hardware="h")
    await applier.apply([inbound(STATION, birth, 0), inbound(STATION, m.PowerCut(), seq=2)])
    assert await count(maker, IngestedMessage, IngestedMessage.device_id == STATION) == 1


async def test_a_failing_event_is_a_dead_letter_with_its_raw_bytes(maker: Maker) -> None:
    command_id = await broken_command(maker)
    stats = IngestStats()
    applier = BatchApplier(maker, stats, hold_connection=True)
    try:
        expired = inbound(STATION, m.UnlockExpired(1, command_id), seq=1)
        expired.raw = codec.encode_up(expired.msg.stamp, expired.msg.body)
        expired.topic = "ks/v1/d/st-0001/evt"
        await applier.apply([expired])  # alone: no savepoint, the batch runs again
        await applier.apply([expired, inbound(STATION, m.PowerCut(), seq=2)])  # a resend
        again = inbound(STATION, m.UnlockExpired(1, command_id), seq=3)
        await applier.apply([again, inbound(STATION, m.PowerCut(), seq=4)])  # among others
    finally:
        await applier.release()
    stored = await letters(maker)
    assert [(lt.seq, lt.reason, lt.attempts) for lt in stored] == [
        (1, "apply-failed", 1),
        (3, "apply-failed", 1),
    ]
    assert stored[0].payload == expired.raw and stored[0].topic == expired.topic
    assert stored[0].error_class == "NotFoundError" and stored[0].status == DeadLetterStatus.OPEN
    assert stats.duplicates == 1  # the resend of seq 1: its fate is already committed


async def test_a_flood_is_bounded_and_does_not_stall_the_good_messages(maker: Maker) -> None:
    stats = IngestStats()
    applier = BatchApplier(maker, stats, budget=DeadLetterBudget(per_hour=50))
    seq = 0
    for _ in range(5):
        batch = []
        for _ in range(1000):
            seq += 1
            batch.append(inbound(STATION, m.AlarmTriggered(reason="x\x00"), seq=seq))
        await applier.apply(batch)
    await applier.apply([status(1, seq=seq + 1)])
    assert await count(maker, DeviceStatus, DeviceStatus.device_id == STATION) == 1
    assert await count(maker, DeadLetter) == 50
    assert stats.dead_lettered["unstorable"] == 50
    assert stats.dead_dropped["unstorable"] == 4950


async def test_resolved_letters_are_pruned_open_ones_kept(maker: Maker) -> None:
    async with maker() as session, session.begin():
        await store(
            session,
            [Letter.of_error("malformed", "x", topic="ks/v1/d/st-0001/evt", payload=b"\xff")
             for _ in range(3)],
        )
    old = utcnow() - timedelta(days=8)
    async with maker() as session, session.begin():
        rows = list(await session.scalars(select(DeadLetter).order_by(DeadLetter.id)))
        rows[0].status, rows[0].resolved_at = DeadLetterStatus.DISCARDED, old
        rows[1].status, rows[1].resolved_at = DeadLetterStatus.REPLAYED, utcnow()
    removed = await BatchApplier(maker, IngestStats()).prune(timedelta(days=7))
    assert removed == 1
    assert [lt.status for lt in await letters(maker)] == ["replayed", "open"]
