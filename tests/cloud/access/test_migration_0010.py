"""Migration 0010 (access control): the units named in users' grants become rows, the
legacy operator keys become seed 002 permissions, malformed entries stay as they were (they
grant nothing), and back down again."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from sqlalchemy.ext.asyncio import create_async_engine

from kickstand.cloud.access.grants import OPERATOR_PERMISSIONS
from kickstand.cloud.migrations import downgrade, upgrade

OU = {"id": 7, "networks": [3], "clusters": [], "app_labels": [], "organizations": []}
LEGACY = [
    {"perm_key": "rent", "write": True, "ou": OU},
    {"perm_key": "vehicles", "write": True, "ou": OU},
    {"perm_key": "stations", "write": True, "ou": OU},
]
MALFORMED = [{"perm_key": "stations", "write": True, "ou": {"id": 9, "networks": ["3"]}}]


def sql(path: Path, query: str, *args: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return list(conn.execute(query, args))


async def test_grants_and_units_migrate_both_ways(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await upgrade(engine, "0009_rider_accounts")
        for uid, perms in ((1, LEGACY), (2, MALFORMED)):
            sql(
                path,
                "INSERT INTO users (id, email, password_hash, role, permissions, wallet_balance,"
                " is_active, token_generation, created_at, lang) VALUES"
                " (?, ?, 'x', 'operator', ?, 0, 1, 0, '2026-01-01 00:00:00', 'en')",
                uid, f"u{uid}@example.com", json.dumps(perms),
            )  # fmt: skip
        await upgrade(engine, "0010_access_control")
        migrated = json.loads(str(sql(path, "SELECT permissions FROM users WHERE id = 1")[0][0]))
        assert {e["perm_key"] for e in migrated} == {"rent", *OPERATOR_PERMISSIONS}
        assert all(e["ou"] == OU and e["write"] is True for e in migrated)
        assert len(migrated) == 1 + len(OPERATOR_PERMISSIONS)  # no duplicates
        kept = json.loads(str(sql(path, "SELECT permissions FROM users WHERE id = 2")[0][0]))
        assert kept == MALFORMED
        units = sql(path, "SELECT id, networks FROM organizational_units ORDER BY id")
        assert [(u[0], json.loads(str(u[1]))) for u in units] == [(7, [3]), (9, [])]
        roles = sql(path, "SELECT key, perms FROM roles")
        assert [(r[0], set(json.loads(str(r[1])))) for r in roles] == [
            ("operator", set(OPERATOR_PERMISSIONS))
        ]
        await downgrade(engine, "0009_rider_accounts")
        tables = {r[0] for r in sql(path, "SELECT name FROM sqlite_master WHERE type='table'")}
        assert not tables & {"roles", "organizational_units", "access_logs", "user_blocks"}
    finally:
        await engine.dispose()
