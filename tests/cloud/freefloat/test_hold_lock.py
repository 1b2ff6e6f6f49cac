"""A rider's trip on hold with a vehicle controller (issue 16, bug 4): the hold is a
temporary lock (seed 002 ``trip_on_hold``), so the vehicle's Locked while on hold keeps the
trip on hold; an unlock resumes it, and the network's ``trip_max_pause`` ends it if the
rider never comes back. Through the rider API and the real ingest path on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kickstand.cloud.models import Network, TripStatus
from kickstand.cloud.rent_gateway import UnlockOutcome
from kickstand.protocol.v1 import messages as m
from kickstand.protocol.v1.enums import LockCause
from tests.cloud.freefloat.conftest import Env, Scooter
from tests.cloud.freefloat.test_freefloat_rides import unlock

pytestmark = pytest.mark.postgres


async def ride_then_hold(env: Env) -> tuple[Scooter, int, datetime]:
    scooter = env.scooter()
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    await unlock(env, qr="https://kickstand.app/v/lyf002")
    await scooter.send(m.Unlocked(0, LockCause.COMMAND, None, None), start)
    (trip,) = await env.trips_of("LYF002")
    held = await env.client.post(f"/v1/trips/{trip.id}/hold", headers=await env.login())
    assert held.status_code == 200, held.text
    assert held.json()["data"]["on_hold_since"] is not None
    return scooter, trip.id, start


async def test_locking_while_on_hold_keeps_the_trip_until_it_is_unlocked(env: Env) -> None:
    scooter, trip_id, _ = await ride_then_hold(env)
    locked_at = datetime.now(UTC)
    await scooter.send(m.Locked(0, LockCause.MANUAL, None), locked_at)
    (trip,) = await env.trips_of("LYF002")
    assert trip.id == trip_id and trip.status is TripStatus.ON_HOLD and trip.ended_at is None
    assert (await env.vehicle("LYF002")).state.value == "rented"  # still the rider's

    # The rider comes back: the vehicle's unlock resumes the trip, the next lock ends it.
    # (Device times near now: ingest replaces a stamp far from the receive time.)
    await scooter.send(m.Unlocked(0, LockCause.MANUAL, None, None), datetime.now(UTC))
    (trip,) = await env.trips_of("LYF002")
    assert trip.status is TripStatus.RUNNING and trip.on_hold_since is None
    assert len(trip.hold_periods) == 1
    await scooter.send(m.Locked(0, LockCause.MANUAL, None), datetime.now(UTC))
    (trip,) = await env.trips_of("LYF002")
    assert trip.status is TripStatus.FINISHED and trip.ended_at is not None
    assert trip.ended_at >= datetime.fromisoformat(trip.hold_periods[0]["end"])
    assert (await env.vehicle("LYF002")).state.value == "available"


async def test_a_hold_never_resumed_ends_at_the_networks_max_pause(env: Env) -> None:
    scooter, _, _ = await ride_then_hold(env)
    await scooter.send(m.Locked(0, LockCause.MANUAL, None), datetime.now(UTC))
    async with env.sessionmaker() as s:
        max_pause = (await s.get_one(Network, env.refs.network_id)).trip_max_pause
    (trip,) = await env.trips_of("LYF002")
    assert trip.on_hold_since is not None
    deadline = trip.on_hold_since + timedelta(seconds=max_pause)
    await env.applier.sweep(now=deadline - timedelta(seconds=1))
    (trip,) = await env.trips_of("LYF002")
    assert trip.status is TripStatus.ON_HOLD
    await env.applier.sweep(now=deadline + timedelta(seconds=1))
    (trip,) = await env.trips_of("LYF002")
    assert trip.status is TripStatus.FINISHED and trip.ended_at == deadline
    assert (await env.vehicle("LYF002")).state.value == "available"


async def test_resume_unlocks_the_vehicle_and_stays_on_hold_when_it_cannot(env: Env) -> None:
    scooter, trip_id, _ = await ride_then_hold(env)
    await scooter.send(m.Locked(0, LockCause.MANUAL, None), datetime.now(UTC))
    (trip,) = await env.trips_of("LYF002")
    calls = len(env.gateway.calls)

    env.gateway.outcome = UnlockOutcome.offline()
    refused = await env.client.post(f"/v1/trips/{trip_id}/resume", headers=await env.login())
    assert refused.status_code == 503 and refused.json()["reason"] == "device-offline"
    (trip,) = await env.trips_of("LYF002")
    assert trip.status is TripStatus.ON_HOLD

    env.gateway.outcome = UnlockOutcome.unlocked()
    resumed = await env.client.post(f"/v1/trips/{trip_id}/resume", headers=await env.login())
    assert resumed.status_code == 200, resumed.text
    assert env.gateway.calls[calls:] == [("vehicle", "vh-LYF002", str(trip.rent_id))] * 2
    (trip,) = await env.trips_of("LYF002")
    assert trip.status is TripStatus.RUNNING and len(trip.hold_periods) == 1
    # The device's Unlocked of that command arrives: the trip is already running.
    await scooter.send(m.Unlocked(0, LockCause.COMMAND, None, None), datetime.now(UTC))
    (trip,) = await env.trips_of("LYF002")
    assert trip.status is TripStatus.RUNNING and len(trip.hold_periods) == 1
