"""What a restart owes: an update a power cut interrupted is reported failed at the next
start (once), an update that switched is left to its trial; a restart starts from the
factory environment, so the next bootloader step chooses again. And an image that would
unpack past what a slot holds is refused before it is written."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from kickstand.edge.core.firmware.boot import (
    BASE_PATH_ENV,
    SLOT_ENV,
    boot,
    factory_environment,
    slot_environment,
)
from kickstand.edge.core.firmware.errors import FirmwareError
from kickstand.edge.core.firmware.image import build_image, unpack
from kickstand.edge.core.firmware.slots import SlotChoice, Slots
from kickstand.protocol.v1.enums import FirmwareState
from kickstand.simulators.firmware import manifest_for

TARGET = "station-mainboard"


def test_an_update_cut_mid_install_is_reported_once(tmp_path: Path) -> None:
    slots = Slots(tmp_path)
    image = build_image(TARGET, "2.0.0")
    manifest = manifest_for(image, "2.0.0", "file:///x", TARGET)
    slots.begin_update(manifest, b"\x07" * 16, FirmwareState.INSTALLING)
    # ... the power goes; the next start:
    cut = Slots(tmp_path).interrupted()
    assert cut is not None
    assert (cut.firmware_state, cut.version, cut.command_id) == (
        FirmwareState.INSTALL_FAILED, "2.0.0", "07" * 16
    )
    assert "interrupted by a restart while installing" in cut.reason
    assert Slots(tmp_path).interrupted() is None  # reported once
    assert slots.record().pending is None  # the active slot never moved


def test_an_update_that_switched_is_the_trials_to_report(tmp_path: Path) -> None:
    slots = Slots(tmp_path)
    image = build_image(TARGET, "2.0.0")
    manifest = manifest_for(image, "2.0.0", "file:///x", TARGET)
    part = slots.staging(manifest)
    part.write_bytes(image)
    slots.begin_update(manifest, b"\x08" * 16, FirmwareState.INSTALLING)
    slots.install(manifest, part, b"\x08" * 16)
    # The power goes after the switch, before the note was removed: no failure reported.
    assert slots.interrupted() is None
    slots.choose()
    slots.confirm()
    assert slots.interrupted() is None  # CONFIRMED carries that command: no second word
    assert [r.state for r in slots.reports()] == ["CONFIRMED"]


def test_a_restart_starts_from_the_factory_environment(tmp_path: Path) -> None:
    base = {"PYTHONPATH": "/opt/site", "HOME": "/root"}
    into = slot_environment(SlotChoice("b", tmp_path / "b" / "root", "2.0.0"), base)
    assert into["PYTHONPATH"].startswith(str(tmp_path / "b" / "root"))
    assert into[SLOT_ENV] == str(tmp_path / "b" / "root") and into[BASE_PATH_ENV] == "/opt/site"
    assert factory_environment(into) == base
    bare = slot_environment(SlotChoice("b", tmp_path / "b" / "root", "2.0.0"), {"HOME": "/r"})
    assert factory_environment(bare) == {"HOME": "/r"}


def test_an_archive_unpacking_past_the_cap_is_refused_before_writing(tmp_path: Path) -> None:
    # 64 KiB on the wire, 8 MiB unpacked: refused under a 4 MiB cap, nothing written.
    bomb = gzip.compress(build_image(TARGET, "2.0.0", pad_to=8 << 20))
    assert len(bomb) < 64 * 1024
    (tmp_path / "image.part").write_bytes(bomb)
    with pytest.raises(FirmwareError) as refused:
        unpack(tmp_path / "image.part", tmp_path / "root", max_bytes=4 << 20)
    assert refused.value.state is FirmwareState.INSTALL_FAILED
    assert "unpacks to" in refused.value.reason and not (tmp_path / "root").exists()
    assert unpack(tmp_path / "image.part", tmp_path / "root").version == "2.0.0"


def test_an_unreadable_boot_record_starts_the_factory_install(tmp_path: Path) -> None:
    (tmp_path / "slots").mkdir()
    (tmp_path / "slots" / "boot.json").write_text("{not json")
    assert boot(tmp_path) == SlotChoice("a", None, None)
