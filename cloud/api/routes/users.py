"""Seed 002 Users for operators: list, search, profile and report, block/unblock with a
reason, permissions and roles granted or revoked, organizations linked, and what support
reads (app devices, wallets credited, last actions, mails, API requests). An operator
reaches the users of its networks (grants and trips there); another's are not found.
Rules and SQL: ``kickstand.cloud.access.users`` / ``repository``, ``kickstand.cloud.accounts``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.access import repository, service
from kickstand.cloud.access import users as support
from kickstand.cloud.access.models import UserBlock
from kickstand.cloud.accounts import devices, wallets
from kickstand.cloud.accounts.models import UserWallet
from kickstand.cloud.alerts.api import NetworksDep
from kickstand.cloud.api.access import Operator, OperatorContext, PermissionKey
from kickstand.cloud.api.deps import SessionDep
from kickstand.cloud.api.errors import forbidden
from kickstand.cloud.api.ids import Id, Text
from kickstand.cloud.api.openapi import error_responses
from kickstand.cloud.api.pagination import KeysetDep
from kickstand.cloud.api.schemas import Envelope, OkEnvelope, Page
from kickstand.cloud.keyset import cut
from kickstand.cloud.models import User, UserRole
from kickstand.cloud.networks import repository as network_repository

router = APIRouter(prefix="/dashboard/users", tags=["users"])
# The one operator access check (kickstand.cloud.api.access), one permission per concern.
ListOperator = Annotated[OperatorContext, Depends(Operator("users.list"))]
BlockOperator = Annotated[OperatorContext, Depends(Operator("users.block"))]
GrantOperator = Annotated[OperatorContext, Depends(Operator("users.permissions"))]
OrgOperator = Annotated[OperatorContext, Depends(Operator("organizations"))]
SupportOperator = Annotated[OperatorContext, Depends(Operator("users.support"))]
CreditsOperator = Annotated[OperatorContext, Depends(Operator("users.credits"))]
UserId = Annotated[Id, Path()]
BeforeDate = Annotated[
    AwareDatetime | None,
    Query(description="The date of the oldest element the client has: older ones come."),
]


class UserPublic(BaseModel):
    id: int
    email: str
    full_name: str | None
    role: str
    created_at: datetime
    blocked: bool
    networks: list[int]
    organizations: list[int]


class BlockBody(BaseModel):
    reason: Text = Field(min_length=3, max_length=1000)


class BlockedPublic(BaseModel):
    blocked: bool
    reason: str | None
    blocked_by: int | None
    blocked_at: datetime | None


class GrantBody(BaseModel):
    start_date: AwareDatetime
    end_date: AwareDatetime | None
    organizational_unit: Id | None
    write: bool


class PermissionGrant(GrantBody):
    perm_key: PermissionKey


class RoleGrant(GrantBody):
    role_key: Text = Field(min_length=3, max_length=50)


class UserDevicePublic(BaseModel):
    """An app device the user logged in with (``device`` of ``POST /v1/auth/login``)."""

    device_id: str
    os: str | None
    model: str | None
    app_version: str | None
    first_login_at: datetime
    last_login_at: datetime


class UserPassPublic(BaseModel):
    """A pass held by a user. Kickstand sells no passes yet: the list is always empty."""

    id: int
    pass_id: int
    name: str
    network_id: int
    start_date: datetime
    end_date: datetime | None


class WalletPublic(BaseModel):
    id: int
    #: What is left of the credit (a decimal string; "0" once deleted).
    amount: str
    credited: str
    currency: str
    reason: str
    created_by: int | None
    created_at: datetime
    deleted_at: datetime | None
    deleted_by: int | None
    delete_reason: str | None


class UserWalletsPublic(BaseModel):
    #: The rider's balance (what rents check and trips are charged from).
    balance: str
    wallets: list[WalletPublic]


class WalletCreate(BaseModel):
    amount: Decimal = Field(ge=Decimal("0.01"), le=Decimal("100000"), decimal_places=4)
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. EUR.")
    reason: Text = Field(min_length=5, max_length=1000)


class LastAction(BaseModel):
    kind: Literal["unlock-request", "trip", "transaction", "dashboard-request"]
    id: int
    at: datetime
    #: The rent's or trip's status, the transaction's kind, the request's HTTP status.
    status: str
    network_id: int | None
    amount: str | None
    currency: str | None
    target_path: str | None


class MailSent(BaseModel):
    """A mail queued for the user (its body is not shown: it may carry a token)."""

    id: int
    kind: str
    to_address: str
    subject: str
    created_at: datetime
    sent_at: datetime | None
    attempts: int


class PushNotificationSent(BaseModel):
    """A push notification sent to the user. Kickstand sends none yet: always empty."""

    id: int
    title: str
    body: str
    sent_at: datetime


class ApiRequestPublic(BaseModel):
    id: int
    target_path: str
    verb: str
    user_agent: str | None
    ip: str | None
    http_code: int
    knot_code: int | None
    created_at: datetime


class UserReport(BaseModel):
    user_id: int
    registered_at: datetime
    blocked: bool
    wallet_balance: str
    #: Trips in the operator's networks (all of them, running included).
    trips: int
    running_trips: int
    #: What those trips cost, per currency (decimal strings).
    spent: dict[str, str]
    first_trip_at: datetime | None
    last_trip_at: datetime | None
    badges: int
    devices: int
    networks: list[int]


def _money(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


async def _public(session: AsyncSession, user: User, reach: frozenset[int] | None) -> UserPublic:
    """``reach``: the operator's networks (None: every one)."""
    return UserPublic(
        id=user.id,
        email=user.email,
        full_name=user.full_name,
        role=user.role.value,
        created_at=user.created_at,
        blocked=await repository.is_blocked(session, user.id),
        networks=sorted(await service.user_networks(session, user)),
        organizations=await _organizations_reached(session, user.id, reach),
    )


