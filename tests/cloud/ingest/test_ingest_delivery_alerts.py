"""Operator alerts of delivery, on PostgreSQL: dead letters (one alert per device and reason,
occurrences counted, on the station or vehicle), a device clock flagged (raised, then stopped
once the device talks with plausible stamps), and messages lost for good (a birth's
``pending_from`` against what reached the cloud, with workers applying a device's messages
in any order)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from sqlalchemy import ScalarResult, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.alerts import service
from kickstand.cloud.alerts.engine import AlertConfig, AlertEngine
from kickstand.cloud.alerts.models import FleetAlert
from kickstand.cloud.alerts.types import AlertSeverity, AlertState, AlertType
from kickstand.cloud.ingest.apply import BatchApplier, Inbound, IngestStats
from kickstand.cloud.ingest.deadletters import Letter
from kickstand.cloud.ingest.gaps import GapFinding
from kickstand.cloud.ingest.tables import DeadLetter, DeviceBoot, DeviceBootCount
from kickstand.cloud.models import Cluster, Network, Station, Vehicle, utcnow
from kickstand.protocol.v1 import enums as pe
from kickstand.protocol.v1 import messages as m
from tests.cloud.conftest import demo_refs
from tests.cloud.ingest.fakes import inbound, now_ms

pytestmark = pytest.mark.postgres

Maker = async_sessionmaker[AsyncSession]
STATION = "st-0001"
VEHICLE = "vh-LY0001"


def status(device: str, seq: int, *, boot: int = 5, **kw: object) -> Inbound:
    body = m.Status(spot=1, state=pe.SpotState.EMPTY, lock=pe.LockState.LOCKED, **kw)
    return inbound(device, body, seq, boot=boot)


def birth(device: str, boot: int, pending_from: int, *, acks: bool = False) -> Inbound:
    body = m.Birth(
        kind=pe.DeviceKind.STATION, firmware="1", hardware="h", pending_from=pending_from, acks=acks
    )
    return inbound(device, body, 0, boot=boot)


async def alerts_of(maker: Maker, alert_type: AlertType) -> list[FleetAlert]:
    async with maker() as session:
        rows: ScalarResult[FleetAlert] = await session.scalars(
            select(FleetAlert).where(FleetAlert.alert_type == alert_type).order_by(FleetAlert.id)
        )
        return list(rows)


# -- dead letters -----------------------------------------------------------------------


async def test_dead_letters_raise_one_alert_per_device_and_reason_on_its_station(
    maker: Maker, pg_seeded_url: str
) -> None:
    demo = demo_refs(pg_seeded_url)
    applier = BatchApplier(maker, IngestStats(), alerts=AlertEngine())
    # A NUL PostgreSQL cannot store: an "unstorable" letter of the station.
    await applier.apply([status(STATION, 1, fault="jam\x00"), status(STATION, 2)])
    [alert] = await alerts_of(maker, AlertType.DEVICE_MESSAGE_DEAD_LETTERED)
    async with maker() as session:
        station = await session.scalar(select(Station).where(Station.device_id == STATION))
        assert station is not None
        cluster = await session.get_one(Cluster, station.cluster_id)
    assert (alert.station_id, alert.cluster_id) == (station.id, station.cluster_id)
    assert alert.network_id == cluster.network_id == demo.network_id
    assert alert.device_id == STATION and alert.vehicle_id is None
    assert alert.severity == AlertSeverity.HIGH and alert.occurrences == 1
    assert alert.extra["dead_letter_reason"] == "unstorable"
    assert "dead letters" in alert.message

    # Two more letters of the same device and reason, in one batch: counted on that alert.
    await applier.apply([status(STATION, 3, fault="\x00"), status(STATION, 4, fault="a\x00")])
    [alert] = await alerts_of(maker, AlertType.DEVICE_MESSAGE_DEAD_LETTERED)
    assert alert.occurrences == 3 and alert.state == AlertState.NEW

    # Another reason, on a vehicle: an alert of its own, on the vehicle.
    await applier.apply([inbound(VEHICLE, m.Status(spot=3, state=pe.SpotState.EMPTY), 1)])
    alerts = await alerts_of(maker, AlertType.DEVICE_MESSAGE_DEAD_LETTERED)
    assert len(alerts) == 2
    on_vehicle = alerts[1]
    assert on_vehicle.vehicle_id == demo.vehicle_ids["LY0001"] and on_vehicle.station_id is None
    assert on_vehicle.network_id == demo.network_id
    assert on_vehicle.extra["dead_letter_reason"] == "vehicle-spot-status"

    # Operators see them in their network only.
    async with maker() as session, session.begin():
        other = Network(name="Elsewhere", currency="EUR", timezone="UTC")
        session.add(other)
        await session.flush()
        other_id = other.id
    async with maker() as session:
        mine = {a.id for a in await service.current_alerts(session, [demo.network_id])}
        theirs = await service.current_alerts(session, [other_id])
    assert {a.id for a in alerts} <= mine and theirs == []


async def test_a_letter_of_a_device_with_no_station_or_vehicle_is_kept_without_an_alert(
    maker: Maker,
) -> None:
    """No station or vehicle: no network an operator could see it in (admins see the
    letter in the dead-letter list)."""
    stats = IngestStats()
    applier = BatchApplier(maker, stats, alerts=AlertEngine())
    # A device row with no station and no vehicle (a spare controller).
    async with maker() as session, session.begin():
        await session.execute(update(Vehicle).where(Vehicle.device_id == VEHICLE).values(
            device_id=None))
    await applier.apply([inbound(VEHICLE, m.Status(spot=3, state=pe.SpotState.EMPTY), 1)])
    assert stats.dead_lettered["vehicle-spot-status"] == 1
    assert await alerts_of(maker, AlertType.DEVICE_MESSAGE_DEAD_LETTERED) == []
    assert stats.alert_failures == 0


async def test_letters_stored_on_their_own_raise_the_alert_too(maker: Maker) -> None:
    """What never decoded (the worker stores it in a transaction of its own) counts on the
    device's alert for that reason; a failed replay (an operator is on it) does not."""
    applier = BatchApplier(maker, IngestStats(), alerts=AlertEngine())
    garbage = Letter.of_error(
        "malformed", "not CBOR", topic=f"ks/v1/d/{STATION}/evt", payload=b"\xff",
        device_id=STATION,
    )
    await applier.store_letters([garbage])
    await applier.store_letters([garbage])
    [alert] = await alerts_of(maker, AlertType.DEVICE_MESSAGE_DEAD_LETTERED)
    assert alert.occurrences == 2 and alert.extra["dead_letter_reason"] == "malformed"
    async with maker() as session:
        first = await session.scalar(select(func.min(DeadLetter.id)))
    garbage.replay_of = first
    await applier.store_letters([garbage])
    [alert] = await alerts_of(maker, AlertType.DEVICE_MESSAGE_DEAD_LETTERED)
    assert alert.occurrences == 2


