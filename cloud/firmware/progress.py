"""A device's FirmwareStatus applied to its update (called by ingest's handler, in the
batch's transaction; the campaign's waves are the runner's to judge).

Stages move the row to ``updating`` and restart its timeout; CONFIRMED settles it as
confirmed and records the version in the device registry (the mainboard's or
controller's; a spot board's comes with the station's next birth); a spot board has no
trial boot: INSTALLED is its last stage, and settles it. *_FAILED and ROLLED_BACK settle
it as failed or rolled back with the device's reason, and raise a fleet alert — also for
an update no campaign asked for (a technician's).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import outbox
from kickstand.cloud.alerts.types import AlertType
from kickstand.cloud.events import catalogue as ev
from kickstand.cloud.events import payloads as p
from kickstand.cloud.firmware import repository
from kickstand.cloud.firmware.models import UpdateState
from kickstand.cloud.models import Device
from kickstand.protocol.v1 import messages as m
from kickstand.protocol.v1.enums import FirmwareState

if TYPE_CHECKING:  # the alert rules import ingest, which imports this
    from kickstand.cloud.alerts.engine import AlertEngine

FAILED_STAGES = frozenset(
    {FirmwareState.DOWNLOAD_FAILED, FirmwareState.VERIFY_FAILED, FirmwareState.INSTALL_FAILED}
)


@dataclass(frozen=True, slots=True)
class Where:
    """The device as ingest knows it (network and what it is attached to)."""

    device_id: str
    network_id: int | None
    station_id: int | None
    vehicle_id: int | None


def outcome_of(status: m.FirmwareStatus) -> UpdateState:
    if status.state is FirmwareState.CONFIRMED or (
        status.state is FirmwareState.INSTALLED and status.spot != 0
    ):
        return UpdateState.CONFIRMED
    if status.state is FirmwareState.ROLLED_BACK:
        return UpdateState.ROLLED_BACK
    if status.state in FAILED_STAGES:
        return UpdateState.FAILED
    return UpdateState.UPDATING


async def apply_status(
    session: AsyncSession,
    where: Where,
    status: m.FirmwareStatus,
    now: datetime,
    alerts: AlertEngine | None,
) -> UpdateState:
    """What the status did to the device's update (``updating`` for a stage)."""
    outcome = outcome_of(status)
    found = await repository.in_flight_row(session, where.device_id, status.spot, status.version)
    row, campaign = found if found is not None else (None, None)
    if row is not None:
        row.stage = status.state.name.lower()
        row.progress_at = now
        if status.bytes_done:
            row.bytes_done = status.bytes_done
        row.state = outcome.value
        if status.reason:
            row.reason = status.reason[:200]
        if outcome is not UpdateState.UPDATING:
            row.finished_at = now
    if outcome is UpdateState.CONFIRMED and status.spot == 0:
        await session.execute(
            update(Device)
            .where(Device.device_id == where.device_id)
            .values(firmware_version=status.version),
            execution_options={"synchronize_session": False},
        )
    if outcome is UpdateState.UPDATING:
        return outcome
    # A settled update: webhooks, and an alert for a failure.
    await settled(
        session,
        where,
        campaign_id=campaign.id if campaign is not None else None,
        network_id=campaign.network_id if campaign is not None else where.network_id,
        version=status.version,
        spot=status.spot,
        outcome=outcome,
        stage=status.state.name.lower(),
        reason=status.reason or None,
        now=now,
        alerts=alerts,
    )
    return outcome


async def settled(
    session: AsyncSession,
    where: Where,
    *,
    campaign_id: int | None,
    network_id: int | None,
    version: str,
    spot: int,
    outcome: UpdateState,
    stage: str | None,
    reason: str | None,
    now: datetime,
    alerts: AlertEngine | None,
) -> None:
    """The event of an update that ended, and the alert of a failure (the runner's
    timeouts come here too)."""
    event, alert = {
        UpdateState.CONFIRMED: (ev.FIRMWARE_UPDATE_CONFIRMED, None),
        UpdateState.FAILED: (ev.FIRMWARE_UPDATE_FAILED, AlertType.FIRMWARE_UPDATE_FAILED),
        UpdateState.ROLLED_BACK: (ev.FIRMWARE_UPDATE_ROLLED_BACK, AlertType.FIRMWARE_ROLLED_BACK),
    }[outcome]
    outbox.emit(
        session,
        event,
        where.device_id,
        p.FirmwareUpdateEvent(
            network_id=network_id,
            campaign_id=campaign_id,
            device_id=where.device_id,
            spot=spot,
            version=version,
            state=outcome.value,
            stage=stage,
            reason=reason,
            station_id=where.station_id,
            vehicle_id=where.vehicle_id,
            at=now,
        ),
    )
    if alert is not None and alerts is not None:
        what = "rolled back from" if outcome is UpdateState.ROLLED_BACK else "failed to install"
        part = f" (spot board {spot})" if spot else ""
        await alerts.on_firmware_failure(
            session,
            where.device_id,
            alert,
            now=now,
            message=f"{what} firmware {version}{part}: {reason or stage or 'no reason given'}",
            extra={"version": version, "spot": spot, "campaign_id": campaign_id},
        )


__all__ = ["FAILED_STAGES", "Where", "apply_status", "outcome_of", "settled"]
