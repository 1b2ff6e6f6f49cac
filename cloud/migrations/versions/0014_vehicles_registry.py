"""vehicles: registry, decommissioning, external locks (issue 16)

* ``vehicles.model``: the model given at registration.
* vehicle state ``decommissioned`` (seed 002 "Decommission vehicle"): the state's CHECK
  is replaced (a VARCHAR + CHECK since 0001).
* ``vehicle_decommissions``: why, when, by whom, for how much.
* ``vehicle_external_locks``: code locks on vehicles (the code sealed, never clear); one
  lock in use per vehicle and per serial number.

Revision ID: 0014_vehicles_registry
Revises: 0013_stations_commissioning
Create Date: 2026-12-06 16:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import kickstand.cloud.dbtypes

revision: str = "0014_vehicles_registry"
down_revision: str | None = "0013_stations_commissioning"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATES_0001 = ("available", "rented", "maintenance", "lost-or-stolen")
_STATES_0014 = (*_STATES_0001, "decommissioned")
_CHECK = "ck_vehicles_vehicle_state"
_ACTIVE_LOCK = sa.text("decommissioned_at IS NULL")


def _time(name: str, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, kickstand.cloud.dbtypes.UTCDateTime(timezone=True), nullable=nullable)


def _user_fk(table: str, column: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], ["users.id"], name=op.f(f"fk_{table}_{column}_users"))


def _set_states(states: Sequence[str]) -> None:
    listed = ", ".join(f"'{s}'" for s in states)
    with op.batch_alter_table("vehicles", schema=None) as batch_op:
        batch_op.drop_constraint(op.f(_CHECK), type_="check")
        batch_op.create_check_constraint(op.f(_CHECK), sa.text(f"state IN ({listed})"))


def upgrade() -> None:
    with op.batch_alter_table("vehicles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("model", sa.String(length=64), nullable=True))
    _set_states(_STATES_0014)
    op.create_table(
        "vehicle_decommissions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("vehicle_id", sa.Integer(), nullable=False),
        sa.Column("network_id", sa.Integer(), nullable=False),
        sa.Column(
            "reason",
            sa.Enum(
                "lost-or-stolen",
                "sold",
                "irreparable",
                "economical",
                name="decommission_reason",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("comment", sa.String(length=200), nullable=True),
        sa.Column("amount", kickstand.cloud.dbtypes.Money(precision=14, scale=4), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        _time("decommissioned_at", False),
        sa.Column("decommissioned_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["vehicle_id"],
            ["vehicles.id"],
            name=op.f("fk_vehicle_decommissions_vehicle_id_vehicles"),
        ),
        sa.ForeignKeyConstraint(
            ["network_id"],
            ["networks.id"],
            name=op.f("fk_vehicle_decommissions_network_id_networks"),
        ),
        _user_fk("vehicle_decommissions", "decommissioned_by"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vehicle_decommissions")),
        sa.UniqueConstraint("vehicle_id", name=op.f("uq_vehicle_decommissions_vehicle_id")),
    )
    with op.batch_alter_table("vehicle_decommissions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_vehicle_decommissions_network_id"), ["network_id"], unique=False
        )
    op.create_table(
        "vehicle_external_locks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("vehicle_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column(
            "lock_type",
            sa.Enum(
                "u",
                "foldable",
                "flexible",
                "chain",
                "frame",
                name="external_lock_type",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("serial_number", sa.String(length=64), nullable=False),
        sa.Column("code_sealed", sa.LargeBinary(), nullable=False),
        _time("code_updated_at", False),
        _time("registered_at", False),
        sa.Column("registered_by", sa.Integer(), nullable=True),
        _time("decommissioned_at", True),
        sa.Column("decommissioned_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["vehicle_id"],
            ["vehicles.id"],
            name=op.f("fk_vehicle_external_locks_vehicle_id_vehicles"),
        ),
        _user_fk("vehicle_external_locks", "registered_by"),
        _user_fk("vehicle_external_locks", "decommissioned_by"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vehicle_external_locks")),
    )
    with op.batch_alter_table("vehicle_external_locks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_vehicle_external_locks_vehicle_id"), ["vehicle_id"], unique=False
        )
        for name, column in (("vehicle", "vehicle_id"), ("serial", "serial_number")):
            batch_op.create_index(
                f"uq_vehicle_external_locks_{name}_active",
                [column],
                unique=True,
                postgresql_where=_ACTIVE_LOCK,
                sqlite_where=_ACTIVE_LOCK,
            )


def downgrade() -> None:
    with op.batch_alter_table("vehicle_external_locks", schema=None) as batch_op:
        for name in ("vehicle", "serial"):
            batch_op.drop_index(
                f"uq_vehicle_external_locks_{name}_active",
                postgresql_where=_ACTIVE_LOCK,
                sqlite_where=_ACTIVE_LOCK,
            )
        batch_op.drop_index(batch_op.f("ix_vehicle_external_locks_vehicle_id"))
    op.drop_table("vehicle_external_locks")
    with op.batch_alter_table("vehicle_decommissions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vehicle_decommissions_network_id"))
    op.drop_table("vehicle_decommissions")
    # A decommissioned vehicle had no state before: it goes back as lost-or-stolen
    # (never rentable, as it was).
    op.execute("UPDATE vehicles SET state = 'lost-or-stolen' WHERE state = 'decommissioned'")
    _set_states(_STATES_0001)
    with op.batch_alter_table("vehicles", schema=None) as batch_op:
        batch_op.drop_column("model")
