"""The audit row of a command (``device_commands``): what was sent, to whom, for which rent.

Ingest finds a command's rent by this row and records the device's result on it, so it is
written before the command is published: by the rent flow in the transaction that opens
the rent, by the gateway itself for commands sent on their own.
"""

from __future__ import annotations

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.ingest.tables import CommandStatus, DeviceCommand
from kickstand.cloud.models import table_of
from kickstand.cloud.rent_gateway import IssuedCommand

#: Built once: the compiled form and its cache key are reused.
_INSERT = insert(table_of(DeviceCommand))


async def record_command(session: AsyncSession, issued: IssuedCommand) -> None:
    command = issued.command
    await session.execute(
        _INSERT,
        {
            "command_id": issued.command_id.hex(),
            "device_id": issued.device_id,
            "command_type": type(command).__name__.lower(),
            "spot": getattr(command, "spot", None),
            "rent_id": issued.rent_id,
            "issued_at": issued.issued_at,
            "expires_at": issued.expires_at,
            "sent_by": issued.sent_by,
            "status": CommandStatus.PENDING,
            "reason": None,
            "result_at": None,
        },
    )


async def record_not_sent(session: AsyncSession, issued: IssuedCommand, reason: str | None) -> None:
    """The command never left (device offline, broker unreachable): say so on its row."""
    await session.execute(
        update(DeviceCommand)
        .where(
            DeviceCommand.command_id == issued.command_id.hex(),
            DeviceCommand.status == CommandStatus.PENDING,
        )
        .values(status=CommandStatus.NOT_SENT, reason=(reason or "")[:200] or None),
        execution_options={"synchronize_session": False},
    )