async def _organizations_reached(
    session: AsyncSession, user_id: int, reach: frozenset[int] | None
) -> list[int]:
    """The user's organizations that ``reach`` reaches: another network's customers are
    not confirmed (as for a link or an unlink)."""
    ids = await service.user_organizations(session, user_id)
    if reach is None:
        return ids
    return [i for i in ids if await repository.organization_in_scope(session, i, reach)]


async def _reachable(session: AsyncSession, operator: OperatorContext, user_id: int) -> User:
    """The user, if it belongs to one of the operator's networks (else: not found)."""
    return await support.reachable(session, operator.networks, user_id)


@router.get("", response_model=Page[UserPublic], summary="Get users")
async def get_users(
    operator: ListOperator,
    session: SessionDep,
    networks: NetworksDep,
    keyset: KeysetDep,
    user_id_min: Annotated[Id | None, Query()] = None,
    user_id_max: Annotated[Id | None, Query()] = None,
    email: Annotated[Text | None, Query(min_length=1, max_length=255)] = None,
    lastname: Annotated[Text | None, Query(min_length=1, max_length=50)] = None,
    firstname: Annotated[Text | None, Query(min_length=1, max_length=50)] = None,
    register_at_min: AwareDatetime | None = None,
    register_at_max: AwareDatetime | None = None,
    blocked: bool | None = None,
) -> Page[UserPublic]:
    """Seed 002 "Get users" (the filters we hold: ids, email, names, register date, blocked);
    ``networks`` within the operator's scope (checked by the access dependency)."""
    filters = repository.UserFilters(
        user_id_min=user_id_min, user_id_max=user_id_max, email=email, lastname=lastname,
        firstname=firstname, register_at_min=register_at_min, register_at_max=register_at_max,
        blocked=blocked,
    )  # fmt: skip
    rows = await support.list_users(session, networks, filters, keyset)
    page, next_key = cut(rows, keyset, key=lambda u: u.id)
    return Page(
        data=[await _public(session, u, operator.networks) for u in page],
        next_primary_key=next_key,
    )


@router.get("/search", response_model=Envelope[list[UserPublic]], summary="Search user")
async def search_user(
    operator: ListOperator,
    session: SessionDep,
    email: Annotated[Text, Query(min_length=3, max_length=200, description="Search value.")],
) -> Envelope[list[UserPublic]]:
    """Users of the operator's networks whose email contains the value (at most 50)."""
    found = await support.search(session, email, operator.networks)
    return Envelope(data=[await _public(session, u, operator.networks) for u in found])


@router.get(
    "/global-count",
    response_model=Envelope[int],
    summary="Get global user count",
    tags=["organizational-units"],
)
async def get_global_user_count(_operator: GrantOperator, session: SessionDep) -> Envelope[int]:
    """How many users hold a permission globally (on every network): a count, the same for
    every operator."""
    count = await support.global_user_count(session, datetime.now(UTC))
    await session.commit()
    return Envelope(data=count)


@router.get("/{user_id}", response_model=Envelope[UserPublic], summary="Get user profile")
async def get_user(
    operator: ListOperator, session: SessionDep, user_id: UserId
) -> Envelope[UserPublic]:
    user = await _reachable(session, operator, user_id)
    return Envelope(data=await _public(session, user, operator.networks))


