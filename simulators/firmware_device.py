"""A simulated mainboard or vehicle controller with A/B slots (SPEC §13.6).

It runs the real device-side library (:mod:`kickstand.edge.core.firmware`): the bootloader
step at each start, the manifest checks, the download, the install and the trial. What is
simulated is the rest of the device: its statuses go to ``<state_dir>/statuses.jsonl``
(written and fsynced before the call returns, as the agents' queue does) and, with
``on_status``, to whoever sends them on (the campaign benchmark: over MQTT), "reaching the
cloud" is an event the test sets, and the self-check reads the running image's
``self_check`` ("fail": new firmware that fails its self-check). A restart is the end of the
:class:`SlotDevice` object (or of the process): the test starts a new one, as power does.

From a shell or a test's subprocess (the power-cut tests kill it with SIGKILL)::

    python -m kickstand.simulators.firmware_device --state-dir D --key HEX --manifest HEX
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from kickstand.edge.core.firmware.boot import boot
from kickstand.edge.core.firmware.image import read_info
from kickstand.edge.core.firmware.manifest import DevicePart, check_manifest
from kickstand.edge.core.firmware.slots import SlotChoice
from kickstand.edge.core.firmware.updater import FirmwareUpdater
from kickstand.edge.core.link import ReconnectBackoff
from kickstand.protocol.jsonform import to_jsonable
from kickstand.protocol.v1.enums import FirmwareState
from kickstand.protocol.v1.messages import FirmwareStatus

RESTART_EXIT = 3  # the process's exit code when the updater asks for a restart


class Restart(Exception):
    """The device restarts (REBOOTING, a failed trial): this start is over."""


class SlotDevice:
    def __init__(
        self,
        state_dir: Path,
        *,
        target: str = "station-mainboard",
        hardware: str = "1",
        bootloader: str = "1",
        factory_version: str = "1.0.0",
        trial_s: float = 5.0,
        keys: Sequence[bytes] = (),
        backoff_s: float = 0.05,
        on_status: Callable[[FirmwareStatus], None] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.on_status = on_status
        self.part = DevicePart(target, hardware, bootloader)
        self.factory_version = factory_version
        self.keys = list(keys)
        self.log_path = state_dir / "statuses.jsonl"
        self.reached_cloud = asyncio.Event()
        self.restarted = False
        state_dir.mkdir(parents=True, exist_ok=True)
        self.choice: SlotChoice = boot(state_dir, trial_s=trial_s)
        self.updater = FirmwareUpdater(
            state_dir, self._emit, self._restart, trial_s=trial_s,
            backoff=ReconnectBackoff(backoff_s, backoff_s * 4, float("inf")),
            progress_every=256 * 1024,
        )
        self.updater.send_reports()

    @property
    def version(self) -> str:
        return self.choice.version or self.factory_version

    # ---------------------------------------------------------------- the device's side

    def _emit(self, status: FirmwareStatus) -> None:
        with open(self.log_path, "a") as handle:
            handle.write(json.dumps(to_jsonable(status)) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if self.on_status is not None:
            self.on_status(status)

    def _restart(self) -> None:
        self.restarted = True
        raise Restart

    def statuses(self) -> list[dict[str, object]]:
        """Every FirmwareStatus this device ever reported, oldest first."""
        try:
            lines = self.log_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line]

    def states(self) -> list[FirmwareState]:
        return [FirmwareState[str(s["state"])] for s in self.statuses()]

    async def self_check(self) -> str:
        if self.choice.root is None:
            return ""
        info = read_info(self.choice.root)
        return "" if info.self_check == "pass" else f"image {info.version} fails its self-check"

    # ---------------------------------------------------------------- what a test drives

    async def update(self, signed_manifest: bytes, command_id: bytes = b"") -> None:
        """A FirmwareUpdate: Restart when it installed (REBOOTING); ManifestRefused before
        anything is written; FirmwareError after a failed stage."""
        manifest = check_manifest(signed_manifest, self.keys, self.part)
        await self.updater.update(manifest, command_id)

    async def trial(self) -> bool:
        """On a trial boot, wait for the cloud and the self-check (see FirmwareUpdater).
        Restart when the trial failed."""
        return await self.updater.confirm_trial(
            self.choice, self.reached_cloud.wait(), self.self_check
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one FirmwareUpdate on a simulated device")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--key", required=True, help="firmware public key, hex")
    parser.add_argument("--manifest", required=True, help="SignedManifest, hex")
    parser.add_argument("--target", default="station-mainboard")
    args = parser.parse_args(argv)

    async def run() -> int:
        device = SlotDevice(args.state_dir, target=args.target, keys=[bytes.fromhex(args.key)])
        try:
            await device.update(bytes.fromhex(args.manifest))
        except Restart:
            return RESTART_EXIT
        return 0

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
