"""networks: settings, access rules, notifications, balancing, pricing edits (issue 16)

Reserved in the chain so parts built side by side keep one linear history; filled in
by the change that needs it (an empty migration is a no-op).

Revision ID: 0012_network_settings
Revises: 0011_operator_role_city
Create Date: 2026-12-06 16:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0012_network_settings"
down_revision: str | None = "0011_operator_role_city"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
