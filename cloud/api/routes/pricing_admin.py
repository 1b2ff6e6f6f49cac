"""Seed 002 Pricing for operators: ``/v1/dashboard/pricing`` (rules in
``kickstand.cloud.networks.service``). An edit takes effect for trips that start after it:
a rule is closed and its successor added, and billing prices a trip with the rules valid
when it started (docs/pricing.md "Price changes")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from kickstand.cloud.alerts.api import NetworksDep
from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.deps import SessionDep
from kickstand.cloud.api.errors import invalid
from kickstand.cloud.api.ids import Id
from kickstand.cloud.api.openapi import error_responses
from kickstand.cloud.api.schemas import Envelope, OkEnvelope
from kickstand.cloud.models import Network
from kickstand.cloud.networks import repository, service
from kickstand.cloud.networks.schemas import PricingRuleAdmin, PricingRuleFields

router = APIRouter(prefix="/dashboard/pricing", tags=["pricing"])
# The one operator access check (kickstand.cloud.api.access).
PricingOperator = Annotated[OperatorContext, Depends(Operator("networks.manage"))]
PricingId = Annotated[Id, Path(description="The pricing rule's identifier.")]


@router.get("", response_model=Envelope[list[PricingRuleAdmin]], summary="Get pricing")
async def get_pricing(
    _operator: PricingOperator, session: SessionDep, networks: NetworksDep
) -> Envelope[list[PricingRuleAdmin]]:
    """The rules in force now of these networks (checked by the access dependency)."""
    rules = await repository.current_rules(session, networks)
    by_id = {n: await session.get_one(Network, n) for n in {r.network_id for r in rules}}
    return Envelope(data=[PricingRuleAdmin.of(r, by_id[r.network_id]) for r in rules])


@router.post(
    "",
    response_model=Envelope[PricingRuleAdmin],
    summary="Add pricing",
    responses=error_responses(409),
)
async def add_pricing(
    operator: PricingOperator, session: SessionDep, body: PricingRuleFields
) -> Envelope[PricingRuleAdmin]:
    """In force from now; refused (409 ``pricing-overlap``) when its window partially
    overlaps, or equals, a rule of the network (a window strictly inside another is the
    override: the shortest window is in force)."""
    operator.check([body.network_id])
    network = await service.get_network(session, body.network_id)
    rule = await service.add_rule(session, network, body.model_dump())
    await session.commit()
    return Envelope(data=PricingRuleAdmin.of(rule, network))


@router.put(
    "/{pricing_id}",
    response_model=Envelope[PricingRuleAdmin],
    summary="Update pricing",
    responses=error_responses(409),
)
async def update_pricing(
    operator: PricingOperator, session: SessionDep, pricing_id: PricingId, body: PricingRuleFields
) -> Envelope[PricingRuleAdmin]:
    """409 ``pricing-rule-closed`` for a rule already replaced or deleted. The rule is
    closed now and its successor (a new ``pricing_id``, ``replaces_id`` this
    one) is in force for trips starting from now; running trips keep the old prices."""
    rule = await service.get_rule(session, pricing_id)
    operator.check([rule.network_id, body.network_id])
    if body.network_id != rule.network_id:
        raise invalid("network_id", "a pricing rule stays on its network")
    network = await service.get_network(session, rule.network_id)
    successor = await service.replace_rule(session, rule, network, body.model_dump())
    await session.commit()
    return Envelope(data=PricingRuleAdmin.of(successor, network))


@router.delete(
    "/{pricing_id}",
    response_model=OkEnvelope,
    summary="Delete pricing",
    responses=error_responses(409),
)
async def delete_pricing(
    operator: PricingOperator, session: SessionDep, pricing_id: PricingId
) -> OkEnvelope:
    """Closed now: trips starting from now no longer use it, running trips still do."""
    rule = await service.get_rule(session, pricing_id)
    operator.check([rule.network_id])
    await service.delete_rule(session, rule)
    await session.commit()
    return OkEnvelope()
