"""Seed 002 Organizations: list (keyset pages), create, details, update (rules, enrolment and
payments settings are not built yet).

Scoped to networks (``access.service.reachable_organization``): an operator reaches the
organizations of its networks — created for one, or named by one's access rule; another's
are not found (404). Created for the network the body names, or the operator's only one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from kickstand.cloud.access import service
from kickstand.cloud.access.models import Organization
from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.deps import SessionDep
from kickstand.cloud.api.ids import Id, Text
from kickstand.cloud.api.pagination import KeysetDep
from kickstand.cloud.api.schemas import Envelope, OkEnvelope, Page
from kickstand.cloud.keyset import cut

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
    #: Ours (not in the seed): the network it is for; omitted, the operator's only network.
    network_id: Id | None = Field(
        default=None,
        description="The network the organization is for (default: your only network; a"
        " global grant may leave it out for an installation-wide organization).",
    )


class OrganizationPublic(OrganizationFields):
    id: int
    third_party_id: int
    #: None once the administrator's account is deleted (the foreign key sets it null).
    administrator_id: int | None
    network_id: int | None
    created_by: int | None
    created_at: datetime


def _public(org: Organization) -> OrganizationPublic:
    return OrganizationPublic.model_validate(org, from_attributes=True)


@router.get("", response_model=Page[OrganizationPublic], summary="Get organizations")
async def get_organizations(
    operator: OrganizationsOperator, session: SessionDep, keyset: KeysetDep
) -> Page[OrganizationPublic]:
    rows = await service.organizations(session, operator.networks, keyset)
    page, next_key = cut(rows, keyset, key=lambda o: o.id)
    return Page(data=[_public(o) for o in page], next_primary_key=next_key)


@router.post("", response_model=Envelope[OrganizationPublic], summary="Create organization")
async def create_organization(
    operator: OrganizationsOperator, session: SessionDep, body: OrganizationCreate
) -> Envelope[OrganizationPublic]:
    if body.network_id is not None:
        operator.check([body.network_id])
    fields = body.model_dump(exclude={"network_id"})
    org = await service.create_organization(
        session, operator.user, operator.networks, body.network_id, fields
    )
    await session.commit()
    return Envelope(data=_public(org))


@router.get(
    "/{org_id}", response_model=Envelope[OrganizationPublic], summary="Get organization details"
)
async def get_organization(
    operator: OrganizationsOperator, session: SessionDep, org_id: Annotated[Id, Path()]
) -> Envelope[OrganizationPublic]:
    org = await service.reachable_organization(session, org_id, operator.networks)
    return Envelope(data=_public(org))


class OrganizationUpdate(BaseModel):
    name: Text = Field(min_length=1, max_length=255)
    description: Text | None = Field(default=None, max_length=2000)
    only_show_matching_clusters: bool


@router.put("/{org_id}", response_model=OkEnvelope, summary="Update organization")
async def update_organization(
    operator: OrganizationsOperator,
    session: SessionDep,
    org_id: Annotated[Id, Path()],
    body: OrganizationUpdate,
) -> OkEnvelope:
    org = await service.reachable_organization(session, org_id, operator.networks)
    for name, value in body.model_dump().items():
        setattr(org, name, value)
    await session.commit()
    return OkEnvelope()