@router.get(
    "/{user_id}/blocked", response_model=Envelope[BlockedPublic], summary="Get blocked information"
)
async def get_blocked(
    operator: BlockOperator, session: SessionDep, user_id: UserId
) -> Envelope[BlockedPublic]:
    user = await _reachable(session, operator, user_id)
    record = await session.get(UserBlock, user.id)
    return Envelope(
        data=BlockedPublic(
            blocked=record is not None,
            reason=record.reason if record else None,
            blocked_by=record.blocked_by if record else None,
            blocked_at=record.blocked_at if record else None,
        )
    )


@router.post("/{user_id}/block", response_model=OkEnvelope, summary="Block user")
async def block_user(
    operator: BlockOperator, session: SessionDep, user_id: UserId, body: BlockBody
) -> OkEnvelope:
    user = await _reachable(session, operator, user_id)
    await service.block(session, user, body.reason, operator.user_id)
    await session.commit()
    return OkEnvelope()


@router.post(
    "/{user_id}/unblock",
    response_model=OkEnvelope,
    summary="Unblock user",
    responses=error_responses(409),
)
async def unblock_user(operator: BlockOperator, session: SessionDep, user_id: UserId) -> OkEnvelope:
    await service.unblock(session, await _reachable(session, operator, user_id))
    await session.commit()
    return OkEnvelope()


@router.get(
    "/{user_id}/permissions",
    response_model=Envelope[list[dict[str, Any]]],
    summary="Get user permission",
)
async def get_user_permissions(
    operator: GrantOperator, session: SessionDep, user_id: UserId
) -> Envelope[list[dict[str, Any]]]:
    user = await _reachable(session, operator, user_id)
    return Envelope(data=list(user.permissions))


def _granter(operator: OperatorContext) -> service.Granter:
    return service.Granter(operator.user)


def _to_operator(user: User) -> None:
    """A rider given a dashboard permission becomes an operator: the access check lets only
    operators (and admins) in, and no other operation makes one."""
    if user.role == UserRole.RIDER:
        user.role = UserRole.OPERATOR


@router.post("/{user_id}/permissions", response_model=OkEnvelope, summary="Add user permission")
async def add_user_permission(
    operator: GrantOperator, session: SessionDep, user_id: UserId, body: PermissionGrant
) -> OkEnvelope:
    user = await _reachable(session, operator, user_id)
    await _check_unit(session, operator, body.organizational_unit)
    await service.grant(
        session, _granter(operator), user, [body.perm_key], write=body.write,
        ou_id=body.organizational_unit, start=body.start_date, end=body.end_date,
    )  # fmt: skip
    _to_operator(user)
    await session.commit()
    return OkEnvelope()


@router.delete(
    "/{user_id}/permissions", response_model=OkEnvelope, summary="Remove user permission"
)
async def remove_user_permission(
    operator: GrantOperator,
    session: SessionDep,
    user_id: UserId,
    perm_key: PermissionKey,
    organizational_unit: Annotated[Id | None, Query()] = None,
) -> OkEnvelope:
    user = await _reachable(session, operator, user_id)
    await _check_unit(session, operator, organizational_unit)
    await service.revoke(session, _granter(operator), user, [perm_key], ou_id=organizational_unit)
    await session.commit()
    return OkEnvelope()


@router.post("/{user_id}/roles", response_model=OkEnvelope, summary="Add user role")
async def add_user_role(
    operator: GrantOperator, session: SessionDep, user_id: UserId, body: RoleGrant
) -> OkEnvelope:
    user = await _reachable(session, operator, user_id)
    await _check_unit(session, operator, body.organizational_unit)
    role = await service.get_role(session, body.role_key)
    await service.grant(
        session, _granter(operator), user, role.perms, write=body.write,
        ou_id=body.organizational_unit, start=body.start_date, end=body.end_date, role=role.key,
    )  # fmt: skip
    _to_operator(user)
    await session.commit()
    return OkEnvelope()


@router.delete("/{user_id}/roles", response_model=OkEnvelope, summary="Remove user role")
async def remove_user_role(
    operator: GrantOperator,
    session: SessionDep,
    user_id: UserId,
    role_key: Annotated[Text, Query(min_length=3, max_length=50)],
    organizational_unit: Annotated[Id | None, Query()] = None,
) -> OkEnvelope:
    user = await _reachable(session, operator, user_id)
    await _check_unit(session, operator, organizational_unit)
    role = await service.get_role(session, role_key)
    await service.revoke(
        session, _granter(operator), user, role.perms, ou_id=organizational_unit, role=role.key
    )
    await session.commit()
    return OkEnvelope()