async def test_a_dead_letter_is_stored_even_when_its_alert_cannot_be_raised(
    maker: Maker,
) -> None:
    async with maker() as session, session.begin():
        await session.execute(
            text(
                "CREATE FUNCTION refuse_alert() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'no alerts today'; END $$ LANGUAGE plpgsql"
            )
        )
        await session.execute(
            text(
                "CREATE TRIGGER refuse_alert BEFORE INSERT ON fleet_alerts "
                "FOR EACH ROW EXECUTE FUNCTION refuse_alert()"
            )
        )
    stats = IngestStats()
    applier = BatchApplier(maker, stats, alerts=AlertEngine())
    await applier.apply([status(STATION, 1, fault="jam\x00"), status(STATION, 2)])
    assert stats.dead_lettered["unstorable"] == 1 and stats.applied == 1
    assert stats.alert_failures == 1
    async with maker() as session:
        stored = await session.scalar(select(func.count()).select_from(DeadLetter))
    assert stored == 1


# -- device clock -----------------------------------------------------------------------

YEAR_2090_MS = 3_786_912_000_000


async def test_a_wrong_clock_raises_and_stops_once_the_device_talks_with_plausible_stamps(
    maker: Maker,
) -> None:
    engine = AlertEngine(AlertConfig(clock_ok_s=1))
    applier = BatchApplier(maker, IngestStats(), alerts=engine)
    assert applier.operator_alerts is not None
    applier.operator_alerts.clock_every_s = 0  # every batch counts (else once a minute)
    ahead = inbound(STATION, m.Status(spot=1, state=pe.SpotState.EMPTY), 1, ts_ms=YEAR_2090_MS)
    await applier.apply([ahead])
    [alert] = await alerts_of(maker, AlertType.DEVICE_CLOCK_WRONG)
    assert alert.state == AlertState.NEW and alert.severity == AlertSeverity.LOW
    assert alert.station_id is not None and alert.device_id == STATION
    assert alert.extra["device_ts_ms"] == YEAR_2090_MS and alert.extra["clock_offset_s"] > 0
    at_1970 = inbound(STATION, m.Status(spot=2, state=pe.SpotState.EMPTY), 2, ts_ms=1_000)
    await applier.apply([at_1970])
    [alert] = await alerts_of(maker, AlertType.DEVICE_CLOCK_WRONG)
    assert alert.occurrences == 2

    # Silence is no proof: an hour later, with nothing heard from the device, it stays.
    await applier.sweep(utcnow() + timedelta(hours=1))
    [alert] = await alerts_of(maker, AlertType.DEVICE_CLOCK_WRONG)
    assert alert.state == AlertState.NEW

    # The device talks with plausible stamps for longer than clock_ok_s: it stops.
    await asyncio.sleep(1.2)
    talker = BatchApplier(maker, IngestStats(), alerts=engine)  # its own "seen" memory
    await talker.apply([status(STATION, 3)])
    await talker.sweep()
    [alert] = await alerts_of(maker, AlertType.DEVICE_CLOCK_WRONG)
    assert alert.state == AlertState.STOPPED


