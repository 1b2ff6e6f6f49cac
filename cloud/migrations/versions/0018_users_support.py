"""users: app devices, operator-credited wallets, rider API request log (issue 15)

``user_devices``: the phones/apps a rider logged in with (seed 002 "Get user devices");
``user_wallets``: amounts operators credited, with who and why (the money stays in
``users.wallet_balance``, moved by a ``wallet_transactions`` row); ``user_api_requests``:
authenticated rider API requests (seed 002 "Get user api requests"), pruned after a while.

Revision ID: 0018_users_support
Revises: 0017_usage_stats
Create Date: 2026-12-06 16:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import kickstand.cloud.dbtypes

revision: str = "0018_users_support"
down_revision: str | None = "0017_usage_stats"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time(name: str, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, kickstand.cloud.dbtypes.UTCDateTime(timezone=True), nullable=nullable)


def _money(name: str) -> sa.Column[object]:
    return sa.Column(name, kickstand.cloud.dbtypes.Money(precision=14, scale=4), nullable=False)


def upgrade() -> None:
    op.create_table(
        "user_devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("os", sa.String(length=32), nullable=True),
        sa.Column("model", sa.String(length=64), nullable=True),
        sa.Column("app_version", sa.String(length=32), nullable=True),
        _time("first_login_at", False),
        _time("last_login_at", False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_devices_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_devices")),
        sa.UniqueConstraint("user_id", "device_id", name="uq_user_devices_user_device"),
    )
    op.create_table(
        "user_wallets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        _money("credited"),
        _money("amount"),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        _time("created_at", False),
        _time("deleted_at", True),
        sa.Column("deleted_by", sa.Integer(), nullable=True),
        sa.Column("delete_reason", sa.String(length=1000), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_wallets_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_user_wallets_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["deleted_by"],
            ["users.id"],
            name=op.f("fk_user_wallets_deleted_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_wallets")),
    )
    with op.batch_alter_table("user_wallets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_wallets_user_id"), ["user_id"], unique=False)
    op.create_table(
        "user_api_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("target_path", sa.String(length=2048), nullable=False),
        sa.Column("verb", sa.String(length=10), nullable=False),
        sa.Column("user_agent", sa.String(length=2048), nullable=True),
        sa.Column("ip", sa.String(length=128), nullable=True),
        sa.Column("http_code", sa.Integer(), nullable=False),
        sa.Column("knot_code", sa.Integer(), nullable=True),
        _time("created_at", False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_api_requests")),
    )
    with op.batch_alter_table("user_api_requests", schema=None) as batch_op:
        batch_op.create_index("ix_user_api_requests_user_id", ["user_id", "id"], unique=False)
        batch_op.create_index("ix_user_api_requests_created_at", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("user_api_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_user_api_requests_created_at")
        batch_op.drop_index("ix_user_api_requests_user_id")
    op.drop_table("user_api_requests")
    with op.batch_alter_table("user_wallets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_wallets_user_id"))
    op.drop_table("user_wallets")
    op.drop_table("user_devices")
