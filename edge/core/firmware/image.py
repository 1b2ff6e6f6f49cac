"""What a firmware image is for the reference agents (SPEC §13.6).

An image is a tar archive (POSIX ustar, optionally gzip-compressed) holding
``kickstand-image.json`` — ``{"target": …, "version": …}``, and for simulated devices
``"self_check": "pass" | "fail"`` and ``"self_check_fails": [device ids]`` (those devices
fail, the others pass: one campaign's image with a fault on a few of its devices) — plus the
agent's files. A slot unpacks it under
``<slot>/root/``; the bootloader step then runs the agent from there. The simulated
devices' images are the same archives with the JSON file only (and padding, for size).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

from kickstand.edge.core.firmware.errors import FirmwareError
from kickstand.protocol.v1.enums import FirmwareState, RejectReason

INFO_NAME = "kickstand-image.json"
MAX_INFO_BYTES = 4096
#: What an image may unpack to: a compressed archive of a few KiB can hold gigabytes
#: (a "tar bomb") and a slot's flash is finite; the manifest's size caps only the download.
MAX_UNPACKED_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ImageInfo:
    target: str
    version: str
    self_check: str = "pass"  # simulated devices: "fail" makes the new slot fail its check
    self_check_fails: tuple[str, ...] = ()  # simulated devices failing it (the others pass)

    def self_check_problem(self, device_id: str) -> str:
        """The simulated self-check's outcome on ``device_id``: "" passes."""
        if self.self_check != "pass" or device_id in self.self_check_fails:
            return f"image {self.version} fails its self-check on {device_id}"
        return ""


def build_image(
    target: str,
    version: str,
    files: dict[str, bytes] | None = None,
    *,
    self_check: str = "pass",
    self_check_fails: tuple[str, ...] = (),
    pad_to: int = 0,
) -> bytes:
    """An image archive for ``target`` at ``version`` with ``files`` (path → bytes); at
    least ``pad_to`` bytes long (a padding file), for transfer-size tests."""
    info: dict[str, object] = {"target": target, "version": version, "self_check": self_check}
    if self_check_fails:
        info["self_check_fails"] = list(self_check_fails)
    members = {INFO_NAME: json.dumps(info, sort_keys=True).encode(), **(files or {})}
    import tarfile  # see unpack

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members.items():
            entry = tarfile.TarInfo(name)
            entry.size = len(data)
            entry.mtime = 0  # the same inputs give the same image (and digest)
            tar.addfile(entry, io.BytesIO(data))
        missing = pad_to - out.tell() - 2 * tarfile.BLOCKSIZE - tarfile.RECORDSIZE
        if missing > 0:
            entry = tarfile.TarInfo("padding.bin")
            entry.size = missing
            entry.mtime = 0
            tar.addfile(entry, io.BytesIO(bytes(missing)))
    return out.getvalue()


def _bad(reason: str) -> FirmwareError:
    return FirmwareError(reason, FirmwareState.INSTALL_FAILED, RejectReason.MALFORMED)


def unpack(image: Path, dest: Path, *, max_bytes: int = MAX_UNPACKED_BYTES) -> ImageInfo:
    """Unpack ``image`` into ``dest`` (which must not exist yet) and return its info.
    Members that would land outside ``dest`` (absolute paths, ``..``, links out, devices)
    are refused by tarfile's ``data`` filter, an archive unpacking to more than
    ``max_bytes`` before a byte is written: FirmwareError INSTALL_FAILED."""
    import tarfile  # only an update pays for it (with bz2, lzma): ~0.4 MB of an idle station

    try:
        with tarfile.open(image, mode="r:*") as tar:
            total = sum(m.size for m in tar.getmembers())  # reads headers, writes nothing
            if total > max_bytes:
                raise _bad(f"image unpacks to {total} bytes, over {max_bytes}")
            member = tar.getmember(INFO_NAME)
            if member.size > MAX_INFO_BYTES:
                raise _bad(f"{INFO_NAME} of {member.size} bytes")
            handle = tar.extractfile(member)
            if handle is None:
                raise _bad(f"{INFO_NAME} is not a file")
            info = _info(handle.read())
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, KeyError, OSError, ValueError) as exc:
        raise _bad(f"image archive: {exc}") from None
    return info


def read_info(root: Path) -> ImageInfo:
    """The info of an unpacked image (a slot's ``root``)."""
    try:
        return _info((root / INFO_NAME).read_bytes())
    except OSError as exc:
        raise _bad(f"{root / INFO_NAME}: {exc}") from None


def _info(data: bytes) -> ImageInfo:
    try:
        raw = json.loads(data)
        check = str(raw.get("self_check", "pass"))
        fails = raw.get("self_check_fails", [])
        if not isinstance(fails, list):
            raise TypeError("self_check_fails is not a list")
        info = ImageInfo(str(raw["target"]), str(raw["version"]), check,
                         tuple(str(d) for d in fails))
    except (ValueError, KeyError, TypeError) as exc:
        raise _bad(f"{INFO_NAME}: {exc}") from None
    return info
