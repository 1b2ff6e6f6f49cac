"""Spot boards behind the same manifest checks, through the real station agent and broker:
a board that refuses the image keeps its version and the failure is reported; a manifest
signed by another key is refused before the board hears of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kickstand.protocol.spotbus import Cmd
from kickstand.protocol.v1.enums import FirmwareState, RejectReason, ResultStatus
from kickstand.protocol.v1.messages import CommandResult, FirmwareStatus
from kickstand.simulators.firmware import public_hex, refuse_images, signed_update, write_image
from kickstand.simulators.spotboard import firmware_image
from kickstand.simulators.station.cloudpeer import CloudPeer
from kickstand.simulators.station.sim import StationRig
from kickstand.testing import MosquittoService


@pytest.fixture
async def station(mosquitto: MosquittoService, cloud: CloudPeer,
                  tmp_path: Path) -> AsyncIterator[StationRig]:
    async with StationRig("st-fw01", mosquitto.host, mosquitto.port,
                          command_keys=[cloud.public_key_hex], workdir=tmp_path, spots=3,
                          firmware_public_keys=[public_hex()]) as rig:
        await rig.accepted()
        yield rig


async def test_a_board_refusing_the_image_keeps_its_version(
    station: StationRig, cloud: CloudPeer, tmp_path: Path
) -> None:
    dev = station.device_id
    board = refuse_images(station.sim.bus, 2)
    image = firmware_image("sb-1.5.0", 1200)
    url = write_image(tmp_path / "sb-1.5.0.bin", image)

    def results(cid: bytes) -> list[CommandResult]:
        return [b for b in cloud.bodies(dev, CommandResult) if b.command_id == cid]

    cid = await cloud.send_command(dev, signed_update(image, "sb-1.5.0", url, "spot-board:sb",
                                                      spot=2))
    await cloud.wait_until(lambda: len(results(cid)) == 2)
    assert [r.status for r in results(cid)] == [ResultStatus.ACCEPTED, ResultStatus.FAILED]
    states = [b.state for b in cloud.bodies(dev, FirmwareStatus) if b.spot == 2]
    assert states[-1] is FirmwareState.INSTALL_FAILED and FirmwareState.INSTALLED not in states
    assert station.sim.boards[2].firmware == "sb-1.4.2" and board.refused == 1
    # the board next to it takes the same image
    cid = await cloud.send_command(dev, signed_update(image, "sb-1.5.0", url, "spot-board:sb",
                                                      spot=3))
    await cloud.wait_until(lambda: len(results(cid)) == 2)
    assert results(cid)[-1].status is ResultStatus.DONE
    assert station.sim.boards[3].firmware == "sb-1.5.0"


async def test_a_manifest_of_another_key_never_reaches_the_board(
    station: StationRig, cloud: CloudPeer, tmp_path: Path
) -> None:
    dev = station.device_id
    image = firmware_image("sb-6.6.6", 1200)
    url = write_image(tmp_path / "evil.bin", image)
    board = refuse_images(station.sim.bus, 1, at=Cmd.FW_BEGIN)  # counts any FW_BEGIN
    update = signed_update(image, "sb-6.6.6", url, "spot-board:sb", spot=1,
                           key=Ed25519PrivateKey.generate())
    cid = await cloud.send_command(dev, update)
    result = await cloud.wait_result(dev, cid)
    assert (result.status, result.reason) == (ResultStatus.REJECTED, RejectReason.UNKNOWN_KEY)
    assert cloud.bodies(dev, FirmwareStatus) == []
    assert board.firmware == "sb-1.4.2" and board.refused == 0  # no FW_BEGIN reached it
