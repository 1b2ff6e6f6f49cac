"""devices: registry, operator command history, fleet alerts of issue 16

* ``device_commands.operator_id``: who sent a command from the dashboard (None: the
  cloud's own: rents, badge rides, authorization lists); index (device_id, issued_at) for a
  device's command history, newest first.
* ``refresh_tokens.device_id`` indexed: seed 002 "Get users using given device".
* fleet alert types ``device-offline-too-long``, ``spot-lock-fault``,
  ``vehicle-in-two-spots``.

Revision ID: 0015_device_registry
Revises: 0014_vehicles_registry
Create Date: 2026-12-06 16:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_device_registry"
down_revision: str | None = "0014_vehicles_registry"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The alert types of 0008, then this revision's.
_TYPES_0008 = (
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
    "badge-ride-unauthorized",
    "station-offline",
)
_NEW_TYPES = ("device-offline-too-long", "spot-lock-fault", "vehicle-in-two-spots")
_CHECK = "ck_fleet_alerts_alert_type"


def _set_types(types: Sequence[str]) -> None:
    # The type is a VARCHAR with a CHECK (0002, native_enum=False): the CHECK is replaced.
    listed = ", ".join(f"'{t}'" for t in types)
    with op.batch_alter_table("fleet_alerts", schema=None) as batch_op:
        batch_op.drop_constraint(op.f(_CHECK), type_="check")
        batch_op.create_check_constraint(op.f(_CHECK), sa.text(f"alert_type IN ({listed})"))


def upgrade() -> None:
    with op.batch_alter_table("device_commands", schema=None) as batch_op:
        batch_op.add_column(sa.Column("operator_id", sa.Integer(), nullable=True))
        batch_op.create_index(
            "ix_device_commands_device_issued", ["device_id", "issued_at"], unique=False
        )
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.create_index(op.f("ix_refresh_tokens_device_id"), ["device_id"], unique=False)
    _set_types((*_TYPES_0008, *_NEW_TYPES))


def downgrade() -> None:
    listed = ", ".join(f"'{t}'" for t in _NEW_TYPES)
    op.execute(f"DELETE FROM fleet_alerts WHERE alert_type IN ({listed})")
    _set_types(_TYPES_0008)
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.drop_index(op.f("ix_refresh_tokens_device_id"))
    with op.batch_alter_table("device_commands", schema=None) as batch_op:
        batch_op.drop_index("ix_device_commands_device_issued")
        batch_op.drop_column("operator_id")
