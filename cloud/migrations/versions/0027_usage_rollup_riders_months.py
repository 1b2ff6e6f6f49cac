"""usage rollup riders and months (issue 16): ``trip_rollup_rider`` (finished trips per
network and rider: the network's riders from one index, for the overview's users and the
usage-stats organizations, instead of every presence row of every year or a probe of
trips per member) and ``trip_rollup_histogram_month`` (the daily histogram summed per
local month: a year's summary and distributions read ~12 months of rows plus their edge
days instead of ~365 days of rows). Backfilled from the ledger and the daily histogram
(:func:`kickstand.cloud.stats.rollup.rebuild`).

Chained to 0026: it was written as 0023 after 0024-0026 had chained to 0022, and renumbered
so the files read in the order they run.

Revision ID: 0027_usage_rollup_riders_months
Revises: 0026_mds_agency_tokens
Create Date: 2026-12-06 23:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027_usage_rollup_riders_months"
down_revision: str | None = "0026_mds_agency_tokens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "trip_rollup_rider",
        sa.Column("network_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("trips", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("network_id", "user_id", name=op.f("pk_trip_rollup_rider")),
    )
    op.create_table(
        "trip_rollup_histogram_month",
        sa.Column("network_id", sa.Integer(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("measure", sa.String(length=8), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("paid", sa.Boolean(), nullable=False),
        sa.Column("trips", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "network_id",
            "month",
            "measure",
            "bucket",
            "paid",
            name=op.f("pk_trip_rollup_histogram_month"),
        ),
    )
    from kickstand.cloud.stats.rollup import HISTOGRAM_MONTH, RIDER, rebuild

    rebuild(op.get_bind(), [RIDER, HISTOGRAM_MONTH])


def downgrade() -> None:
    op.drop_table("trip_rollup_histogram_month")
    op.drop_table("trip_rollup_rider")
