"""Operators and riders' badges: seed 002's "Get user badges"
(``GET /v1/dashboard/users/{id}/badges``) and blocking a badge
(``PUT /v1/dashboard/badges/{badge_id}/blocked``; seed 002 has no such operation: a clean
REST path in its vocabulary, under the same operator access check).

A block takes effect at once online (the cloud refuses the badge, SPEC §4.7) and offline
once the stations applied the DIFF published after the commit (§7.4).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel
from sqlalchemy import select

from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.deps import GatewayDep, SessionDep
from kickstand.cloud.api.errors import not_found
from kickstand.cloud.api.ids import Id
from kickstand.cloud.api.schemas import Envelope
from kickstand.cloud.authlist.service import ListPublisher, publish_all
from kickstand.cloud.badges import set_blocked
from kickstand.cloud.models import Badge

router = APIRouter(prefix="/dashboard", tags=["badges"])
# The one operator access check (kickstand.cloud.api.access).
BadgesOperator = Annotated[OperatorContext, Depends(Operator("users.badges"))]


class OperatorBadge(BaseModel):
    badge_id: int
    user_id: int
    name: str
    network_id: int
    linked: bool
    #: The full UID (hex), for an operator matching a card in hand.
    uid: str | None
    blocked: bool
    blocked_at: datetime | None


class BadgeBlock(BaseModel):
    blocked: bool


def operator_badge(badge: Badge) -> OperatorBadge:
    return OperatorBadge(
        badge_id=badge.id,
        user_id=badge.user_id,
        name=badge.name,
        network_id=badge.network_id,
        linked=badge.uid is not None,
        uid=badge.uid,
        blocked=badge.blocked_at is not None,
        blocked_at=badge.blocked_at,
    )


@router.get(
    "/users/{user_id}/badges",
    response_model=Envelope[list[OperatorBadge]],
    summary="Get user badges (of the operator's networks)",
)
async def get_user_badges(
    operator: BadgesOperator, session: SessionDep, user_id: Annotated[Id, Path()]
) -> Envelope[list[OperatorBadge]]:
    rows = await session.scalars(select(Badge).where(Badge.user_id == user_id).order_by(Badge.id))
    return Envelope(data=[operator_badge(b) for b in rows if operator.allows(b.network_id)])


@router.put(
    "/badges/{badge_id}/blocked",
    response_model=Envelope[OperatorBadge],
    summary="Block or unblock a badge (stations drop it from their lists)",
)
async def put_badge_blocked(
    body: BadgeBlock,
    operator: BadgesOperator,
    session: SessionDep,
    gateway: GatewayDep,
    badge_id: Annotated[Id, Path()],
) -> Envelope[OperatorBadge]:
    badge = await session.get(Badge, badge_id)
    if badge is None:
        raise not_found("badge", badge_id)
    operator.check([badge.network_id])
    publisher = gateway if isinstance(gateway, ListPublisher) else None
    issued = await set_blocked(
        session, badge, body.blocked, publisher.issuer if publisher else None, datetime.now(UTC)
    )
    await session.commit()
    if publisher is not None:
        await publish_all(publisher, issued)
    return Envelope(data=operator_badge(badge))
