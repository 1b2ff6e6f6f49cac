"""The campaign runner: a periodic task that advances firmware campaigns.

    runner = CampaignRunner(sessionmaker, gateway, every_s=settings.FIRMWARE_CAMPAIGN_EVERY_S)
    async with runner:            # one step every every_s until closed
        ...
    await runner.step()           # one step now (tests)

Each step takes every live campaign in its own transaction, locked with SKIP LOCKED (any
number of runners may run side by side: a campaign is advanced by one at a time), and:

1. settles what will not end by itself: updates whose FirmwareUpdate the device refused
   (its command result; "busy" or "expired" are sent again), and updates without progress
   for the campaign's device timeout, as failed;
2. judges the wave under way: failures (failed or rolled back) at the error threshold stop
   the campaign; a wave all settled goes on to the next when its confirmed share reaches
   the success threshold, else stops the campaign; the last wave completes it;
3. sends, in a running campaign and within its network's maintenance window, the
   FirmwareUpdate of the wave's pending devices that are ready — online, updating nothing
   else, no spot of the station unlocking or held by a rent, the vehicle neither rented
   nor ridden; one spot board of a station at a time. Each command is recorded in the
   transaction and published after the commit; one that could not be published is pending
   again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Protocol, Self

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud import metrics
from kickstand.cloud.alerts.engine import AlertEngine
from kickstand.cloud.commands.records import record_command, record_not_sent
from kickstand.cloud.events import catalogue as ev
from kickstand.cloud.firmware import progress, repository, service
from kickstand.cloud.firmware.models import (
    CampaignState,
    FirmwareCampaign,
    FirmwareCampaignDevice,
    FirmwareImage,
    UpdateState,
)
from kickstand.cloud.models import utcnow
from kickstand.cloud.rent_gateway import IssuedCommand
from kickstand.protocol.v1 import messages as m

log = logging.getLogger("kickstand.cloud.firmware.runner")
#: Refusals after which the device is as it was (ingest's reason: the RejectReason's name):
#: the update is sent again rather than counted as failed.
RETRY_REFUSALS = ("busy", "expired", "not-yet-valid")


class Publisher(Protocol):
    """What the runner needs of the command gateway (``MqttCommandGateway``)."""

    def issue(
        self,
        device_id: str,
        command: m.CommandBody,
        *,
        rent_id: int | None = None,
        timeout_s: float | None = None,
    ) -> IssuedCommand: ...

    async def publish(self, issued: IssuedCommand) -> bool: ...


class CampaignRunner:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        gateway: Publisher,
        *,
        every_s: float = 10.0,
        alerts: AlertEngine | None = None,
        clock: Callable[[], datetime] = utcnow,
        name: str = "firmware-campaigns",
    ) -> None:
        self.sessionmaker = sessionmaker
        self.gateway = gateway
        self.every_s = every_s
        self.alerts = alerts
        self.clock = clock
        self.name = name
        #: sent, not_published, timed_out, refused, waves, stopped, completed, step_failed…
        self.counters: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None

    # ── lifecycle ─────────────────────────────────────────────────────────────────────

    async def __aenter__(self) -> Self:
        metrics.register("firmware", self.name, self.counters)
        self._task = asyncio.create_task(self._loop(), name=self.name)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        metrics.unregister("firmware", self.name)

    async def _loop(self) -> None:
        while True:
            try:
                await self.step()
            except Exception as exc:  # a database down: the next step tries again
                self.counters["step_failed"] += 1
                log.warning("event=firmware_step_failed error=%r", exc)
            await asyncio.sleep(self.every_s)

    # ── a step ────────────────────────────────────────────────────────────────────────

    async def step(self) -> int:
        """Advance every live campaign once; the number of updates sent."""
        async with self.sessionmaker() as session:
            ids = await repository.live_campaign_ids(session)
            await session.commit()
        sent = 0
        for campaign_id in ids:
            sent += await self.advance(campaign_id)
        return sent

    async def advance(self, campaign_id: int) -> int:
        async with self.sessionmaker() as session:
            async with session.begin():
                campaign = await repository.lock_campaign(session, campaign_id)
                if campaign is None:
                    return 0
                now = self.clock()
                await self._settle_stuck(session, campaign, now)
                await self._judge(session, campaign)
                issued: list[tuple[int, IssuedCommand]] = []
                if campaign.state == CampaignState.RUNNING.value:
                    issued = await self._dispatch(session, campaign, now)
            sent = 0
            for row_id, command in issued:
                if await self.gateway.publish(command):
                    sent += 1
                    continue
                self.counters["not_published"] += 1
                async with session.begin():
                    await session.execute(
                        update(FirmwareCampaignDevice)
                        .where(
                            FirmwareCampaignDevice.id == row_id,
                            FirmwareCampaignDevice.state == UpdateState.SENT.value,
                        )
                        .values(state=UpdateState.PENDING.value, sent_at=None, command_id=None),
                        execution_options={"synchronize_session": False},
                    )
                    await record_not_sent(session, command, "broker unreachable")
            self.counters["sent"] += sent
            return sent

    async def _fail(
        self,
        session: AsyncSession,
        campaign: FirmwareCampaign,
        row: FirmwareCampaignDevice,
        reason: str,
        now: datetime,
    ) -> None:
        row.state = UpdateState.FAILED.value
        row.reason = reason[:200]
        row.finished_at = now
        station_id, vehicle_id = await repository.attached(session, row.device_id)
        image = await service.get_image(session, campaign.image_id)
        await progress.settled(
            session,
            progress.Where(row.device_id, campaign.network_id, station_id, vehicle_id),
            campaign_id=campaign.id,
            network_id=campaign.network_id,
            version=image.version,
            spot=row.spot,
            outcome=UpdateState.FAILED,
            stage=row.stage,
            reason=row.reason,
            now=now,
            alerts=self.alerts,
        )

    async def _settle_stuck(
        self, session: AsyncSession, campaign: FirmwareCampaign, now: datetime
    ) -> None:
        for row, status, why in await repository.refused(session, campaign.id):
            if why is not None and why.startswith(RETRY_REFUSALS):
                # The device did nothing (busy, the command expired before it could act):
                # the update is sent again at the next chance.
                self.counters["retried"] += 1
                row.state = UpdateState.PENDING.value
                row.sent_at = row.progress_at = None
                row.command_id = None
                continue
            self.counters["refused"] += 1
            await self._fail(session, campaign, row, f"command {status}: {why or 'no reason'}", now)
        timeout = campaign.device_timeout_s
        for row in await repository.stalled(session, campaign.id, now - timedelta(seconds=timeout)):
            self.counters["timed_out"] += 1
            await self._fail(session, campaign, row, f"no progress for {timeout} s", now)
        await session.flush()

    async def _judge(self, session: AsyncSession, campaign: FirmwareCampaign) -> None:
        wave = campaign.current_wave
        counts = await repository.wave_counts(session, campaign.id, wave)
        if counts.failed and counts.failed * 100 >= campaign.error_threshold_pct * counts.total:
            self.counters["stopped"] += 1
            await service.end_campaign(
                session,
                campaign,
                CampaignState.STOPPED,
                f"wave {wave}: {counts.failed} of {counts.total} devices failed or rolled back "
                f"(error threshold {campaign.error_threshold_pct}%)",
            )
            log.info(
                "event=firmware_campaign_stopped campaign=%s reason=%r",
                campaign.id,
                campaign.reason,
            )
            return
        if campaign.state != CampaignState.RUNNING.value or counts.pending or counts.in_flight:
            return
        if counts.confirmed * 100 < campaign.success_threshold_pct * counts.total:
            self.counters["stopped"] += 1
            await service.end_campaign(
                session,
                campaign,
                CampaignState.STOPPED,
                f"wave {wave}: {counts.confirmed} of {counts.total} devices confirmed "
                f"(success threshold {campaign.success_threshold_pct}%)",
            )
            return
        self.counters["waves"] += 1
        await service.emit_campaign(session, campaign, ev.FIRMWARE_CAMPAIGN_WAVE_COMPLETED)
        if wave >= len(campaign.wave_sizes):
            self.counters["completed"] += 1
            await service.end_campaign(session, campaign, CampaignState.COMPLETED, None)
            return
        campaign.current_wave = wave + 1
        await service.emit_campaign(session, campaign, ev.FIRMWARE_CAMPAIGN_WAVE_STARTED)

    async def _dispatch(
        self, session: AsyncSession, campaign: FirmwareCampaign, now: datetime
    ) -> list[tuple[int, IssuedCommand]]:
        window, timezone = await repository.window_of(session, campaign.network_id)
        if not service.in_window(window, timezone, now):
            self.counters["held_window"] += 1
            return []
        rows = await repository.pending_rows(session, campaign.id, campaign.current_wave)
        if not rows:
            return []
        image = await session.get_one(FirmwareImage, campaign.image_id)
        kind = repository.kind_of_target(image.target)
        ready = await repository.ready_devices(session, {r.device_id for r in rows}, kind, now)
        issued: list[tuple[int, IssuedCommand]] = []
        for row in rows:
            if row.device_id not in ready:
                continue
            # One spot board of a station at a time: the station keeps serving riders.
            ready.discard(row.device_id)
            command = self.gateway.issue(
                row.device_id, m.FirmwareUpdate(manifest=image.manifest, spot=row.spot)
            )
            await record_command(session, command)
            row.state = UpdateState.SENT.value
            row.sent_at = row.progress_at = now
            row.command_id = command.command_id.hex()
            issued.append((row.id, command))
        if issued:
            log.info(
                "event=firmware_updates_sent campaign=%s wave=%s devices=%s",
                campaign.id,
                campaign.current_wave,
                len(issued),
            )
        return issued


__all__ = ["RETRY_REFUSALS", "CampaignRunner", "Publisher"]
