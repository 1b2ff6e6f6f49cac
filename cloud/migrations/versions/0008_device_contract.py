"""device contract: spot maintenance owner, status-driven vehicle positions

Revision ID: 0008_device_contract
Revises: 0007_badge_rides
Create Date: 2026-12-06 09:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0008_device_contract"
down_revision: str | None = "0007_badge_rides"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
