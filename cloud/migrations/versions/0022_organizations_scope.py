"""reserved: organizations_scope (a placeholder of the chain; filled by its change)

Revision ID: 0022_organizations_scope
Revises: 0021_network_rules_applied
Create Date: 2026-12-06 20:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0022_organizations_scope"
down_revision: str | None = "0021_network_rules_applied"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
