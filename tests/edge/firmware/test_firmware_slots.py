"""A/B slots end to end on the simulated device (the real library): every stage reported,
a confirmed trial sticks, an unconfirmed one or one failing its self-check rolls back."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kickstand.edge.core.firmware.boot import boot, slot_environment
from kickstand.edge.core.firmware.errors import FirmwareError
from kickstand.edge.core.firmware.image import build_image
from kickstand.edge.core.firmware.slots import Slots
from kickstand.protocol.v1.enums import FirmwareState as S
from kickstand.simulators.firmware import Faults, ImageServer, public_hex, signed_update
from kickstand.simulators.firmware_device import Restart, SlotDevice

KEY = bytes.fromhex(public_hex())
TARGET = "station-mainboard"


def device(state: Path, trial_s: float = 5.0) -> SlotDevice:
    return SlotDevice(state, target=TARGET, keys=[KEY], trial_s=trial_s)


async def install(state: Path, server: ImageServer, version: str, **image: str) -> SlotDevice:
    data = build_image(TARGET, version, {"agent/VERSION": version.encode()}, pad_to=600_000,
                       **image)
    update = signed_update(data, version, server.add(data), TARGET)
    old = device(state)
    with pytest.raises(Restart):
        await old.update(update.manifest, b"\x01" * 16)
    return old


async def test_a_confirmed_trial_sticks(tmp_path: Path, server: ImageServer) -> None:
    state = tmp_path / "state"
    old = await install(state, server, "2.0.0")
    assert old.version == "1.0.0"  # the update ran on the factory image
    new = device(state)  # power-up: the bootloader step picks the new slot on trial
    assert (new.choice.slot, new.choice.trial, new.version) == ("b", True, "2.0.0")
    assert (new.choice.root / "agent" / "VERSION").read_text() == "2.0.0"  # type: ignore[operator]
    new.reached_cloud.set()
    assert await new.trial()
    again = device(state)
    assert (again.choice.slot, again.choice.trial, again.version) == ("b", False, "2.0.0")
    states = again.states()
    assert [s for s in states if s is not S.DOWNLOADING] == [
        S.DOWNLOADED, S.VERIFYING, S.VERIFIED, S.INSTALLING, S.INSTALLED, S.REBOOTING,
        S.CONFIRMED,
    ]
    assert states[0] is S.DOWNLOADING and states.count(S.CONFIRMED) == 1
    done = [s["bytes_done"] for s in again.statuses() if s["state"] == "DOWNLOADING"]
    assert done[0] == 0 and done == sorted(done) and len(done) >= 3  # progress as it went
    assert all(s["version"] == "2.0.0" for s in again.statuses())


async def test_an_unconfirmed_trial_rolls_back_at_the_next_start(
    tmp_path: Path, server: ImageServer
) -> None:
    state = tmp_path / "state"
    await install(state, server, "2.0.0")
    trial = device(state)  # the new image never reaches the cloud, then power is cut
    assert trial.choice.trial
    back = device(state)
    assert (back.choice.slot, back.choice.trial, back.version) == ("a", False, "1.0.0")
    last = back.statuses()[-1]
    assert (last["state"], last["version"]) == ("ROLLED_BACK", "2.0.0")
    assert "not confirmed" in str(last["reason"])
    assert device(state).statuses()[-1] == last  # reported once, then forgotten


async def test_a_trial_past_its_deadline_rolls_back(tmp_path: Path,
                                                    server: ImageServer) -> None:
    state = tmp_path / "state"
    await install(state, server, "2.0.0")
    trial = device(state, trial_s=0.2)
    with pytest.raises(Restart):
        await trial.trial()  # the cloud is never reached
    back = device(state)
    assert back.version == "1.0.0"
    assert back.statuses()[-1]["reason"] == "did not reach the cloud within 0.2 s"


async def test_new_firmware_failing_its_self_check_rolls_back(
    tmp_path: Path, server: ImageServer
) -> None:
    state = tmp_path / "state"
    await install(state, server, "2.0.0", self_check="fail")
    trial = device(state)
    trial.reached_cloud.set()
    with pytest.raises(Restart):
        await trial.trial()
    back = device(state)
    assert (back.choice.slot, back.version) == ("a", "1.0.0")
    last = back.statuses()[-1]
    assert last["state"] == "ROLLED_BACK" and "self-check" in str(last["reason"])
    # The fallback is a working device: the next update goes to the same inactive slot.
    await install(state, server, "2.0.1")
    assert device(state).version == "2.0.1"


async def test_a_corrupt_download_leaves_the_running_slot(tmp_path: Path,
                                                          server: ImageServer) -> None:
    state = tmp_path / "state"
    server.faults = Faults(flip_byte=5000)
    data = build_image(TARGET, "2.0.0", pad_to=50_000)
    update = signed_update(data, "2.0.0", server.add(data), TARGET)
    dev = device(state)
    with pytest.raises(FirmwareError):
        await dev.update(update.manifest)
    assert dev.states()[-1] is S.VERIFY_FAILED
    assert dev.statuses()[-1]["reason"] == "sha256 mismatch"
    assert (device(state).choice.slot, device(state).version) == ("a", "1.0.0")


async def test_the_chosen_slot_is_what_runs(tmp_path: Path, server: ImageServer) -> None:
    """The bootloader step's environment puts the slot's files first on the import path; a
    process started into its slot reads the choice again without spending the trial."""
    state = tmp_path / "state"
    image = build_image(TARGET, "2.0.0", {"slotprobe.py": b"VERSION = '2.0.0'\n"})
    with pytest.raises(Restart):
        await device(state).update(signed_update(image, "2.0.0", server.add(image),
                                                 TARGET).manifest)
    choice = boot(state)
    assert choice.trial and choice.root is not None
    env = slot_environment(choice)
    probe = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", "import slotprobe; print(slotprobe.VERSION)"],
        env=env, capture_output=True, text=True, check=True,
    )
    assert probe.stdout.strip() == "2.0.0"
    again = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "kickstand.edge.core.firmware.boot", "--state-dir", str(state)],
        env=env, capture_output=True, text=True, check=True,
    )
    assert json.loads(again.stdout)["slot"] == choice.slot
    assert Slots(state).record().attempts == 1  # still the first (and only) trial start
