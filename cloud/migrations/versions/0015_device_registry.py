"""devices: registry, operator command history (issue 16)

Reserved in the chain so parts built side by side keep one linear history; filled in
by the change that needs it (an empty migration is a no-op).

Revision ID: 0015_device_registry
Revises: 0014_vehicles_registry
Create Date: 2026-12-06 16:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0015_device_registry"
down_revision: str | None = "0014_vehicles_registry"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
