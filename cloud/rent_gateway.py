"""The seam between the rent flow (API) and the device command path.

`kickstand.cloud.commands.gateway` implements :class:`CommandGateway` (sign, publish over
MQTT, await the device's result with a timeout). The API receives one through
``create_app(settings, command_gateway=...)``; tests use a fake.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable


class UnlockResult(str, enum.Enum):
    UNLOCKED = "unlocked"
    REFUSED = "refused"  # the device answered no (reason says why)
    DEVICE_OFFLINE = "device-offline"  # known offline: failed fast, nothing sent/acted
    TIMEOUT = "timeout"  # sent, no answer in time: the lock may still have opened


@dataclass(frozen=True)
class UnlockOutcome:
    result: UnlockResult
    reason: str | None = None
    #: Device time at which the lock opened, if the device said so.
    unlocked_at: datetime | None = None

    @classmethod
    def unlocked(cls, unlocked_at: datetime | None = None) -> UnlockOutcome:
        return cls(UnlockResult.UNLOCKED, None, unlocked_at)

    @classmethod
    def refused(cls, reason: str) -> UnlockOutcome:
        return cls(UnlockResult.REFUSED, reason)

    @classmethod
    def offline(cls, reason: str = "device offline") -> UnlockOutcome:
        return cls(UnlockResult.DEVICE_OFFLINE, reason)

    @classmethod
    def timeout(cls, reason: str = "no answer from the device in time") -> UnlockOutcome:
        return cls(UnlockResult.TIMEOUT, reason)


@dataclass(frozen=True, slots=True)
class DevicePresence:
    """What the caller already read of the commanded device (ingest keeps it): lets the
    gateway fail fast for an offline device without a query of its own."""

    online: bool | None
    last_seen_at: datetime | None


@runtime_checkable
class CommandGateway(Protocol):
    """Unlock commands, awaited until the device answers or the timeout passes.

    Implementations must never raise for device-side problems: they return an
    outcome (offline, refused, timeout). ``rent_id`` is ``str(Rent.id)``; put it in the
    command so the device can echo it in the removal event. ``presence``, when given, is
    what the caller read of the device (None: the gateway looks it up itself).
    """

    async def unlock_spot(
        self,
        station_device_id: str,
        spot_number: int,
        rent_id: str,
        *,
        presence: DevicePresence | None = None,
    ) -> UnlockOutcome: ...

    async def unlock_vehicle(
        self, vehicle_device_id: str, rent_id: str, *, presence: DevicePresence | None = None
    ) -> UnlockOutcome: ...


class UnavailableCommandGateway:
    """Used when no gateway was given: every unlock fails fast as offline."""

    async def unlock_spot(
        self,
        station_device_id: str,
        spot_number: int,
        rent_id: str,
        *,
        presence: DevicePresence | None = None,
    ) -> UnlockOutcome:
        return UnlockOutcome.offline("no command gateway configured on this API process")

    async def unlock_vehicle(
        self, vehicle_device_id: str, rent_id: str, *, presence: DevicePresence | None = None
    ) -> UnlockOutcome:
        return UnlockOutcome.offline("no command gateway configured on this API process")
