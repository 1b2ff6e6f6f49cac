"""badge rides: per-network authorization list versions, badge blocking, station list versions

Revision ID: 0007_badge_rides
Revises: 0006_delivery_alerts
Create Date: 2026-12-06 09:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0007_badge_rides"
down_revision: str | None = "0006_delivery_alerts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
