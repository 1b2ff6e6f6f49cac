"""The firmware library wired into the real station agent (the vehicle's is the same framework
code: tests/edge/vehicle/test_vehicle_agent_mqtt.py), through Mosquitto and the rig's
supervisor (a Reboot or a firmware restart starts the next agent, as the mainboard's does):
the mainboard's own image goes through the A/B slots and confirms itself on the new boot, a
new image failing its self-check falls back and says why, and spot boards take their images
one at a time across the station."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kickstand.edge.core.firmware.image import build_image
from kickstand.edge.core.firmware.slots import Slots
from kickstand.protocol.spotbus import Cmd, Frame
from kickstand.protocol.v1.enums import FirmwareState, RejectReason, ResultStatus
from kickstand.protocol.v1.messages import CommandResult, FirmwareStatus
from kickstand.simulators.firmware import public_hex, signed_update, write_image
from kickstand.simulators.spotboard import SpotBoard, firmware_image
from kickstand.simulators.station.cloudpeer import CloudPeer
from kickstand.simulators.station.sim import StationRig
from kickstand.testing import MosquittoService

pytestmark = pytest.mark.mqtt
TARGET = "station-mainboard"


@pytest.fixture
async def station(mosquitto: MosquittoService, cloud: CloudPeer,
                  tmp_path: Path) -> AsyncIterator[StationRig]:
    async with StationRig("st-fw02", mosquitto.host, mosquitto.port,
                          command_keys=[cloud.public_key_hex], workdir=tmp_path, spots=3,
                          firmware="mb-1.0.0", firmware_trial_s=20.0,
                          firmware_public_keys=[public_hex()]) as rig:
        await rig.accepted()
        yield rig


def _results(cloud: CloudPeer, dev: str, cid: bytes) -> list[CommandResult]:
    return [b for b in cloud.bodies(dev, CommandResult) if b.command_id == cid]


def _states(cloud: CloudPeer, dev: str, version: str) -> list[FirmwareState]:
    return [b.state for b in cloud.bodies(dev, FirmwareStatus)
            if b.version == version and b.spot == 0]


async def test_the_mainboard_updates_through_its_slots_and_confirms(
    station: StationRig, cloud: CloudPeer, tmp_path: Path
) -> None:
    dev = station.device_id
    image = build_image(TARGET, "mb-2.0.0", {"agent.txt": b"new"})
    url = write_image(tmp_path / "mb-2.0.0.tar", image)
    cid = await cloud.send_command(dev, signed_update(image, "mb-2.0.0", url, TARGET))
    await cloud.wait_until(lambda: len(_results(cloud, dev, cid)) == 2, 20)
    assert [r.status for r in _results(cloud, dev, cid)] == [ResultStatus.ACCEPTED,
                                                              ResultStatus.DONE]
    states = _states(cloud, dev, "mb-2.0.0")
    assert states[-3:] == [FirmwareState.INSTALLED, FirmwareState.REBOOTING,
                           FirmwareState.CONFIRMED]
    birth = await cloud.wait_birth(dev, 2)
    assert birth.firmware == "mb-2.0.0"
    record = Slots(Path(station.sim.workdir) / "state").record()
    assert (record.active, record.pending) == ("b", None)
    assert station.agent is not None  # the rig's agent of the new boot: its health says so
    assert station.agent.snapshot()["firmware_slot"] == {
        "version": "mb-2.0.0", "slot": "b", "pending": None, "updating": False,
    }


async def test_a_new_image_failing_its_self_check_rolls_back(
    station: StationRig, cloud: CloudPeer, tmp_path: Path
) -> None:
    dev = station.device_id
    # One image, a fault on this device only (SPEC §13.6: self_check_fails).
    image = build_image(TARGET, "mb-2.1.0", self_check_fails=(dev,))
    url = write_image(tmp_path / "mb-2.1.0.tar", image)
    cid = await cloud.send_command(dev, signed_update(image, "mb-2.1.0", url, TARGET))
    await cloud.wait_until(lambda: len(_results(cloud, dev, cid)) == 2, 20)
    failed = _results(cloud, dev, cid)[-1]
    assert failed.status is ResultStatus.FAILED and "self-check" in (failed.detail or "")
    rolled = [b for b in cloud.bodies(dev, FirmwareStatus) if b.version == "mb-2.1.0"][-1]
    assert rolled.state is FirmwareState.ROLLED_BACK
    assert rolled.reason.startswith("self-check: image mb-2.1.0 fails its self-check")
    assert FirmwareState.CONFIRMED not in _states(cloud, dev, "mb-2.1.0")
    # Back on the factory image, online: the third boot (old, trial, old again).
    birth = await cloud.wait_birth(dev, 3)
    assert birth.firmware == "mb-1.0.0"
    await station.accepted()
    record = Slots(Path(station.sim.workdir) / "state").record()
    assert (record.active, record.pending, record.reports) == ("a", None, [])


@dataclasses.dataclass(slots=True)
class _LoggingBoard(SpotBoard):
    """A spot board noting each firmware request (time, address, command) in a shared log."""

    log: list[tuple[float, int, int]] = dataclasses.field(default_factory=list)

    def handle(self, req: Frame) -> Frame:
        if req.request_cmd in (Cmd.FW_BEGIN, Cmd.FW_COMMIT):
            self.log.append((time.monotonic(), self.addr, req.request_cmd))
        return SpotBoard.handle(self, req)


async def test_spot_boards_take_images_one_at_a_time(
    station: StationRig, cloud: CloudPeer, tmp_path: Path
) -> None:
    dev = station.device_id
    log: list[tuple[float, int, int]] = []
    for addr in (1, 2, 3):
        old = station.sim.bus.boards[addr]
        values = {f.name: getattr(old, f.name) for f in dataclasses.fields(old) if f.init}
        station.sim.bus.boards[addr] = _LoggingBoard(**values, log=log)
    image = firmware_image("sb-1.5.0", 4000)
    url = write_image(tmp_path / "sb-1.5.0.bin", image)
    cids = await asyncio.gather(*(
        cloud.send_command(dev, signed_update(image, "sb-1.5.0", url, "spot-board:sb", spot=n))
        for n in (1, 2, 3)
    ))
    for cid in cids:
        await cloud.wait_until(lambda cid=cid: len(_results(cloud, dev, cid)) == 2, 20)
        assert _results(cloud, dev, cid)[-1].status is ResultStatus.DONE
    # Each board's FW_BEGIN is followed by its own FW_COMMIT before any other board begins.
    order = [(addr, cmd) for _, addr, cmd in sorted(log)]
    assert len(order) == 6
    for i in range(0, 6, 2):
        assert order[i][1] == Cmd.FW_BEGIN and order[i + 1] == (order[i][0], Cmd.FW_COMMIT)
    assert all(station.sim.boards[n].firmware == "sb-1.5.0" for n in (1, 2, 3))


async def test_the_mainboard_waits_while_a_spot_board_takes_an_image(
    station: StationRig, cloud: CloudPeer, tmp_path: Path
) -> None:
    dev = station.device_id
    assert station.agent is not None
    # A slow bus: the board's staging lasts about a second.
    station.agent.settings = station.agent.settings.model_copy(
        update={"firmware_chunk_delay_s": 0.05}
    )
    board = firmware_image("sb-1.5.0", 4000)
    url = write_image(tmp_path / "sb-1.5.0.bin", board)
    spot = await cloud.send_command(
        dev, signed_update(board, "sb-1.5.0", url, "spot-board:sb", spot=1)
    )
    await cloud.wait_until(lambda: FirmwareState.INSTALLING in [
        b.state for b in cloud.bodies(dev, FirmwareStatus) if b.spot == 1
    ])
    image = build_image(TARGET, "mb-2.0.0")
    mainboard = write_image(tmp_path / "mb-2.0.0.tar", image)
    cid = await cloud.send_command(dev, signed_update(image, "mb-2.0.0", mainboard, TARGET))
    refused = await cloud.wait_result(dev, cid)
    assert (refused.status, refused.reason) == (ResultStatus.REJECTED, RejectReason.BUSY)
    assert refused.detail == "spot board 1 is taking an image"
    await cloud.wait_until(lambda: len(_results(cloud, dev, spot)) == 2, 20)
    assert _results(cloud, dev, spot)[-1].status is ResultStatus.DONE
    assert Slots(Path(station.sim.workdir) / "state").record().pending is None
