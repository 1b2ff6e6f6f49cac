"""Controller firmware update: fetch (http, https, file), verify size and SHA-256, stage.

The staged image is named by its digest under ``<state_dir>/firmware/``; the
bootloader picks it up at the next start (the agent restarts right after), and
the birth then reports the new version. Nothing is staged that did not verify,
so a partial or corrupt download can never brick the controller.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from kickstand.edge.vehicle.errors import FirmwareError
from kickstand.protocol.firmware import Manifest
from kickstand.protocol.v1.enums import FirmwareState, RejectReason

MAX_FIRMWARE_BYTES = 32 * 1024 * 1024
SCHEMES = ("http", "https", "file")


def _download_failed(reason: str) -> FirmwareError:
    return FirmwareError(reason, FirmwareState.DOWNLOAD_FAILED, RejectReason.HARDWARE_FAULT)


async def fetch_firmware(url: str, size: int) -> bytes:
    """The image at ``url``, refusing anything larger than ``size``; FirmwareError if not."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        path = Path(parts.path)
        try:
            if path.stat().st_size > size:
                raise _download_failed(f"{path} is larger than {size} bytes")
            return await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise _download_failed(f"cannot read {path}: {exc}") from None
    if parts.scheme not in SCHEMES:
        raise _download_failed(f"unsupported url scheme {parts.scheme!r}")
    import httpx

    try:
        async with httpx.AsyncClient(timeout=30.0) as client, client.stream("GET", url) as resp:
            if resp.status_code != 200:
                raise _download_failed(f"GET {url}: HTTP {resp.status_code}")
            data = bytearray()
            async for chunk in resp.aiter_bytes():
                data.extend(chunk)
                if len(data) > size:
                    raise _download_failed(f"{url} is larger than {size} bytes")
            return bytes(data)
    except httpx.HTTPError as exc:
        raise _download_failed(f"GET {url}: {exc}") from None


async def stage_firmware(
    cmd: Manifest, state_dir: Path, on_state: Callable[[FirmwareState], None]
) -> Path:
    """Download, verify and stage ``cmd``'s image, reporting each state; FirmwareError if not."""
    on_state(FirmwareState.DOWNLOADING)
    image = await fetch_firmware(cmd.url, cmd.size)
    on_state(FirmwareState.DOWNLOADED)
    on_state(FirmwareState.VERIFYING)
    digest = hashlib.sha256(image).digest()
    if len(image) != cmd.size or digest != cmd.sha256:
        raise FirmwareError(
            "size or sha256 mismatch", FirmwareState.VERIFY_FAILED, RejectReason.MALFORMED
        )
    on_state(FirmwareState.VERIFIED)
    on_state(FirmwareState.INSTALLING)
    target = state_dir / "firmware" / f"{digest.hex()}.bin"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".part")
        await asyncio.to_thread(tmp.write_bytes, image)
        tmp.replace(target)
    except OSError as exc:
        raise FirmwareError(
            f"install: {exc}", FirmwareState.INSTALL_FAILED, RejectReason.HARDWARE_FAULT
        ) from None
    return target
