"""Seed 002 OrganizationalUnits: what a grant covers (networks; clusters, labels and
organizations as the seed has them). An operator sees and edits units within its networks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from kickstand.cloud.access import service
from kickstand.cloud.access.models import OrganizationalUnit
from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.deps import SessionDep
from kickstand.cloud.api.errors import forbidden
from kickstand.cloud.api.ids import Id, Text
from kickstand.cloud.api.openapi import error_responses
from kickstand.cloud.api.schemas import Envelope, OkEnvelope
from kickstand.cloud.errors import NotFoundError

router = APIRouter(prefix="/dashboard/organizational-units", tags=["organizational-units"])
# The one operator access check (kickstand.cloud.api.access).
UnitsOperator = Annotated[OperatorContext, Depends(Operator("organizations"))]
Ids = Annotated[list[Id], Field(max_length=1000)]


class UnitFields(BaseModel):
    name: Text = Field(min_length=3, max_length=50)
    app_labels: Ids
    organizations: Ids
    networks: Ids
    clusters: Ids


class UnitUpdate(UnitFields):
    ou_id: Id


class UnitPublic(UnitFields):
    id: int


class UnitUserPublic(BaseModel):
    user_id: int
    email: str
    permissions: list[dict[str, Any]]


def _public(unit: OrganizationalUnit) -> UnitPublic:
    return UnitPublic(
        id=unit.id,
        name=unit.name,
        app_labels=unit.app_labels,
        organizations=unit.organizations,
        networks=unit.networks,
        clusters=unit.clusters,
    )


async def _visible(session: Any, operator: OperatorContext, ou_id: int) -> OrganizationalUnit:
    unit = await service.get_unit(session, ou_id)
    if not service.unit_visible(unit, operator.networks):
        raise NotFoundError("organizational unit", ou_id)  # not another operator's business
    return unit


@router.get("", response_model=Envelope[list[UnitPublic]], summary="Get organizational units")
async def get_units(operator: UnitsOperator, session: SessionDep) -> Envelope[list[UnitPublic]]:
    return Envelope(data=[_public(u) for u in await service.list_units(session, operator.networks)])


@router.post("", response_model=Envelope[UnitPublic], summary="Create organizational unit")
async def create_unit(
    operator: UnitsOperator, session: SessionDep, body: UnitFields
) -> Envelope[UnitPublic]:
    operator.check(body.networks)
    if operator.networks is not None and not body.networks:
        raise forbidden(
            "a unit of no network is global: it needs a global grant", reason="network-not-allowed"
        )
    unit = await service.save_unit(session, OrganizationalUnit(), body.model_dump())
    await session.commit()
    return Envelope(data=_public(unit))


@router.put("", response_model=OkEnvelope, summary="Update organizational unit")
async def update_unit(operator: UnitsOperator, session: SessionDep, body: UnitUpdate) -> OkEnvelope:
    unit = await _visible(session, operator, body.ou_id)
    operator.check(body.networks)
    await service.save_unit(session, unit, body.model_dump(exclude={"ou_id"}))
    await session.commit()
    return OkEnvelope()


@router.delete(
    "/{ou_id}",
    response_model=OkEnvelope,
    summary="Delete organizational unit",
    responses=error_responses(409),
)
async def delete_unit(
    operator: UnitsOperator, session: SessionDep, ou_id: Annotated[Id, Path()]
) -> OkEnvelope:
    await service.delete_unit(session, await _visible(session, operator, ou_id))
    await session.commit()
    return OkEnvelope()


@router.get(
    "/{ou_id}/users",
    response_model=Envelope[list[UnitUserPublic]],
    summary="Get organizational unit users",
)
async def get_unit_users(
    operator: UnitsOperator, session: SessionDep, ou_id: Annotated[Id, Path()]
) -> Envelope[list[UnitUserPublic]]:
    unit = await _visible(session, operator, ou_id)
    users = await service.unit_users(session, unit.id)
    return Envelope(
        data=[
            UnitUserPublic(
                user_id=u.id,
                email=u.email,
                permissions=[
                    e
                    for e in u.permissions
                    if isinstance(e, dict) and (e.get("ou") or {}).get("id") == unit.id
                ],
            )
            for u in users
        ]
    )
