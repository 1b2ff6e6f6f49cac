"""reserved: usage_rollup (a placeholder of the chain; filled by its change)

Revision ID: 0019_usage_rollup
Revises: 0018_users_support
Create Date: 2026-12-06 20:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0019_usage_rollup"
down_revision: str | None = "0018_users_support"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
