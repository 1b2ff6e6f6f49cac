"""The FirmwareUpdate handler of a device with slots, as an agent's router calls it."""

from __future__ import annotations

from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from kickstand.edge.core.errors import CommandRefused
from kickstand.edge.core.firmware.boot import boot
from kickstand.edge.core.firmware.command import SlotFirmware
from kickstand.edge.core.firmware.image import build_image
from kickstand.edge.core.firmware.manifest import DevicePart
from kickstand.edge.core.firmware.updater import FirmwareUpdater
from kickstand.edge.core.link import ReconnectBackoff
from kickstand.protocol.v1.enums import FirmwareState, RejectReason, ResultStatus
from kickstand.protocol.v1.messages import CommandEnvelope, FirmwareStatus, FirmwareUpdate
from kickstand.simulators.firmware import Faults, ImageServer, public_hex, signed_update

TARGET = "vehicle-controller:vc2"


class Device:
    def __init__(self, state: Path) -> None:
        self.statuses: list[FirmwareStatus] = []
        self.results: list[tuple[bytes, bool, str]] = []
        self.tasks: list[Coroutine[Any, Any, Any]] = []
        self.restarts = 0
        self.updater = FirmwareUpdater(
            state, self.statuses.append, self.restart,
            finish=lambda *r: self.results.append(r), attempts=2,
            backoff=ReconnectBackoff(0.01, 0.02, float("inf")),
        )
        self.firmware = SlotFirmware(self.updater, [bytes.fromhex(public_hex())],
                                     DevicePart(TARGET, "2"), self.tasks.append)

    def restart(self) -> None:
        self.restarts += 1

    async def command(self, cmd: FirmwareUpdate, cid: bytes = b"\x07" * 16) -> ResultStatus:
        outcome = await self.firmware.handle(CommandEnvelope(cid, "vh-1", 0, 1, cmd), cmd)
        while self.tasks:
            await self.tasks.pop(0)
        return outcome.status


async def test_accepted_then_installed_then_done_from_the_new_slot(
    tmp_path: Path, server: ImageServer
) -> None:
    image = build_image(TARGET, "2.1.0")
    cmd = signed_update(image, "2.1.0", server.add(image), TARGET)
    old = Device(tmp_path)
    assert await old.command(cmd) is ResultStatus.ACCEPTED
    assert old.restarts == 1 and old.statuses[-1].state is FirmwareState.REBOOTING
    with pytest.raises(CommandRefused) as busy:  # installed, waiting for its trial
        await old.firmware.handle(CommandEnvelope(b"\x08" * 16, "vh-1", 0, 1, cmd), cmd)
    assert busy.value.reject_reason is RejectReason.BUSY

    choice = boot(tmp_path)
    new = Device(tmp_path)

    async def reached() -> None:
        return None

    async def healthy() -> str:
        return ""

    await new.firmware.trial(choice, reached(), healthy)
    assert [s.state for s in new.statuses] == [FirmwareState.CONFIRMED]
    assert new.results == [(b"\x07" * 16, True, "")]


async def test_a_failed_download_ends_the_command_failed(tmp_path: Path,
                                                         server: ImageServer) -> None:
    image = build_image(TARGET, "2.1.0", pad_to=20_000)
    server.faults = Faults(cut_after=100, cuts=5)
    dev = Device(tmp_path)
    assert await dev.command(signed_update(image, "2.1.0", server.add(image), TARGET)) is (
        ResultStatus.ACCEPTED
    )
    assert dev.statuses[-1].state is FirmwareState.DOWNLOAD_FAILED
    assert "2 attempts" in dev.statuses[-1].reason
    assert [r[:2] for r in dev.results] == [(b"\x07" * 16, False)]
    assert dev.restarts == 0 and boot(tmp_path).slot == "a"


async def test_spot_boards_are_not_this_handlers(tmp_path: Path) -> None:
    dev = Device(tmp_path)
    with pytest.raises(CommandRefused) as refused:
        await dev.command(FirmwareUpdate(b"", spot=2))
    assert refused.value.reject_reason is RejectReason.NOT_SUPPORTED
