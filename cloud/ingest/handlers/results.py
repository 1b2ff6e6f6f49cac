"""Command results: the device's answer to a signed command, on its ``device_commands``
row (a result never moves a command backwards: done/rejected/failed after accepted)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import badge_rides, rents
from kickstand.cloud.authlist import service as authlist
from kickstand.cloud.ingest import repository as repo
from kickstand.cloud.ingest.batch import BatchOutcome, DeviceInfo, Inbound, Reply
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
        if status in (CommandStatus.DONE, CommandStatus.REJECTED, CommandStatus.FAILED):
            # An unlock the API stopped waiting for: its rent learns the answer now.
            rent_id = await repo.rent_of_command(session, res.command_id)
            if rent_id is not None:
                await rents.late_unlock_result(
                    session, rent_id, status == CommandStatus.DONE, reason, item.at
                )
                # A badge's rent: nobody waits on its Unlock, this is its answer (only an
                # ingest with an issuer opens badge rents and knows their window).
                if ctx.issuer is not None:
                    await badge_rides.unlock_result(
                        session,
                        rent_id,
                        done=status == CommandStatus.DONE,
                        reason=reason,
                        at=item.at,
                        unlock_window_s=ctx.issuer.unlock_window_s,
                    )
            # An authorization-list update: the version it holds, or a FULL after a mismatch.
            issued = await authlist.on_result(
                session,
                ctx.issuer,
                item.device_id,
                infos[item.device_id].network_id,
                res.command_id,
                done=status == CommandStatus.DONE,
                version_mismatch=res.reason is pe.RejectReason.VERSION_MISMATCH,
            )
            out.replies.extend(Reply.command(c) for c in issued)


__all__ = ["RESULT_STATUS", "results"]
