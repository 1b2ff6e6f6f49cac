"""The firmware seam both agents call: an image that fails to download or verify is refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from kickstand.edge.core.firmware.errors import FirmwareError
from kickstand.edge.core.image_fetch import fetch_image, verify_image
from kickstand.protocol.firmware import Manifest
from kickstand.protocol.v1.enums import FirmwareState, RejectReason


async def test_a_verified_image_is_fetched(tmp_path: Path) -> None:
    image = b"\x7fELF" + bytes(range(256)) * 8
    (tmp_path / "fw.bin").write_bytes(image)
    manifest = Manifest("vehicle-controller:vc", "vh-2.0.0", len(image),
                        hashlib.sha256(image).digest(), (tmp_path / "fw.bin").as_uri())
    fetched = await fetch_image(manifest.url, manifest.size)
    verify_image(fetched, manifest)
    assert fetched == image


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
async def test_bad_images_are_refused(
    tmp_path: Path, url: str, size: int, digest: bytes, state: FirmwareState
) -> None:
    (tmp_path / "fw").write_bytes(b"0123456789")
    full = "ftp://example.com/fw" if url == "ftp" else (tmp_path / url).as_uri()
    manifest = Manifest("vehicle-controller:vc", "v", size, digest, full)
    with pytest.raises(FirmwareError) as failed:
        verify_image(await fetch_image(manifest.url, manifest.size), manifest)
    assert failed.value.state is state
    assert failed.value.reject_reason in (RejectReason.MALFORMED, RejectReason.HARDWARE_FAULT)
