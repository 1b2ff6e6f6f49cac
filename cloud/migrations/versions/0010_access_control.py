"""access control: organizational units, roles, organizations, blocked users, access logs

Decision: a user's grants stay in ``users.permissions`` (JSON), the seeds' own login shape
(``[{perm_key, write, ou: {id, networks, …}}]``): login answers it and tokens carry it, and
the check on every dashboard request reads it without a join. The organizational units it
names become rows here (``organizational_units``, one per distinct ``ou.id``) so seed 002's
operations can list and edit them; editing one rewrites the copies in the grants (same
transaction, ``kickstand.cloud.access.service``).

Data: the legacy operator keys of the demo seed (``vehicles``, not in seed 002's enum) become
the seed's dashboard permissions on the same unit and with the same ``write``; entries that
are malformed are left as they are (they grant nothing and are logged when read).

Revision ID: 0010_access_control
Revises: 0009_rider_accounts
Create Date: 2026-12-06 10:20:00
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

import kickstand.cloud.dbtypes

revision: str = "0010_access_control"
down_revision: str | None = "0009_rider_accounts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

# Frozen copies (a migration does not import the application's current lists).
OPERATOR_PERMISSIONS = (
    "stations", "maintenances", "vehicles.manage", "vehicles.alerts", "networks.manage",
    "trips", "users.badges", "developer", "app.debug", "users.list", "users.block",
    "users.permissions", "organizations", "roles",
)  # fmt: skip
LEGACY = {"vehicles": OPERATOR_PERMISSIONS, "stations": OPERATOR_PERMISSIONS}


def _time(name: str, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, kickstand.cloud.dbtypes.UTCDateTime(timezone=True), nullable=nullable)


def _migrate_grants(entries: list[Any]) -> tuple[list[Any], dict[int, dict[str, Any]]]:
    """Legacy keys expanded; the units named (id -> ou copy)."""
    out: list[Any] = []
    units: dict[int, dict[str, Any]] = {}
    seen: set[tuple[str, bool, int | None]] = set()
    for entry in entries:
        ou = entry.get("ou") if isinstance(entry, dict) else None
        ou_id = ou.get("id") if isinstance(ou, dict) else None
        if isinstance(ou_id, int) and not isinstance(ou_id, bool):
            units.setdefault(ou_id, ou)  # type: ignore[arg-type]
        key = entry.get("perm_key") if isinstance(entry, dict) else None
        networks = ou.get("networks") if isinstance(ou, dict) else None
        well_formed = (
            isinstance(entry.get("write") if isinstance(entry, dict) else None, bool)
            and type(ou_id) is int
            and isinstance(networks, list)
            and all(type(n) is int for n in networks)
        )
        if isinstance(key, str) and key in LEGACY and well_formed:
            for perm in LEGACY[key]:
                marker = (perm, entry["write"], ou_id if isinstance(ou_id, int) else None)
                if marker not in seen:
                    seen.add(marker)
                    out.append({**entry, "perm_key": perm})
            continue
        out.append(entry)
    return out, units


def upgrade() -> None:
    op.create_table(
        "organizational_units",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("networks", sa.JSON(), nullable=False),
        sa.Column("clusters", sa.JSON(), nullable=False),
        sa.Column("app_labels", sa.JSON(), nullable=False),
        sa.Column("organizations", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organizational_units")),
    )
    op.create_table(
        "roles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=50), nullable=False),
        sa.Column("perms", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roles")),
        sa.UniqueConstraint("key", name=op.f("uq_roles_key")),
    )
    op.create_table(
        "organizations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("third_party_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("administrator_id", sa.Integer(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("is_guarantor", sa.Boolean(), nullable=False),
        sa.Column("allow_outside_rules", sa.Boolean(), nullable=False),
        sa.Column("paid_outside_rules_ratio", sa.Float(), nullable=False),
        sa.Column("only_show_matching_clusters", sa.Boolean(), nullable=False),
        sa.Column("email_pattern", sa.String(length=255), nullable=True),
        sa.Column("pays_rule_overrun", sa.Boolean(), nullable=False),
        sa.Column("reenrolment_frequency_in_days", sa.Integer(), nullable=True),
        _time("created_at", False),
        sa.ForeignKeyConstraint(
            ["administrator_id"],
            ["users.id"],
            name=op.f("fk_organizations_administrator_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organizations")),
    )
    op.create_table(
        "user_organizations",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        _time("linked_at", False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_user_organizations_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_organizations_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "organization_id", name=op.f("pk_user_organizations")),
    )
    op.create_table(
        "user_blocks",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("blocked_by", sa.Integer(), nullable=True),
        _time("blocked_at", False),
        sa.ForeignKeyConstraint(
            ["blocked_by"],
            ["users.id"],
            name=op.f("fk_user_blocks_blocked_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_blocks_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_blocks")),
    )
    op.create_table(
        "access_logs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("target_path", sa.String(length=2048), nullable=False),
        sa.Column("verb", sa.String(length=10), nullable=False),
        sa.Column("user_agent", sa.String(length=2048), nullable=True),
        sa.Column("ip", sa.String(length=128), nullable=True),
        sa.Column("http_code", sa.Integer(), nullable=False),
        sa.Column("knot_code", sa.Integer(), nullable=True),
        sa.Column("network_ids", sa.JSON(), nullable=True),
        _time("created_at", False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_logs")),
    )
    with op.batch_alter_table("access_logs", schema=None) as batch_op:
        batch_op.create_index("ix_access_logs_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_access_logs_user_id", ["user_id"], unique=False)

    bind = op.get_bind()
    users = bind.execute(sa.text("SELECT id, permissions FROM users")).all()
    units: dict[int, dict[str, Any]] = {}
    for user_id, raw in users:
        entries = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(entries, list):
            continue
        migrated, named = _migrate_grants(entries)
        for ou_id, ou in named.items():
            units.setdefault(ou_id, ou)
        if migrated != entries:
            bind.execute(
                sa.text("UPDATE users SET permissions = :p WHERE id = :id"),
                {"p": json.dumps(migrated), "id": user_id},
            )
    for ou_id, ou in sorted(units.items()):

        def ids(field: str, ou: dict[str, Any] = ou) -> str:
            values = ou.get(field)
            return json.dumps(
                [v for v in values if type(v) is int] if isinstance(values, list) else []
            )

        bind.execute(
            sa.text(
                "INSERT INTO organizational_units (id, name, networks, clusters, app_labels,"
                " organizations) VALUES (:id, :name, :n, :c, :a, :o)"
            ),
            {
                "id": ou_id,
                "name": f"unit {ou_id}",
                "n": ids("networks"),
                "c": ids("clusters"),
                "a": ids("app_labels"),
                "o": ids("organizations"),
            },
        )
    if bind.dialect.name == "postgresql" and units:
        bind.execute(
            sa.text(
                "SELECT setval(pg_get_serial_sequence('organizational_units', 'id'),"
                " (SELECT max(id) FROM organizational_units))"
            )
        )
    bind.execute(
        sa.text("INSERT INTO roles (key, perms) VALUES (:k, :p)"),
        {"k": "operator", "p": json.dumps(list(OPERATOR_PERMISSIONS))},
    )


def downgrade() -> None:
    with op.batch_alter_table("access_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_access_logs_user_id")
        batch_op.drop_index("ix_access_logs_created_at")
    op.drop_table("access_logs")
    op.drop_table("user_blocks")
    op.drop_table("user_organizations")
    op.drop_table("organizations")
    op.drop_table("roles")
    op.drop_table("organizational_units")
