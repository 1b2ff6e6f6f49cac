"""ingest and command tables: ingested_messages, device_boots, device_status, device_commands

Revision ID: 0003_ingest
Revises: 0002_alerts
Create Date: 2026-11-21 17:21:47.434064
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import kickstand.cloud.dbtypes

revision: str = "0003_ingest"
down_revision: str | None = "0002_alerts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "device_boots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("boot_id", sa.BigInteger(), nullable=False),
        sa.Column("birth_ts_ms", sa.BigInteger(), nullable=False),
        sa.Column(
            "received_at", kickstand.cloud.dbtypes.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("firmware", sa.String(length=64), nullable=True),
        sa.Column("hardware", sa.String(length=64), nullable=True),
        sa.Column("config_version", sa.Integer(), nullable=True),
        sa.Column("auth_list_version", sa.Integer(), nullable=True),
        sa.Column("inventory", sa.JSON(), nullable=False),
        sa.Column("pending_from", sa.BigInteger(), nullable=True),
        sa.Column("serial_number", sa.String(length=16), nullable=True),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("died_at", kickstand.cloud.dbtypes.UTCDateTime(timezone=True), nullable=True),
        sa.Column("death_ts_ms", sa.BigInteger(), nullable=True),
        sa.Column("death_reason", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_boots")),
        sa.UniqueConstraint("device_id", "boot_id", name="uq_device_boots_device_boot"),
    )
    with op.batch_alter_table("device_boots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_device_boots_device_id"), ["device_id"], unique=False)

    op.create_table(
        "device_commands",
        sa.Column("command_id", sa.String(length=32), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("command_type", sa.String(length=32), nullable=False),
        sa.Column("spot", sa.Integer(), nullable=True),
        sa.Column("rent_id", sa.Integer(), nullable=True),
        sa.Column("issued_at", kickstand.cloud.dbtypes.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", kickstand.cloud.dbtypes.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_by", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("result_at", kickstand.cloud.dbtypes.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("command_id", name=op.f("pk_device_commands")),
    )
    with op.batch_alter_table("device_commands", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_device_commands_device_id"), ["device_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_device_commands_rent_id"), ["rent_id"], unique=False)

    op.create_table(
        "device_status",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("spot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("boot_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("lock", sa.Integer(), nullable=True),
        sa.Column("serial_number", sa.String(length=16), nullable=True),
        sa.Column("fault", sa.String(length=200), nullable=True),
        sa.Column("battery_pct", sa.Integer(), nullable=True),
        sa.Column(
            "received_at", kickstand.cloud.dbtypes.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("device_id", "spot", name=op.f("pk_device_status")),
    )
    op.create_table(
        "ingested_messages",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("boot_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column(
            "ingested_at", kickstand.cloud.dbtypes.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("device_id", "boot_id", "seq", name=op.f("pk_ingested_messages")),
    )
    with op.batch_alter_table("ingested_messages", schema=None) as batch_op:
        batch_op.create_index("ix_ingested_messages_ingested_at", ["ingested_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ingested_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_ingested_messages_ingested_at")

    op.drop_table("ingested_messages")
    op.drop_table("device_status")
    with op.batch_alter_table("device_commands", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_commands_rent_id"))
        batch_op.drop_index(batch_op.f("ix_device_commands_device_id"))

    op.drop_table("device_commands")
    with op.batch_alter_table("device_boots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_boots_device_id"))

    op.drop_table("device_boots")
