"""Manifest checks on the device: signature first, then "is this image for me".

Everything here runs before a byte is downloaded or written (SPEC §13.2): a tampered
manifest, one signed by a key the device does not trust, or one for another target or
newer hardware or bootloader, is refused with the RejectReason the command result carries.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from kickstand.edge.core.firmware.errors import ManifestRefused
from kickstand.protocol import firmware
from kickstand.protocol.errors import ManifestError
from kickstand.protocol.firmware import Manifest
from kickstand.protocol.v1.enums import RejectReason

SCHEMES = ("http", "https", "file")  # file://: the technician's rig and the tests


@dataclass(frozen=True, slots=True)
class DevicePart:
    """What a manifest must fit: the part's target (``spot-board:`` with no model takes
    any spot-board model, for a board whose model is not known yet), its hardware and
    bootloader versions ("" = not known: a manifest asking for a least one is refused)."""

    target: str
    hardware: str = ""
    bootloader: str = ""

    def accepts(self, target: str) -> bool:
        if self.target.endswith(":"):
            return target.startswith(self.target)
        return target == self.target


def check_manifest(signed: bytes, keys: Iterable[bytes], part: DevicePart) -> Manifest:
    """The verified Manifest of ``signed`` if it is for ``part``; ManifestRefused if not."""
    try:
        manifest = firmware.verify_manifest(signed, keys)
    except ManifestError as exc:
        raise ManifestRefused(RejectReason(exc.reject_reason), exc.reason) from None
    if not part.accepts(manifest.target):
        raise ManifestRefused(
            RejectReason.NOT_SUPPORTED, f"image for {manifest.target}, not {part.target}"
        )
    for what, have, need in (
        ("hardware", part.hardware, manifest.min_hardware),
        ("bootloader", part.bootloader, manifest.min_bootloader),
    ):
        if need and (not have or not firmware.version_at_least(have, need)):
            raise ManifestRefused(
                RejectReason.NOT_SUPPORTED, f"needs {what} {need}, this is {have or 'unknown'}"
            )
    if urlsplit(manifest.url).scheme not in SCHEMES:
        raise ManifestRefused(RejectReason.NOT_SUPPORTED, f"url scheme of {manifest.url[:60]}")
    return manifest
