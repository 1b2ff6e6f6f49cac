"""A device's FirmwareStatus (SPEC §13): the stage of its update, applied to its campaign
row, its firmware version on CONFIRMED, an alert on a failure or a rollback
(:mod:`kickstand.cloud.firmware.progress`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.firmware import progress
from kickstand.cloud.ingest.batch import DeviceInfo, Inbound
from kickstand.cloud.ingest.handlers.registry import handlers
from kickstand.protocol.v1 import messages as m

if TYPE_CHECKING:
    from kickstand.cloud.ingest.apply import BatchApplier


@handlers.on(m.FirmwareStatus)
async def firmware_status(
    ctx: BatchApplier,
    session: AsyncSession,
    item: Inbound,
    info: DeviceInfo,
    body: m.FirmwareStatus,
) -> None:
    where = progress.Where(item.device_id, info.network_id, info.station_id, info.vehicle_id)
    # The receive time: the device timeout counts from when the cloud heard it.
    now = datetime.fromtimestamp(item.received_ms / 1000, UTC) if item.received_ms else None
    await progress.apply_status(session, where, body, now or datetime.now(UTC), ctx.alerts)


__all__ = ["firmware_status"]
