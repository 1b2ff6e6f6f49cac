"""A badge presented at an ONLINE station: the cloud decides (SPEC §4.7).

Called by ingest for ``BadgePresented(offline=False)``, in the batch's transaction:

1. an unknown UID with a link request waiting at this cluster (or spot) → the badge is
   linked to that rider (:func:`kickstand.cloud.badges.badge_presented`), the network's
   stations get the new UID in a DIFF, and the reader shows LINKED;
2. a linked badge → the rent rules the app uses (:func:`kickstand.cloud.rents.open_rent`:
   rider active, wallet, the network's rental limit, the vehicle available, the spot
   active) on each docked vehicle of the station, lowest spot number first; the first that
   passes gets a rent carrying the badge and a signed Unlock for its spot (recorded, so
   the removal's ``command_id`` maps to the rent); the reader shows UNLOCKING;
3. anything else → REFUSED with a :class:`BadgeRefusal` the reader shows.

Nothing is published here: the caller publishes :attr:`BadgeDecision.commands` and the
BadgeReply after its commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ScalarResult, select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import badges
from kickstand.cloud.authlist import service as authlist
from kickstand.cloud.commands.issuer import CommandIssuer
from kickstand.cloud.errors import ConflictError, RentRefusedError, RiderSessionError
from kickstand.cloud.models import (
    Badge,
    Cluster,
    Rent,
    RentKind,
    RentStatus,
    Spot,
    SpotState,
    Station,
    Vehicle,
)
from kickstand.cloud.models import VehicleState as VState
from kickstand.cloud.rent_gateway import IssuedCommand, UnlockOutcome
from kickstand.cloud.rents import apply_unlock_outcome, open_rent
from kickstand.protocol.v1 import messages as m
from kickstand.protocol.v1.enums import BadgeOutcome, BadgeRefusal

log = logging.getLogger("kickstand.cloud.badge_rides")

#: Rent refusals that are about the rider: no other vehicle would do better.
_RIDER_REFUSALS = {
    "too-many-rents": BadgeRefusal.RENTAL_LIMIT,
    "wallet-empty": BadgeRefusal.WALLET_EMPTY,
}


#: An online BadgePresented older than this (device time against arrival) is not acted
#: on: the rider has walked away, nothing opens late.
STALE_AFTER_S = 60.0


@dataclass(slots=True)
class BadgeDecision:
    outcome: BadgeOutcome
    reason: BadgeRefusal | None = None
    spot: int | None = None
    rent_id: int | None = None
    #: Signed commands to publish after the commit (the Unlock; DIFFs after a link).
    commands: list[IssuedCommand] = field(default_factory=list)

    def reply(self, uid: bytes) -> m.BadgeReply:
        return m.BadgeReply(
            uid,
            self.outcome,
            self.reason,
            self.spot,
            str(self.rent_id) if self.rent_id is not None else None,
        )


def refused(reason: BadgeRefusal) -> BadgeDecision:
    return BadgeDecision(BadgeOutcome.REFUSED, reason)


async def present(
    session: AsyncSession,
    issuer: CommandIssuer,
    station_device_id: str,
    uid: str,
    *,
    now: datetime,
    spot_number: int | None = None,
) -> BadgeDecision:
    """Decide what a badge read at an online station does (see the module docstring)."""
    uid = uid.upper()
    row = (
        await session.execute(
            select(Station, Cluster.network_id)
            .join(Cluster, Cluster.id == Station.cluster_id)
            .where(Station.device_id == station_device_id)
        )
    ).first()
    if row is None:
        return refused(BadgeRefusal.STATION_UNAVAILABLE)
    station, network_id = row
    badge = (await session.scalars(select(Badge).where(Badge.uid == uid))).first()
    if badge is None:
        return await _link(session, issuer, station_device_id, uid, now, spot_number)
    if badge.network_id != network_id:
        return refused(BadgeRefusal.UNKNOWN_BADGE)
    if badge.blocked_at is not None:
        return refused(BadgeRefusal.BADGE_BLOCKED)
    # The window is the app's (RENT_UNLOCK_WINDOW_S, carried by the issuer): the station
    # re-locks after it, the rent ends with its UnlockExpired or the sweep.
    return await _ride(session, issuer, station, badge, now, issuer.unlock_window_s)


async def _link(
    session: AsyncSession,
    issuer: CommandIssuer,
    station_device_id: str,
    uid: str,
    now: datetime,
    spot_number: int | None,
) -> BadgeDecision:
    linked = await badges.badge_presented(session, station_device_id, uid, now, spot_number)
    if linked is None:
        return refused(BadgeRefusal.UNKNOWN_BADGE)
    diffs = await authlist.changed(session, issuer, linked.network_id, add=[uid])
    return BadgeDecision(BadgeOutcome.LINKED, commands=diffs)


async def _candidates(session: AsyncSession, station_id: int) -> list[int]:
    """Spots of the station holding a vehicle worth trying, lowest number first (the rent
    rules in :func:`open_rent` decide; this only skips what they would refuse anyway)."""
    rows: ScalarResult[int] = await session.scalars(
        select(Spot.id)
        .join(Vehicle, Vehicle.spot_id == Spot.id)
        .where(
            Spot.station_id == station_id,
            Spot.state == SpotState.ACTIVE,
            Vehicle.state == VState.AVAILABLE,
            Vehicle.in_maintenance.is_(False),
        )
        .order_by(Spot.displayed_number)
    )
    return list(rows)


async def _ride(
    session: AsyncSession,
    issuer: CommandIssuer,
    station: Station,
    badge: Badge,
    now: datetime,
    unlock_window_s: int,
) -> BadgeDecision:
    # Imported here: commands.records imports the ingest package, whose handlers import this.
    from kickstand.cloud.commands.records import record_command

    for spot_id in await _candidates(session, station.id):
        try:
            opened = await open_rent(
                session,
                badge.user_id,
                spot_id=spot_id,
                now=now,
                unlock_window_s=unlock_window_s,
                badge_id=badge.id,
            )
        except RiderSessionError:
            return refused(BadgeRefusal.RIDER_NOT_ALLOWED)
        except (RentRefusedError, ConflictError) as exc:
            rider_refusal = _RIDER_REFUSALS.get(exc.reason)
            if rider_refusal is not None:
                return refused(rider_refusal)
            continue  # this vehicle will not do: try the next spot
        rent, unlock = opened.rent, opened.unlock
        command = issuer.issue(
            unlock.device_id,
            m.Unlock(spot=unlock.spot, window_s=unlock_window_s, rent_id=str(rent.id)),
            rent_id=rent.id,
        )
        await record_command(session, command)
        log.info(
            "event=badge_unlock badge_id=%s rent_id=%s station=%s spot=%s",
            badge.id,
            rent.id,
            unlock.device_id,
            unlock.spot,
        )
        return BadgeDecision(
            BadgeOutcome.UNLOCKING, spot=unlock.spot, rent_id=rent.id, commands=[command]
        )
    return refused(BadgeRefusal.NO_VEHICLE)


async def unlock_result(
    session: AsyncSession,
    rent_id: int,
    *,
    done: bool,
    reason: str | None,
    at: datetime,
    unlock_window_s: int,
) -> None:
    """The station's final answer to a badge rent's Unlock (nobody waits on it as the API
    waits for the app's): DONE → ``unlocked``, REJECTED / FAILED → ``refused``, no charge.
    Any other rent, or one the removal already started, is left alone."""
    rent = await session.get(Rent, rent_id)
    if rent is None or rent.kind != RentKind.BADGE or rent.status != RentStatus.PENDING:
        return
    outcome = UnlockOutcome.unlocked(at) if done else UnlockOutcome.refused(reason or "refused")
    await apply_unlock_outcome(session, rent_id, outcome, now=at, unlock_window_s=unlock_window_s)


__all__ = [
    "STALE_AFTER_S",
    "BadgeDecision",
    "present",
    "refused",
    "unlock_result",
]
