"""Vehicle speed settings per vehicle type (seed 002) take effect (issue 16): a ride that
starts is sent its type's normal speed on the network, a speed zone lowers it and leaving
the zone brings the normal speed back (not the vehicle's full speed). Through the real
ingest path with the FreeFloatHook on PostgreSQL."""

from __future__ import annotations

import pytest

from kickstand.cloud.models import Network, VehicleType
from kickstand.cloud.networks import service as networks
from kickstand.protocol.v1 import messages as m
from tests.cloud.freefloat.conftest import Env
from tests.cloud.freefloat.test_freefloat_rides import ride, start_ride

pytestmark = pytest.mark.postgres


async def set_speeds(env: Env, vehicle_type: VehicleType, medium: int) -> None:
    async with env.sessionmaker() as s, s.begin():
        network = await s.get_one(Network, env.refs.network_id)
        await networks.set_speed_settings(
            s,
            network,
            {
                "vehicle_type": vehicle_type,
                "default_low_speed": 6,
                "default_medium_speed": medium,
                "default_high_speed": 25,
                "min_battery_to_slow_down": None,
                "battery_slow_down_speed": None,
            },
        )


async def test_the_networks_normal_speed_is_the_rides_limit_zones_lower_it(env: Env) -> None:
    await set_speeds(env, VehicleType.KICK_SCOOTER, 18)
    await set_speeds(env, VehicleType.E_BIKE, 22)  # another type's: not this vehicle's
    scooter = env.scooter()
    await start_ride(env, scooter)
    await env.hook.drain()
    assert env.sender.sent == [("vh-LYF002", m.SetSpeedLimit(max_kmh=18))]
    # into S (10 km/h, two fixes confirm), then out of it (two fixes)
    await ride(scooter, [4.8415, 4.8420, 4.8435, 4.8440, 4.8445], 5)
    await env.hook.drain()
    assert env.sender.sent[1:] == [("vh-LYF002", m.SetSpeedLimit(max_kmh=10))]
    await ride(scooter, [4.8460, 4.8465], 30)
    await env.hook.drain()
    assert env.sender.sent[2:] == [("vh-LYF002", m.SetSpeedLimit(max_kmh=18))]
    assert env.hook.stats["ride-speed-limit"] == 1


async def test_a_zone_faster_than_the_normal_speed_does_not_raise_it(env: Env) -> None:
    await set_speeds(env, VehicleType.KICK_SCOOTER, 8)  # below S's 10 km/h
    scooter = env.scooter()
    await start_ride(env, scooter)
    await ride(scooter, [4.8415, 4.8420, 4.8435, 4.8440, 4.8445], 5)
    await env.hook.drain()
    assert {c for _, c in env.sender.sent} == {m.SetSpeedLimit(max_kmh=8)}
