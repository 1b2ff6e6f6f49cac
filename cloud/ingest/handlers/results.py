"""Command results: the device's answer to a signed command, on its ``device_commands``
row (a result never moves a command backwards: done/rejected/failed after accepted)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.ingest import repository as repo
from kickstand.cloud.ingest.batch import BatchOutcome, DeviceInfo, Inbound
from kickstand.cloud.ingest.handlers.registry import handlers
from kickstand.cloud.ingest.tables import CommandStatus
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import enums as pe
from kickstand.protocol.v1 import messages as m

if TYPE_CHECKING:
    from kickstand.cloud.ingest.apply import BatchApplier

RESULT_STATUS = {
    pe.ResultStatus.ACCEPTED: CommandStatus.ACCEPTED,
    pe.ResultStatus.DONE: CommandStatus.DONE,
    pe.ResultStatus.REJECTED: CommandStatus.REJECTED,
    pe.ResultStatus.FAILED: CommandStatus.FAILED,
}


@handlers.channel(Channel.RESULT)
async def results(
    ctx: BatchApplier,
    session: AsyncSession,
    items: list[Inbound],
    infos: dict[str, DeviceInfo],
    out: BatchOutcome,
) -> None:
    for item in items:
        res = item.msg.body
        assert isinstance(res, m.CommandResult)
        status = RESULT_STATUS[res.status]
        reason = res.reason.name.lower().replace("_", "-") if res.reason is not None else None
        if res.detail:
            reason = f"{reason}: {res.detail}" if reason else res.detail
        allowed_from = (
            (CommandStatus.PENDING,)
            if status == CommandStatus.ACCEPTED
            else (CommandStatus.PENDING, CommandStatus.ACCEPTED)
        )
        await repo.command_result(
            session,
            {
                "cid": res.command_id.hex(),
                "dev": item.device_id,
                "allowed_from": list(allowed_from),
                "new_status": status,
                "new_reason": reason[:200] if reason else None,
                "at": item.at,
            },
        )


__all__ = ["RESULT_STATUS", "results"]
