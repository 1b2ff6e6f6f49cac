"""organizations scoped to networks: the network an organization is for, and its creator

``organizations.network_id``: the network it was created for (an operator reaches the
organizations of its networks: this one, and those a network access rule names);
``organizations.created_by``: the operator who created it.

Backfill: an existing organization gets the lowest network whose access rule names it;
without one, the installation's network when there is exactly one; otherwise none (only
global grants reach it, as before for everyone — an admin gives it a network by an access
rule).

Revision ID: 0022_organizations_scope
Revises: 0021_network_rules_applied
Create Date: 2026-12-06 20:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022_organizations_scope"
down_revision: str | None = "0021_network_rules_applied"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("network_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("created_by", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_organizations_network_id_networks"),
            "networks",
            ["network_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_organizations_created_by_users"),
            "users",
            ["created_by"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_index(
            batch_op.f("ix_organizations_network_id"), ["network_id"], unique=False
        )
    op.execute(
        "UPDATE organizations SET network_id = ("
        " SELECT MIN(r.network_id) FROM network_access_rules r"
        " WHERE r.organization_id = organizations.id)"
    )
    op.execute(
        "UPDATE organizations SET network_id = (SELECT MIN(id) FROM networks)"
        " WHERE network_id IS NULL AND (SELECT COUNT(*) FROM networks) = 1"
    )


def downgrade() -> None:
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_organizations_network_id"))
        batch_op.drop_constraint(
            batch_op.f("fk_organizations_created_by_users"), type_="foreignkey"
        )
        batch_op.drop_constraint(
            batch_op.f("fk_organizations_network_id_networks"), type_="foreignkey"
        )
        batch_op.drop_column("created_by")
        batch_op.drop_column("network_id")
