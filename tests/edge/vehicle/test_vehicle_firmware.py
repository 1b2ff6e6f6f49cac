"""Firmware staging: nothing that fails to download or verify is ever staged."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from kickstand.edge.vehicle.errors import FirmwareError
from kickstand.edge.vehicle.firmware import stage_firmware
from kickstand.protocol.firmware import Manifest
from kickstand.protocol.v1.enums import FirmwareState, RejectReason


async def test_verified_image_is_staged(tmp_path: Path) -> None:
    image = b"\x7fELF" + bytes(range(256)) * 8
    (tmp_path / "fw.bin").write_bytes(image)
    states: list[FirmwareState] = []
    cmd = Manifest("vehicle-controller:vc", "vh-2.0.0", len(image),
                   hashlib.sha256(image).digest(), (tmp_path / "fw.bin").as_uri())
    target = await stage_firmware(cmd, tmp_path / "state", states.append)
    assert target.read_bytes() == image
    assert states == [FirmwareState.DOWNLOADING, FirmwareState.DOWNLOADED,
                      FirmwareState.VERIFYING, FirmwareState.VERIFIED, FirmwareState.INSTALLING]


@pytest.mark.parametrize(
    ("url", "size", "digest", "state"),
    [
        ("missing", 10, b"\x00" * 32, FirmwareState.DOWNLOAD_FAILED),
        ("fw", 5, b"\x00" * 32, FirmwareState.DOWNLOAD_FAILED),  # larger than announced
        ("fw", 10, b"\x00" * 32, FirmwareState.VERIFY_FAILED),
        ("ftp", 10, b"\x00" * 32, FirmwareState.DOWNLOAD_FAILED),
    ],
    ids=["missing", "oversized", "wrong-sha256", "scheme"],
)
async def test_bad_images_are_never_staged(
    tmp_path: Path, url: str, size: int, digest: bytes, state: FirmwareState
) -> None:
    (tmp_path / "fw").write_bytes(b"0123456789")
    full = "ftp://example.com/fw" if url == "ftp" else (tmp_path / url).as_uri()
    with pytest.raises(FirmwareError) as failed:
        await stage_firmware(Manifest("vehicle-controller:vc", "v", size, digest, full),
                             tmp_path / "st", print)
    assert failed.value.state is state
    assert failed.value.reject_reason in (RejectReason.MALFORMED, RejectReason.HARDWARE_FAULT)
    assert not (tmp_path / "st" / "firmware").exists() or not any(
        (tmp_path / "st" / "firmware").iterdir()
    )
