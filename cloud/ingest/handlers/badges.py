"""Badges at stations (SPEC §4.7): the cloud's decision for a badge presented online
(:mod:`kickstand.cloud.badge_rides`), published after the commit — the signed Unlock (or
the authorization-list DIFFs of a new link) on ``cmd``, then the BadgeReply the reader
shows on ``badge``. A badge presented offline was decided by the station: its Unlocked and
VehicleRemoved carry the UID, and the trip engine bills the ride.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import badge_rides
from kickstand.cloud.ingest.batch import DeviceInfo, Inbound, Reply
from kickstand.cloud.ingest.handlers.registry import handlers
from kickstand.cloud.models import Badge, DeviceKind, utcnow
from kickstand.protocol import topics
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1 import messages as m

if TYPE_CHECKING:
    from kickstand.cloud.ingest.apply import BatchApplier


@handlers.on(m.BadgePresented, kind=DeviceKind.STATION)
async def badge_presented(
    ctx: BatchApplier,
    session: AsyncSession,
    item: Inbound,
    info: DeviceInfo,
    body: m.BadgePresented,
) -> None:
    if body.offline:
        return  # the station decided; its unlock and removal events carry the badge
    if ctx.issuer is None:
        ctx.stats.ignore("badge-no-issuer", device=item.device_id)
        return
    age_s = (item.received_ms - item.msg.stamp.ts_ms) / 1000 if item.received_ms else 0.0
    if age_s > badge_rides.STALE_AFTER_S:
        # Queued while the link was down and sent late: nobody stands at the reader now.
        ctx.stats.ignore("badge-stale", device=item.device_id, age_s=round(age_s))
        return
    decision = await badge_rides.present(
        session,
        ctx.issuer,
        item.device_id,
        body.badge_uid.hex(),
        now=utcnow(),
        spot_number=body.spot or None,
    )
    item.replies.extend(Reply.command(c) for c in decision.commands)
    reply = decision.reply(body.badge_uid)
    item.replies.append(
        Reply(topics.down(item.device_id, Channel.BADGE), codec.encode_down(reply), 1)
    )


@handlers.after_every_event
async def offline_badge_ride(
    ctx: BatchApplier, session: AsyncSession, item: Inbound, info: DeviceInfo
) -> None:
    """A removal a badge opened offline (the station's own decision, from its local list):
    when the cloud does not know that badge, or has blocked it, an operator is told (the
    trip engine recorded the ride all the same)."""
    body = item.msg.body
    if not isinstance(body, m.VehicleRemoved) or body.badge_uid is None or ctx.alerts is None:
        return
    uid = body.badge_uid.hex().upper()
    badge = (await session.scalars(select(Badge).where(Badge.uid == uid))).first()
    if badge is not None and badge.blocked_at is None:
        return
    await ctx.alerts.on_unauthorized_badge_ride(
        session,
        item.device_id,
        uid,
        "unknown" if badge is None else "blocked",
        spot=body.spot,
        serial_number=body.serial_number,
        at=item.at,
        device=info.ref,
    )


__all__ = ["badge_presented", "offline_badge_ride"]