async def _check_unit(session: AsyncSession, operator: OperatorContext, ou_id: int | None) -> None:
    """The unit's networks must be the granter's ('users.permissions' write) too."""
    if ou_id is None:
        if operator.networks is not None:
            raise forbidden(
                "a global grant needs a global 'users.permissions' grant", reason="not-global"
            )
        return
    unit = await service.get_unit(session, ou_id)
    operator.check(unit.networks)


@router.put(
    "/{user_id}/organizations/{org_id}",
    response_model=OkEnvelope,
    summary="Link user to organization",
)
async def link_organization(
    operator: OrgOperator, session: SessionDep, user_id: UserId, org_id: Annotated[Id, Path()]
) -> OkEnvelope:
    user = await _reachable(session, operator, user_id)
    org = await service.reachable_organization(session, org_id, operator.networks)
    await service.link(session, user, org)
    await session.commit()
    return OkEnvelope()


@router.delete(
    "/{user_id}/organizations/{org_id}",
    response_model=OkEnvelope,
    summary="Unlink user from organization",
)
async def unlink_organization(
    operator: OrgOperator, session: SessionDep, user_id: UserId, org_id: Annotated[Id, Path()]
) -> OkEnvelope:
    user = await _reachable(session, operator, user_id)
    org = await service.reachable_organization(session, org_id, operator.networks)
    await service.unlink(session, user, org)
    await session.commit()
    return OkEnvelope()


# ── what support reads ────────────────────────────────────────────────────────────────


@router.get("/{user_id}/report", response_model=Envelope[UserReport], summary="Get the user report")
async def get_user_report(
    operator: SupportOperator, session: SessionDep, user_id: UserId
) -> Envelope[UserReport]:
    user = await _reachable(session, operator, user_id)
    r = await support.report(session, user, operator.networks)
    await session.commit()
    return Envelope(
        data=UserReport(
            user_id=r.user_id, registered_at=r.registered_at, blocked=r.blocked,
            wallet_balance=_money(r.wallet_balance) or "0", trips=r.trips,
            running_trips=r.running_trips,
            spent={c: _money(v) or "0" for c, v in sorted(r.spent.items())},
            first_trip_at=r.first_trip_at, last_trip_at=r.last_trip_at, badges=r.badges,
            devices=r.devices, networks=r.networks,
        )
    )  # fmt: skip


@router.get(
    "/{user_id}/devices",
    response_model=Envelope[list[UserDevicePublic]],
    summary="Get user devices",
)
async def get_user_devices(
    operator: SupportOperator, session: SessionDep, user_id: UserId
) -> Envelope[list[UserDevicePublic]]:
    """The app devices the user logged in with, last used first."""
    user = await _reachable(session, operator, user_id)
    rows = await devices.user_devices(session, user.id)
    await session.commit()
    return Envelope(data=[UserDevicePublic.model_validate(d, from_attributes=True) for d in rows])


@router.get(
    "/{user_id}/passes", response_model=Envelope[list[UserPassPublic]], summary="Get user passes"
)
async def get_user_passes(
    operator: SupportOperator, session: SessionDep, user_id: UserId
) -> Envelope[list[UserPassPublic]]:
    """Kickstand sells no passes yet: the user is checked and the list is empty."""
    await _reachable(session, operator, user_id)
    await session.commit()
    return Envelope(data=[])


def _wallet(w: UserWallet) -> WalletPublic:
    return WalletPublic(
        id=w.id, amount=_money(w.amount) or "0", credited=_money(w.credited) or "0",
        currency=w.currency, reason=w.reason, created_by=w.created_by, created_at=w.created_at,
        deleted_at=w.deleted_at, deleted_by=w.deleted_by, delete_reason=w.delete_reason,
    )  # fmt: skip


@router.get(
    "/{user_id}/wallets", response_model=Envelope[UserWalletsPublic], summary="Get user wallets"
)
async def get_user_wallets(
    operator: CreditsOperator,
    session: SessionDep,
    user_id: UserId,
    get_empty: Annotated[bool, Query(description="Also the emptied (deleted) wallets.")] = False,
) -> Envelope[UserWalletsPublic]:
    user = await _reachable(session, operator, user_id)
    rows = await wallets.wallets(session, user.id, with_empty=get_empty)
    await session.commit()
    return Envelope(
        data=UserWalletsPublic(
            balance=_money(user.wallet_balance) or "0", wallets=[_wallet(w) for w in rows]
        )
    )


