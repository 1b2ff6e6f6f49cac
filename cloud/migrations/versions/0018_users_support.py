"""users: devices, passes, wallets, request logs, last actions (issue 15)

Reserved in the chain so parts built side by side keep one linear history; filled in
by the change that needs it (an empty migration is a no-op).

Revision ID: 0018_users_support
Revises: 0017_usage_stats
Create Date: 2026-12-06 16:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0018_users_support"
down_revision: str | None = "0017_usage_stats"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
