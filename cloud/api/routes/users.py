"""Seed 002 Users for operators: list, profile, block/unblock with a reason, permissions and
roles granted or revoked, organizations linked. An operator reaches the users of its
networks (grants and trips there); another's are not found."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.access import service
from kickstand.cloud.access.grants import parse_grants
from kickstand.cloud.access.models import UserBlock
from kickstand.cloud.alerts.api import NetworksDep
from kickstand.cloud.api.access import Operator, OperatorContext, PermissionKey
from kickstand.cloud.api.deps import SessionDep
from kickstand.cloud.api.errors import forbidden
from kickstand.cloud.api.ids import Id, Text
from kickstand.cloud.api.openapi import error_responses
from kickstand.cloud.api.schemas import Envelope, OkEnvelope
from kickstand.cloud.errors import NotFoundError
from kickstand.cloud.models import Trip, User

router = APIRouter(prefix="/dashboard/users", tags=["users"])
# The one operator access check (kickstand.cloud.api.access), one permission per concern.
ListOperator = Annotated[OperatorContext, Depends(Operator("users.list"))]
BlockOperator = Annotated[OperatorContext, Depends(Operator("users.block"))]
GrantOperator = Annotated[OperatorContext, Depends(Operator("users.permissions"))]
OrgOperator = Annotated[OperatorContext, Depends(Operator("organizations"))]
UserId = Annotated[Id, Path()]


class UserPublic(BaseModel):
    id: int
    email: str
    full_name: str | None
    role: str
    created_at: datetime
    blocked: bool
    networks: list[int]
    organizations: list[int]


class UserPage(BaseModel):
    code: int = 0
    data: list[UserPublic]
    next_primary_key: int | None


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


async def _public(session: AsyncSession, user: User) -> UserPublic:
    return UserPublic(
        id=user.id,
        email=user.email,
        full_name=user.full_name,
        role=user.role.value,
        created_at=user.created_at,
        blocked=await session.get(UserBlock, user.id) is not None,
        networks=sorted(await service.user_networks(session, user)),
        organizations=await service.user_organizations(session, user.id),
    )


async def _reachable(session: AsyncSession, operator: OperatorContext, user_id: int) -> User:
    """The user, if it belongs to one of the operator's networks (else: not found)."""
    user = await service.get_user(session, user_id)
    if operator.networks is not None and not (
        await service.user_networks(session, user) & operator.networks
    ):
        raise NotFoundError("user", user_id)
    return user


@router.get("", response_model=UserPage, summary="Get users")
async def get_users(
    _operator: ListOperator,
    session: SessionDep,
    networks: NetworksDep,
    primary_key_dir: Literal["ASC", "DESC"] = "DESC",
    page_size: Annotated[int, Query(ge=10, le=500)] = 20,
    last_primary_key: Annotated[Id | None, Query()] = None,
    user_id_min: Annotated[Id | None, Query()] = None,
    user_id_max: Annotated[Id | None, Query()] = None,
    email: Annotated[Text | None, Query(min_length=1, max_length=255)] = None,
    lastname: Annotated[Text | None, Query(min_length=1, max_length=50)] = None,
    firstname: Annotated[Text | None, Query(min_length=1, max_length=50)] = None,
    register_at_min: AwareDatetime | None = None,
    register_at_max: AwareDatetime | None = None,
    blocked: bool | None = None,
) -> UserPage:
    """Seed 002 "Get users" (the filters we hold: ids, email, names, register date, blocked)."""
    wanted = set(networks)  # within the operator's scope: checked by the access dependency
    trips = select(Trip.user_id).where(Trip.network_id.in_(wanted), Trip.user_id.is_not(None))
    ids: set[int] = {i for i in (await session.scalars(trips)).all() if i is not None}
    for row in (await session.execute(select(User.id, User.permissions))).all():
        uid: int = row.id
        grants = parse_grants(row.permissions, user_id=uid)
        if any(g.networks and g.networks & wanted for g in grants):
            ids.add(uid)
    ascending = primary_key_dir == "ASC"
    q = select(User).where(User.id.in_(sorted(ids)))
    if last_primary_key is not None:
        q = q.where(User.id > last_primary_key if ascending else User.id < last_primary_key)
    if user_id_min is not None:
        q = q.where(User.id >= user_id_min)
    if user_id_max is not None:
        q = q.where(User.id <= user_id_max)
    if email is not None:
        q = q.where(User.email.contains(email.lower(), autoescape=True))
    for name in (lastname, firstname):  # one full_name column holds both
        if name is not None:
            q = q.where(User.full_name.icontains(name, autoescape=True))
    if register_at_min is not None:
        q = q.where(User.created_at >= register_at_min)
    if register_at_max is not None:
        q = q.where(User.created_at <= register_at_max)
    if blocked is not None:
        is_blocked = User.id.in_(select(UserBlock.user_id))
        q = q.where(is_blocked if blocked else ~is_blocked)
    q = q.order_by(User.id.asc() if ascending else User.id.desc()).limit(page_size + 1)
    users = list((await session.scalars(q)).all())
    more = len(users) > page_size
    users = users[:page_size]
    return UserPage(
        data=[await _public(session, u) for u in users],
        next_primary_key=users[-1].id if more and users else None,
    )


@router.get("/{user_id}", response_model=Envelope[UserPublic], summary="Get user profile")
async def get_user(
    operator: ListOperator, session: SessionDep, user_id: UserId
) -> Envelope[UserPublic]:
    return Envelope(data=await _public(session, await _reachable(session, operator, user_id)))


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
    await service.link(session, user, await service.get_organization(session, org_id))
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
    await service.unlink(session, user, await service.get_organization(session, org_id))
    await session.commit()
    return OkEnvelope()
