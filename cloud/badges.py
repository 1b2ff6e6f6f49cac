"""Badge (NFC pass) linking: the rider asks in the app, then presents the badge at a reader.

``request_link`` records the request; the ingest calls ``badge_presented`` when a station
reads a UID it does not know: the newest open request at that cluster (or spot) takes it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import outbox
from kickstand.cloud.errors import ConflictError, NotFoundError
from kickstand.cloud.models import Badge, Cluster, Spot, Station

log = logging.getLogger("kickstand.cloud.badges")
LINK_WINDOW_S = 300


def badge_payload(badge: Badge) -> dict[str, object]:
    return {
        "badge_id": badge.id,
        "user_id": badge.user_id,
        "network_id": badge.network_id,
        "name": badge.name,
        "linked": badge.uid is not None,
    }


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
        outbox.emit(session, outbox.PASS_ASSOCIATED, "pass", badge.id, badge_payload(badge))
        await session.flush()
        log.info("event=badge_linked badge_id=%s user_id=%s", badge.id, badge.user_id)
        return badge
    return None