async def test_a_clock_flagged_once_a_minute_per_worker(maker: Maker) -> None:
    applier = BatchApplier(maker, IngestStats(), alerts=AlertEngine())
    for seq in (1, 2, 3):
        await applier.apply(
            [inbound(STATION, m.Status(spot=seq, state=pe.SpotState.EMPTY), seq, ts_ms=1_000)]
        )
    [alert] = await alerts_of(maker, AlertType.DEVICE_CLOCK_WRONG)
    assert alert.occurrences == 1 and applier.stats.clock_flagged == 3


# -- pending_from gaps ------------------------------------------------------------------

GRACE = timedelta(seconds=301)


async def check(maker: Maker, applier: BatchApplier, now: datetime) -> list[GapFinding]:
    async with maker() as session, session.begin():
        return await applier.gaps.check(session, now)


async def boot_count(maker: Maker, device: str, boot: int) -> DeviceBootCount | None:
    async with maker() as session:
        return await session.get(DeviceBootCount, (device, boot))


async def test_no_gap_when_workers_apply_a_boot_out_of_order_and_its_birth_first(
    maker: Maker,
) -> None:
    engine = AlertEngine()
    one, two = (BatchApplier(maker, IngestStats(), alerts=engine) for _ in range(2))
    await one.apply([birth(STATION, 21, 1)])
    # Seqs 1..6 of boot 21 (statuses and events) over two workers, in any order; the
    # reconnect's birth (pending_from 7) applied before the last of them.
    await two.apply([status(STATION, 4, boot=21), inbound(STATION, m.PowerCut(), 2, boot=21)])
    await one.apply([birth(STATION, 21, 7)])
    await one.apply([inbound(STATION, m.PowerRestored(), 6, boot=21), status(STATION, 1, boot=21)])
    # A resend of an event already applied is a duplicate, not one more delivered.
    await two.apply([inbound(STATION, m.PowerCut(), 2, boot=21), status(STATION, 5, boot=21)])
    await two.apply([status(STATION, 3, boot=21)])
    count = await boot_count(maker, STATION, 21)
    assert count is not None and count.delivered == 6

    assert await check(maker, one, utcnow() + GRACE) == []
    assert one.stats.seq_gaps == 0
    assert await alerts_of(maker, AlertType.DEVICE_MESSAGES_MISSING) == []


async def test_resent_status_and_telemetry_count_once_so_no_gap_hides_behind_them(
    maker: Maker,
) -> None:
    """A device without Acks: a broker's redelivery of a status or telemetry (idempotent to
    apply) is a duplicate, not one more delivered, so the lost seq 4 is still found."""
    applier = BatchApplier(maker, IngestStats(), alerts=AlertEngine())
    await applier.apply([birth(STATION, 24, 1)])
    tlm = inbound(STATION, m.Telemetry(temperature_c=21.5), 2, boot=24)
    await applier.apply([status(STATION, 1, boot=24), tlm, status(STATION, 3, boot=24)])
    duplicates = applier.stats.duplicates
    # Redelivered: 1 and 3 in a later batch, 2 twice inside one batch.
    tlm_again = inbound(STATION, m.Telemetry(temperature_c=21.5), 2, boot=24)
    await applier.apply([status(STATION, 1, boot=24), status(STATION, 3, boot=24)])
    await applier.apply([tlm_again, tlm_again])
    assert applier.stats.duplicates - duplicates == 4
    await applier.apply([birth(STATION, 24, 5)])  # 4 lost
    count = await boot_count(maker, STATION, 24)
    assert count is not None and count.delivered == 3
    [found] = await check(maker, applier, utcnow() + GRACE)
    assert (found.delivered, found.missing) == (3, 1)


