"""ingest: dead_letters, device_boots.acks

Revision ID: 0005_dead_letters
Revises: 0004_geofence
Create Date: 2026-12-06 04:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import kickstand.cloud.dbtypes

revision: str = "0005_dead_letters"
down_revision: str | None = "0004_geofence"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SEQUENCED = sa.text("seq IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=True),
        sa.Column("network_id", sa.Integer(), nullable=True),
        sa.Column("topic", sa.String(length=256), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("payload_size", sa.Integer(), nullable=False),
        sa.Column("boot_id", sa.BigInteger(), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.String(length=48), nullable=False),
        sa.Column("error_class", sa.String(length=120), nullable=False),
        sa.Column("error", sa.String(length=1000), nullable=False),
        sa.Column(
            "first_failed_at", kickstand.cloud.dbtypes.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "last_failed_at", kickstand.cloud.dbtypes.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("resolved_at", kickstand.cloud.dbtypes.UTCDateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.create_index(
            "uq_dead_letters_message",
            ["device_id", "boot_id", "seq"],
            unique=True,
            postgresql_where=_SEQUENCED,
            sqlite_where=_SEQUENCED,
        )
        batch_op.create_index("ix_dead_letters_status_id", ["status", "id"], unique=False)
        batch_op.create_index("ix_dead_letters_device_id", ["device_id", "id"], unique=False)
    with op.batch_alter_table("device_boots", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("acks", sa.Boolean(), server_default=sa.text("false"), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("device_boots", schema=None) as batch_op:
        batch_op.drop_column("acks")
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.drop_index("ix_dead_letters_device_id")
        batch_op.drop_index("ix_dead_letters_status_id")
        batch_op.drop_index("uq_dead_letters_message")
    op.drop_table("dead_letters")
