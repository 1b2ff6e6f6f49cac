"""Devices gone silent (SPEC §4.3.7): the transition told as a death tells it.

Liveness is judged when the question is asked (:mod:`kickstand.cloud.liveness`): the map
and the rent path need nothing written to see a silent device offline. An operator's
webhook, though, hears of a station or a vehicle going offline only through an event. The
periodic sweep finds the devices online by their record and silent by the rule, marks
each offline (compare and set on ``last_seen_at``: a message received meanwhile wins, and
of two sweeping workers one acts) and emits ``station.updated`` / ``vehicule.updated``
with ``online: false`` in the same transaction — once per silence. Its next heartbeat or
birth brings the device online again, with its event (:mod:`.handlers.session`).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.ingest import repository as repo
from kickstand.cloud.ingest.handlers.session import emit_online
from kickstand.cloud.liveness import PRESENCE_COLUMNS, presence_of, why_offline
from kickstand.cloud.models import Device

log = logging.getLogger("kickstand.cloud.ingest.silence")

# Every device the record holds online (a few thousand at most, once a minute): the rule
# itself (3 × each device's own interval) is judged here, in one place.
_ONLINE = select(Device.device_id, *PRESENCE_COLUMNS).where(Device.online.is_(True))


async def mark_silent(session: AsyncSession, now: datetime) -> list[str]:
    """Take the devices gone silent offline and tell of it; returns their ids."""
    silent: list[str] = []
    for device_id, *presence in (await session.execute(_ONLINE)).all():
        state = presence_of(presence)
        reason = why_offline(state, now)
        if reason is None or state.last_seen_at is None:
            continue
        if await repo.silenced(session, device_id, state.last_seen_at):
            silent.append(device_id)
            log.info("event=device_silent device=%s reason=%r", device_id, reason)
    if silent:
        infos = await repo.load_devices(session, set(silent))
        for device_id in silent:
            if device_id in infos:
                await emit_online(session, infos[device_id], False, now)
    return silent


__all__ = ["mark_silent"]