async def test_a_gap_raises_with_the_number_missing_and_stops_if_they_come_after_all(
    maker: Maker, pg_seeded_url: str
) -> None:
    demo = demo_refs(pg_seeded_url)
    applier = BatchApplier(maker, IngestStats(), alerts=AlertEngine())
    await applier.apply([birth(STATION, 22, 1)])
    await applier.apply([status(STATION, 1, boot=22), inbound(STATION, m.PowerCut(), 2, boot=22)])
    await applier.apply([status(STATION, 4, boot=22)])  # 3 and 5 lost in a broker crash
    await applier.apply([birth(STATION, 22, 6)])

    # Within the grace (messages may still be in flight): nothing yet.
    assert await check(maker, applier, utcnow()) == []
    [found] = await check(maker, applier, utcnow() + GRACE)
    assert (found.boot_id, found.pending_from, found.delivered, found.missing) == (22, 6, 3, 2)
    assert (applier.stats.seq_gaps, applier.stats.seq_missing) == (1, 2)
    [alert] = await alerts_of(maker, AlertType.DEVICE_MESSAGES_MISSING)
    assert alert.extra["missing"] == 2 and alert.extra["boot_id"] == 22
    assert alert.station_id is not None and alert.network_id == demo.network_id
    assert alert.severity == AlertSeverity.HIGH and "2 messages" in alert.message
    assert "thinned" in alert.message

    # Checked once: a second sweep finds nothing new, counts nothing twice.
    await applier.sweep(utcnow() + GRACE)
    assert (applier.stats.seq_gaps, applier.stats.seq_missing) == (1, 2)
    [alert] = await alerts_of(maker, AlertType.DEVICE_MESSAGES_MISSING)
    assert alert.occurrences == 1

    # A worker far behind delivers them after all: the alert stops.
    await applier.apply([status(STATION, 3, boot=22), inbound(STATION, m.PowerRestored(), 5,
                                                                 boot=22)])
    await applier.sweep(utcnow() + GRACE)
    [alert] = await alerts_of(maker, AlertType.DEVICE_MESSAGES_MISSING)
    assert alert.state == AlertState.STOPPED
    assert (applier.stats.seq_gaps, applier.stats.seq_missing) == (1, 2)


async def test_a_later_birth_with_more_missing_counts_an_occurrence(maker: Maker) -> None:
    applier = BatchApplier(maker, IngestStats(), alerts=AlertEngine())
    await applier.apply([birth(STATION, 23, 1), status(STATION, 1, boot=23)])
    await applier.apply([birth(STATION, 23, 4)])  # 2, 3 lost
    await check(maker, applier, utcnow() + GRACE)
    await applier.apply([status(STATION, 4, boot=23)])
    await applier.apply([birth(STATION, 23, 7)])  # 5, 6 lost too
    [found] = await check(maker, applier, utcnow() + GRACE)
    assert (found.missing, found.before) == (4, 2)
    assert (applier.stats.seq_gaps, applier.stats.seq_missing) == (2, 4)
    [alert] = await alerts_of(maker, AlertType.DEVICE_MESSAGES_MISSING)
    assert alert.occurrences == 2 and alert.extra["missing"] == 4


async def test_devices_with_acks_and_boots_not_counted_from_their_start_are_not_checked(
    maker: Maker,
) -> None:
    applier = BatchApplier(maker, IngestStats(), alerts=AlertEngine())
    # With Acks, nothing below pending_from can be lost (only telemetry thinned).
    await applier.apply([birth(STATION, 24, 1, acks=True)])
    await applier.apply([birth(STATION, 24, 9, acks=True)])
    # A boot whose first birth a cloud that did not count applied (before migration 0006,
    # or an older worker during a rolling upgrade): its messages until now are not counted.
    async with maker() as session, session.begin():
        session.add(
            DeviceBoot(
                device_id="st-0002", boot_id=25, birth_ts_ms=now_ms(), pending_from=1,
                received_at=utcnow(),
            )
        )
    await applier.apply([status("st-0002", 8, boot=25), birth("st-0002", 25, 9)])
    count = await boot_count(maker, "st-0002", 25)
    assert count is not None and (count.delivered, count.complete) == (1, False)
    assert await check(maker, applier, utcnow() + GRACE) == []
    assert await alerts_of(maker, AlertType.DEVICE_MESSAGES_MISSING) == []
    # The same shortfall on a boot counted from its first birth is found.
    await applier.apply([birth("st-0002", 26, 1)])
    await applier.apply([status("st-0002", 8, boot=26), birth("st-0002", 26, 9)])
    [found] = await check(maker, applier, utcnow() + GRACE)
    assert (found.boot_id, found.missing) == (26, 7)
