"""SQL of access control: access log pages, the users an operator reaches and what support
reads about them (seed 002 Users), the organizations an operator reaches."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.access.models import AccessLog, Organization, UserBlock
from kickstand.cloud.accounts.models import ApiRequest, UserDevice
from kickstand.cloud.keyset import Keyset, page_query
from kickstand.cloud.models import (
    ACTIVE_TRIP_STATUSES,
    Badge,
    MailMessage,
    Rent,
    Trip,
    User,
    WalletTransaction,
)
from kickstand.cloud.networks.models import NetworkAccessRule


@dataclass(frozen=True)
class AccessLogFilters:
    """Seed 002 "Get access logs" query parameters."""

    date_min: datetime | None = None
    date_max: datetime | None = None
    user_id: int | None = None
    target_path: str | None = None
    verb: str | None = None
    user_agent: str | None = None
    ip: str | None = None
    http_code_min: int | None = None
    http_code_max: int | None = None
    knot_code_min: int | None = None
    knot_code_max: int | None = None
    #: Only these users' requests (None: everyone's).
    only_users: frozenset[int] | None = None


def _filtered(f: AccessLogFilters) -> Select[AccessLog]:
    q = select(AccessLog)
    log = AccessLog
    if f.date_min is not None:
        q = q.where(log.created_at >= f.date_min)
    if f.date_max is not None:
        q = q.where(log.created_at <= f.date_max)
    if f.user_id is not None:
        q = q.where(log.user_id == f.user_id)
    if f.target_path is not None:
        q = q.where(log.target_path.startswith(f.target_path, autoescape=True))
    if f.verb is not None:
        q = q.where(log.verb == f.verb.upper())
    if f.user_agent is not None:
        q = q.where(log.user_agent.contains(f.user_agent, autoescape=True))
    if f.ip is not None:
        q = q.where(log.ip == f.ip)
    if f.http_code_min is not None:
        q = q.where(log.http_code >= f.http_code_min)
    if f.http_code_max is not None:
        q = q.where(log.http_code <= f.http_code_max)
    if f.knot_code_min is not None:
        q = q.where(log.knot_code >= f.knot_code_min)
    if f.knot_code_max is not None:
        q = q.where(log.knot_code <= f.knot_code_max)
    if f.only_users is not None:
        q = q.where(log.user_id.in_(sorted(f.only_users)))
    return q


async def list_access_logs(
    session: AsyncSession, f: AccessLogFilters, keyset: Keyset
) -> Sequence[AccessLog]:
    return (await session.scalars(page_query(_filtered(f), AccessLog.id, keyset))).all()


# ── users (seed 002 Users) ────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class UserFilters:
    """Seed 002 "Get users" filters we hold (one ``full_name`` column holds both names)."""

    user_id_min: int | None = None
    user_id_max: int | None = None
    email: str | None = None
    lastname: str | None = None
    firstname: str | None = None
    register_at_min: datetime | None = None
    register_at_max: datetime | None = None
    blocked: bool | None = None


async def users_with_grants(session: AsyncSession) -> list[tuple[int, Any]]:
    """(id, permissions) of every user (riders may hold grants too: ``rent`` on a unit)."""
    rows = await session.execute(select(User.id, User.permissions))
    return [(row.id, row.permissions) for row in rows.all()]


async def riders_of_networks(session: AsyncSession, networks: Collection[int]) -> set[int]:
    """Users with a trip in one of ``networks``."""
    trips = select(Trip.user_id).where(
        Trip.network_id.in_(sorted(networks)), Trip.user_id.is_not(None)
    )
    return {i for i in (await session.scalars(trips.distinct())).all() if i is not None}


async def list_users(
    session: AsyncSession, ids: Collection[int], f: UserFilters, keyset: Keyset
) -> Sequence[User]:
    q = select(User).where(User.id.in_(sorted(ids)))
    if f.user_id_min is not None:
        q = q.where(User.id >= f.user_id_min)
    if f.user_id_max is not None:
        q = q.where(User.id <= f.user_id_max)
    if f.email is not None:
        q = q.where(User.email.contains(f.email.lower(), autoescape=True))
    for name in (f.lastname, f.firstname):
        if name is not None:
            q = q.where(User.full_name.icontains(name, autoescape=True))
    if f.register_at_min is not None:
        q = q.where(User.created_at >= f.register_at_min)
    if f.register_at_max is not None:
        q = q.where(User.created_at <= f.register_at_max)
    if f.blocked is not None:
        is_blocked = User.id.in_(select(UserBlock.user_id))
        q = q.where(is_blocked if f.blocked else ~is_blocked)
    return (await session.scalars(page_query(q, User.id, keyset))).all()


async def search_users(
    session: AsyncSession, email: str, ids: Collection[int] | None, limit: int
) -> Sequence[User]:
    """Users whose email contains ``email`` (among ``ids``; None: everyone), by id."""
    q = select(User).where(User.email.contains(email.lower(), autoescape=True))
    if ids is not None:
        q = q.where(User.id.in_(sorted(ids)))
    return (await session.scalars(q.order_by(User.id).limit(limit))).all()


async def is_blocked(session: AsyncSession, user_id: int) -> bool:
    return await session.get(UserBlock, user_id) is not None


async def user_mails(
    session: AsyncSession, user: User, before: datetime | None, limit: int
) -> Sequence[MailMessage]:
    """The user's mails (its id, or its address before it had one), newest first."""
    q = select(MailMessage).where(
        (MailMessage.user_id == user.id) | (MailMessage.to_address == user.email)
    )
    if before is not None:
        q = q.where(MailMessage.created_at < before)
    q = q.order_by(MailMessage.created_at.desc(), MailMessage.id.desc()).limit(limit)
    return (await session.scalars(q)).all()


