"""device contract: spot maintenance owner, device heartbeat interval, lock_status codes

* ``spots.maintenance_source``: who holds a spot in maintenance (operator / device); the
  spots already in maintenance were put there by their station (no other way existed).
* ``devices.heartbeat_s``: the interval of the device's last accepted BootReply; the one
  liveness rule (``kickstand.cloud.liveness``) counts silence in it.
* ``spots.lock_status`` now carries the protocol's LockState codes (0 locked, 1 open,
  2 jammed); it held the inverse (0 unlocked, 1 locked): 0 and 1 swap.
* fleet alert type ``station-offline`` (the liveness rule, raised by the sweep).

Revision ID: 0008_device_contract
Revises: 0007_badge_rides
Create Date: 2026-12-06 09:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_device_contract"
down_revision: str | None = "0007_badge_rides"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SWAP = "UPDATE spots SET lock_status = 1 - lock_status WHERE lock_status IN (0, 1)"
# The alert types of 0007, then this revision's.
_TYPES_0007 = (
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
)
_TYPES_0008 = (*_TYPES_0007, "station-offline")
_CHECK = "ck_fleet_alerts_alert_type"


def _set_types(types: Sequence[str]) -> None:
    # The type is a VARCHAR with a CHECK (0002, native_enum=False): the CHECK is replaced.
    listed = ", ".join(f"'{t}'" for t in types)
    with op.batch_alter_table("fleet_alerts", schema=None) as batch_op:
        batch_op.drop_constraint(op.f(_CHECK), type_="check")
        batch_op.create_check_constraint(op.f(_CHECK), sa.text(f"alert_type IN ({listed})"))


def upgrade() -> None:
    with op.batch_alter_table("spots", schema=None) as batch_op:
        batch_op.add_column(sa.Column("maintenance_source", sa.String(length=16), nullable=True))
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("heartbeat_s", sa.Integer(), nullable=True))
    op.execute("UPDATE spots SET maintenance_source = 'device' WHERE state = 'maintenance'")
    op.execute(_SWAP)
    _set_types(_TYPES_0008)


def downgrade() -> None:
    op.execute("DELETE FROM fleet_alerts WHERE alert_type = 'station-offline'")
    _set_types(_TYPES_0007)
    op.execute("UPDATE spots SET lock_status = 0 WHERE lock_status = 2")
    op.execute(_SWAP)
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("heartbeat_s")
    with op.batch_alter_table("spots", schema=None) as batch_op:
        batch_op.drop_column("maintenance_source")
