"""A power cut (SIGKILL of the device process) at any moment of an update leaves a slot
that boots: the old one, or the new one on trial with the old one to fall back to."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest

from kickstand.edge.core.firmware.image import build_image, read_info
from kickstand.edge.core.firmware.slots import Slots
from kickstand.simulators.firmware import ImageServer, public_hex, signed_update
from kickstand.simulators.firmware_device import RESTART_EXIT, SlotDevice

KEY = bytes.fromhex(public_hex())
TARGET = "station-mainboard"
# Many files: unpacking takes long enough (~100s of ms) to be cut in the middle.
FILES = {f"agent/pkg/m{i}.py": os.urandom(2000) for i in range(1500)}


def _start(state: Path, signed: bytes) -> asyncio.subprocess.Process:
    return asyncio.create_subprocess_exec(  # type: ignore[return-value]
        sys.executable, "-m", "kickstand.simulators.firmware_device",
        "--state-dir", str(state), "--key", KEY.hex(), "--manifest", signed.hex(),
        "--target", TARGET,
    )


def _last_state(state: Path) -> str:
    try:
        lines = (state / "statuses.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return ""
    return str(json.loads(lines[-1])["state"]) if lines else ""


def _assert_bootable(state: Path, old: str, new: str) -> str:
    """Power comes back: the bootloader step's choice runs an intact image; on a trial the
    active slot (the fallback) is intact too. The version that runs."""
    slots = Slots(state)
    record = slots.record()
    device = SlotDevice(state, target=TARGET, keys=[KEY])
    choice = device.choice
    if choice.root is not None:
        assert read_info(choice.root).version == choice.version
        assert (choice.root / "agent" / "pkg" / "m1499.py").stat().st_size == 2000
    if choice.trial:
        assert choice.version == new and record.pending == choice.slot
        fallback = slots.choice_of(record.active)  # what a failed trial returns to
        assert fallback.version in (None, old)
    else:
        assert device.version == old
    return device.version


async def test_killed_mid_install_boots_the_old_slot(tmp_path: Path,
                                                     server: ImageServer) -> None:
    state = tmp_path / "state"
    image = build_image(TARGET, "2.0.0", FILES)
    signed = signed_update(image, "2.0.0", server.add(image), TARGET).manifest
    proc = await _start(state, signed)
    deadline = time.monotonic() + 30
    while _last_state(state) != "INSTALLING":
        assert proc.returncode is None, "the update ended before it installed"
        assert time.monotonic() < deadline
        await asyncio.sleep(0.002)
    await asyncio.sleep(0.02)  # inside the unpacking of ~1500 files
    proc.send_signal(signal.SIGKILL)
    assert await proc.wait() == -signal.SIGKILL
    assert _last_state(state) == "INSTALLING"  # it did not get to the switch
    assert _assert_bootable(state, "1.0.0", "2.0.0") == "1.0.0"
    # and the device updates fine afterwards: the half-written slot is simply rewritten
    proc = await _start(state, signed)
    assert await proc.wait() == RESTART_EXIT
    assert _assert_bootable(state, "1.0.0", "2.0.0") == "2.0.0"


@pytest.mark.slow
async def test_killed_at_random_moments_always_boots(tmp_path: Path,
                                                     server: ImageServer) -> None:
    image = build_image(TARGET, "2.0.0", FILES)
    signed = signed_update(image, "2.0.0", server.add(image), TARGET).manifest
    rng = random.Random(18)
    # A whole update, timed from its first status (the process start is not of interest).
    proc = await _start(tmp_path / "reference", signed)
    await _wait_first_status(tmp_path / "reference", proc)
    started = time.monotonic()
    assert await proc.wait() == RESTART_EXIT
    whole = time.monotonic() - started
    outcomes: list[str] = []
    for run in range(6):
        state = tmp_path / f"state{run}"
        proc = await _start(state, signed)
        await _wait_first_status(state, proc)
        await asyncio.sleep(rng.uniform(0, whole * 1.1))  # download, verify, install, switch
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        await proc.wait()
        outcomes.append(f"{_last_state(state) or 'start'}->"
                        f"{_assert_bootable(state, '1.0.0', '2.0.0')}")
    assert len(outcomes) == 6
    print(f"update {whole:.2f} s; killed at:", outcomes)


async def _wait_first_status(state: Path, proc: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 30
    while not _last_state(state):
        assert proc.returncode is None and time.monotonic() < deadline
        await asyncio.sleep(0.002)
