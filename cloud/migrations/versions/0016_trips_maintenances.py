"""trips and maintenances: maintenance types and records, rider reports and their
pictures, the audit of "stop trip billing" (issue 16)

* ``maintenance_types``: seed 002's catalogue (key, target type, severity); a deleted type
  keeps its row (``deleted_at``) for the records that name it.
* ``maintenances``: one record per maintenance of a station, a spot or a vehicle (type,
  severity, comment, who and when it started; who and when it stopped).
* ``reports`` / ``report_pictures``: what riders report, with their pictures.
* ``trip_billing_stops``: who set or erased a trip's billing stop, when and why.

Revision ID: 0016_trips_maintenances
Revises: 0015_device_registry
Create Date: 2026-12-06 16:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import kickstand.cloud.dbtypes

revision: str = "0016_trips_maintenances"
down_revision: str | None = "0015_device_registry"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time(name: str, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, kickstand.cloud.dbtypes.UTCDateTime(timezone=True), nullable=nullable)


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=32)


def _target() -> sa.Enum:
    return _enum("maintenance_target", "station", "spot", "vehicle")


def _severity() -> sa.Enum:
    return _enum("maintenance_severity", "info", "low", "high")


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}")
    )


def _index(table: str, column: str) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.create_index(batch_op.f(f"ix_{table}_{column}"), [column], unique=False)


def upgrade() -> None:
    op.create_table(
        "maintenance_types",
        sa.Column("key", sa.String(length=50), nullable=False),
        sa.Column("target_type", _target(), nullable=False),
        sa.Column("severity", _severity(), nullable=False),
        _time("created_at", False),
        _time("deleted_at", True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_maintenance_types")),
    )
    op.create_table(
        "reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("network_id", sa.Integer(), nullable=False),
        sa.Column("vehicle_id", sa.Integer(), nullable=True),
        sa.Column("spot_id", sa.Integer(), nullable=True),
        sa.Column("trip_id", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        _time("created_at", False),
        _time("resolved_at", True),
        sa.Column("resolved_by", sa.Integer(), nullable=True),
        _fk("reports", "user_id", "users"),
        _fk("reports", "network_id", "networks"),
        _fk("reports", "vehicle_id", "vehicles"),
        _fk("reports", "spot_id", "spots"),
        _fk("reports", "trip_id", "trips"),
        _fk("reports", "resolved_by", "users"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reports")),
    )
    _index("reports", "user_id")
    _index("reports", "network_id")
    op.create_table(
        "report_pictures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("content_type", sa.String(length=32), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        _time("created_at", False),
        _fk("report_pictures", "report_id", "reports"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_pictures")),
    )
    _index("report_pictures", "report_id")
    op.create_table(
        "maintenances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("type_key", sa.String(length=50), nullable=False),
        sa.Column("target_type", _target(), nullable=False),
        sa.Column("network_id", sa.Integer(), nullable=False),
        sa.Column("station_id", sa.Integer(), nullable=True),
        sa.Column("spot_id", sa.Integer(), nullable=True),
        sa.Column("vehicle_id", sa.Integer(), nullable=True),
        sa.Column("severity", _severity(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("report_id", sa.Integer(), nullable=True),
        _time("started_at", False),
        sa.Column("started_by", sa.Integer(), nullable=True),
        _time("stopped_at", True),
        sa.Column("stopped_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["type_key"],
            ["maintenance_types.key"],
            name=op.f("fk_maintenances_type_key_maintenance_types"),
        ),
        _fk("maintenances", "network_id", "networks"),
        _fk("maintenances", "station_id", "stations"),
        _fk("maintenances", "spot_id", "spots"),
        _fk("maintenances", "vehicle_id", "vehicles"),
        _fk("maintenances", "report_id", "reports"),
        _fk("maintenances", "started_by", "users"),
        _fk("maintenances", "stopped_by", "users"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_maintenances")),
    )
    for column in ("network_id", "station_id", "spot_id", "vehicle_id"):
        _index("maintenances", column)
    with op.batch_alter_table("maintenances", schema=None) as batch_op:
        batch_op.create_index(
            "ix_maintenances_open",
            ["network_id", "id"],
            unique=False,
            postgresql_where=sa.text("stopped_at IS NULL"),
            sqlite_where=sa.text("stopped_at IS NULL"),
        )
    op.create_table(
        "trip_billing_stops",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trip_id", sa.Integer(), nullable=False),
        _time("stop_at", True),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        _time("created_at", False),
        _fk("trip_billing_stops", "trip_id", "trips"),
        _fk("trip_billing_stops", "user_id", "users"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trip_billing_stops")),
    )
    _index("trip_billing_stops", "trip_id")


def downgrade() -> None:
    op.drop_table("trip_billing_stops")
    op.drop_table("maintenances")
    op.drop_table("report_pictures")
    op.drop_table("reports")
    op.drop_table("maintenance_types")