async def user_rents(
    session: AsyncSession, user_id: int, before: datetime | None, limit: int
) -> Sequence[Rent]:
    q = select(Rent).where(Rent.user_id == user_id)
    if before is not None:
        q = q.where(Rent.created_at < before)
    return (await session.scalars(q.order_by(Rent.created_at.desc()).limit(limit))).all()


def _trips_of(user_id: int, networks: frozenset[int] | None) -> ColumnElement[bool]:
    mine = Trip.user_id == user_id
    return mine if networks is None else mine & Trip.network_id.in_(sorted(networks))


async def user_trips(
    session: AsyncSession,
    user_id: int,
    networks: frozenset[int] | None,
    before: datetime | None,
    limit: int,
) -> Sequence[Trip]:
    q = select(Trip).where(_trips_of(user_id, networks))
    if before is not None:
        q = q.where(Trip.started_at < before)
    return (await session.scalars(q.order_by(Trip.started_at.desc()).limit(limit))).all()


async def user_transactions(
    session: AsyncSession, user_id: int, before: datetime | None, limit: int
) -> Sequence[WalletTransaction]:
    q = select(WalletTransaction).where(WalletTransaction.user_id == user_id)
    if before is not None:
        q = q.where(WalletTransaction.created_at < before)
    q = q.order_by(WalletTransaction.created_at.desc()).limit(limit)
    return (await session.scalars(q)).all()


async def user_dashboard_requests(
    session: AsyncSession, user_id: int, before: datetime | None, limit: int
) -> Sequence[AccessLog]:
    q = select(AccessLog).where(AccessLog.user_id == user_id)
    if before is not None:
        q = q.where(AccessLog.created_at < before)
    return (await session.scalars(q.order_by(AccessLog.created_at.desc()).limit(limit))).all()


async def user_api_requests(
    session: AsyncSession, user_id: int, keyset: Keyset
) -> Sequence[ApiRequest]:
    q = select(ApiRequest).where(ApiRequest.user_id == user_id)
    return (await session.scalars(page_query(q, ApiRequest.id, keyset))).all()


@dataclass(frozen=True)
class TripFigures:
    trips: int
    running: int
    spent: dict[str, Decimal]
    first_trip_at: datetime | None
    last_trip_at: datetime | None


async def trip_figures(
    session: AsyncSession, user_id: int, networks: frozenset[int] | None
) -> TripFigures:
    """The user's trips in ``networks`` (None: all) counted, and what they cost."""
    mine = _trips_of(user_id, networks)
    first, last, count = (
        await session.execute(
            select(func.min(Trip.started_at), func.max(Trip.started_at), func.count()).where(mine)
        )
    ).one()
    running = await session.scalar(
        select(func.count()).where(mine, Trip.status.in_(ACTIVE_TRIP_STATUSES))
    )
    # Money is text on SQLite: summed here, per currency, exactly.
    spent: dict[str, Decimal] = {}
    for cost, currency in (
        await session.execute(select(Trip.cost, Trip.currency).where(mine, Trip.cost.is_not(None)))
    ).all():
        if cost is not None:
            spent[currency] = spent.get(currency, Decimal(0)) + cost
    return TripFigures(int(count or 0), int(running or 0), spent, first, last)


async def count_devices(session: AsyncSession, user_id: int) -> int:
    n = await session.scalar(
        select(func.count()).select_from(UserDevice).where(UserDevice.user_id == user_id)
    )
    return int(n or 0)


async def count_badges(session: AsyncSession, user_id: int) -> int:
    n = await session.scalar(
        select(func.count()).select_from(Badge).where(Badge.user_id == user_id)
    )
    return int(n or 0)


# ── organizations (seed 002 Organizations) ────────────────────────────────────────────


def _organization_scope(networks: frozenset[int] | None) -> Select[Organization]:
    """The organizations ``networks`` reach (None: all): the one created for one of them,
    or named by an access rule of one of them."""
    q = select(Organization)
    if networks is None:
        return q
    nets = sorted(networks)
    ruled = select(NetworkAccessRule.organization_id).where(
        NetworkAccessRule.network_id.in_(nets), NetworkAccessRule.organization_id.is_not(None)
    )
    return q.where(or_(Organization.network_id.in_(nets), Organization.id.in_(ruled)))


async def list_organizations(
    session: AsyncSession, networks: frozenset[int] | None, keyset: Keyset
) -> Sequence[Organization]:
    q = page_query(_organization_scope(networks), Organization.id, keyset)
    return (await session.scalars(q)).all()


async def organization_in_scope(
    session: AsyncSession, org_id: int, networks: frozenset[int] | None
) -> Organization | None:
    q = _organization_scope(networks).where(Organization.id == org_id)
    return (await session.scalars(q)).one_or_none()
