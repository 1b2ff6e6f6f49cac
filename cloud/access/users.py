"""Seed 002 Users as support sees them: who an operator reaches, search, last actions, mails,
report, the global user count. SQL in :mod:`kickstand.cloud.access.repository`.

A user belongs to a network from its first interaction there (a trip) or a grant on it; an
operator reaches the users of its networks, another's are "not found" (not "forbidden":
whether they exist is not the operator's business).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.access import repository, service
from kickstand.cloud.access.grants import parse_grants
from kickstand.cloud.errors import NotFoundError
from kickstand.cloud.keyset import Keyset
from kickstand.cloud.models import User

#: Seed 002: "the last 10" actions, mails, push notifications.
LAST = 10
SEARCH_LIMIT = 50


async def users_of(session: AsyncSession, networks: Collection[int]) -> set[int]:
    """Users of ``networks``: a trip there, or a grant whose unit names one of them."""
    wanted = set(networks)
    ids = await repository.riders_of_networks(session, wanted)
    for uid, permissions in await repository.users_with_grants(session):
        if any(g.networks and g.networks & wanted for g in parse_grants(permissions, user_id=uid)):
            ids.add(uid)
    return ids


async def reachable(session: AsyncSession, networks: frozenset[int] | None, user_id: int) -> User:
    """The user, if it belongs to one of ``networks`` (None: every network); else not found."""
    user = await service.get_user(session, user_id)
    if networks is not None and not (await service.user_networks(session, user) & networks):
        raise NotFoundError("user", user_id)
    return user


async def list_users(
    session: AsyncSession, networks: Collection[int], f: repository.UserFilters, keyset: Keyset
) -> Sequence[User]:
    return await repository.list_users(session, await users_of(session, networks), f, keyset)


async def search(
    session: AsyncSession, email: str, networks: frozenset[int] | None
) -> Sequence[User]:
    """Seed 002 "Search user" by email, within the operator's networks."""
    ids = None if networks is None else await users_of(session, networks)
    return await repository.search_users(session, email, ids, SEARCH_LIMIT)


async def global_user_count(session: AsyncSession, now: datetime) -> int:
    """Seed 002 "Get global user count": users holding an active global grant."""
    return sum(
        1
        for uid, permissions in await repository.users_with_grants(session)
        if any(g.networks is None and g.active(now) for g in parse_grants(permissions, user_id=uid))
    )


ActionKind = Literal["unlock-request", "trip", "transaction", "dashboard-request"]


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    id: int
    at: datetime
    status: str
    network_id: int | None = None
    amount: Decimal | None = None
    currency: str | None = None
    target_path: str | None = None


async def last_actions(
    session: AsyncSession, user_id: int, networks: frozenset[int] | None, before: datetime | None
) -> list[Action]:
    """Seed 002 "Get user last actions": the last 10 unlock requests, trips (in the
    operator's ``networks``), wallet transactions and dashboard requests, newest first,
    before ``before``."""
    actions: list[Action] = []
    for rent in await repository.user_rents(session, user_id, before, LAST):
        actions.append(Action("unlock-request", rent.id, rent.created_at, rent.status.value))
    for trip in await repository.user_trips(session, user_id, networks, before, LAST):
        actions.append(
            Action(
                "trip", trip.id, trip.started_at, trip.status.value, network_id=trip.network_id,
                amount=trip.cost, currency=trip.currency,
            )
        )  # fmt: skip
    for tx in await repository.user_transactions(session, user_id, before, LAST):
        actions.append(
            Action(
                "transaction", tx.id, tx.created_at, tx.kind.value, amount=tx.amount,
                currency=tx.currency,
            )
        )  # fmt: skip
    for req in await repository.user_dashboard_requests(session, user_id, before, LAST):
        actions.append(
            Action(
                "dashboard-request", req.id, req.created_at, str(req.http_code),
                target_path=req.target_path,
            )
        )  # fmt: skip
    actions.sort(key=lambda a: (_aware(a.at), a.kind, a.id), reverse=True)
    return actions[:LAST]


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Report:
    user_id: int
    registered_at: datetime
    blocked: bool
    wallet_balance: Decimal
    trips: int
    running_trips: int
    spent: dict[str, Decimal]
    first_trip_at: datetime | None
    last_trip_at: datetime | None
    badges: int
    devices: int
    networks: list[int]


async def report(session: AsyncSession, user: User, networks: frozenset[int] | None) -> Report:
    """Seed 002 "Get the user report": what support needs at a glance; trips and networks
    within the operator's ``networks`` (None: all)."""
    figures = await repository.trip_figures(session, user.id, networks)
    mine = await service.user_networks(session, user)
    return Report(
        user_id=user.id,
        registered_at=user.created_at,
        blocked=await repository.is_blocked(session, user.id),
        wallet_balance=user.wallet_balance,
        trips=figures.trips,
        running_trips=figures.running,
        spent=figures.spent,
        first_trip_at=figures.first_trip_at,
        last_trip_at=figures.last_trip_at,
        badges=await repository.count_badges(session, user.id),
        devices=await repository.count_devices(session, user.id),
        networks=sorted(mine if networks is None else mine & networks),
    )
