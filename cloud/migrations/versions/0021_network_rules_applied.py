"""reserved: network_rules_applied (a placeholder of the chain; filled by its change)

Revision ID: 0021_network_rules_applied
Revises: 0020_device_certificates
Create Date: 2026-12-06 20:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0021_network_rules_applied"
down_revision: str | None = "0020_device_certificates"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
