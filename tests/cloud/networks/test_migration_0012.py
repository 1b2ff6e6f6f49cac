"""Migration 0012: existing networks get the settings' defaults, existing pricing rules are
valid since always (and in force); and back down again."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy.ext.asyncio import create_async_engine

from kickstand.cloud.migrations import downgrade, upgrade

NEW_TABLES = {
    "network_access_rules", "network_speed_settings", "network_notification_settings",
    "network_notification_targets", "network_out_of_orders", "cluster_balancings",
    "balancing_discounts", "network_vehicle_models",
}  # fmt: skip


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return list(conn.execute(sql))


def tables(path: Path) -> set[str]:
    return {r[0] for r in rows(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}  # type: ignore[misc]


async def test_defaults_and_versions_both_ways(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await upgrade(engine, "0011_operator_role_city")
        rows(
            path,
            "INSERT INTO networks (id, name, currency, timezone, max_simultaneous_rented_vehicle,"
            " min_battery_to_rent, trip_on_hold, trip_too_long_notifications,"
            " trip_too_long_notifications_frequency, vehicle_stolen, trip_auto_pause,"
            " trip_max_pause, trip_auto_lock, out_of_border_policy, is_public, created_at)"
            " VALUES (1, 'Lyon', 'EUR', 'Europe/Paris', 2, 10, 1, 3600, 900, 43200, 0, 0, 0,"
            " 'alert', 1, '2026-01-01 00:00:00')",
        )
        rows(
            path,
            "INSERT INTO pricing_rules (id, network_id, start_dow, start_hod, end_dow, end_hod,"
            " unlock_price, unlock_included_time, use_per_minute_price, on_hold_price,"
            " freefloat_lock_price) VALUES (1, 1, 0, '00:00:00', 0, '00:00:00', '1', 0, '0.1',"
            " '0.05', '0')",
        )
        await upgrade(engine, "0012_network_settings")
        assert rows(
            path,
            "SELECT default_vat, default_vehicle_guarantee, trip_to_skip_pre_auth_guarantee,"
            " first_purchase_required, closed_at FROM networks",
        ) == [("0", "0", 0, 0, None)]
        assert rows(path, "SELECT valid_from, valid_until, replaces_id FROM pricing_rules") == [
            (None, None, None)
        ]
        assert NEW_TABLES <= tables(path)
        await downgrade(engine, "0011_operator_role_city")
        assert not NEW_TABLES & tables(path)
        assert rows(path, "SELECT name FROM networks") == [("Lyon",)]
        assert rows(path, "SELECT count(*) FROM pricing_rules") == [(1,)]
    finally:
        await engine.dispose()
