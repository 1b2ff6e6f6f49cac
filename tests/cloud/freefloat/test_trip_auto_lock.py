"""Rent timings that take effect (issue 16): the network's ``trip_auto_lock`` (seed 002:
the maximum duration of a trip; the vehicle is locked and the trip stopped past it) ends a
trip with a vehicle controller at ``started_at + trip_auto_lock`` and sends the vehicle a
Lock. Through the ingest applier's sweep with the FreeFloatHook on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from kickstand.cloud.models import Network, TripStatus
from kickstand.protocol.v1 import messages as m
from tests.cloud.freefloat.conftest import Env
from tests.cloud.freefloat.test_freefloat_rides import T0, ride, start_ride, t

pytestmark = pytest.mark.postgres


async def set_auto_lock(env: Env, seconds: int) -> None:
    async with env.sessionmaker() as s, s.begin():
        await s.execute(
            update(Network).where(Network.id == env.refs.network_id).values(trip_auto_lock=seconds)
        )


async def test_a_trip_past_the_networks_max_duration_is_ended_and_its_vehicle_locked(
    env: Env,
) -> None:
    await set_auto_lock(env, 600)
    scooter = env.scooter()
    await start_ride(env, scooter)
    await ride(scooter, [4.8545, 4.8550, 4.8560], 5)
    await env.applier.sweep(now=t(599))
    (trip,) = await env.trips_of("LYF002")
    assert trip.status is TripStatus.RUNNING
    await env.hook.drain()
    assert ("vh-LYF002", m.Lock(spot=0)) not in env.sender.sent

    await env.applier.sweep(now=t(601))
    (trip,) = await env.trips_of("LYF002")
    assert trip.status is TripStatus.FINISHED and trip.ended_at == T0 + timedelta(seconds=600)
    assert trip.free_floating_end is True and trip.cost is not None
    assert (await env.vehicle("LYF002")).state.value == "available"
    await env.hook.drain()
    assert env.sender.sent.count(("vh-LYF002", m.Lock(spot=0))) == 1
    await env.applier.sweep(now=t(700))  # once
    await env.hook.drain()
    assert env.sender.sent.count(("vh-LYF002", m.Lock(spot=0))) == 1


async def test_zero_is_no_maximum(env: Env) -> None:
    await set_auto_lock(env, 0)
    scooter = env.scooter()
    await start_ride(env, scooter)
    await env.applier.sweep(now=t(86400 * 30))
    (trip,) = await env.trips_of("LYF002")
    assert trip.status is TripStatus.RUNNING
