"""Free-floating rides through the real ingest path (decoded protocol messages fed to the
BatchApplier with the FreeFloatHook) on PostgreSQL; the unlock goes through the rider API.

Device times are a Wednesday morning in Lyon (all-week rule: unlock 1.00 EUR, 300 s
included, 0.10 EUR per started minute, free-float lock price 0.50 EUR).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from kickstand.cloud.alerts.models import FleetAlert
from kickstand.cloud.alerts.types import AlertType
from kickstand.cloud.models import TripStatus, WalletTransaction
from kickstand.protocol.v1 import messages as m
from kickstand.protocol.v1.enums import LockCause
from tests.cloud.freefloat.conftest import Env, Scooter

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 11, 18, 9, 0, 0, tzinfo=UTC)  # Wednesday 10:00 Europe/Paris


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def unlock(env: Env, *, qr: str | None = None, serial: str | None = None) -> dict:
    headers = {**(await env.login()), "Idempotency-Key": uuid.uuid4().hex}
    body = {"qr_code": qr} if qr is not None else {"serial_number": serial}
    r = await env.client.post("/v1/freefloat/unlock", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json()["data"])


async def start_ride(env: Env, scooter: Scooter) -> None:
    rent = await unlock(env, qr="https://kickstand.app/v/lyf002")
    assert rent["serial_number"] == "LYF002" and rent["free_floating"] is True
    assert env.gateway.calls == [("vehicle", "vh-LYF002", str(rent["rent_id"]))]
    await scooter.send(m.Unlocked(0, LockCause.COMMAND, None, None), T0)
    (trip,) = await env.trips_of("LYF002")
    assert trip.status is TripStatus.RUNNING and trip.started_at == T0


async def ride(scooter: Scooter, lons: list[float], start_s: float, every_s: float = 5) -> float:
    at = start_s
    for lon in lons:
        await scooter.position(lon, t(at))
        at += every_s
    return at


async def test_ride_through_speed_zone_to_virtual_parking_billed_right(env: Env) -> None:
    scooter = env.scooter()
    await start_ride(env, scooter)
    wallet_before = await env.wallet()

    # outside S, into S (two fixes confirm), out of S (two fixes), into the parking P
    await ride(scooter, [4.8415, 4.8420, 4.8435, 4.8440, 4.8445], 5)
    await env.hook.drain()
    assert env.sender.sent == [("vh-LYF002", m.SetSpeedLimit(max_kmh=10))]
    await ride(scooter, [4.8460, 4.8465, 4.8480, 4.8481], 30)
    await env.hook.drain()
    # leaving the last zone, no network default: the vehicle's full speed again
    assert env.sender.sent[1:] == [("vh-LYF002", m.SetSpeedLimit(max_kmh=25))]

    await scooter.send(m.Locked(0, LockCause.MANUAL, None), t(750))  # 12 min 30 s
    (trip,) = await env.trips_of("LYF002")
    assert trip.status is TripStatus.FINISHED and trip.ended_at == t(750)
    # 1.00 unlock + (750 - 300) s → 8 started minutes × 0.10; inside P: no lock price
    assert trip.cost == Decimal("1.80")
    assert trip.free_floating_end is False
    assert trip.cost_detail is not None
    assert trip.cost_detail["return"]["kind"] == "normal"
    assert trip.cost_detail["return"]["virtual_parking_id"] == env.zone_ids["parking"]
    assert await env.wallet() == wallet_before - Decimal("1.80")
    vehicle = await env.vehicle("LYF002")
    assert vehicle.state.value == "available"
    assert (vehicle.longitude, vehicle.latitude) == (4.8481, 45.7593)
    assert await env.outbox("vehicule.position.forbidden") == []
    assert env.hook.stats["lock-normal"] == 1


async def test_return_outside_a_parking_adds_the_lock_price(env: Env) -> None:
    scooter = env.scooter()
    await start_ride(env, scooter)
    # through the forbidden zone F (running trip: webhook topic), then stop beyond it
    await ride(scooter, [4.8500, 4.8515, 4.8520, 4.8545, 4.8550, 4.8560], 5)
    forbidden = await env.outbox("vehicule.position.forbidden")
    assert len(forbidden) == 1
    payload = forbidden[0].payload
    assert payload["forbidden_zone_id"] == env.zone_ids["forbidden"]
    (trip,) = await env.trips_of("LYF002")
    assert payload["trip_id"] == trip.id and payload["serial_number"] == "LYF002"

    r = await env.client.get(f"/v1/freefloat/trips/{trip.id}/return", headers=await env.login())
    assert r.status_code == 200, r.text
    check = r.json()["data"]
    assert check["kind"] == "outside-parking" and check["refused"] is False
    assert check["free_float_fee_applies"] is True

    await scooter.send(m.Locked(0, LockCause.MANUAL, None), t(1200))  # 20 min exactly
    (trip,) = await env.trips_of("LYF002")
    assert trip.status is TripStatus.FINISHED and trip.ended_at == t(1200)
    # 1.00 + 15 minutes × 0.10 + free-float lock price 0.50
    assert trip.cost == Decimal("3.00")
    assert trip.free_floating_end is True
    assert trip.cost_detail is not None
    assert Decimal(trip.cost_detail["freefloat_lock_price"]) == Decimal("0.50")
    assert trip.cost_detail["return"]["kind"] == "outside-parking"


async def test_ride_leaving_the_border_alert_policy(env: Env) -> None:
    await env.set_policy("alert")
    scooter = env.scooter()
    await start_ride(env, scooter)
    # east, out of the Lyon border (lon 4.93), two fixes to confirm
    end = await ride(scooter, [4.8800, 4.9200, 4.9350, 4.9360, 4.9370], 60, every_s=60)
    alerts = await env.count(
        FleetAlert, FleetAlert.alert_type == AlertType.VEHICLE_OUT_OF_NETWORK_AREA
    )
    assert alerts == 1
    (left,) = await env.outbox("vehicule.position.out_of_network")
    assert left.payload["notify_user"] is True and left.payload["trip_id"] is not None

    await scooter.send(m.Locked(0, LockCause.MANUAL, None), t(end))
    (trip,) = await env.trips_of("LYF002")
    assert trip.status is TripStatus.FINISHED  # policy alert: the trip ends...
    assert trip.cost_detail is not None and trip.cost_detail["return"]["kind"] == "outside-network"
    assert trip.free_floating_end is True  # ...with the lock price
    returned = await env.count(
        FleetAlert, FleetAlert.alert_type == AlertType.VEHICLE_RETURN_OUTSIDE
    )
    assert returned == 1  # ...and an alert (the alerts engine, on the finished trip)


async def test_ride_leaving_the_border_refuse_policy(env: Env) -> None:
    await env.set_policy("refuse")
    scooter = env.scooter()
    await start_ride(env, scooter)
    await ride(scooter, [4.9000, 4.9350, 4.9360], 60, every_s=60)  # outside
    await scooter.send(m.Locked(0, LockCause.MANUAL, None), t(300))

    (trip,) = await env.trips_of("LYF002")
    assert trip.status is TripStatus.RUNNING and trip.ended_at is None  # refused
    (refused,) = await env.outbox("trip.return.refused")
    assert refused.payload["trip_id"] == trip.id
    assert refused.payload["return"]["kind"] == "outside-network"
    r = await env.client.get(f"/v1/freefloat/trips/{trip.id}/return", headers=await env.login())
    assert r.json()["data"]["refused"] is True

    # The rider unlocks again (own trip: the unlock is re-sent, no new rent), rides back in.
    calls = len(env.gateway.calls)
    headers = {**(await env.login()), "Idempotency-Key": uuid.uuid4().hex}
    r = await env.client.post(
        "/v1/freefloat/unlock", json={"serial_number": "lyf002"}, headers=headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["trip_id"] == trip.id
    assert len(env.gateway.calls) == calls + 1
    await scooter.send(m.Unlocked(0, LockCause.COMMAND, None, None), t(320))
    await ride(scooter, [4.9000, 4.8600, 4.8480, 4.8481], 330, every_s=60)
    await scooter.send(m.Locked(0, LockCause.MANUAL, None), t(600))

    trips = await env.trips_of("LYF002")
    assert len(trips) == 1
    (trip,) = trips
    assert trip.status is TripStatus.FINISHED and trip.ended_at == t(600)
    # billed for the whole ride: 1.00 + 5 minutes × 0.10, inside P
    assert trip.cost == Decimal("1.50")
    assert trip.cost_detail is not None and trip.cost_detail["return"]["kind"] == "normal"


async def test_coverage_lost_lock_arrives_later_ends_at_lock_time_once(env: Env) -> None:
    scooter = env.scooter()
    await start_ride(env, scooter)
    await ride(scooter, [4.8415, 4.8420], 5)
    # Into a tunnel: the device queues positions, the lock and a position at the lock...
    queued = [
        scooter.message(m.Telemetry(lat=45.7593, lon=4.8475, speed_kmh=12.0), t(400)),
        scooter.message(m.Telemetry(lat=45.7593, lon=4.8480, speed_kmh=3.0), t(405)),
        scooter.message(m.Locked(0, LockCause.MANUAL, None), t(410)),
        scooter.message(m.Telemetry(lat=45.7593, lon=4.8480, speed_kmh=0.0), t(411)),
    ]
    (trip,) = await env.trips_of("LYF002")
    assert trip.status is TripStatus.RUNNING
    # ...and delivers them when coverage returns (the server clock is days later), twice:
    # the broker redelivers what was not acknowledged.
    await scooter.feed(*queued)
    await scooter.feed(*queued)
    await scooter.feed(queued[2])

    trips = await env.trips_of("LYF002")
    assert len(trips) == 1
    (trip,) = trips
    assert trip.status is TripStatus.FINISHED and trip.ended_at == t(410)
    # 1.00 + (410 - 300) s → 2 started minutes × 0.10; the lock position is in P
    assert trip.cost == Decimal("1.20")
    assert trip.cost_detail is not None and trip.cost_detail["return"]["kind"] == "normal"
    assert len(await env.outbox("trip.terminated")) == 1
    async with env.sessionmaker() as s:
        charges = (
            await s.scalars(select(WalletTransaction).where(WalletTransaction.trip_id == trip.id))
        ).all()
    assert [c.amount for c in charges] == [Decimal("-1.20")]
    assert env.applier.stats.duplicates >= 2
