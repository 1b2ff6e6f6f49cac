"""Migration 0008 (device contract) carries the data over: lock_status takes the protocol's
LockState codes (the old 1 = locked becomes 0), spots already in maintenance are the
station's own; and back down again."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy.ext.asyncio import create_async_engine

from kickstand.cloud.migrations import downgrade, upgrade


def spots(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Plain sqlite3 (no foreign keys enforced): only the spots matter here."""
    with sqlite3.connect(path) as conn:
        return list(conn.execute(sql))


async def test_lock_status_codes_and_maintenance_owner_migrate_both_ways(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    # A plain engine: no foreign keys enforced (the spots' stations are not made here).
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await upgrade(engine, "0007_badge_rides")
        # Old codes: 1 locked, 0 unlocked.
        spots(
            path,
            "INSERT INTO spots (id, station_id, displayed_number, lock_status, state) "
            "VALUES (1, 1, 1, 1, 'active'), (2, 1, 2, 0, 'maintenance')",
        )
        await upgrade(engine, "0008_device_contract")
        rows = spots(path, "SELECT id, lock_status, maintenance_source FROM spots ORDER BY id")
        assert rows == [(1, 0, None), (2, 1, "device")]
        await downgrade(engine, "0007_badge_rides")
        assert spots(path, "SELECT lock_status FROM spots ORDER BY id") == [(1,), (0,)]
    finally:
        await engine.dispose()
