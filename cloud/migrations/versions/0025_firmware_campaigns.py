"""firmware campaigns (issue 18): campaigns, their devices, the networks' maintenance
windows; fleet alert types ``firmware-update-failed`` and ``firmware-rolled-back``; the
``firmware`` permission in the ``operator`` role and the grants that came from it.

Revision ID: 0025_firmware_campaigns
Revises: 0024_firmware_images
Create Date: 2026-12-06 23:00:00
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

import kickstand.cloud.dbtypes

revision: str = "0025_firmware_campaigns"
down_revision: str | None = "0024_firmware_images"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The alert types as 0021 left them, then this revision's.
_TYPES_0021 = (
    "unexpected-unlock", "spot-identify-fail", "spot-high-temperature", "station-power-cut",
    "station-alarm-triggered", "vehicle-illegal-moving", "vehicle-dismantling",
    "vehicle-lifted", "vehicle-fallen", "vehicle-out-of-network-area", "lock-battery-low",
    "vehicle-ride-outside", "lock-no-tracking", "vehicle-return-outside",
    "vehicle-lost-reported", "vehicle-outside-operational-period", "vehicle-too-long-idle",
    "lock-shutdown", "device-message-dead-lettered", "device-clock-wrong",
    "device-messages-missing", "badge-ride-unauthorized", "station-offline",
    "device-offline-too-long", "spot-lock-fault", "vehicle-in-two-spots",
    "device-certificate-expiring", "vehicle-not-returned",
)  # fmt: skip
_NEW_TYPES = ("firmware-update-failed", "firmware-rolled-back")
_CHECK = "ck_fleet_alerts_alert_type"
#: Frozen copy (a migration does not import the application's current lists).
_PERMISSION = "firmware"


def _time(name: str, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, kickstand.cloud.dbtypes.UTCDateTime(timezone=True), nullable=nullable)


def _alert_types(types: Sequence[str]) -> None:
    # VARCHAR + CHECK (0002, native_enum=False): the CHECK is replaced.
    listed = ", ".join(f"'{t}'" for t in types)
    with op.batch_alter_table("fleet_alerts", schema=None) as batch_op:
        batch_op.drop_constraint(op.f(_CHECK), type_="check")
        batch_op.create_check_constraint(op.f(_CHECK), sa.text(f"alert_type IN ({listed})"))


def _json(raw: Any) -> Any:
    return json.loads(raw) if isinstance(raw, str) else raw


def _operator_role(add: bool) -> None:
    """The permission in the operator role, and one entry per unit (and write flag) of the
    grants that came from that role; downgrade removes exactly those."""
    bind = op.get_bind()
    role = bind.execute(sa.text("SELECT id, perms FROM roles WHERE key = 'operator'")).first()
    if role is not None:
        perms = [p for p in _json(role[1]) if p != _PERMISSION] + ([_PERMISSION] if add else [])
        bind.execute(
            sa.text("UPDATE roles SET perms = :p WHERE id = :id"),
            {"p": json.dumps(perms), "id": role[0]},
        )
    for user_id, raw in bind.execute(sa.text("SELECT id, permissions FROM users")).all():
        entries = _json(raw)
        if not isinstance(entries, list):
            continue
        from_role = [e for e in entries if isinstance(e, dict) and e.get("role") == "operator"]
        others = [e for e in entries if e not in from_role or e.get("perm_key") != _PERMISSION]
        units = {json.dumps([e.get("ou"), e.get("write")], sort_keys=True): e for e in from_role}
        new = others + ([{**e, "perm_key": _PERMISSION} for e in units.values()] if add else [])
        if new != entries:
            bind.execute(
                sa.text("UPDATE users SET permissions = :p WHERE id = :id"),
                {"p": json.dumps(new), "id": user_id},
            )


def upgrade() -> None:
    op.create_table(
        "firmware_campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("network_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("selection", sa.JSON(), nullable=False),
        sa.Column("wave_sizes", sa.JSON(), nullable=False),
        sa.Column("success_threshold_pct", sa.Integer(), nullable=False),
        sa.Column("error_threshold_pct", sa.Integer(), nullable=False),
        sa.Column("device_timeout_s", sa.Integer(), nullable=False),
        sa.Column("current_wave", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        _time("created_at", False),
        _time("started_at", True),
        _time("finished_at", True),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_firmware_campaigns_created_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["firmware_images.id"],
            name=op.f("fk_firmware_campaigns_image_id_firmware_images"),
        ),
        sa.ForeignKeyConstraint(
            ["network_id"], ["networks.id"], name=op.f("fk_firmware_campaigns_network_id_networks")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firmware_campaigns")),
    )
    with op.batch_alter_table("firmware_campaigns", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_firmware_campaigns_image_id"), ["image_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_firmware_campaigns_network_id"), ["network_id"], unique=False
        )
        batch_op.create_index("ix_firmware_campaigns_state", ["state"], unique=False)
    op.create_table(
        "firmware_campaign_devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("spot", sa.Integer(), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("stage", sa.String(length=24), nullable=True),
        sa.Column("bytes_done", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("from_version", sa.String(length=64), nullable=True),
        sa.Column("command_id", sa.String(length=32), nullable=True),
        _time("sent_at", True),
        _time("progress_at", True),
        _time("finished_at", True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["firmware_campaigns.id"],
            name=op.f("fk_firmware_campaign_devices_campaign_id_firmware_campaigns"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firmware_campaign_devices")),
        sa.UniqueConstraint(
            "campaign_id", "device_id", "spot", name="uq_firmware_campaign_devices"
        ),
    )
    with op.batch_alter_table("firmware_campaign_devices", schema=None) as batch_op:
        batch_op.create_index(
            "ix_firmware_campaign_devices_device", ["device_id", "state"], unique=False
        )
    op.create_table(
        "firmware_windows",
        sa.Column("network_id", sa.Integer(), nullable=False),
        sa.Column("start_local", sa.String(length=5), nullable=False),
        sa.Column("end_local", sa.String(length=5), nullable=False),
        _time("updated_at", False),
        sa.ForeignKeyConstraint(
            ["network_id"], ["networks.id"], name=op.f("fk_firmware_windows_network_id_networks")
        ),
        sa.PrimaryKeyConstraint("network_id", name=op.f("pk_firmware_windows")),
    )
    _alert_types((*_TYPES_0021, *_NEW_TYPES))
    _operator_role(add=True)


def downgrade() -> None:
    _operator_role(add=False)
    listed = ", ".join(f"'{t}'" for t in _NEW_TYPES)
    op.execute(f"DELETE FROM fleet_alerts WHERE alert_type IN ({listed})")
    _alert_types(_TYPES_0021)
    op.drop_table("firmware_windows")
    with op.batch_alter_table("firmware_campaign_devices", schema=None) as batch_op:
        batch_op.drop_index("ix_firmware_campaign_devices_device")
    op.drop_table("firmware_campaign_devices")
    with op.batch_alter_table("firmware_campaigns", schema=None) as batch_op:
        batch_op.drop_index("ix_firmware_campaigns_state")
        batch_op.drop_index(batch_op.f("ix_firmware_campaigns_network_id"))
        batch_op.drop_index(batch_op.f("ix_firmware_campaigns_image_id"))
    op.drop_table("firmware_campaigns")