@router.post(
    "/{user_id}/wallets",
    response_model=Envelope[WalletPublic],
    summary="Create user wallet",
    description="Credits the rider's balance with `amount` (a wallet transaction of kind "
    "`adjustment`), keeping who and why. `currency`: one the user's networks bill in.",
)
async def create_user_wallet(
    operator: CreditsOperator, session: SessionDep, user_id: UserId, body: WalletCreate
) -> Envelope[WalletPublic]:
    user = await _reachable(session, operator, user_id)
    reached = await service.user_networks(session, user)
    if not reached:
        # A rider belongs to no network before its first trip (only a global operator
        # reaches one): its first credit is in a currency of the operator's networks.
        reached = {n for n, _ in await network_repository.open_networks(session, None)}
    if operator.networks is not None:
        reached &= operator.networks
    operator.check(sorted(reached))
    wallet = await wallets.credit(
        session, user.id, amount=body.amount, currency=body.currency, reason=body.reason,
        by=operator.user_id, networks=reached, now=datetime.now(UTC),
    )  # fmt: skip
    await session.commit()
    return Envelope(data=_wallet(wallet))


@router.delete(
    "/{user_id}/wallets",
    response_model=OkEnvelope,
    summary="Delete user wallet",
    description="Withdraws what is left of the wallet from the balance (never below zero).",
)
async def delete_user_wallet(
    operator: CreditsOperator,
    session: SessionDep,
    user_id: UserId,
    wallet: Annotated[Id, Query(description="Identifier of the wallet.")],
    reason: Annotated[Text, Query(min_length=3, max_length=1000)],
) -> OkEnvelope:
    user = await _reachable(session, operator, user_id)
    await wallets.delete(
        session, user.id, wallet, reason=reason, by=operator.user_id, now=datetime.now(UTC)
    )
    await session.commit()
    return OkEnvelope()


@router.get(
    "/{user_id}/last-actions",
    response_model=Envelope[list[LastAction]],
    summary="Get user last actions",
)
async def get_user_last_actions(
    operator: SupportOperator, session: SessionDep, user_id: UserId, before_date: BeforeDate = None
) -> Envelope[list[LastAction]]:
    """The last 10 unlock requests, trips (of the operator's networks), wallet transactions
    and dashboard requests, newest first."""
    user = await _reachable(session, operator, user_id)
    actions = await support.last_actions(session, user.id, operator.networks, before_date)
    await session.commit()
    return Envelope(
        data=[
            LastAction(
                kind=a.kind,
                id=a.id,
                at=a.at,
                status=a.status,
                network_id=a.network_id,
                amount=_money(a.amount),
                currency=a.currency,
                target_path=a.target_path,
            )
            for a in actions
        ]
    )


@router.get(
    "/{user_id}/mails", response_model=Envelope[list[MailSent]], summary="Get user mails sent"
)
async def get_user_mails(
    operator: SupportOperator, session: SessionDep, user_id: UserId, before_date: BeforeDate = None
) -> Envelope[list[MailSent]]:
    """The last 10 mails queued for the user (sent or still being retried), newest first."""
    user = await _reachable(session, operator, user_id)
    rows = await repository.user_mails(session, user, before_date, support.LAST)
    await session.commit()
    return Envelope(data=[MailSent.model_validate(m, from_attributes=True) for m in rows])


@router.get(
    "/{user_id}/push-notifications",
    response_model=Envelope[list[PushNotificationSent]],
    summary="Get user sent push notifications",
)
async def get_user_push_notifications(
    operator: SupportOperator, session: SessionDep, user_id: UserId, before_date: BeforeDate = None
) -> Envelope[list[PushNotificationSent]]:
    """Kickstand sends no push notifications yet: the user is checked, the list is empty."""
    await _reachable(session, operator, user_id)
    await session.commit()
    return Envelope(data=[])


@router.get(
    "/{user_id}/api-requests",
    response_model=Page[ApiRequestPublic],
    summary="Get user api requests",
)
async def get_user_api_requests(
    operator: SupportOperator, session: SessionDep, user_id: UserId, keyset: KeysetDep
) -> Page[ApiRequestPublic]:
    """The user's authenticated rider API requests (kept 30 days), as a keyset page (the
    seed's offset/items are not served: every listing pages by key)."""
    user = await _reachable(session, operator, user_id)
    rows = await repository.user_api_requests(session, user.id, keyset)
    await session.commit()
    page, next_key = cut(rows, keyset, key=lambda r: r.id)
    return Page(
        data=[ApiRequestPublic.model_validate(r, from_attributes=True) for r in page],
        next_primary_key=next_key,
    )
