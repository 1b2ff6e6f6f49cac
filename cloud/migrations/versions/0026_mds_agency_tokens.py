"""mds_agency_tokens: the bearer tokens of the MDS provider API, one per city agency and
network, stored as SHA-256 (issue 19)

Revision ID: 0026_mds_agency_tokens
Revises: 0025_firmware_campaigns
Create Date: 2026-12-06 23:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from kickstand.cloud.dbtypes import UTCDateTime

revision: str = "0026_mds_agency_tokens"
down_revision: str | None = "0025_firmware_campaigns"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mds_agency_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("network_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["network_id"],
            ["networks.id"],
            name=op.f("fk_mds_agency_tokens_network_id_networks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_mds_agency_tokens_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mds_agency_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_mds_agency_tokens_token_hash")),
    )
    op.create_index(
        op.f("ix_mds_agency_tokens_network_id"), "mds_agency_tokens", ["network_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_mds_agency_tokens_network_id"), table_name="mds_agency_tokens")
    op.drop_table("mds_agency_tokens")
