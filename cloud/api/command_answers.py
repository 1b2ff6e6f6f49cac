"""An operator's command as the HTTP answer: shared by the device commands routes and a
technician's spot unlock (a routes module never imports another)."""

from __future__ import annotations

from typing import Any

from kickstand.cloud.api.errors import ApiError, device_offline, device_refused, device_timeout
from kickstand.cloud.devices import service
from kickstand.cloud.devices.schemas import CommandSent


def command_sent(answer: service.CommandAnswer) -> CommandSent:
    return CommandSent(
        command_id=answer.command_id,
        command_type=answer.command_type,
        outcome=answer.outcome,
        reason=answer.reason,
        issued_at=answer.issued_at,
        expires_at=answer.expires_at,
    )


def command_error(answer: service.CommandAnswer, what: str, data: Any) -> ApiError | None:
    """None when the device did it; otherwise the error of its outcome, ``data`` with it."""
    match answer.outcome:
        case service.DONE:
            return None
        case service.OFFLINE:
            return device_offline(f"{what} not sent: {answer.reason}", data=data)
        case service.TIMEOUT:
            return device_timeout(
                f"{what}: no answer in time; the device may still execute it until "
                f"{answer.expires_at.isoformat()}",
                data=data,
            )
    return device_refused(
        f"{what} {answer.outcome}: {answer.reason or 'no reason given'}", data=data
    )


__all__ = ["command_error", "command_sent"]
