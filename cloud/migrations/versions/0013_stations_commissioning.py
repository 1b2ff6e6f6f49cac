"""clusters and stations: commissioning, pictures, parkings, outages, stocks (issue 16)

* ``clusters``: ``location``, ``comment``, ``max_unlock_distance`` (seed 002 settings) and
  ``decommissioned_at`` (seed 002 "Delete cluster" marks it decommissioned).
* ``stations``: ``commissioned_at``, ``decommissioned_at``.
* ``cluster_descriptions``: one description per language; ``cluster_pictures``: uploaded
  pictures (bytes in the database).
* ``device_outages``: offline periods of a device, written by ingest (deaths / comebacks).
* ``stocks``: depots with an address and a shape.

Revision ID: 0013_stations_commissioning
Revises: 0012_network_settings
Create Date: 2026-12-06 16:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import kickstand.cloud.dbtypes

revision: str = "0013_stations_commissioning"
down_revision: str | None = "0012_network_settings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time(name: str, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, kickstand.cloud.dbtypes.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("clusters", schema=None) as batch_op:
        batch_op.add_column(sa.Column("location", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("comment", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("max_unlock_distance", sa.Integer(), nullable=True))
        batch_op.add_column(_time("decommissioned_at", True))
    with op.batch_alter_table("stations", schema=None) as batch_op:
        batch_op.add_column(_time("commissioned_at", True))
        batch_op.add_column(_time("decommissioned_at", True))
    op.create_table(
        "cluster_descriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("lang", sa.String(length=2), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cluster_id"],
            ["clusters.id"],
            name=op.f("fk_cluster_descriptions_cluster_id_clusters"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cluster_descriptions")),
        sa.UniqueConstraint(
            "cluster_id", "lang", name=op.f("uq_cluster_descriptions_cluster_lang")
        ),
    )
    with op.batch_alter_table("cluster_descriptions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_cluster_descriptions_cluster_id"), ["cluster_id"], unique=False
        )
    op.create_table(
        "cluster_pictures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("content_type", sa.String(length=32), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        _time("created_at", False),
        sa.ForeignKeyConstraint(
            ["cluster_id"], ["clusters.id"], name=op.f("fk_cluster_pictures_cluster_id_clusters")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cluster_pictures")),
        sa.UniqueConstraint("key", name=op.f("uq_cluster_pictures_key")),
    )
    with op.batch_alter_table("cluster_pictures", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_cluster_pictures_cluster_id"), ["cluster_id"], unique=False
        )
    op.create_table(
        "device_outages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        _time("started_at", False),
        _time("ended_at", True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_outages")),
    )
    with op.batch_alter_table("device_outages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_device_outages_device_started", ["device_id", "started_at"], unique=False
        )
    op.create_table(
        "stocks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("network_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("country", sa.Integer(), nullable=False),
        sa.Column("city", sa.String(length=128), nullable=False),
        sa.Column("zipcode", sa.String(length=16), nullable=False),
        sa.Column("street", sa.String(length=128), nullable=False),
        sa.Column("shape", sa.JSON(), nullable=True),
        _time("created_at", False),
        sa.ForeignKeyConstraint(
            ["network_id"], ["networks.id"], name=op.f("fk_stocks_network_id_networks")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stocks")),
    )
    with op.batch_alter_table("stocks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stocks_network_id"), ["network_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("stocks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stocks_network_id"))
    op.drop_table("stocks")
    with op.batch_alter_table("device_outages", schema=None) as batch_op:
        batch_op.drop_index("ix_device_outages_device_started")
    op.drop_table("device_outages")
    with op.batch_alter_table("cluster_pictures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cluster_pictures_cluster_id"))
    op.drop_table("cluster_pictures")
    with op.batch_alter_table("cluster_descriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cluster_descriptions_cluster_id"))
    op.drop_table("cluster_descriptions")
    with op.batch_alter_table("stations", schema=None) as batch_op:
        batch_op.drop_column("decommissioned_at")
        batch_op.drop_column("commissioned_at")
    with op.batch_alter_table("clusters", schema=None) as batch_op:
        batch_op.drop_column("decommissioned_at")
        batch_op.drop_column("max_unlock_distance")
        batch_op.drop_column("comment")
        batch_op.drop_column("location")
