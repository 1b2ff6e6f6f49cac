"""network rules applied (issue 16): fleet alert type ``vehicle-not-returned``, and
``auth_list_changes``

* A trip still running past its network's ``vehicle_stolen`` (seed 002 rent timings:
  "Time after which a vehicle is considered stolen if it is still not returned") raises
  ``vehicle-not-returned``.
* ``auth_list_changes``: the UIDs each version of a network's authorization list added and
  removed, so an operator's AuthListUpdate DIFF brings a station from the version it holds
  to the network's.

Revision ID: 0021_network_rules_applied
Revises: 0020_device_certificates
Create Date: 2026-12-06 20:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import kickstand.cloud.dbtypes

revision: str = "0021_network_rules_applied"
down_revision: str | None = "0020_device_certificates"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The alert types as 0020 left them, then this revision's.
_TYPES_0020 = (
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
    "device-offline-too-long",
    "spot-lock-fault",
    "vehicle-in-two-spots",
    "device-certificate-expiring",
)
_NEW_TYPES = ("vehicle-not-returned",)
_CHECK = "ck_fleet_alerts_alert_type"


def _set_types(types: Sequence[str]) -> None:
    # The type is a VARCHAR with a CHECK (0002, native_enum=False): the CHECK is replaced.
    listed = ", ".join(f"'{t}'" for t in types)
    with op.batch_alter_table("fleet_alerts", schema=None) as batch_op:
        batch_op.drop_constraint(op.f(_CHECK), type_="check")
        batch_op.create_check_constraint(op.f(_CHECK), sa.text(f"alert_type IN ({listed})"))


def upgrade() -> None:
    _set_types((*_TYPES_0020, *_NEW_TYPES))
    op.create_table(
        "auth_list_changes",
        sa.Column("network_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("added", sa.JSON(), nullable=False),
        sa.Column("removed", sa.JSON(), nullable=False),
        sa.Column("changed_at", kickstand.cloud.dbtypes.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["network_id"], ["networks.id"], name=op.f("fk_auth_list_changes_network_id_networks")
        ),
        sa.PrimaryKeyConstraint("network_id", "version", name=op.f("pk_auth_list_changes")),
    )


def downgrade() -> None:
    op.drop_table("auth_list_changes")
    listed = ", ".join(f"'{t}'" for t in _NEW_TYPES)
    op.execute(f"DELETE FROM fleet_alerts WHERE alert_type IN ({listed})")
    _set_types(_TYPES_0020)
