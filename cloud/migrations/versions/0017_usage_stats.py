"""overview and usage stats: indexes for the dashboard's aggregates (issue 16)

Reserved in the chain so parts built side by side keep one linear history; filled in
by the change that needs it (an empty migration is a no-op).

Revision ID: 0017_usage_stats
Revises: 0016_trips_maintenances
Create Date: 2026-12-06 16:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0017_usage_stats"
down_revision: str | None = "0016_trips_maintenances"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
