"""The station agent's own process (``python -m kickstand.edge.station``) runs from its slot:
after an update the process executes itself again, the bootloader step puts the new slot's
files first on its import path (the image's ``sitecustomize.py`` notes each start), the
trial confirms; a Reboot later starts it from the factory environment and the step chooses
the same, confirmed slot again (without spending a trial); a next update, installed while
running from that slot, gets its trial too (a restart that kept the slot's environment
took the running slot for the new choice and never tried the pending one)."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import pytest

from kickstand.edge.core.firmware.image import build_image
from kickstand.edge.core.firmware.slots import Slots
from kickstand.protocol.v1.enums import FirmwareState, ResultStatus
from kickstand.protocol.v1.messages import CommandResult, FirmwareStatus, Reboot
from kickstand.simulators.firmware import public_hex, signed_update, write_image
from kickstand.simulators.station.cloudpeer import CloudPeer
from kickstand.simulators.station.sim import FAST, SimulatedStation
from kickstand.testing import MosquittoService

pytestmark = pytest.mark.mqtt
TARGET = "station-mainboard"
# Runs at every start of a process whose import path begins with the slot's root.
MARK = b"""import os
root = os.environ.get("KICKSTAND_SLOT_ROOT", "?")
with open(os.path.join(os.path.dirname(root), "starts.txt"), "a") as f:
    f.write(os.environ.get("PYTHONPATH", "") + "\\n")
"""


def _log(path: Path) -> IO[bytes]:
    return open(path, "ab")


@pytest.fixture
async def station_process(
    mosquitto: MosquittoService, cloud: CloudPeer, tmp_path: Path
) -> AsyncIterator[SimulatedStation]:
    sim = SimulatedStation("st-fw03", 2, workdir=tmp_path, nfc=False)
    await sim.start()
    config = sim.write_config(
        tmp_path / "station.toml", mosquitto.url, [cloud.public_key_hex],
        **{**FAST, "firmware": "mb-1.0.0", "firmware_trial_s": 20.0,
           "firmware_public_keys": [public_hex()]},
    )
    with _log(tmp_path / "agent.log") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kickstand.edge.station", "--config", str(config),
            stdout=out, stderr=out,
        )
        try:
            yield sim
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
            await sim.stop()


async def test_the_agent_process_runs_from_its_confirmed_slot(
    station_process: SimulatedStation, cloud: CloudPeer, tmp_path: Path
) -> None:
    dev = station_process.device_id
    first = await cloud.wait_birth(dev, 1, 30)
    assert first.firmware == "mb-1.0.0"
    image = build_image(TARGET, "mb-2.0.0", {"sitecustomize.py": MARK})
    url = write_image(tmp_path / "mb-2.0.0.tar", image)
    cid = await cloud.send_command(dev, signed_update(image, "mb-2.0.0", url, TARGET))

    def results() -> list[CommandResult]:
        return [b for b in cloud.bodies(dev, CommandResult) if b.command_id == cid]

    await cloud.wait_until(lambda: len(results()) == 2, 40)
    assert results()[-1].status is ResultStatus.DONE
    assert (await cloud.wait_birth(dev, 2, 5)).firmware == "mb-2.0.0"
    states = [b.state for b in cloud.bodies(dev, FirmwareStatus)]
    assert states[-1] is FirmwareState.CONFIRMED
    slots = Slots(station_process.workdir / "state")
    starts = (slots.path("b") / "starts.txt").read_text().splitlines()
    assert len(starts) == 1 and starts[0].startswith(str(slots.path("b") / "root"))

    # A Reboot: the process starts again from the factory environment; the step chooses the
    # confirmed slot b (no trial) and puts it first on the path once, not twice.
    rid = await cloud.send_command(dev, Reboot())
    assert (await cloud.wait_result(dev, rid)).status is ResultStatus.DONE
    assert (await cloud.wait_birth(dev, 3, 30)).firmware == "mb-2.0.0"
    starts = (slots.path("b") / "starts.txt").read_text().splitlines()
    assert len(starts) == 2 and starts[1].count(str(slots.path("b") / "root")) == 1
    record = slots.record()
    assert (record.active, record.pending, record.attempts) == ("b", None, 0)

    # The next update, installed while the process runs from slot b, goes to slot a.
    image = build_image(TARGET, "mb-3.0.0", {"sitecustomize.py": MARK})
    url = write_image(tmp_path / "mb-3.0.0.tar", image)
    cid = await cloud.send_command(dev, signed_update(image, "mb-3.0.0", url, TARGET))
    await cloud.wait_until(lambda: len(results()) == 2, 40)
    assert results()[-1].status is ResultStatus.DONE, results()[-1]
    assert (await cloud.wait_birth(dev, 4, 5)).firmware == "mb-3.0.0"
    starts = (slots.path("a") / "starts.txt").read_text().splitlines()
    assert len(starts) == 1 and str(slots.path("b")) not in starts[0]
    assert (slots.record().active, slots.record().pending) == ("a", None)
