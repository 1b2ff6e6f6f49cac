"""usage rollup (issue 16): what the dashboard's usage figures read instead of ``trips``

``trip_rollup_ledger`` (each finished trip's share, one row per trip: re-applying a trip
replaces it), ``trip_rollup_hourly`` (count, sums, maxima per network, local day, hour,
paid), ``trip_rollup_histogram`` (per 100 m / 1 min: distribution ranges and the
bucket-accurate medians), ``trip_rollup_cluster`` (started / ended per cluster and day),
``trip_rollup_presence`` (the days of a year each rider / vehicle rode, bit masks: the
distinct riders and vehicles of a period). Backfilled from ``trips`` set-based
(:func:`kickstand.cloud.stats.rollup.rebuild`). Also ``trips (network_id, started_at)``
partial on running / on-hold trips (the figures add them from ``trips``) and ``trips
(network_id)`` partial on the trips the rollup does not hold (the operator trips list's
total: rollup + these, instead of counting a year of trips).

Revision ID: 0019_usage_rollup
Revises: 0018_users_support
Create Date: 2026-12-06 20:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_usage_rollup"
down_revision: str | None = "0018_users_support"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ACTIVE = "status IN ('running', 'on-hold')"
_NOT_ROLLED_UP = "status <> 'finished' OR ended_at IS NULL"


def _int(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.Integer(), nullable=nullable)


def _float(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.Float(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "trip_rollup_ledger",
        sa.Column("trip_id", sa.Integer(), autoincrement=False, nullable=False),
        _int("network_id"),
        sa.Column("local_day", sa.Date(), nullable=False),
        sa.Column("hour", sa.SmallInteger(), nullable=False),
        sa.Column("paid", sa.Boolean(), nullable=False),
        _int("user_id", True),
        _int("vehicle_id"),
        _int("start_cluster_id", True),
        _int("end_cluster_id", True),
        _float("distance_m", True),
        _float("duration_s", True),
        sa.PrimaryKeyConstraint("trip_id", name=op.f("pk_trip_rollup_ledger")),
    )
    op.create_index(
        "ix_trip_rollup_ledger_network_day", "trip_rollup_ledger", ["network_id", "local_day"]
    )
    op.create_table(
        "trip_rollup_hourly",
        _int("network_id"),
        sa.Column("local_day", sa.Date(), nullable=False),
        sa.Column("hour", sa.SmallInteger(), nullable=False),
        sa.Column("paid", sa.Boolean(), nullable=False),
        _int("trips"),
        _int("distance_n"),
        _float("distance_sum"),
        _float("distance_max", True),
        _int("duration_n"),
        _float("duration_sum"),
        _float("duration_max", True),
        sa.PrimaryKeyConstraint(
            "network_id", "local_day", "hour", "paid", name=op.f("pk_trip_rollup_hourly")
        ),
    )
    op.create_table(
        "trip_rollup_histogram",
        _int("network_id"),
        sa.Column("local_day", sa.Date(), nullable=False),
        sa.Column("measure", sa.String(length=8), nullable=False),
        _int("bucket"),
        sa.Column("paid", sa.Boolean(), nullable=False),
        _int("trips"),
        sa.PrimaryKeyConstraint(
            "network_id",
            "local_day",
            "measure",
            "bucket",
            "paid",
            name=op.f("pk_trip_rollup_histogram"),
        ),
    )
    op.create_table(
        "trip_rollup_cluster",
        _int("network_id"),
        sa.Column("local_day", sa.Date(), nullable=False),
        _int("cluster_id"),
        _int("started"),
        _int("ended"),
        sa.PrimaryKeyConstraint(
            "network_id", "local_day", "cluster_id", name=op.f("pk_trip_rollup_cluster")
        ),
    )
    op.create_table(
        "trip_rollup_presence",
        _int("network_id"),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("year", sa.SmallInteger(), nullable=False),
        _int("subject_id"),
        *[sa.Column(f"m{i}", sa.BigInteger(), nullable=False) for i in range(6)],
        *[sa.Column(f"p{i}", sa.BigInteger(), nullable=False) for i in range(6)],
        sa.PrimaryKeyConstraint(
            "network_id", "kind", "year", "subject_id", name=op.f("pk_trip_rollup_presence")
        ),
    )
    op.create_index(
        "ix_trips_network_active_started",
        "trips",
        ["network_id", "started_at"],
        postgresql_where=sa.text(_ACTIVE),
        sqlite_where=sa.text(_ACTIVE),
    )
    op.create_index(
        "ix_trips_network_not_rolled_up",
        "trips",
        ["network_id"],
        postgresql_where=sa.text(_NOT_ROLLED_UP),
        sqlite_where=sa.text(_NOT_ROLLED_UP),
    )
    # The backfill: every finished trip so far, set-based (INSERT … SELECT).
    from kickstand.cloud.stats.rollup import rebuild

    rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_index("ix_trips_network_not_rolled_up", table_name="trips")
    op.drop_index("ix_trips_network_active_started", table_name="trips")
    for table in (
        "trip_rollup_presence",
        "trip_rollup_cluster",
        "trip_rollup_histogram",
        "trip_rollup_hourly",
    ):
        op.drop_table(table)
    op.drop_index("ix_trip_rollup_ledger_network_day", table_name="trip_rollup_ledger")
    op.drop_table("trip_rollup_ledger")
