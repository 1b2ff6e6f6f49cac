"""Nothing lost, nothing applied twice, whatever dies: the broker, an ingest worker, the
database. Real Mosquitto, PostgreSQL, API and ingest processes and real station agents
(tests/chaos/plant.py); every event the agents stamped is looked up in the cloud's
database, one by one (README.md here)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kickstand.testing import PostgresCluster
from tests.chaos.plant import MIN_EVENTS, Plant, Report, check

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.mqtt, pytest.mark.postgres]

# The seed docks LY0001-3 at st-0001 spots 1-3 and LY0004-6 at st-0002 spots 1-3; the
# load comes from the empty spots 4-6 (Plant.burst).
TWO_STATIONS = {
    "st-0001": {1: "LY0001", 2: "LY0002", 3: "LY0003"},
    "st-0002": {1: "LY0004", 2: "LY0005", 3: "LY0006"},
}


async def broker_killed_while_ingest_is_behind(plant: Plant, settle_s: float) -> Report:
    await plant.burst(1.0)
    await plant.ingest[0].stop_async()  # ingest falls behind: the broker holds its share
    await plant.burst(3.0)  # the devices report, the broker PUBACKs
    plant.broker.kill()  # kill -9: what it held in memory only is gone
    await plant.burst(1.0)  # the devices queue on disk meanwhile
    await plant.broker.start_async()
    await plant.ingest[0].start_async()
    await plant.burst(1.0)
    return await plant.settle(within=settle_s)


async def test_broker_killed_while_ingest_is_behind(
    chaos_golden: PostgresCluster, tmp_path: Path
) -> None:
    async with Plant(chaos_golden, tmp_path, TWO_STATIONS) as plant:
        check(await broker_killed_while_ingest_is_behind(plant, settle_s=20), plant)


async def test_control_without_end_to_end_acks_the_count_sees_the_loss(
    chaos_golden: PostgresCluster, tmp_path: Path
) -> None:
    """The same broker crash with agents that delete on the broker's PUBACK (v1 before
    the Ack): events ARE lost, and the comparison must say so (else it proves nothing)."""
    async with Plant(chaos_golden, tmp_path, TWO_STATIONS, agent_acks=False) as plant:
        # What is lost stays lost: no need to wait long for it.
        report = await broker_killed_while_ingest_is_behind(plant, settle_s=6)
    print(f"\nchaos control: {report.summary()}")
    assert report.produced_events >= MIN_EVENTS, report.summary()
    assert report.missing_events, f"a broker crash lost nothing? {report.summary()}"
    assert not report.doubled_events, report.summary()


@pytest.mark.parametrize("back", [False, True], ids=["never-back", "restarted"])
async def test_ingest_worker_killed_mid_burst(
    chaos_golden: PostgresCluster, tmp_path: Path, back: bool
) -> None:
    async with Plant(chaos_golden, tmp_path, TWO_STATIONS, ingest_workers=2) as plant:
        load = asyncio.create_task(plant.burst(7.0))
        await asyncio.sleep(2.5)
        share = await plant.ingest[1].counters(("received",))
        assert share["received"] > 0, "the worker to kill has its share of the traffic"
        plant.ingest[1].kill()  # kill -9 with batches in hand
        if back:
            # Same client id: whatever its session kept comes again, on top of the resends.
            await asyncio.sleep(2.0)
            await plant.ingest[1].start_async()
        await load
        check(await plant.settle(within=25), plant)


async def test_postgres_stopped_while_devices_report(
    chaos_golden: PostgresCluster, tmp_path: Path
) -> None:
    async with Plant(chaos_golden, tmp_path, TWO_STATIONS) as plant:
        load = asyncio.create_task(plant.burst(7.0))
        await asyncio.sleep(1.5)
        await plant.postgres.stop_async()
        await asyncio.sleep(4.0)
        await plant.postgres.start_async()
        await load
        check(await plant.settle(within=20), plant)


async def test_postgres_starting_up_while_devices_report(
    chaos_golden: PostgresCluster, tmp_path: Path
) -> None:
    async with Plant(chaos_golden, tmp_path, TWO_STATIONS) as plant:
        load = asyncio.create_task(plant.burst(14.0))
        await asyncio.sleep(1.5)
        # Every connection now gets 57P03 "the database system is starting up" (a crash
        # recovery, a failover), for 10 s, then the server is promoted and accepts again.
        await plant.postgres.hold_starting_up_async()
        await asyncio.sleep(10.0)
        await asyncio.to_thread(plant.postgres.promote)
        await load
        check(await plant.settle(within=20), plant)


async def test_postgres_failover_answers_read_only_before_the_promotion(
    chaos_golden: PostgresCluster, tmp_path: Path
) -> None:
    async with Plant(chaos_golden, tmp_path, TWO_STATIONS) as plant:
        load = asyncio.create_task(plant.burst(8.0))
        await asyncio.sleep(1.5)
        # A failover as ingest may meet it: 57P03 while the standby starts, then for a
        # few seconds a replica that answers read-only (25006 on every write), then the
        # promoted primary.
        await plant.postgres.hold_starting_up_async(hot_standby=True)
        await asyncio.sleep(2.0)
        await asyncio.to_thread(plant.postgres.serve_read_only)
        await asyncio.sleep(3.0)
        await asyncio.to_thread(plant.postgres.promote)
        await load
        check(await plant.settle(within=20), plant)
