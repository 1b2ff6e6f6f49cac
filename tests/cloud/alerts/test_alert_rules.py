"""Each fleet alert rule raised and cleared by decoded device messages (and by the sweep).

Runs on the migrated, seeded SQLite database of tests/cloud/conftest.py (the Lyon demo:
stations st-0001…, docked vehicles vh-LY0001…, free-floating scooters vh-LYF001…).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.alerts.engine import AlertConfig, AlertEngine
from kickstand.cloud.alerts.models import FleetAlert
from kickstand.cloud.alerts.types import AlertSeverity, AlertState, AlertType
from kickstand.cloud.models import (
    OutboxEvent,
    PricingRule,
    Trip,
    TripStatus,
    Vehicle,
    VehicleState,
)
from kickstand.cloud.seed import DemoRefs
from kickstand.protocol.v1 import messages as m
from kickstand.protocol.v1.enums import (
    BatteryKind,
    ChainType,
    DeviceKind,
    LockCause,
    MotionKind,
)

NOW = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)  # a Wednesday, 11:00 in Lyon
OUTSIDE = (45.20, 4.20)  # far outside the Lyon border
_seq = count(1)


def up(body: m.UpBody) -> m.UpMessage:
    return m.UpMessage(m.Stamp(boot_id=1, seq=next(_seq), ts_ms=int(NOW.timestamp() * 1000)), body)


@pytest.fixture
def rules() -> AlertEngine:
    return AlertEngine(AlertConfig(flap_window_s=600, no_tracking_s=3600, idle_s=72 * 3600))


async def feed(
    rules: AlertEngine, session: AsyncSession, device: str, body: m.UpBody, at: datetime = NOW
) -> list[FleetAlert]:
    changes = await rules.on_device_message(session, device, up(body), now=at)
    await session.commit()
    return [c.alert for c in changes]


async def alerts(session: AsyncSession, alert_type: AlertType | None = None) -> list[FleetAlert]:
    query = select(FleetAlert).order_by(FleetAlert.id)
    if alert_type is not None:
        query = query.where(FleetAlert.alert_type == alert_type)
    return list(await session.scalars(query))


async def topics(session: AsyncSession) -> list[str]:
    return list(await session.scalars(select(OutboxEvent.topic).order_by(OutboxEvent.id)))


async def vehicle(session: AsyncSession, serial: str) -> Vehicle:
    found = await session.scalar(select(Vehicle).where(Vehicle.serial_number == serial))
    assert found is not None
    return found


async def test_power_cut_raised_and_stopped_with_outbox(
    rules: AlertEngine, session: AsyncSession, demo: DemoRefs
) -> None:
    st = demo.station_device_ids[0]
    [raised] = await feed(rules, session, st, m.PowerCut())
    assert raised.alert_type == AlertType.STATION_POWER_CUT
    assert raised.severity == AlertSeverity.CRITICAL
    assert raised.state == AlertState.NEW
    assert raised.network_id == demo.network_id
    assert raised.extra["location"]["type"] == "Point"
    assert raised.extra["station_device_id"] == st
    [stopped] = await feed(rules, session, st, m.PowerRestored(), NOW + timedelta(minutes=1))
    assert stopped.id == raised.id and stopped.state == AlertState.STOPPED
    assert await topics(session) == ["fleet_alert.created", "fleet_alert.stopped"]
    # a restore without a cut changes nothing
    assert await feed(rules, session, st, m.PowerRestored()) == []


async def test_flapping_sensor_makes_one_alert(
    rules: AlertEngine, session: AsyncSession, demo: DemoRefs
) -> None:
    st = demo.station_device_ids[1]
    at = NOW
    for _ in range(30):
        await feed(rules, session, st, m.PowerCut(), at)
        at += timedelta(seconds=5)
        await feed(rules, session, st, m.PowerRestored(), at)
        at += timedelta(seconds=5)
    await feed(rules, session, st, m.PowerCut(), at)  # reopens the alert: announced
    n_events = len(await topics(session))
    for _ in range(19):  # repeated cuts without restore
        await feed(rules, session, st, m.PowerCut(), at)
    [alert] = await alerts(session, AlertType.STATION_POWER_CUT)
    assert alert.occurrences == 50
    assert alert.state == AlertState.NEW
    # counted, but a sensor repeating itself within a minute sends no webhook events
    assert len(await topics(session)) == n_events
    await feed(rules, session, st, m.PowerCut(), at + timedelta(minutes=5))
    assert (await topics(session))[-1] == "fleet_alert.updated"
    # after the flap window, a new cut is a new alert
    await feed(rules, session, st, m.PowerRestored(), at)
    await feed(rules, session, st, m.PowerCut(), at + timedelta(hours=1))
    assert len(await alerts(session, AlertType.STATION_POWER_CUT)) == 2


async def test_alarm_and_temperature_per_spot(
    rules: AlertEngine, session: AsyncSession, demo: DemoRefs
) -> None:
    st = demo.station_device_ids[0]
    [alarm] = await feed(rules, session, st, m.AlarmTriggered(reason="door opened"))
    assert alarm.alert_type == AlertType.STATION_ALARM_TRIGGERED
    assert alarm.extra["reason"] == "door opened"
    [hot2] = await feed(rules, session, st, m.Temperature(spot=2, celsius=71.5, high=True))
    [hot3] = await feed(rules, session, st, m.Temperature(spot=3, celsius=70.0, high=True))
    assert hot2.id != hot3.id and hot2.spot_number == 2 and hot2.spot_id is not None
    assert hot2.extra["temperature_c"] == 71.5 and hot2.severity == AlertSeverity.HIGH
    [cool2] = await feed(rules, session, st, m.Temperature(spot=2, celsius=40.0, high=False))
    assert cool2.id == hot2.id and cool2.state == AlertState.STOPPED
    await session.refresh(hot3)
    assert hot3.state == AlertState.NEW
    [cleared] = await feed(rules, session, st, m.AlarmCleared())
    assert cleared.id == alarm.id and cleared.state == AlertState.STOPPED


async def test_spot_identify_fail_cleared_by_docking(
    rules: AlertEngine, session: AsyncSession, demo: DemoRefs
) -> None:
    st = demo.station_device_ids[0]
    [fail] = await feed(rules, session, st, m.SpotIdentifyFail(spot=4))
    assert fail.alert_type == AlertType.SPOT_IDENTIFY_FAIL and fail.severity == AlertSeverity.LOW
    changes = await feed(rules, session, st, m.VehicleDocked(spot=4, serial_number="LYF001"))
    assert [a.id for a in changes if a.alert_type == AlertType.SPOT_IDENTIFY_FAIL] == [fail.id]
    assert fail.state == AlertState.STOPPED


async def test_unexpected_unlock_only_without_command_or_badge(
    rules: AlertEngine, session: AsyncSession, demo: DemoRefs
) -> None:
    st = demo.station_device_ids[0]
    cmd = bytes(16)
    assert await feed(rules, session, st, m.Unlocked(1, LockCause.COMMAND, command_id=cmd)) == []
    badge = m.Unlocked(2, LockCause.BADGE, badge_uid=b"\x04\x01")
    assert await feed(rules, session, st, badge) == []
    [forced] = await feed(rules, session, st, m.Unlocked(1, LockCause.MANUAL))
    assert forced.alert_type == AlertType.UNEXPECTED_UNLOCK
    assert forced.severity == AlertSeverity.CRITICAL and forced.spot_number == 1
    assert forced.extra["vehicle_serial_number"] == "LY0001"  # the docked vehicle
    [spoofed] = await feed(rules, session, st, m.Unlocked(2, LockCause.COMMAND))  # no command id
    assert spoofed.id != forced.id
    [relocked] = await feed(rules, session, st, m.Locked(1, LockCause.AUTO_RELOCK))
    assert relocked.id == forced.id and relocked.state == AlertState.STOPPED
    # the vehicle lock box too
    scooter = await vehicle(session, "LYF001")
    assert scooter.device_id is not None
    [box] = await feed(rules, session, scooter.device_id, m.Unlocked(0, LockCause.MANUAL))
    assert box.vehicle_id == scooter.id and box.alert_type == AlertType.UNEXPECTED_UNLOCK


@pytest.mark.parametrize(
    ("kind", "alert_type", "severity", "cleared_by_use"),
    [
        (MotionKind.LIFTED, AlertType.VEHICLE_LIFTED, AlertSeverity.LOW, True),
        (MotionKind.FALLEN, AlertType.VEHICLE_FALLEN, AlertSeverity.LOW, True),
        (MotionKind.ILLEGAL_MOVING, AlertType.VEHICLE_ILLEGAL_MOVING, AlertSeverity.HIGH, True),
        (MotionKind.DISMANTLING, AlertType.VEHICLE_DISMANTLING, AlertSeverity.CRITICAL, False),
    ],
)
async def test_motion_alerts(
    rules: AlertEngine,
    session: AsyncSession,
    demo: DemoRefs,
    kind: MotionKind,
    alert_type: AlertType,
    severity: AlertSeverity,
    cleared_by_use: bool,
) -> None:
    scooter = await vehicle(session, "LYF002")
    assert scooter.device_id is not None
    [raised] = await feed(rules, session, scooter.device_id, m.Motion(kind))
    [again] = await feed(rules, session, scooter.device_id, m.Motion(kind))
    assert raised.id == again.id and again.occurrences == 2
    assert raised.alert_type == alert_type and raised.severity == severity
    assert raised.extra["vehicle_serial_number"] == "LYF002"
    assert raised.extra["location"]["coordinates"] == [scooter.longitude, scooter.latitude]
    assert raised.extra["state_of_charge"] == scooter.battery_level
    unlock = m.Unlocked(0, LockCause.COMMAND, command_id=b"\x01" * 16)
    changes = await feed(rules, session, scooter.device_id, unlock)
    assert bool(changes) is cleared_by_use
    await session.refresh(raised)
    assert raised.state == (AlertState.STOPPED if cleared_by_use else AlertState.NEW)
    if not cleared_by_use:  # docking at a station does not clear dismantling either
        await feed(
            rules,
            session,
            demo.station_device_ids[0],
            m.VehicleDocked(spot=5, serial_number="LYF002"),
        )
        await session.refresh(raised)
        assert raised.state == AlertState.NEW


async def test_lock_battery_low_and_webhook_topics(
    rules: AlertEngine, session: AsyncSession, demo: DemoRefs
) -> None:
    scooter = await vehicle(session, "LYF003")
    dev = scooter.device_id
    assert dev is not None
    [low] = await feed(rules, session, dev, m.BatteryLow(BatteryKind.INTERNAL, 18))
    assert low.alert_type == AlertType.LOCK_BATTERY_LOW and low.severity == AlertSeverity.LOW
    assert low.extra["state_of_charge"] == 18
    [lower] = await feed(rules, session, dev, m.BatteryLow(BatteryKind.INTERNAL, 8))
    assert lower.id == low.id and lower.severity == AlertSeverity.HIGH
    assert await feed(rules, session, dev, m.BatteryLow(BatteryKind.VAE, 15)) == []
    assert await feed(rules, session, dev, m.Telemetry(battery_pct=20)) == []  # hysteresis
    [cleared] = await feed(rules, session, dev, m.Telemetry(battery_pct=60))
    assert cleared.id == low.id and cleared.state == AlertState.STOPPED
    got = await topics(session)
    assert got.count("vehicule.battery.low") == 2
    assert got.count("vehicule.battery_vae.low") == 1


async def test_lock_box_events_become_seed_000_topics(
    rules: AlertEngine, session: AsyncSession, demo: DemoRefs
) -> None:
    scooter = await vehicle(session, "LYF004")
    dev = scooter.device_id
    assert dev is not None
    for body in (
        m.ChainInserted(ChainType.STANDARD),
        m.ChainRemoved(),
        m.ChainTypeChanged(ChainType.CABLE),
        m.BadgePresented(badge_uid=b"\xde\xad", authorized=False, offline=False),
        m.BadgePresented(badge_uid=b"\xbe\xef", authorized=True, offline=False),
        m.PinIncorrect(attempts=3),
    ):
        assert await feed(rules, session, dev, body) == []
    assert await topics(session) == [
        "boitier.locked",
        "boitier.unlocked",
        "boitier.chain_type.updated",
        "boitier.pass.unrecognized",
        "boitier.pin.incorrect",
    ]
    query = select(OutboxEvent.payload).order_by(OutboxEvent.id)
    payloads: list[dict[str, Any]] = list(await session.scalars(query))
    assert payloads[2]["chain_type"] == "cable" and payloads[3]["badge_uid"] == "dead"
    assert all(p["serial_number"] == "LYF004" for p in payloads)


async def _running_trip(session: AsyncSession, demo: DemoRefs, v: Vehicle) -> Trip:
    trip = Trip(
        user_id=demo.user_ids["alice@example.com"],
        vehicle_id=v.id,
        network_id=demo.network_id,
        status=TripStatus.RUNNING,
        free_floating_start=True,
        started_at=NOW - timedelta(minutes=20),
        currency="EUR",
    )
    session.add(trip)
    await session.commit()
    return trip


async def test_out_of_network_area_and_ride_outside(
    rules: AlertEngine, session: AsyncSession, demo: DemoRefs
) -> None:
    scooter = await vehicle(session, "LYF001")
    dev = scooter.device_id
    assert dev is not None
    inside = (scooter.latitude, scooter.longitude)
    assert await feed(rules, session, dev, m.Telemetry(lat=inside[0], lon=inside[1])) == []
    [out] = await feed(rules, session, dev, m.Telemetry(lat=OUTSIDE[0], lon=OUTSIDE[1]))
    assert out.alert_type == AlertType.VEHICLE_OUT_OF_NETWORK_AREA
    assert out.extra["location"] == {"type": "Point", "coordinates": [OUTSIDE[1], OUTSIDE[0]]}
    [back] = await feed(rules, session, dev, m.Telemetry(lat=inside[0], lon=inside[1]))
    assert back.id == out.id and back.state == AlertState.STOPPED

    trip = await _running_trip(session, demo, scooter)
    [ride] = await feed(rules, session, dev, m.Telemetry(lat=OUTSIDE[0], lon=OUTSIDE[1]))
    assert ride.alert_type == AlertType.VEHICLE_RIDE_OUTSIDE
    assert ride.trip_id == trip.id and ride.user_id == trip.user_id
    [back] = await feed(rules, session, dev, m.Telemetry(lat=inside[0], lon=inside[1]))
    assert back.id == ride.id and back.state == AlertState.STOPPED


async def test_return_outside_on_trip_end(
    rules: AlertEngine, session: AsyncSession, demo: DemoRefs
) -> None:
    scooter = await vehicle(session, "LYF002")
    trip = await _running_trip(session, demo, scooter)
    trip.status = TripStatus.FINISHED
    trip.free_floating_end = True
    trip.ended_at = NOW
    trip.end_latitude, trip.end_longitude = OUTSIDE
    [alert] = [c.alert for c in await rules.on_trip_terminated(session, trip, now=NOW)]
    await session.commit()
    assert alert.alert_type == AlertType.VEHICLE_RETURN_OUTSIDE and alert.trip_id == trip.id
    assert alert.severity == AlertSeverity.LOW
    # docked again: the sweep stops it
    await feed(
        rules, session, demo.station_device_ids[0], m.VehicleDocked(spot=6, serial_number="LYF002")
    )
    await session.refresh(alert)
    assert alert.state == AlertState.STOPPED


async def test_shutdown_and_birth(
    rules: AlertEngine, session: AsyncSession, demo: DemoRefs
) -> None:
    scooter = await vehicle(session, "LYF003")
    dev = scooter.device_id
    assert dev is not None
    [down] = await feed(rules, session, dev, m.Death(reason=None))
    assert down.alert_type == AlertType.LOCK_SHUTDOWN and down.extra["reason"] == "connection-lost"
    birth = m.Birth(kind=DeviceKind.VEHICLE, firmware="1.0", hardware="v1")
    [up_again] = await feed(rules, session, dev, birth)
    assert up_again.id == down.id and up_again.state == AlertState.STOPPED


async def test_sweep_no_tracking(rules: AlertEngine, session: AsyncSession, demo: DemoRefs) -> None:
    scooter = await vehicle(session, "LYF004")
    scooter.position_at = NOW - timedelta(hours=3)
    docked = await vehicle(session, "LY0001")
    docked.position_at = NOW - timedelta(hours=3)  # docked: the station tracks it
    await session.commit()
    changes = await rules.sweep(session, NOW)
    await session.commit()
    [alert] = [c.alert for c in changes]
    assert alert.alert_type == AlertType.LOCK_NO_TRACKING and alert.vehicle_id == scooter.id
    assert await rules.sweep(session, NOW + timedelta(minutes=1)) == []  # no second alert
    assert scooter.device_id is not None
    [stopped] = await feed(rules, session, scooter.device_id, m.Telemetry(lat=45.76, lon=4.84))
    assert stopped.id == alert.id and stopped.state == AlertState.STOPPED


async def test_sweep_idle_too_long(
    rules: AlertEngine, session: AsyncSession, demo: DemoRefs
) -> None:
    scooter = await vehicle(session, "LYF003")
    old = Trip(
        user_id=demo.user_ids["bob@example.com"],
        vehicle_id=scooter.id,
        network_id=demo.network_id,
        status=TripStatus.FINISHED,
        currency="EUR",
        started_at=NOW - timedelta(days=5, minutes=30),
        ended_at=NOW - timedelta(days=5),
    )
    session.add(old)
    await session.commit()
    [idle] = [c.alert for c in await rules.sweep(session, NOW)]
    await session.commit()
    assert idle.alert_type == AlertType.VEHICLE_TOO_LONG_IDLE and idle.vehicle_id == scooter.id
    await _running_trip(session, demo, scooter)
    changes = await rules.sweep(session, NOW)
    await session.commit()
    assert [(c.alert.id, c.topic) for c in changes] == [(idle.id, "fleet_alert.stopped")]


async def test_sweep_outside_operational_period(
    rules: AlertEngine, session: AsyncSession, demo: DemoRefs
) -> None:
    await session.execute(delete(PricingRule).where(PricingRule.network_id == demo.network_id))
    # open Saturday and Sunday only; NOW is a Wednesday
    session.add(
        PricingRule(
            network_id=demo.network_id,
            start_dow=6,
            start_hod="00:00:00",
            end_dow=1,
            end_hod="00:00:00",
            unlock_price=1,
            use_per_minute_price=0,
            on_hold_price=0,
        )
    )
    await session.commit()
    scooter = await vehicle(session, "LYF001")
    trip = await _running_trip(session, demo, scooter)
    [alert] = [c.alert for c in await rules.sweep(session, NOW)]
    await session.commit()
    assert alert.alert_type == AlertType.VEHICLE_OUTSIDE_OPERATIONAL_PERIOD
    assert alert.trip_id == trip.id
    trip.status = TripStatus.FINISHED
    trip.ended_at = NOW
    await session.commit()
    [stopped] = [c.alert for c in await rules.sweep(session, NOW)]
    assert stopped.id == alert.id and stopped.state == AlertState.STOPPED


async def test_lost_reported(rules: AlertEngine, session: AsyncSession, demo: DemoRefs) -> None:
    scooter = await vehicle(session, "LYF002")
    change = await rules.report_lost(
        session,
        scooter.id,
        user_id=demo.user_ids["bob@example.com"],
        note="not where the app says",
        now=NOW,
    )
    await session.commit()
    assert change.alert.alert_type == AlertType.VEHICLE_LOST_REPORTED
    assert change.alert.extra["note"] == "not where the app says"
    other = await vehicle(session, "LYF004")
    other.state = VehicleState.LOST_OR_STOLEN
    await session.commit()
    [lost] = [c.alert for c in await rules.sweep(session, NOW)]
    await session.commit()
    assert lost.vehicle_id == other.id
    await feed(
        rules, session, demo.station_device_ids[1], m.VehicleDocked(spot=7, serial_number="LYF002")
    )
    await session.refresh(change.alert)
    assert change.alert.state == AlertState.STOPPED


async def test_unknown_device_is_counted_not_raised(
    rules: AlertEngine, session: AsyncSession, demo: DemoRefs
) -> None:
    assert await feed(rules, session, "st-9999", m.PowerCut()) == []
    assert rules.counters["unknown_device"] == 1
    assert await alerts(session) == []


async def test_silenced_alert_counts_recurrences_and_comes_back(
    rules: AlertEngine, session: AsyncSession, demo: DemoRefs
) -> None:
    from kickstand.cloud.alerts.service import current_alerts, silence_alerts

    st = demo.station_device_ids[2]
    [alarm] = await feed(rules, session, st, m.AlarmTriggered(reason="tilt"))
    await silence_alerts(
        session, [alarm.id], operator_id=None, until=NOW + timedelta(hours=1), now=NOW
    )
    await session.commit()
    assert await current_alerts(session, [demo.network_id]) == []
    [again] = await feed(rules, session, st, m.AlarmTriggered(reason="tilt"))
    assert again.id == alarm.id and again.state == AlertState.SILENCED and again.occurrences == 2
    assert await rules.sweep(session, NOW + timedelta(minutes=30)) == []
    [back] = [c.alert for c in await rules.sweep(session, NOW + timedelta(hours=2))]
    await session.commit()
    assert back.id == alarm.id and back.state == AlertState.NEW
    assert [a.id for a in await current_alerts(session, [demo.network_id])] == [alarm.id]
