"""Device time, bounded (SPEC §4.2): the rule, and what ingest does with a stamp outside it —
applied at the receive time, the clock flagged, and never a spot frozen by a status from
the future."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.ingest.apply import BatchApplier, Inbound, IngestStats
from kickstand.cloud.ingest.rules import EPOCH_FLOOR_MS, FUTURE_MS, device_time, unstorable
from kickstand.cloud.ingest.tables import DeviceStatus
from kickstand.cloud.models import OutboxEvent, Spot, SpotState, Station
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import enums as pe
from kickstand.protocol.v1 import messages as m
from tests.cloud.ingest.fakes import now_ms

Maker = async_sessionmaker[AsyncSession]
NOW = 1_796_000_000_000  # 2026-12-01
YEAR_MS = 365 * 86_400_000


@pytest.mark.parametrize(
    ("ts_ms", "expected"),
    [
        (NOW, (NOW, False)),
        (NOW - 5 * 3600_000, (NOW - 5 * 3600_000, False)),  # queued for hours: still true
        (NOW - 3 * YEAR_MS, (NOW - 3 * YEAR_MS, False)),
        (NOW + FUTURE_MS, (NOW + FUTURE_MS, False)),
        (NOW + FUTURE_MS + 1, (NOW, True)),
        (NOW + 50 * YEAR_MS, (NOW, True)),
        (2**64 - 1, (NOW, True)),
        (EPOCH_FLOOR_MS, (EPOCH_FLOOR_MS, False)),
        (EPOCH_FLOOR_MS - 1, (NOW, True)),  # an RTC never set
        (0, (NOW, True)),
    ],
)
def test_device_time_rule(ts_ms: int, expected: tuple[int, bool]) -> None:
    assert device_time(ts_ms, NOW) == expected


def test_unstorable_values() -> None:
    assert unstorable(m.Status(spot=1, state=pe.SpotState.EMPTY, fault="ok")) is None
    assert unstorable(m.Status(spot=1, state=pe.SpotState.EMPTY, fault="a\x00")) is not None
    assert unstorable(m.Stamp(1, 2**63, NOW)) is not None
    assert unstorable(m.Stamp(2**63 - 1, 1, NOW)) is None
    assert unstorable(m.Telemetry(lat=float("nan"))) is not None
    inventory = (m.Component("spot", 1, "x\x00"),)
    birth = m.Birth(kind=pe.DeviceKind.STATION, firmware="1", hardware="h", inventory=inventory)
    assert unstorable(birth) == "inventory: firmware: text with a NUL character"


def status(boot: int, seq: int, ts_ms: int, state: pe.SpotState) -> Inbound:
    body = m.Status(spot=2, state=state, lock=pe.LockState.LOCKED)
    return Inbound("st-0001", Channel.STATUS, m.UpMessage(m.Stamp(boot, seq, ts_ms), body))


async def spot_state(maker: Maker) -> SpotState:
    async with maker() as session:
        state: SpotState = (
            await session.scalars(
                select(Spot.state)
                .join(Station, Station.id == Spot.station_id)
                .where(Station.device_id == "st-0001", Spot.displayed_number == 2)
            )
        ).one()
        return state


async def test_a_status_from_the_future_never_freezes_the_spot(maker: Maker) -> None:
    stats = IngestStats()
    applier = BatchApplier(maker, stats)
    fifty_years = now_ms() + 50 * YEAR_MS
    await applier.apply([status(1, 1, fifty_years, pe.SpotState.FAULT)])
    assert await spot_state(maker) == SpotState.OUT_OF_ORDER
    assert stats.clock_flagged == 1
    async with maker() as session:
        row = await session.get(DeviceStatus, ("st-0001", 2))
    assert row is not None and abs(row.ts_ms - now_ms()) < 60_000  # stored at receive time
    # The device rebooted with its clock right: its true status wins.
    await applier.apply([status(2, 1, now_ms(), pe.SpotState.EMPTY)])
    assert await spot_state(maker) == SpotState.ACTIVE
    assert stats.ignored["stale-status"] == 0


async def test_a_stamp_ahead_inside_the_window_does_not_block_another_boot(maker: Maker) -> None:
    applier = BatchApplier(maker, IngestStats())
    await applier.apply([status(1, 1, now_ms() + FUTURE_MS - 5_000, pe.SpotState.FAULT)])
    await applier.apply([status(2, 1, now_ms(), pe.SpotState.EMPTY)])
    assert await spot_state(maker) == SpotState.ACTIVE
    # ...but an older status of another boot, stamped in the past, still loses.
    await applier.apply([status(3, 1, now_ms() - 3600_000, pe.SpotState.FAULT)])
    assert await spot_state(maker) == SpotState.ACTIVE


async def test_an_event_stamped_far_ahead_counts_at_its_receive_time(maker: Maker) -> None:
    stats = IngestStats()
    applier = BatchApplier(maker, stats)
    stamp = m.Stamp(1, 1, 2**64 - 1)  # beyond what a timestamp column holds
    before = datetime.now(UTC)
    await applier.apply([Inbound("st-0001", Channel.EVENT, m.UpMessage(stamp, m.PowerCut()))])
    async with maker() as session:
        event = (
            await session.scalars(select(OutboxEvent).where(OutboxEvent.topic == "device.event"))
        ).one()
    at = datetime.fromisoformat(str(event.payload["at"]))
    assert before.timestamp() - 1 <= at.timestamp() <= before.timestamp() + 60
    assert stats.clock_flagged == 1 and stats.applied == 1 and not stats.dead_lettered
