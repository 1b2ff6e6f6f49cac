"""Badge (NFC pass) linking: the rider asks in the app, then presents the badge at a reader.

``request_link`` records the request; the ingest calls ``badge_presented`` when a station
reads a UID it does not know: the newest open request at that cluster (or spot) takes it.
``unlink`` (the rider) and ``set_blocked`` (an operator) take a badge off the network's
local authorization list: each returns the DIFFs to publish after the commit (SPEC §7.4).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import outbox
from kickstand.cloud.authlist import service as authlist
from kickstand.cloud.commands.issuer import CommandIssuer
from kickstand.cloud.errors import ConflictError, NotFoundError
from kickstand.cloud.events import catalogue as ev
from kickstand.cloud.events.payloads import PassEvent
from kickstand.cloud.models import Badge, Cluster, Spot, Station
from kickstand.cloud.rent_gateway import IssuedCommand

log = logging.getLogger("kickstand.cloud.badges")
LINK_WINDOW_S = 300


def badge_payload(badge: Badge) -> PassEvent:
    return PassEvent(
        badge_id=badge.id,
        user_id=badge.user_id,
        network_id=badge.network_id,
        name=badge.name,
        linked=badge.uid is not None,
    )


async def request_link(
    session: AsyncSession,
    user_id: int,
    cluster_id: int,
    name: str,
    now: datetime,
    spot_id: int | None = None,
) -> Badge:
    cluster = await session.get(Cluster, cluster_id)
    if cluster is None:
        raise NotFoundError("cluster", cluster_id)
    if not cluster.has_badge_reader:
        raise ConflictError(
            "this cluster has no badge reader; pick another", reason="no-badge-reader"
        )
    if spot_id is not None:
        spot = await session.get(Spot, spot_id)
        station = await session.get(Station, spot.station_id) if spot is not None else None
        if spot is None or station is None or station.cluster_id != cluster_id:
            raise NotFoundError("spot", spot_id)
    badge = Badge(
        name=name,
        user_id=user_id,
        network_id=cluster.network_id,
        link_cluster_id=cluster_id,
        link_spot_id=spot_id,
        link_expires_at=now + timedelta(seconds=LINK_WINDOW_S),
    )
    session.add(badge)
    await session.flush()
    return badge


async def badge_presented(
    session: AsyncSession,
    station_device_id: str,
    uid: str,
    at: datetime,
    spot_number: int | None = None,
) -> Badge | None:
    """An unknown UID was read at a station: complete the pending link request, if any."""
    uid = uid.upper()
    known = (await session.scalars(select(Badge).where(Badge.uid == uid))).first()
    if known is not None:
        return known
    station = (
        await session.scalars(select(Station).where(Station.device_id == station_device_id))
    ).first()
    if station is None:
        return None
    stmt = (
        select(Badge)
        .where(
            Badge.uid.is_(None),
            Badge.link_cluster_id == station.cluster_id,
            Badge.link_expires_at >= at,
        )
        .order_by(Badge.id.desc())
        .with_for_update(key_share=True)
    )
    for badge in (await session.scalars(stmt)).all():
        if badge.link_spot_id is not None and spot_number is not None:
            spot = await session.get(Spot, badge.link_spot_id)
            if spot is None or spot.displayed_number != spot_number:
                continue
        badge.uid = uid
        badge.link_expires_at = None
        outbox.emit(session, ev.PASS_ASSOCIATED, badge.id, badge_payload(badge))
        await session.flush()
        log.info("event=badge_linked badge_id=%s user_id=%s", badge.id, badge.user_id)
        return badge
    return None


async def unlink(
    session: AsyncSession, badge: Badge, issuer: CommandIssuer | None
) -> list[IssuedCommand]:
    """The rider gives the badge up: it opens nothing any more. The row stays (trips name
    it); its UID leaves the stations' lists (a pending link request is just cancelled)."""
    uid = badge.uid
    badge.uid = None
    badge.link_expires_at = None
    outbox.emit(session, ev.PASS_DISASSOCIATED, badge.id, badge_payload(badge))
    await session.flush()
    log.info("event=badge_unlinked badge_id=%s user_id=%s", badge.id, badge.user_id)
    if uid is None or badge.blocked_at is not None:
        return []  # on no list
    return await authlist.changed(session, issuer, badge.network_id, remove=[uid])


async def set_blocked(
    session: AsyncSession,
    badge: Badge,
    blocked: bool,
    issuer: CommandIssuer | None,
    now: datetime,
) -> list[IssuedCommand]:
    """An operator blocks (or unblocks) a badge: refused online at once, offline once the
    stations apply the DIFF this returns."""
    if (badge.blocked_at is not None) == blocked:
        return []
    badge.blocked_at = now if blocked else None
    await session.flush()
    log.info("event=badge_blocked badge_id=%s blocked=%s", badge.id, blocked)
    if badge.uid is None:
        return []
    change = {"remove": [badge.uid]} if blocked else {"add": [badge.uid]}
    return await authlist.changed(session, issuer, badge.network_id, **change)
