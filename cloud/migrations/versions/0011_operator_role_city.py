"""operator role: the permissions a city operator needs to run the network (issue 16)

The ``operator`` role of 0010 could read the city but not build it: registering vehicles,
advanced station work (commissioning), stocks and rider support were outside it. This adds
those keys of seed 002's enum to the role and to every grant that came from it (entries
carrying ``"role": "operator"``), on the same organizational unit and with the same
``write``. Downgrade removes exactly what was added.

Revision ID: 0011_operator_role_city
Revises: 0010_access_control
Create Date: 2026-12-06 16:20:00
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0011_operator_role_city"
down_revision: str | None = "0010_access_control"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy (a migration does not import the application's current lists).
ADDED = ("vehicles.register", "stations.advanced", "stocks.vehicles", "stocks.manage",
         "users.support", "users.credits")  # fmt: skip


def _load(raw: Any) -> Any:
    return json.loads(raw) if isinstance(raw, str) else raw


def _rewrite(add: bool) -> None:
    bind = op.get_bind()
    row = bind.execute(sa.text("SELECT id, perms FROM roles WHERE key = 'operator'")).first()
    if row is not None:
        perms = [p for p in _load(row[1]) if p not in ADDED]
        if add:
            perms += list(ADDED)
        bind.execute(
            sa.text("UPDATE roles SET perms = :p WHERE id = :id"),
            {"p": json.dumps(perms), "id": row[0]},
        )
    for user_id, raw in bind.execute(sa.text("SELECT id, permissions FROM users")).all():
        entries = _load(raw)
        if not isinstance(entries, list):
            continue
        kept = [
            e
            for e in entries
            if not (
                isinstance(e, dict) and e.get("role") == "operator" and e.get("perm_key") in ADDED
            )
        ]
        new = list(kept)
        if add:
            # One entry per unit (and write flag) the operator role was granted on.
            seen: set[str] = set()
            for e in kept:
                if not (isinstance(e, dict) and e.get("role") == "operator"):
                    continue
                key = json.dumps([e.get("ou"), e.get("write")], sort_keys=True)
                if key in seen:
                    continue
                seen.add(key)
                new += [{**e, "perm_key": p} for p in ADDED]
        if new != entries:
            bind.execute(
                sa.text("UPDATE users SET permissions = :p WHERE id = :id"),
                {"p": json.dumps(new), "id": user_id},
            )


def upgrade() -> None:
    _rewrite(add=True)


def downgrade() -> None:
    _rewrite(add=False)
