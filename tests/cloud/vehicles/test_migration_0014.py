"""Migration 0014 (vehicle registry) both ways on SQLite and PostgreSQL: the state CHECK takes
``decommissioned`` (and refuses anything else), the tables come and go; going down, a
decommissioned vehicle stays unrentable (lost-or-stolen)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from kickstand.cloud.migrations import downgrade, upgrade
from kickstand.testing import PostgresServer

VEHICLE = (
    "INSERT INTO vehicles (id, serial_number, vehicle_type, network_id, state, in_maintenance)"
    " VALUES ({id}, 'MIG00{id}', 'bike', 1, '{state}', false)"
)


async def _run(engine: AsyncEngine, sql: str) -> list[tuple[object, ...]]:
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Only the vehicles matter: their network row is not made (foreign keys off;
            # CHECK constraints still hold). SQLite's plain engine enforces none.
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
        result = await conn.execute(text(sql))
        return [tuple(r) for r in result] if result.returns_rows else []


async def _both_ways(engine: AsyncEngine) -> None:
    await upgrade(engine, "0013_stations_commissioning")
    with pytest.raises(IntegrityError):  # 0001's CHECK: no such state yet
        await _run(engine, VEHICLE.format(id=1, state="decommissioned"))
    await upgrade(engine, "0014_vehicles_registry")
    await _run(engine, VEHICLE.format(id=1, state="decommissioned"))
    await _run(engine, VEHICLE.format(id=2, state="available"))
    await _run(engine, "UPDATE vehicles SET model = 'Kick One' WHERE id = 2")
    with pytest.raises(IntegrityError):
        await _run(engine, VEHICLE.format(id=3, state="scrapped"))
    assert await _run(engine, "SELECT count(*) FROM vehicle_external_locks") == [(0,)]
    await downgrade(engine, "0013_stations_commissioning")
    rows = await _run(engine, "SELECT id, state FROM vehicles ORDER BY id")
    assert rows == [(1, "lost-or-stolen"), (2, "available")]
    with pytest.raises(IntegrityError):
        await _run(engine, VEHICLE.format(id=4, state="decommissioned"))


async def test_migration_0014_on_sqlite(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'm.sqlite3'}")
    try:
        await _both_ways(engine)
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_migration_0014_on_postgres(pg_server: PostgresServer) -> None:
    database = pg_server.new_database()
    engine = create_async_engine(database.url)
    try:
        await _both_ways(engine)
    finally:
        await engine.dispose()
        pg_server.drop_database(database.name)
