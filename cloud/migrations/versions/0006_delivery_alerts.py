"""delivery alerts: fleet alert types of issue 13, device_boot_counts, device_boots index

Revision ID: 0006_delivery_alerts
Revises: 0005_dead_letters
Create Date: 2026-12-06 05:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_delivery_alerts"
down_revision: str | None = "0005_dead_letters"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TYPES_0002 = (
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
)
_TYPES_0006 = (
    *_TYPES_0002,
    "device-message-dead-lettered",
    "device-clock-wrong",
    "device-messages-missing",
)
_CHECK = "ck_fleet_alerts_alert_type"


def _set_types(types: Sequence[str]) -> None:
    # The type is a VARCHAR with a CHECK (0002, native_enum=False): the CHECK is replaced.
    listed = ", ".join(f"'{t}'" for t in types)
    with op.batch_alter_table("fleet_alerts", schema=None) as batch_op:
        batch_op.drop_constraint(op.f(_CHECK), type_="check")
        batch_op.create_check_constraint(op.f(_CHECK), sa.text(f"alert_type IN ({listed})"))


def upgrade() -> None:
    _set_types(_TYPES_0006)
    op.create_table(
        "device_boot_counts",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("boot_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("delivered", sa.BigInteger(), nullable=False),
        sa.Column("complete", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("checked_pending_from", sa.BigInteger(), nullable=True),
        sa.Column("missing", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("device_id", "boot_id", name=op.f("pk_device_boot_counts")),
    )
    with op.batch_alter_table("device_boots", schema=None) as batch_op:
        batch_op.create_index("ix_device_boots_received_at", ["received_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("device_boots", schema=None) as batch_op:
        batch_op.drop_index("ix_device_boots_received_at")
    op.drop_table("device_boot_counts")
    op.execute(
        "DELETE FROM fleet_alerts WHERE alert_type IN ("
        + ", ".join(f"'{t}'" for t in _TYPES_0006 if t not in _TYPES_0002)
        + ")"
    )
    _set_types(_TYPES_0002)
