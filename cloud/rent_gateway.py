"""The seam between the rent flow (API) and the device command path.

`kickstand.cloud.commands.gateway` implements :class:`CommandGateway` (sign, publish over
MQTT, await the device's result with a timeout). The API receives one through
``create_app(settings, command_gateway=...)``; tests use a fake.
"""

from __future__ import annotations

import enum
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from kickstand.cloud.liveness import Presence
from kickstand.protocol.v1 import messages as m


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
class IssuedCommand:
    """A command built (and signed) before it is sent: its audit row, which maps the command
    to its rent for ingest, is written in the caller's transaction before anything moves."""

    command_id: bytes
    device_id: str
    command: m.CommandBody
    issued_at: datetime
    expires_at: datetime
    rent_id: int | None = None
    #: Which API process sends it (its MQTT client id).
    sent_by: str | None = None
    #: The signed envelope on the wire (empty for gateways that sign nothing).
    payload: bytes = b""

    @classmethod
    def new(
        cls,
        device_id: str,
        command: m.CommandBody,
        *,
        timeout_s: float,
        rent_id: int | None = None,
        sent_by: str | None = None,
    ) -> IssuedCommand:
        # Whole milliseconds: the envelope on the wire carries ms.
        issued = datetime.fromtimestamp(time.time_ns() // 1_000_000 / 1000, UTC)
        expires = issued + timedelta(milliseconds=int(timeout_s * 1000))
        return cls(os.urandom(16), device_id, command, issued, expires, rent_id, sent_by)

    @property
    def timeout_s(self) -> float:
        return (self.expires_at - self.issued_at).total_seconds()


#: What the caller already read of the commanded device (ingest keeps it): lets the
#: gateway fail fast for an offline device without a query of its own.
DevicePresence = Presence


@runtime_checkable
class CommandGateway(Protocol):
    """Unlock commands, awaited until the device answers or the timeout passes.

    Implementations must never raise for device-side problems: they return an
    outcome (offline, refused, timeout). ``rent_id`` is ``Rent.id``; it goes in the
    command so the device can echo it in the removal event. ``presence``, when given, is
    what the caller read of the device (None: the gateway looks it up itself).

    The rent flow issues the command (``unlock_command``), records it in its own
    transaction (``kickstand.cloud.commands.records.record_command``), then sends it
    (``send_unlock``). ``unlock_vehicle`` does all three (re-opening a running trip's lock).
    """

    def unlock_command(
        self, device_id: str, spot_number: int, rent_id: int | None
    ) -> IssuedCommand: ...

    async def send_unlock(
        self, issued: IssuedCommand, *, presence: DevicePresence | None = None
    ) -> UnlockOutcome: ...

    async def unlock_vehicle(
        self, vehicle_device_id: str, rent_id: str, *, presence: DevicePresence | None = None
    ) -> UnlockOutcome: ...

    def issue_command(self, device_id: str, command: m.CommandBody) -> IssuedCommand:
        """Any other command (an operator's SetMaintenance), signed, not sent."""
        ...

    async def send_command(
        self, issued: IssuedCommand, *, presence: DevicePresence | None = None
    ) -> UnlockOutcome:
        """Send an issued command and await the device's answer (``UNLOCKED``: it answered
        DONE); the same outcomes as an unlock, never raised."""
        ...


class UnavailableCommandGateway:
    """Used when no gateway was given: every unlock fails fast as offline."""

    def unlock_command(
        self, device_id: str, spot_number: int, rent_id: int | None
    ) -> IssuedCommand:
        command = m.Unlock(spot=spot_number, window_s=0, rent_id=str(rent_id or ""))
        return IssuedCommand.new(device_id, command, timeout_s=0, rent_id=rent_id)

    async def send_unlock(
        self, issued: IssuedCommand, *, presence: DevicePresence | None = None
    ) -> UnlockOutcome:
        return UnlockOutcome.offline("no command gateway configured on this API process")

    async def unlock_vehicle(
        self, vehicle_device_id: str, rent_id: str, *, presence: DevicePresence | None = None
    ) -> UnlockOutcome:
        return UnlockOutcome.offline("no command gateway configured on this API process")

    def issue_command(self, device_id: str, command: m.CommandBody) -> IssuedCommand:
        return IssuedCommand.new(device_id, command, timeout_s=0)

    async def send_command(
        self, issued: IssuedCommand, *, presence: DevicePresence | None = None
    ) -> UnlockOutcome:
        return UnlockOutcome.offline("no command gateway configured on this API process")
