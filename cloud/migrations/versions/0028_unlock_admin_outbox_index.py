"""technician unlock and a station's event history (issue 19)

- ``unlock.admin`` (seed 002's permission for opening a lock outside a rent) joins the
  ``operator`` role and every grant that came from it (one entry per unit and write flag,
  as 0011 and 0025 did): ``POST /v1/dashboard/spots/{spot_id}/unlock`` asks for it instead
  of ``stations.advanced``, so a role can give commissioning without the technician's
  unlock or the other way round. Downgrade removes exactly those entries.
- ``ix_outbox_resource`` (resource_type, resource_id, id): the outbox keeps every event of
  a station, its spots and its mainboard (``device.event``), keyed by resource; a station
  page reads the last ones of each resource newest first, one index range each, instead
  of a scan of the whole outbox backwards.

Chained to 0027.

Revision ID: 0028_unlock_admin_outbox_index
Revises: 0027_usage_rollup_riders_months
Create Date: 2026-12-06 23:45:00
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0028_unlock_admin_outbox_index"
down_revision: str | None = "0027_usage_rollup_riders_months"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Frozen copy (a migration does not import the application's current lists).
PERMISSION = "unlock.admin"
INDEX = "ix_outbox_resource"


def _decoded(raw: Any) -> Any:
    return json.loads(raw) if isinstance(raw, str) else raw


def _grant(add: bool) -> None:
    bind = op.get_bind()
    role = bind.execute(sa.text("SELECT id, perms FROM roles WHERE key = 'operator'")).first()
    if role is not None:
        perms = [p for p in _decoded(role[1]) if p != PERMISSION]
        bind.execute(
            sa.text("UPDATE roles SET perms = :p WHERE id = :id"),
            {"p": json.dumps([*perms, PERMISSION] if add else perms), "id": role[0]},
        )
    for user_id, raw in bind.execute(sa.text("SELECT id, permissions FROM users")).all():
        entries = _decoded(raw)
        if not isinstance(entries, list):
            continue
        ours = [e for e in entries if isinstance(e, dict) and e.get("role") == "operator"]
        kept = [e for e in entries if not (e in ours and e.get("perm_key") == PERMISSION)]
        if add:
            # One entry per organizational unit (and write flag) the role was granted on.
            units = {json.dumps([e.get("ou"), e.get("write")], sort_keys=True): e for e in ours}
            kept += [{**e, "perm_key": PERMISSION} for e in units.values()]
        if kept != entries:
            bind.execute(
                sa.text("UPDATE users SET permissions = :p WHERE id = :id"),
                {"p": json.dumps(kept), "id": user_id},
            )


def upgrade() -> None:
    _grant(add=True)
    op.create_index(INDEX, "outbox", ["resource_type", "resource_id", "id"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="outbox")
    _grant(add=False)
