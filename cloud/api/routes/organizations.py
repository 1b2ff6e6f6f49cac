"""Seed 002 Organizations: list, create, details, update (rules, enrolment and payments settings
are not built yet)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field
from sqlalchemy import select

from kickstand.cloud.access import service
from kickstand.cloud.access.models import Organization
from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.deps import SessionDep
from kickstand.cloud.api.ids import Id, Text
from kickstand.cloud.api.schemas import Envelope, OkEnvelope

router = APIRouter(prefix="/dashboard/organizations", tags=["organizations"])
# The one operator access check (kickstand.cloud.api.access).
OrganizationsOperator = Annotated[OperatorContext, Depends(Operator("organizations"))]


class OrganizationFields(BaseModel):
    name: Text = Field(min_length=1, max_length=255)
    description: Text | None = Field(default=None, max_length=2000)
    is_guarantor: bool
    allow_outside_rules: bool
    paid_outside_rules_ratio: float = Field(ge=0, le=1)
    only_show_matching_clusters: bool
    email_pattern: Text | None = Field(
        default=None, max_length=255, pattern=r"^[a-zA-Z0-9@._(){}\[\]|*+?%#\\-]+$"
    )
    pays_rule_overrun: bool
    reenrolment_frequency_in_days: int | None = Field(default=None, ge=1, le=36500)


class OrganizationCreate(OrganizationFields):
    third_party_id: Id
    administrator_id: Id


class OrganizationPublic(OrganizationCreate):
    id: int
    created_at: datetime


def _public(org: Organization) -> OrganizationPublic:
    return OrganizationPublic.model_validate(org, from_attributes=True)


@router.get("", response_model=Envelope[list[OrganizationPublic]], summary="Get organizations")
async def get_organizations(
    _operator: OrganizationsOperator, session: SessionDep
) -> Envelope[list[OrganizationPublic]]:
    rows = (await session.scalars(select(Organization).order_by(Organization.id))).all()
    return Envelope(data=[_public(o) for o in rows])


@router.post("", response_model=Envelope[OrganizationPublic], summary="Create organization")
async def create_organization(
    _operator: OrganizationsOperator, session: SessionDep, body: OrganizationCreate
) -> Envelope[OrganizationPublic]:
    await service.get_user(session, body.administrator_id)
    org = Organization(**body.model_dump())
    session.add(org)
    await session.commit()
    return Envelope(data=_public(org))


@router.get(
    "/{org_id}", response_model=Envelope[OrganizationPublic], summary="Get organization details"
)
async def get_organization(
    _operator: OrganizationsOperator, session: SessionDep, org_id: Annotated[Id, Path()]
) -> Envelope[OrganizationPublic]:
    return Envelope(data=_public(await service.get_organization(session, org_id)))


class OrganizationUpdate(BaseModel):
    name: Text = Field(min_length=1, max_length=255)
    description: Text | None = Field(default=None, max_length=2000)
    only_show_matching_clusters: bool


@router.put("/{org_id}", response_model=OkEnvelope, summary="Update organization")
async def update_organization(
    _operator: OrganizationsOperator,
    session: SessionDep,
    org_id: Annotated[Id, Path()],
    body: OrganizationUpdate,
) -> OkEnvelope:
    org = await service.get_organization(session, org_id)
    for name, value in body.model_dump().items():
        setattr(org, name, value)
    await session.commit()
    return OkEnvelope()
