"""Migration 0019 both ways on SQLite and PostgreSQL: its backfill gives the rollup the
trips' seam gave (set-based from ``trips``), its downgrade drops the tables and the index,
and up again rebuilds the same."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.migrations import downgrade, upgrade
from kickstand.cloud.models import (
    Cluster,
    Network,
    Trip,
    TripStatus,
    Vehicle,
    VehicleState,
    VehicleType,
)
from kickstand.cloud.stats import rollup
from tests.cloud.api.support import BOTH_DATABASES
from tests.cloud.stats.test_rollup import assert_same, snapshot

pytestmark = BOTH_DATABASES

ROLLUP_TABLES = {t.name for t in rollup.TABLES}


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def _indexes(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        found = await conn.run_sync(lambda c: inspect(c).get_indexes("trips"))
    return {str(i["name"]) for i in found}


async def test_migration_0019_backfills_and_goes_back(db_url: str) -> None:
    engine = create_engine(db_url)
    maker = create_sessionmaker(engine)
    try:
        async with maker() as session:
            network = Network(name="Backfill", currency="EUR", timezone="America/New_York")
            session.add(network)
            await session.flush()
            cluster = Cluster(network_id=network.id, name="B", latitude=40.7, longitude=-74.0)
            vehicles = [
                Vehicle(
                    serial_number=f"BF{i:04d}",
                    vehicle_type=VehicleType.BIKE,
                    network_id=network.id,
                    state=VehicleState.AVAILABLE,
                )
                for i in range(3)
            ]
            session.add_all([cluster, *vehicles])
            await session.flush()
            t0 = datetime(2026, 11, 1, 4, 30, tzinfo=UTC)  # around New York's DST end
            trips = [
                Trip(
                    vehicle_id=vehicles[i % 3].id,
                    network_id=network.id,
                    status=TripStatus.FINISHED if i % 5 else TripStatus.CANCELLED,
                    start_cluster_id=cluster.id,
                    end_cluster_id=cluster.id if i % 2 else None,
                    start_latitude=40.7,
                    start_longitude=-74.0,
                    end_latitude=40.7 + i / 1000 if i % 2 else None,
                    end_longitude=-74.0 if i % 2 else None,
                    started_at=t0 + timedelta(hours=5 * i),
                    ended_at=t0 + timedelta(hours=5 * i, seconds=100 * i + 7),
                    cost=Decimal(i % 3),
                    currency="EUR",
                    hold_periods=[],
                )
                for i in range(20)
            ]
            session.add_all(trips)
            await session.flush()
            for trip in trips:
                await rollup.apply_trip(session, trip)
            await session.commit()
            ids = [network.id]
        async with maker() as session:
            fed = await snapshot(session, ids)
        assert len(fed["trip_rollup_ledger"]) == 16  # the cancelled ones are not counted
        assert "ix_trips_network_active_started" in await _indexes(engine)

        await downgrade(engine, "0018_users_support")
        assert not ROLLUP_TABLES & await _tables(engine)
        assert "ix_trips_network_active_started" not in await _indexes(engine)

        await upgrade(engine)
        assert ROLLUP_TABLES <= await _tables(engine)
        async with maker() as session:
            assert_same(fed, await snapshot(session, ids))
    finally:
        await engine.dispose()
