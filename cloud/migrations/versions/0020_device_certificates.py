"""device certificates: the registry of the devices' client certificates (issue 17)

* ``device_certificates``: every certificate the installation's CA signed for a device
  (serial as hex text, CN, validity, SHA-256 fingerprint, who asked), revoked on
  decommission, superseded by its renewal.
* fleet alert type ``device-certificate-expiring``.

Revision ID: 0020_device_certificates
Revises: 0019_usage_rollup
Create Date: 2026-12-06 20:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import kickstand.cloud.dbtypes

revision: str = "0020_device_certificates"
down_revision: str | None = "0019_usage_rollup"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The alert types as 0015 left them, then this revision's.
_TYPES_0015 = (
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
)
_NEW_TYPES = ("device-certificate-expiring",)
_CHECK = "ck_fleet_alerts_alert_type"


def _set_types(types: Sequence[str]) -> None:
    # The type is a VARCHAR with a CHECK (0002, native_enum=False): the CHECK is replaced.
    listed = ", ".join(f"'{t}'" for t in types)
    with op.batch_alter_table("fleet_alerts", schema=None) as batch_op:
        batch_op.drop_constraint(op.f(_CHECK), type_="check")
        batch_op.create_check_constraint(op.f(_CHECK), sa.text(f"alert_type IN ({listed})"))


def _time(name: str, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, kickstand.cloud.dbtypes.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "device_certificates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("serial_number", sa.String(length=40), nullable=False),
        sa.Column("subject_cn", sa.String(length=64), nullable=False),
        _time("not_before", False),
        _time("not_after", False),
        sa.Column("fingerprint_sha256", sa.String(length=64), nullable=False),
        _time("issued_at", False),
        sa.Column("issued_by", sa.Integer(), nullable=True),
        _time("revoked_at", True),
        sa.Column("revoke_reason", sa.String(length=64), nullable=True),
        sa.Column("superseded_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_device_certificates_device_id_devices"),
        ),
        sa.ForeignKeyConstraint(
            ["issued_by"], ["users.id"], name=op.f("fk_device_certificates_issued_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["superseded_by"],
            ["device_certificates.id"],
            name=op.f("fk_device_certificates_superseded_by_device_certificates"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_certificates")),
        sa.UniqueConstraint(
            "fingerprint_sha256", name=op.f("uq_device_certificates_fingerprint_sha256")
        ),
        sa.UniqueConstraint("serial_number", name=op.f("uq_device_certificates_serial_number")),
    )
    with op.batch_alter_table("device_certificates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_device_certificates_device_id"), ["device_id"], unique=False
        )
        batch_op.create_index(
            "ix_device_certificates_device_not_after", ["device_id", "not_after"], unique=False
        )
    _set_types((*_TYPES_0015, *_NEW_TYPES))


def downgrade() -> None:
    listed = ", ".join(f"'{t}'" for t in _NEW_TYPES)
    op.execute(f"DELETE FROM fleet_alerts WHERE alert_type IN ({listed})")
    _set_types(_TYPES_0015)
    with op.batch_alter_table("device_certificates", schema=None) as batch_op:
        batch_op.drop_index("ix_device_certificates_device_not_after")
        batch_op.drop_index(batch_op.f("ix_device_certificates_device_id"))
    op.drop_table("device_certificates")
