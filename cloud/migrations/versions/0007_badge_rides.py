"""badge rides: per-network authorization list versions, badge blocking, station list versions

* ``badges.blocked_at``: an operator blocked the badge (it opens nothing).
* ``auth_lists``: per network, the version of its local authorization list (SPEC §7.4).
* ``station_auth_lists``: the version each station confirmed holding.
* ``auth_list_sends``: the AuthListUpdate commands sent (command id → kind, version).
* fleet alert type ``badge-ride-unauthorized``: a badge the cloud does not know, or has
  blocked, rode offline (the trip is recorded; an operator looks at it).

Revision ID: 0007_badge_rides
Revises: 0006_delivery_alerts
Create Date: 2026-12-06 09:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import kickstand.cloud.dbtypes

revision: str = "0007_badge_rides"
down_revision: str | None = "0006_delivery_alerts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TYPES_0006 = (
    "unexpected-unlock",
    "spot-identify-fail",
    "spot-high-temperature",
    "station-power-cut",
    "station-alarm-triggered",
    "vehicle-illegal-moving",
    "vehicle-dismantling",
    "vehicle-lifted",
    "vehicle-fallen",
    "vehicle-out-of-network-area",
    "lock-battery-low",
    "vehicle-ride-outside",
    "lock-no-tracking",
    "vehicle-return-outside",
    "vehicle-lost-reported",
    "vehicle-outside-operational-period",
    "vehicle-too-long-idle",
    "lock-shutdown",
    "device-message-dead-lettered",
    "device-clock-wrong",
    "device-messages-missing",
)
_TYPES_0007 = (*_TYPES_0006, "badge-ride-unauthorized")
_CHECK = "ck_fleet_alerts_alert_type"


def _set_types(types: Sequence[str]) -> None:
    listed = ", ".join(f"'{t}'" for t in types)
    with op.batch_alter_table("fleet_alerts", schema=None) as batch_op:
        batch_op.drop_constraint(op.f(_CHECK), type_="check")
        batch_op.create_check_constraint(op.f(_CHECK), sa.text(f"alert_type IN ({listed})"))


def _time(name: str, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, kickstand.cloud.dbtypes.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("badges", schema=None) as batch_op:
        batch_op.add_column(_time("blocked_at", True))
    op.create_table(
        "auth_lists",
        sa.Column("network_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        _time("updated_at", False),
        sa.ForeignKeyConstraint(
            ["network_id"], ["networks.id"], name=op.f("fk_auth_lists_network_id_networks")
        ),
        sa.PrimaryKeyConstraint("network_id", name=op.f("pk_auth_lists")),
    )
    op.create_table(
        "station_auth_lists",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("confirmed_version", sa.Integer(), nullable=False),
        _time("confirmed_at", False),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_station_auth_lists")),
    )
    op.create_table(
        "auth_list_sends",
        sa.Column("command_id", sa.String(length=32), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        _time("sent_at", False),
        sa.PrimaryKeyConstraint("command_id", name=op.f("pk_auth_list_sends")),
    )
    with op.batch_alter_table("auth_list_sends", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_auth_list_sends_device_id"), ["device_id"], unique=False
        )
    _set_types(_TYPES_0007)


def downgrade() -> None:
    op.execute("DELETE FROM fleet_alerts WHERE alert_type = 'badge-ride-unauthorized'")
    _set_types(_TYPES_0006)
    with op.batch_alter_table("auth_list_sends", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_list_sends_device_id"))
    op.drop_table("auth_list_sends")
    op.drop_table("station_auth_lists")
    op.drop_table("auth_lists")
    with op.batch_alter_table("badges", schema=None) as batch_op:
        batch_op.drop_column("blocked_at")
