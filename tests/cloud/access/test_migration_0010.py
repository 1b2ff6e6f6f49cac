"""Migration 0010 (access control): the units named in users' grants become rows, the
legacy operator keys become seed 002 permissions, malformed entries stay as they were (they
grant nothing), and back down again."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from sqlalchemy.ext.asyncio import create_async_engine

from kickstand.cloud.migrations import downgrade, upgrade

# What 0010 itself grants (its frozen copy); later migrations widen the role.
OPERATOR_PERMISSIONS = (
    "stations", "maintenances", "vehicles.manage", "vehicles.alerts", "networks.manage",
    "trips", "users.badges", "developer", "app.debug", "users.list", "users.block",
    "users.permissions", "organizations", "roles",
)  # fmt: skip

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


async def test_0011_widens_the_operator_role_and_its_grants(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    added = {"vehicles.register", "stations.advanced", "stocks.vehicles", "stocks.manage",
             "users.support", "users.credits"}  # fmt: skip
    granted = [
        {"perm_key": "rent", "write": True, "ou": OU},
        {"perm_key": "stations", "write": True, "ou": OU, "role": "operator"},
        {"perm_key": "trips", "write": True, "ou": OU, "role": "operator"},
    ]
    try:
        await upgrade(engine, "0010_access_control")
        sql(
            path,
            "INSERT INTO users (id, email, password_hash, role, permissions, wallet_balance,"
            " is_active, token_generation, created_at, lang) VALUES"
            " (1, 'op@example.com', 'x', 'operator', ?, 0, 1, 0, '2026-01-01 00:00:00', 'en')",
            json.dumps(granted),
        )
        await upgrade(engine, "0011_operator_role_city")
        (perms,) = sql(path, "SELECT perms FROM roles WHERE key = 'operator'")[0]
        assert set(json.loads(str(perms))) == set(OPERATOR_PERMISSIONS) | added
        entries = json.loads(str(sql(path, "SELECT permissions FROM users WHERE id = 1")[0][0]))
        assert entries[:3] == granted
        assert {e["perm_key"] for e in entries[3:]} == added and len(entries) == 3 + len(added)
        assert all(e["ou"] == OU and e["write"] and e["role"] == "operator" for e in entries[3:])
        await downgrade(engine, "0010_access_control")
        entries = json.loads(str(sql(path, "SELECT permissions FROM users WHERE id = 1")[0][0]))
        assert entries == granted
        (perms,) = sql(path, "SELECT perms FROM roles WHERE key = 'operator'")[0]
        assert set(json.loads(str(perms))) == set(OPERATOR_PERMISSIONS)
    finally:
        await engine.dispose()
