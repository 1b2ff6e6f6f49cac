"""Indexes the dashboard's aggregates need (migration 0017), on tables other packages own.

``trips (network_id, started_at)``: every usage-stats query is "these networks, this
period"; with it PostgreSQL reads the period's rows only (measured by
``benchmarks/dashboard_queries.py``, see the migration). ``trips (user_id, network_id)``:
"riders of these networks" probes each user's trips there, index only.
``user_organizations
(organization_id)``: the ``organizations`` filter goes from an organization to its members.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    Float,
    Index,
    Integer,
    SmallInteger,
    String,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from kickstand.cloud.access.models import UserOrganization
from kickstand.cloud.models import ACTIVE_TRIP_STATUSES, Base, Trip

TRIPS_NETWORK_STARTED = Index("ix_trips_network_started", Trip.network_id, Trip.started_at)
TRIPS_USER_NETWORK = Index("ix_trips_user_network", Trip.user_id, Trip.network_id)
USER_ORGANIZATIONS_ORGANIZATION = Index(
    "ix_user_organizations_organization", UserOrganization.organization_id
)
_ACTIVE = "status IN (" + ", ".join(f"'{s.value}'" for s in ACTIVE_TRIP_STATUSES) + ")"
#: Migration 0019: the trips not finished yet (running, on hold) of a network by start: the
#: rollup holds finished trips only, the figures add these few from ``trips``.
#: Migration 0019: the trips the rollup does not hold (not finished, or finished without an
#: end): with the rollup's count of finished ones, the count of a network's trips.
NOT_ROLLED_UP = "status <> 'finished' OR ended_at IS NULL"
TRIPS_NETWORK_NOT_ROLLED_UP = Index(
    "ix_trips_network_not_rolled_up",
    Trip.network_id,
    postgresql_where=text(NOT_ROLLED_UP),
    sqlite_where=text(NOT_ROLLED_UP),
)
ACTIVE = _ACTIVE
TRIPS_NETWORK_ACTIVE_STARTED = Index(
    "ix_trips_network_active_started",
    Trip.network_id,
    Trip.started_at,
    postgresql_where=text(_ACTIVE),
    sqlite_where=text(_ACTIVE),
)


# ── the usage rollup (migration 0019; fed by kickstand.cloud.stats.rollup) ───────────────

#: Fine histogram resolutions (the medians are read from them: bucket-accurate).
DISTANCE_BUCKET_M = 100
DURATION_BUCKET_S = 60
#: Bits per presence mask (62: a positive signed 64-bit integer on both databases), and
#: masks per year (6 × 62 = 372 ≥ 366 days).
MASK_BITS = 62
MASKS = 6


class TripRollupLedger(Base):
    """What the rollup holds of each finished trip (one row per trip: a retried end, a
    re-bill or a late end replaces the trip's share instead of adding it twice)."""

    __tablename__ = "trip_rollup_ledger"

    trip_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    network_id: Mapped[int] = mapped_column(Integer)
    #: The trip's start in the network's time zone (its day and hour).
    local_day: Mapped[date] = mapped_column(Date)
    hour: Mapped[int] = mapped_column(SmallInteger)
    paid: Mapped[bool] = mapped_column(Boolean)
    user_id: Mapped[int | None] = mapped_column(Integer)
    vehicle_id: Mapped[int] = mapped_column(Integer)
    start_cluster_id: Mapped[int | None] = mapped_column(Integer)
    end_cluster_id: Mapped[int | None] = mapped_column(Integer)
    distance_m: Mapped[float | None] = mapped_column(Float)
    duration_s: Mapped[float | None] = mapped_column(Float)


TRIP_ROLLUP_LEDGER_DAY = Index(
    "ix_trip_rollup_ledger_network_day", TripRollupLedger.network_id, TripRollupLedger.local_day
)


class TripRollupHourly(Base):
    """Finished trips per network, local day and hour of their start, paid or free."""

    __tablename__ = "trip_rollup_hourly"

    network_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    local_day: Mapped[date] = mapped_column(Date, primary_key=True)
    hour: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    paid: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    trips: Mapped[int] = mapped_column(Integer)
    distance_n: Mapped[int] = mapped_column(Integer)
    distance_sum: Mapped[float] = mapped_column(Float)
    distance_max: Mapped[float | None] = mapped_column(Float)
    duration_n: Mapped[int] = mapped_column(Integer)
    duration_sum: Mapped[float] = mapped_column(Float)
    duration_max: Mapped[float | None] = mapped_column(Float)


class TripRollupHistogram(Base):
    """Finished trips per network, local day, measure ("distance" in 100 m buckets,
    "duration" in 1 min buckets: ``bucket`` = floor(value / resolution)) and paid."""

    __tablename__ = "trip_rollup_histogram"

    network_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    local_day: Mapped[date] = mapped_column(Date, primary_key=True)
    measure: Mapped[str] = mapped_column(String(8), primary_key=True)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    paid: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    trips: Mapped[int] = mapped_column(Integer)


class TripRollupHistogramMonth(Base):
    """:class:`TripRollupHistogram` summed per local month (``month``: its first day;
    migration 0027): a period reads its whole months here and only its edge days from the
    daily rows (a year: ~12 × 400 rows instead of ~365 × 400)."""

    __tablename__ = "trip_rollup_histogram_month"

    network_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    measure: Mapped[str] = mapped_column(String(8), primary_key=True)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    paid: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    trips: Mapped[int] = mapped_column(Integer)


class TripRollupCluster(Base):
    """Finished trips per network, local day (of the start) and cluster: started there,
    ended there."""

    __tablename__ = "trip_rollup_cluster"

    network_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    local_day: Mapped[date] = mapped_column(Date, primary_key=True)
    cluster_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started: Mapped[int] = mapped_column(Integer)
    ended: Mapped[int] = mapped_column(Integer)


class TripRollupRider(Base):
    """Finished trips per network and rider (migration 0027): the network's riders are the
    rows with trips (plus the riders of its trips the rollup does not hold), counted from
    one index instead of every presence row of every year."""

    __tablename__ = "trip_rollup_rider"

    network_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trips: Mapped[int] = mapped_column(Integer)


class TripRollupPresence(Base):
    """The local days of a year a rider ("user") or a vehicle ("vehicle") had a finished
    trip on a network: bit ``d % 62`` of ``m{d // 62}`` for day ``d`` of the year (0 = Jan
    1st). Distinct riders/vehicles of a period = rows whose masks meet the period's."""

    __tablename__ = "trip_rollup_presence"

    network_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    year: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    subject_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    m0: Mapped[int] = mapped_column(BigInteger, default=0)
    m1: Mapped[int] = mapped_column(BigInteger, default=0)
    m2: Mapped[int] = mapped_column(BigInteger, default=0)
    m3: Mapped[int] = mapped_column(BigInteger, default=0)
    m4: Mapped[int] = mapped_column(BigInteger, default=0)
    m5: Mapped[int] = mapped_column(BigInteger, default=0)
    #: The previous year's masks of the subject (``m*`` of its row of ``year - 1``): a
    #: period over two years reads one row per subject, no de-duplication.
    p0: Mapped[int] = mapped_column(BigInteger, default=0)
    p1: Mapped[int] = mapped_column(BigInteger, default=0)
    p2: Mapped[int] = mapped_column(BigInteger, default=0)
    p3: Mapped[int] = mapped_column(BigInteger, default=0)
    p4: Mapped[int] = mapped_column(BigInteger, default=0)
    p5: Mapped[int] = mapped_column(BigInteger, default=0)


__all__ = [
    "ACTIVE",
    "DISTANCE_BUCKET_M",
    "DURATION_BUCKET_S",
    "MASKS",
    "MASK_BITS",
    "NOT_ROLLED_UP",
    "TRIPS_NETWORK_ACTIVE_STARTED",
    "TRIPS_NETWORK_NOT_ROLLED_UP",
    "TRIPS_NETWORK_STARTED",
    "TRIPS_USER_NETWORK",
    "TRIP_ROLLUP_LEDGER_DAY",
    "USER_ORGANIZATIONS_ORGANIZATION",
    "TripRollupCluster",
    "TripRollupHistogram",
    "TripRollupHistogramMonth",
    "TripRollupHourly",
    "TripRollupLedger",
    "TripRollupPresence",
    "TripRollupRider",
]
