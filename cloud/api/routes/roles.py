"""Seed 002 Roles (3) and Permissions (1): the permission catalogue and named sets of it.

Granting a role copies its permissions into the user's grants (marked with the role), so
editing a role changes later grants only, and cannot widen anyone's access by itself.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from kickstand.cloud.access import service
from kickstand.cloud.access.grants import DASHBOARD_PERMISSIONS
from kickstand.cloud.api.access import Operator, OperatorContext, PermissionKey
from kickstand.cloud.api.deps import SessionDep
from kickstand.cloud.api.ids import Text
from kickstand.cloud.api.openapi import error_responses
from kickstand.cloud.api.schemas import Envelope, OkEnvelope

router = APIRouter(prefix="/dashboard", tags=["roles"])
# The one operator access check (kickstand.cloud.api.access).
RolesOperator = Annotated[OperatorContext, Depends(Operator("roles"))]

Lang = Annotated[Text, Query(min_length=2, max_length=2, description="ISO 639-1")]
RoleKey = Annotated[Text, Field(min_length=3, max_length=50)]


class PermissionPublic(BaseModel):
    perm_key: str
    name: str


class RolePublic(BaseModel):
    key: str
    perms: list[str]


class RoleCreate(BaseModel):
    key: RoleKey
    perms: list[PermissionKey] = Field(max_length=len(DASHBOARD_PERMISSIONS))


class RoleUpdate(BaseModel):
    key: RoleKey
    perms_to_add: list[PermissionKey] = Field(max_length=len(DASHBOARD_PERMISSIONS))
    perms_to_remove: list[PermissionKey] = Field(max_length=len(DASHBOARD_PERMISSIONS))


@router.get(
    "/permissions", response_model=Envelope[list[PermissionPublic]], summary="Get permissions"
)
async def get_permissions(_operator: RolesOperator, lang: Lang) -> Envelope[list[PermissionPublic]]:
    return Envelope(
        data=[
            PermissionPublic(perm_key=k, name=service.PERMISSION_NAMES[k])
            for k in DASHBOARD_PERMISSIONS
        ]
    )


@router.get("/roles", response_model=Envelope[list[RolePublic]], summary="Get roles")
async def get_roles(
    _operator: RolesOperator, session: SessionDep, lang: Lang
) -> Envelope[list[RolePublic]]:
    roles = await service.list_roles(session)
    return Envelope(data=[RolePublic(key=r.key, perms=r.perms) for r in roles])


@router.post(
    "/roles", response_model=OkEnvelope, summary="Create role", responses=error_responses(409)
)
async def create_role(operator: RolesOperator, session: SessionDep, body: RoleCreate) -> OkEnvelope:
    await service.create_role(session, body.key, body.perms)
    await session.commit()
    return OkEnvelope()


@router.put("/roles", response_model=OkEnvelope, summary="Update role")
async def update_role(operator: RolesOperator, session: SessionDep, body: RoleUpdate) -> OkEnvelope:
    await service.update_role(session, body.key, body.perms_to_add, body.perms_to_remove)
    await session.commit()
    return OkEnvelope()
