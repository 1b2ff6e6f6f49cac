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


def _time(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, kickstand.cloud.dbtypes.UTCDateTime(timezone=True), nullable=nullable)


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

    op.create_table(
        "network_access_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("network_id", sa.Integer(), nullable=False),
        sa.Column("email_pattern", sa.String(length=255), nullable=True),
        sa.Column("organization_id", sa.Integer(), nullable=True),
        sa.Column("app_label_id", sa.Integer(), nullable=True),
        _time("created_at", nullable=False),
        sa.ForeignKeyConstraint(
            ["network_id"],
            ["networks.id"],
            name=op.f("fk_network_access_rules_network_id_networks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_network_access_rules_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_network_access_rules")),
    )
    op.create_index(
        op.f("ix_network_access_rules_network_id"), "network_access_rules", ["network_id"]
    )
    op.create_table(
        "network_speed_settings",
        sa.Column("network_id", sa.Integer(), nullable=False),
        sa.Column(
            "vehicle_type",
            sa.Enum(
                "bike",
                "e-bike",
                "kick-scooter",
                name="speed_vehicle_type",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("default_low_speed", sa.Integer(), nullable=False),
        sa.Column("default_medium_speed", sa.Integer(), nullable=False),
        sa.Column("default_high_speed", sa.Integer(), nullable=False),
        sa.Column("min_battery_to_slow_down", sa.Integer(), nullable=True),
        sa.Column("battery_slow_down_speed", sa.Integer(), nullable=True),
        _time("updated_at", nullable=False),
        sa.ForeignKeyConstraint(
            ["network_id"],
            ["networks.id"],
            name=op.f("fk_network_speed_settings_network_id_networks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "network_id", "vehicle_type", name=op.f("pk_network_speed_settings")
        ),
    )
    op.create_table(
        "network_notification_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("network_id", sa.Integer(), nullable=False),
        sa.Column("notification_type", sa.String(length=32), nullable=False),
        sa.Column("alert_types", sa.JSON(), nullable=False),
        sa.Column("alert_severities", sa.JSON(), nullable=False),
        sa.Column("check_interval", sa.Integer(), nullable=False),
        sa.Column("check_delay", sa.Integer(), nullable=False),
        _time("created_at", nullable=False),
        sa.ForeignKeyConstraint(
            ["network_id"],
            ["networks.id"],
            name=op.f("fk_network_notification_settings_network_id_networks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_network_notification_settings")),
    )
    op.create_index(
        op.f("ix_network_notification_settings_network_id"),
        "network_notification_settings",
        ["network_id"],
    )
    op.create_table(
        "network_notification_targets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("notification_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.CheckConstraint(
            "(user_id IS NULL) <> (email IS NULL)",
            name=op.f("ck_network_notification_targets_one_target"),
        ),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["network_notification_settings.id"],
            name=op.f("fk_network_notification_targets_notification_id_network_cdba"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_network_notification_targets_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_network_notification_targets")),
        sa.UniqueConstraint("notification_id", "user_id", name="uq_notification_target_user"),
        sa.UniqueConstraint("notification_id", "email", name="uq_notification_target_email"),
    )
    op.create_index(
        op.f("ix_network_notification_targets_notification_id"),
        "network_notification_targets",
        ["notification_id"],
    )
    op.create_table(
        "network_out_of_orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("network_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=100), nullable=True),
        _time("start_date", nullable=False),
        _time("end_date"),
        sa.Column("created_by", sa.Integer(), nullable=True),
        _time("created_at", nullable=False),
        sa.ForeignKeyConstraint(
            ["network_id"],
            ["networks.id"],
            name=op.f("fk_network_out_of_orders_network_id_networks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_network_out_of_orders_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_network_out_of_orders")),
    )
    op.create_index(
        op.f("ix_network_out_of_orders_network_id"), "network_out_of_orders", ["network_id"]
    )
    op.create_table(
        "cluster_balancings",
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("network_id", sa.Integer(), nullable=False),
        sa.Column("target_count", sa.Integer(), nullable=False),
        sa.Column("balancing_type", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["cluster_id"],
            ["clusters.id"],
            name=op.f("fk_cluster_balancings_cluster_id_clusters"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["network_id"],
            ["networks.id"],
            name=op.f("fk_cluster_balancings_network_id_networks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("cluster_id", name=op.f("pk_cluster_balancings")),
    )
    op.create_index(op.f("ix_cluster_balancings_network_id"), "cluster_balancings", ["network_id"])
    op.create_table(
        "balancing_discounts",
        sa.Column("donor_cluster_id", sa.Integer(), nullable=False),
        sa.Column("receiver_cluster_id", sa.Integer(), nullable=False),
        sa.Column("network_id", sa.Integer(), nullable=False),
        _money("discount_amount", nullable=False),
        sa.ForeignKeyConstraint(
            ["donor_cluster_id"],
            ["cluster_balancings.cluster_id"],
            name=op.f("fk_balancing_discounts_donor_cluster_id_cluster_balancings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["receiver_cluster_id"],
            ["cluster_balancings.cluster_id"],
            name=op.f("fk_balancing_discounts_receiver_cluster_id_cluster_balancings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["network_id"],
            ["networks.id"],
            name=op.f("fk_balancing_discounts_network_id_networks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "donor_cluster_id", "receiver_cluster_id", name=op.f("pk_balancing_discounts")
        ),
    )
    op.create_index(
        op.f("ix_balancing_discounts_network_id"), "balancing_discounts", ["network_id"]
    )
    op.create_table(
        "network_vehicle_models",
        sa.Column("network_id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("auto_light", sa.Boolean(), nullable=True),
        sa.Column("speed_mode", sa.Integer(), nullable=True),
        _money("guarantee", nullable=True),
        _money("pre_auth", nullable=True),
        sa.ForeignKeyConstraint(
            ["network_id"],
            ["networks.id"],
            name=op.f("fk_network_vehicle_models_network_id_networks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("network_id", "model_id", name=op.f("pk_network_vehicle_models")),
    )


def downgrade() -> None:
    op.drop_table("network_vehicle_models")
    op.drop_table("balancing_discounts")
    op.drop_table("cluster_balancings")
    op.drop_table("network_out_of_orders")
    op.drop_table("network_notification_targets")
    op.drop_table("network_notification_settings")
    op.drop_table("network_speed_settings")
    op.drop_table("network_access_rules")
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
