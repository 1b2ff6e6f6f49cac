"""firmware images (issue 18): the images operators upload, content-addressed by SHA-256,
with the manifest signed by the installation's firmware key.

Chained to 0022: there is no 0023 (the number was reserved for a migration that came later as 0027).

Revision ID: 0024_firmware_images
Revises: 0022_organizations_scope
Create Date: 2026-12-06 23:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import kickstand.cloud.dbtypes

revision: str = "0024_firmware_images"
down_revision: str | None = "0022_organizations_scope"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "firmware_images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=96), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("min_hardware", sa.String(length=64), nullable=False),
        sa.Column("min_bootloader", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=500), nullable=False),
        sa.Column("manifest", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column(
            "created_at", kickstand.cloud.dbtypes.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_firmware_images_created_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firmware_images")),
        sa.UniqueConstraint("sha256", name=op.f("uq_firmware_images_sha256")),
        sa.UniqueConstraint("target", "version", name="uq_firmware_images_target"),
    )


def downgrade() -> None:
    op.drop_table("firmware_images")
