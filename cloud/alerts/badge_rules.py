"""Rules of badge rides (issue 14): ``badge-ride-unauthorized`` — a badge the cloud does not
know, or has blocked, opened a spot while its station was offline (its local list was
stale). The ride is recorded all the same (:func:`kickstand.cloud.trips.vehicle_removed`);
the alert, on the station, tells an operator to settle it. One alert per badge: each of
its rides counts an occurrence.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.alerts.core import AlertChange
from kickstand.cloud.alerts.delivery_rules import DeliveryRules
from kickstand.cloud.alerts.device_rules import DeviceRef
from kickstand.cloud.alerts.types import AlertType


class BadgeRules(DeliveryRules):
    async def on_unauthorized_badge_ride(
        self,
        session: AsyncSession,
        device_id: str,
        badge_uid: str,
        why: str,
        *,
        spot: int,
        serial_number: str,
        at: datetime,
        device: DeviceRef | None = None,
        now: datetime | None = None,
    ) -> AlertChange | None:
        """``why``: "unknown" (no badge has this UID) or "blocked"."""
        subject = await self._device_subject(session, device_id, device)
        if subject is None:
            return None
        subject.key = f"{subject.key}#badge:{badge_uid}"
        return await self.raise_alert(
            session,
            AlertType.BADGE_RIDE_UNAUTHORIZED,
            subject,
            now=now or self.clock(),
            message=f"a {why} badge ({badge_uid}) took {serial_number} from {subject.label} "
            f"spot {spot} while the station was offline: the trip is recorded, settle it",
            extra={
                "badge_uid": badge_uid,
                "badge": why,
                "spot_number": spot,
                "serial_number": serial_number,
                "removed_at": at.isoformat(),
            },
        )


__all__ = ["BadgeRules"]
