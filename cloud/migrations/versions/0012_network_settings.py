"""networks: settings, access rules, notifications, balancing, pricing edits (issue 16)

Networks gain seed 002's settings (VAT, country, guarantees, pre-authorization, rewards,
``closed_at`` for "Delete a network"). Pricing rules become versions (``valid_from``,
``valid_until``, ``replaces_id``): an operator's edit closes a rule and adds its successor,
so a running trip keeps the prices it started with. Existing rules are valid since always.

Revision ID: 0012_network_settings
Revises: 0011_operator_role_city
Create Date: 2026-12-06 16:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import kickstand.cloud.dbtypes

revision: str = "0012_network_settings"
down_revision: str | None = "0011_operator_role_city"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NETWORK_COLUMNS = (
    "default_vat", "country_id", "third_party_id", "app_label_id", "default_vehicle_guarantee",
    "trip_to_skip_pre_auth_guarantee", "first_purchase_required", "credit_depletion_auto_lock",
    "min_battery_to_auto_lock", "sponsoring_reward", "sponsored_reward",
    "freefloat_to_station_discount_per_km", "freefloat_to_station_free_credits",
    "freefloat_to_receiver_station_free_credits", "freefloat_to_station_min_battery",
    "closed_at",
)  # fmt: skip


def _money(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(
        name,
        kickstand.cloud.dbtypes.Money(precision=14, scale=4),
        nullable=nullable,
        server_default=None if nullable else "0",
    )


def _time(name: str) -> sa.Column[object]:
    return sa.Column(name, kickstand.cloud.dbtypes.UTCDateTime(timezone=True), nullable=True)


def upgrade() -> None:
    with op.batch_alter_table("networks", schema=None) as batch_op:
        batch_op.add_column(_money("default_vat", nullable=False))
        batch_op.add_column(sa.Column("country_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("third_party_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("app_label_id", sa.Integer(), nullable=True))
        batch_op.add_column(_money("default_vehicle_guarantee", nullable=False))
        batch_op.add_column(
            sa.Column(
                "trip_to_skip_pre_auth_guarantee", sa.Integer(), nullable=False, server_default="0"
            )
        )
        for flag in ("first_purchase_required", "credit_depletion_auto_lock"):
            batch_op.add_column(
                sa.Column(flag, sa.Boolean(), nullable=False, server_default=sa.false())
            )
        batch_op.add_column(sa.Column("min_battery_to_auto_lock", sa.Integer(), nullable=True))
        batch_op.add_column(_money("sponsoring_reward", nullable=False))
        batch_op.add_column(_money("sponsored_reward", nullable=False))
        batch_op.add_column(_money("freefloat_to_station_discount_per_km", nullable=True))
        batch_op.add_column(_money("freefloat_to_station_free_credits", nullable=True))
        batch_op.add_column(_money("freefloat_to_receiver_station_free_credits", nullable=True))
        batch_op.add_column(
            sa.Column("freefloat_to_station_min_battery", sa.Integer(), nullable=True)
        )
        batch_op.add_column(_time("closed_at"))
    with op.batch_alter_table("pricing_rules", schema=None) as batch_op:
        batch_op.add_column(_time("valid_from"))
        batch_op.add_column(_time("valid_until"))
        batch_op.add_column(sa.Column("replaces_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_pricing_rules_replaces_id_pricing_rules"),
            "pricing_rules",
            ["replaces_id"],
            ["id"],
        )


def downgrade() -> None:
    with op.batch_alter_table("pricing_rules", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_pricing_rules_replaces_id_pricing_rules"), type_="foreignkey"
        )
        batch_op.drop_column("replaces_id")
        batch_op.drop_column("valid_until")
        batch_op.drop_column("valid_from")
    with op.batch_alter_table("networks", schema=None) as batch_op:
        for name in reversed(NETWORK_COLUMNS):
            batch_op.drop_column(name)
