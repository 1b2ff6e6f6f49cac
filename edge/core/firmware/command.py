"""The FirmwareUpdate command of a device with slots (``spot`` 0), and its trial at start.

What an agent wires, in three lines (its router, its link, its task set)::

    firmware = SlotFirmware(updater, keys, DevicePart("station-mainboard", hw, boot), spawn)
    router.add(FirmwareUpdate, firmware.handle)          # spot 0; spot boards stay the agent's
    spawn(firmware.trial(choice, link.accepted.wait(), self_check))   # after boot()

The handler answers at once: REJECTED before anything is written (a manifest that does not
verify or is not for this part, an update already running or installed and waiting for its
trial), else ACCEPTED; the updater then reports every stage and the result follows as FAILED
(a stage failed) or, once the new slot confirmed itself, DONE (sent by the new image).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

from kickstand.edge.core.errors import CommandRefused
from kickstand.edge.core.firmware.errors import FirmwareError
from kickstand.edge.core.firmware.manifest import DevicePart, check_manifest
from kickstand.edge.core.firmware.slots import SlotChoice
from kickstand.edge.core.firmware.updater import FirmwareUpdater, SelfCheck
from kickstand.edge.core.link import Outcome
from kickstand.protocol.firmware import Manifest
from kickstand.protocol.v1.enums import RejectReason, ResultStatus
from kickstand.protocol.v1.messages import CommandEnvelope, FirmwareUpdate

log = logging.getLogger("kickstand.edge.core.firmware.command")

Spawn = Callable[[Coroutine[Any, Any, Any]], object]


class SlotFirmware:
    def __init__(
        self,
        updater: FirmwareUpdater,
        keys: Iterable[bytes],
        part: DevicePart,
        spawn: Spawn,
    ) -> None:
        self.updater, self.keys, self.part, self.spawn = updater, list(keys), part, spawn

    async def handle(self, envelope: CommandEnvelope, cmd: FirmwareUpdate) -> Outcome:
        if cmd.spot != 0:
            raise CommandRefused(RejectReason.NOT_SUPPORTED, f"no spot {cmd.spot} to update")
        manifest = check_manifest(cmd.manifest, self.keys, self.part)
        if self.updater.updating or self.updater.slots.record().pending is not None:
            raise CommandRefused(RejectReason.BUSY, "a firmware update is under way")
        self.spawn(self._run(envelope.command_id, manifest))
        return Outcome(ResultStatus.ACCEPTED, detail=f"firmware {manifest.version}")

    async def _run(self, command_id: bytes, manifest: Manifest) -> None:
        try:
            await self.updater.update(manifest, command_id)
        except FirmwareError as exc:  # reported as its *_FAILED state by the updater
            log.error("firmware_update_failed version=%s state=%s reason=%s",
                      manifest.version, exc.state.name, exc.reason)
            if self.updater.finish:
                self.updater.finish(command_id, False, exc.reason)

    async def trial(
        self, choice: SlotChoice, reached_cloud: Awaitable[object], self_check: SelfCheck
    ) -> None:
        """At start: statuses owed from before the restart, then the trial if this start
        runs a pending slot."""
        self.updater.send_reports()
        await self.updater.confirm_trial(choice, reached_cloud, self_check)
