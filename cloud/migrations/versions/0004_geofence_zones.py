"""geofence zones: geofence_settings, speed_zones, virtual_parkings, forbidden_zones

Revision ID: 0004_geofence
Revises: 0003_ingest
Create Date: 2026-11-21 17:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import kickstand.cloud.dbtypes

revision: str = "0004_geofence"
down_revision: str | None = "0003_ingest"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _times(with_deleted: bool = True) -> list[sa.Column[object]]:
    cols: list[sa.Column[object]] = [
        sa.Column("created_at", kickstand.cloud.dbtypes.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", kickstand.cloud.dbtypes.UTCDateTime(timezone=True), nullable=False),
    ]
    if with_deleted:
        cols.append(
            sa.Column(
                "deleted_at", kickstand.cloud.dbtypes.UTCDateTime(timezone=True), nullable=True
            )
        )
    return cols


def upgrade() -> None:
    op.create_table(
        "geofence_settings",
        sa.Column("network_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("trigger_alert", sa.Boolean(), nullable=False),
        sa.Column("notify_user", sa.Boolean(), nullable=False),
        sa.Column("reduce_vehicle_speed", sa.Boolean(), nullable=False),
        sa.Column("play_vehicle_sound", sa.Boolean(), nullable=False),
        sa.Column("lock_vehicle", sa.Boolean(), nullable=False),
        sa.Column("outside_return_policy", sa.String(length=16), nullable=False),
        sa.Column("default_max_speed", sa.Integer(), nullable=True),
        sa.Column("updated_at", kickstand.cloud.dbtypes.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["network_id"], ["networks.id"], name=op.f("fk_geofence_settings_network_id_networks")
        ),
        sa.PrimaryKeyConstraint("network_id", name=op.f("pk_geofence_settings")),
    )
    op.create_table(
        "speed_zones",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("network_id", sa.Integer(), nullable=False),
        sa.Column("shape", sa.JSON(), nullable=False),
        sa.Column("max_speed", sa.Integer(), nullable=False),
        *_times(),
        sa.ForeignKeyConstraint(
            ["network_id"], ["networks.id"], name=op.f("fk_speed_zones_network_id_networks")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_speed_zones")),
    )
    op.create_index(op.f("ix_speed_zones_network_id"), "speed_zones", ["network_id"])
    op.create_table(
        "virtual_parkings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("network_id", sa.Integer(), nullable=False),
        sa.Column("cluster_id", sa.Integer(), nullable=True),
        sa.Column("shape", sa.JSON(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        *_times(),
        sa.ForeignKeyConstraint(
            ["cluster_id"], ["clusters.id"], name=op.f("fk_virtual_parkings_cluster_id_clusters")
        ),
        sa.ForeignKeyConstraint(
            ["network_id"], ["networks.id"], name=op.f("fk_virtual_parkings_network_id_networks")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_virtual_parkings")),
    )
    op.create_index(op.f("ix_virtual_parkings_network_id"), "virtual_parkings", ["network_id"])
    op.create_table(
        "forbidden_zones",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("network_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("shape", sa.JSON(), nullable=False),
        *_times(),
        sa.ForeignKeyConstraint(
            ["network_id"], ["networks.id"], name=op.f("fk_forbidden_zones_network_id_networks")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forbidden_zones")),
    )
    op.create_index(op.f("ix_forbidden_zones_network_id"), "forbidden_zones", ["network_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_forbidden_zones_network_id"), table_name="forbidden_zones")
    op.drop_table("forbidden_zones")
    op.drop_index(op.f("ix_virtual_parkings_network_id"), table_name="virtual_parkings")
    op.drop_table("virtual_parkings")
    op.drop_index(op.f("ix_speed_zones_network_id"), table_name="speed_zones")
    op.drop_table("speed_zones")
    op.drop_table("geofence_settings")
