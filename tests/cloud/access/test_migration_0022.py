"""Migration 0022 (organizations scoped to networks) both ways on SQLite and PostgreSQL: an
existing organization gets the lowest network whose access rule names it, else the
installation's only network, else none (global grants only); down again the columns go."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Boolean, DateTime, Integer, Numeric, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from kickstand.cloud.migrations import downgrade, upgrade
from kickstand.testing import PostgresServer

ORG = (
    "INSERT INTO organizations (id, third_party_id, name, is_guarantor, allow_outside_rules,"
    " paid_outside_rules_ratio, only_show_matching_clusters, pays_rule_overrun, created_at)"
    " VALUES ({id}, 1, 'org {id}', false, false, 0, false, false, '2026-01-01 00:00:00')"
)
RULE = (
    "INSERT INTO network_access_rules (network_id, organization_id, created_at)"
    " VALUES ({network}, {org}, '2026-01-01 00:00:00')"
)
#: Values of the networks' required columns the generic fill would get wrong.
NETWORK_VALUES = {"currency": "EUR", "timezone": "Europe/Paris", "out_of_border_policy": "alert"}


async def _run(engine: AsyncEngine, sql: str) -> list[tuple[object, ...]]:
    async with engine.begin() as conn:
        result = await conn.execute(text(sql))
        return [tuple(r) for r in result] if result.returns_rows else []


async def _add_network(engine: AsyncEngine, network_id: int) -> None:
    """A network row at 0021: every required column filled by its type (the schema of that
    revision, read from the database, not today's model)."""

    def required(conn: Any) -> list[dict[str, Any]]:
        return [
            c
            for c in inspect(conn).get_columns("networks")
            if not c["nullable"] and c["name"] != "id" and c.get("default") is None
        ]

    async with engine.begin() as conn:
        columns = await conn.run_sync(required)
        values: dict[str, Any] = {"id": network_id}
        for c in columns:
            kind = c["type"]
            if c["name"] in NETWORK_VALUES:
                values[c["name"]] = NETWORK_VALUES[c["name"]]
            elif c["name"] == "name":
                values["name"] = f"network {network_id}"
            elif isinstance(kind, Boolean):
                values[c["name"]] = False
            elif isinstance(kind, Integer | Numeric):
                values[c["name"]] = 0
            elif isinstance(kind, DateTime) or "time" in str(kind).lower():
                values[c["name"]] = datetime(2026, 1, 1, tzinfo=UTC)
            else:
                values[c["name"]] = "x"
        names = ", ".join(values)
        marks = ", ".join(f":{n}" for n in values)
        await conn.execute(text(f"INSERT INTO networks ({names}) VALUES ({marks})"), values)


async def _both_ways(engine: AsyncEngine, networks: list[int]) -> dict[int, int | None]:
    await upgrade(engine, "0021_network_rules_applied")
    for network in networks:
        await _add_network(engine, network)
    for org in (1, 2):
        await _run(engine, ORG.format(id=org))
    if len(networks) > 1:
        await _run(engine, RULE.format(network=networks[1], org=1))
        await _run(engine, RULE.format(network=networks[0], org=1))
    await upgrade(engine, "0022_organizations_scope")
    rows = await _run(engine, "SELECT id, network_id, created_by FROM organizations ORDER BY id")
    assert all(created_by is None for _, _, created_by in rows)
    found = {int(str(i)): (int(str(n)) if n is not None else None) for i, n, _ in rows}
    await downgrade(engine, "0021_network_rules_applied")
    columns = await _run(engine, "SELECT * FROM organizations WHERE id = 1")
    assert len(columns[0]) == 13  # back to 0021's columns
    return found


async def _sqlite(tmp_path: Path, name: str, networks: list[int]) -> dict[int, int | None]:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / name}")
    try:
        return await _both_ways(engine, networks)
    finally:
        await engine.dispose()


async def test_migration_0022_on_sqlite(tmp_path: Path) -> None:
    # Two networks: the lowest one whose access rule names it; none for the other.
    assert await _sqlite(tmp_path, "two.sqlite3", [4, 9]) == {1: 4, 2: None}
    # One network: every organization is of it.
    assert await _sqlite(tmp_path, "one.sqlite3", [4]) == {1: 4, 2: 4}


@pytest.mark.postgres
async def test_migration_0022_on_postgres(pg_server: PostgresServer) -> None:
    database = pg_server.new_database()
    engine = create_async_engine(database.url)
    try:
        assert await _both_ways(engine, [4, 9]) == {1: 4, 2: None}
    finally:
        await engine.dispose()
        pg_server.drop_database(database.name)
