"""A slot update, stage by stage, each reported (SPEC §13.5), and the trial that follows.

:meth:`FirmwareUpdater.update` runs on the old image: DOWNLOADING (with ``bytes_done`` as it
goes) → DOWNLOADED → VERIFYING → VERIFIED → INSTALLING → INSTALLED → REBOOTING, then calls
``restart``; any failure is reported as its *_FAILED state with the reason and leaves the
running slot untouched. :meth:`FirmwareUpdater.confirm_trial` runs on the new image after
the bootloader step chose it on trial: it waits for the cloud (an accepted session) and the
self-check within the deadline, then CONFIRMED; otherwise the trial is failed and the device
restarts into the previous slot, which reports ROLLED_BACK with the reason at its start
(:meth:`FirmwareUpdater.send_reports`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from kickstand.edge.core.firmware.download import Downloader
from kickstand.edge.core.firmware.errors import FirmwareError, SlotError
from kickstand.edge.core.firmware.slots import DEFAULT_TRIAL_S, Report, SlotChoice, Slots
from kickstand.edge.core.link import ReconnectBackoff
from kickstand.protocol.firmware import Manifest
from kickstand.protocol.v1.enums import FirmwareState, RejectReason
from kickstand.protocol.v1.fields import fit_text
from kickstand.protocol.v1.messages import FirmwareStatus

log = logging.getLogger("kickstand.edge.core.firmware.updater")

#: What the self-check answers: "" when the device works, else why it does not.
SelfCheck = Callable[[], Awaitable[str]]
#: The CommandResult of the FirmwareUpdate a report ends: (command_id, ok, reason).
Finish = Callable[[bytes, bool, str], None]


class FirmwareUpdater:
    """``emit`` must store the status before it returns (the agent's queue does): a report
    is forgotten once emitted. ``restart`` ends the process so the bootloader step runs."""

    def __init__(
        self,
        state_dir: Path,
        emit: Callable[[FirmwareStatus], None],
        restart: Callable[[], None],
        *,
        finish: Finish | None = None,
        trial_s: float = DEFAULT_TRIAL_S,
        attempts: int = 6,
        backoff: ReconnectBackoff | None = None,
        progress_every: int = 256 * 1024,
    ) -> None:
        self.slots = Slots(state_dir, trial_s=trial_s)
        self.emit, self.restart, self.finish = emit, restart, finish
        self.attempts, self.backoff, self.progress_every = attempts, backoff, progress_every
        self.updating = False

    def _status(self, state: FirmwareState, version: str, reason: str = "", done: int = 0) -> None:
        self.emit(FirmwareStatus(state, fit_text(version, 32), 0, fit_text(reason, 64), done))

    async def update(self, manifest: Manifest, command_id: bytes = b"") -> None:
        """Install ``manifest``'s image into the inactive slot and restart into it on trial.
        FirmwareError (already reported) when a stage fails; BUSY while one runs."""
        if self.updating:
            raise FirmwareError("an update is running", FirmwareState.DOWNLOAD_FAILED,
                                RejectReason.BUSY)
        self.updating = True
        version = manifest.version
        try:
            part = await asyncio.to_thread(self.slots.staging, manifest)
            await asyncio.to_thread(
                self.slots.begin_update, manifest, command_id, FirmwareState.DOWNLOADING
            )
            self._status(FirmwareState.DOWNLOADING, version)
            download = Downloader(
                manifest.url, part, manifest.size, manifest.sha256,
                attempts=self.attempts, backoff=self.backoff,
                progress=lambda n: self._status(FirmwareState.DOWNLOADING, version, done=n),
                progress_every=self.progress_every,
            )
            stats = await download.run()
            log.info("firmware_downloaded version=%s fetched=%d resumed_from=%d attempts=%d",
                     version, stats.fetched, stats.resumed_from, stats.attempts)
            self._status(FirmwareState.DOWNLOADED, version, done=manifest.size)
            self._status(FirmwareState.VERIFYING, version)
            await download.verify()
            self._status(FirmwareState.VERIFIED, version)
            await asyncio.to_thread(
                self.slots.begin_update, manifest, command_id, FirmwareState.INSTALLING
            )
            self._status(FirmwareState.INSTALLING, version)
            await asyncio.to_thread(self.slots.install, manifest, part, command_id)
            self.slots.end_update()
            self._status(FirmwareState.INSTALLED, version)
        except SlotError as exc:
            self.slots.end_update()
            self._status(FirmwareState.INSTALL_FAILED, version, str(exc))
            raise FirmwareError(str(exc), FirmwareState.INSTALL_FAILED) from None
        except FirmwareError as exc:
            self.slots.end_update()
            self._status(exc.state, version, exc.reason)
            raise
        finally:
            self.updating = False
        self._status(FirmwareState.REBOOTING, version)
        self.restart()

    async def confirm_trial(
        self, choice: SlotChoice, reached_cloud: Awaitable[object], self_check: SelfCheck
    ) -> bool:
        """On a trial boot: CONFIRMED if the cloud is reached and the self-check passes
        before the deadline; else the trial fails and the device restarts into the previous
        slot (which reports ROLLED_BACK). True when the running slot stays."""
        if not choice.trial:
            return True
        left = (choice.deadline or time.time()) - time.time()
        step = "reach the cloud"
        try:
            async with asyncio.timeout(max(left, 0.0)):
                await reached_cloud
                step = "pass the self-check"
                problem = await self_check()
        except TimeoutError:
            problem = f"did not {step} within {self.slots.trial_s:g} s"
        if problem:
            log.error("firmware_trial_failed slot=%s reason=%s", choice.slot, problem)
            await asyncio.to_thread(self.slots.fail_trial, f"self-check: {problem}"
                                    if step == "pass the self-check" else problem)
            self.restart()
            return False
        await asyncio.to_thread(self.slots.confirm)
        self.send_reports()
        return True

    def send_reports(self) -> list[Report]:
        """Emit the statuses owed across restarts (CONFIRMED, ROLLED_BACK) and their command
        results, then forget them; an update a restart cut (a power cut) is reported failed.
        Called once the agent's queue is open."""
        cut = self.slots.interrupted()
        if cut is not None:
            log.warning("firmware_update_interrupted version=%s", cut.version)
            self._status(cut.firmware_state, cut.version, cut.reason)
            if self.finish and cut.command_id:
                self.finish(bytes.fromhex(cut.command_id), False, cut.reason)
        reports = self.slots.reports()
        for report in reports:
            self._status(report.firmware_state, report.version, report.reason)
            if self.finish and report.command_id:
                ok = report.firmware_state is FirmwareState.CONFIRMED
                self.finish(bytes.fromhex(report.command_id), ok, report.reason)
        if reports:
            self.slots.clear_reports(reports)
        return reports
