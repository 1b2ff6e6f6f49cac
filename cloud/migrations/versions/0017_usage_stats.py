"""overview and usage stats: indexes for the dashboard's aggregates (issue 16)

``trips (network_id, started_at)``: every usage-stats statement filters "these networks,
this period"; ``trips (user_id, network_id)``: "riders of these networks" (overview users);
``user_organizations (organization_id)``: the ``organizations`` filter. Declared in
``kickstand.cloud.stats.models``; figures in ``benchmarks/dashboard_queries.py``.

Revision ID: 0017_usage_stats
Revises: 0016_trips_maintenances
Create Date: 2026-12-06 16:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0017_usage_stats"
down_revision: str | None = "0016_trips_maintenances"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_trips_network_started", "trips", ["network_id", "started_at"])
    op.create_index("ix_trips_user_network", "trips", ["user_id", "network_id"])
    op.create_index("ix_user_organizations_organization", "user_organizations", ["organization_id"])


def downgrade() -> None:
    op.drop_index("ix_user_organizations_organization", table_name="user_organizations")
    op.drop_index("ix_trips_user_network", table_name="trips")
    op.drop_index("ix_trips_network_started", table_name="trips")
