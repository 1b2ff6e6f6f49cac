"""reserved: device_certificates (a placeholder of the chain; filled by its change)

Revision ID: 0020_device_certificates
Revises: 0019_usage_rollup
Create Date: 2026-12-06 20:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0020_device_certificates"
down_revision: str | None = "0019_usage_rollup"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
