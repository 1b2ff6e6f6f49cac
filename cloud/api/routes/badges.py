"""Badges: begin a link, list, rename, unlink."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path
from sqlalchemy import select

from kickstand.cloud.api.deps import CurrentUser, GatewayDep, SessionDep
from kickstand.cloud.api.errors import not_found
from kickstand.cloud.api.ids import Id
from kickstand.cloud.api.schemas import BadgeLinkRequest, BadgePublic, BadgeRename, Envelope
from kickstand.cloud.authlist.service import ListPublisher, publish_all
from kickstand.cloud.badges import request_link, unlink
from kickstand.cloud.models import Badge

router = APIRouter(prefix="/badges", tags=["badges"])


def badge_public(badge: Badge) -> BadgePublic:
    return BadgePublic(
        badge_id=badge.id,
        name=badge.name,
        network_id=badge.network_id,
        linked=badge.uid is not None,
        uid_suffix=badge.uid[-4:] if badge.uid else None,
        link_expires_at=badge.link_expires_at,
    )


@router.post(
    "",
    status_code=201,
    response_model=Envelope[BadgePublic],
    summary="Begin linking a badge: then present it at the cluster's reader within 5 minutes",
)
async def link_badge(
    body: BadgeLinkRequest, user: CurrentUser, session: SessionDep
) -> Envelope[BadgePublic]:
    badge = await request_link(
        session, user.id, body.cluster_id, body.name, datetime.now(UTC), body.spot_id
    )
    await session.commit()
    return Envelope(data=badge_public(badge))


@router.get("", response_model=Envelope[list[BadgePublic]], summary="My badges")
async def list_badges(user: CurrentUser, session: SessionDep) -> Envelope[list[BadgePublic]]:
    now = datetime.now(UTC)
    badges = (
        await session.scalars(select(Badge).where(Badge.user_id == user.id).order_by(Badge.id))
    ).all()
    return Envelope(
        data=[
            badge_public(b)
            for b in badges
            if b.uid is not None or (b.link_expires_at is not None and b.link_expires_at >= now)
        ]
    )


@router.patch("/{badge_id}", response_model=Envelope[BadgePublic], summary="Rename a badge")
async def rename_badge(
    body: BadgeRename, user: CurrentUser, session: SessionDep, badge_id: Annotated[Id, Path()]
) -> Envelope[BadgePublic]:
    badge = await session.get(Badge, badge_id)
    if badge is None or badge.user_id != user.id:
        raise not_found("badge", badge_id)
    badge.name = body.name
    await session.commit()
    return Envelope(data=badge_public(badge))


@router.delete(
    "/{badge_id}",
    response_model=Envelope[BadgePublic],
    summary="Unlink a badge: it opens nothing any more (stations drop it from their lists)",
)
async def unlink_badge(
    user: CurrentUser,
    session: SessionDep,
    gateway: GatewayDep,
    badge_id: Annotated[Id, Path()],
) -> Envelope[BadgePublic]:
    badge = await session.get(Badge, badge_id)
    if badge is None or badge.user_id != user.id:
        raise not_found("badge", badge_id)
    publisher = gateway if isinstance(gateway, ListPublisher) else None
    issued = await unlink(session, badge, publisher.issuer if publisher else None)
    await session.commit()
    if publisher is not None:
        await publish_all(publisher, issued)
    return Envelope(data=badge_public(badge))
