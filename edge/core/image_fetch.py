"""The one way an agent gets a firmware image today: streamed, capped, verified.

Both agents reach it through :meth:`kickstand.edge.core.agent.EdgeAgent._firmware` only:
this is the seam the firmware library (:mod:`kickstand.edge.core.firmware`: range
downloads with resume, A/B slots) replaces. The body is the vehicle's former
``fetch_firmware`` (streamed with a size cap) — the station's downloaded the whole
response and truncated it afterwards, holding any size in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from urllib.parse import urlsplit

from kickstand.edge.core.firmware.errors import FirmwareError
from kickstand.protocol.firmware import Manifest
from kickstand.protocol.v1.enums import FirmwareState, RejectReason

SCHEMES = ("http", "https", "file")


def _download_failed(reason: str) -> FirmwareError:
    return FirmwareError(reason, FirmwareState.DOWNLOAD_FAILED, RejectReason.HARDWARE_FAULT)


async def fetch_image(url: str, size: int) -> bytes:
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
    import httpx  # only devices that update need it in memory

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


def verify_image(image: bytes, manifest: Manifest) -> None:
    """FirmwareError VERIFY_FAILED unless ``image`` is the manifest's (size and SHA-256)."""
    if len(image) != manifest.size or hashlib.sha256(image).digest() != manifest.sha256:
        raise FirmwareError(
            "size or sha256 mismatch", FirmwareState.VERIFY_FAILED, RejectReason.MALFORMED
        )
