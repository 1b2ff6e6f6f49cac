"""A manifest that is tampered, signed by another key, or for another part is refused before
anything is downloaded or written (SPEC §13.2)."""

from __future__ import annotations

from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kickstand.edge.core.errors import ConfigError
from kickstand.edge.core.firmware.errors import ManifestRefused
from kickstand.edge.core.firmware.image import build_image
from kickstand.edge.core.firmware.keys import firmware_keys
from kickstand.protocol.v1.enums import RejectReason
from kickstand.simulators.firmware import ImageServer, public_hex, signed_update
from kickstand.simulators.firmware_device import SlotDevice

KEY = bytes.fromhex(public_hex())
TARGET = "vehicle-controller:vc2"


def _tampered(signed: bytes) -> bytes:
    body, signature, kid = cbor2.loads(signed)
    return cbor2.dumps([body.replace(b"2.0.0", b"6.6.6"), signature, kid])


@pytest.mark.parametrize(
    ("case", "reject"),
    [
        ("tampered", RejectReason.BAD_SIGNATURE),
        ("other-key", RejectReason.UNKNOWN_KEY),
        ("wrong-target", RejectReason.NOT_SUPPORTED),
        ("newer-hardware", RejectReason.NOT_SUPPORTED),
        ("newer-bootloader", RejectReason.NOT_SUPPORTED),
        ("ftp", RejectReason.NOT_SUPPORTED),
        ("garbage", RejectReason.MALFORMED),
    ],
)
async def test_refused_before_anything_is_written(
    tmp_path: Path, server: ImageServer, case: str, reject: RejectReason
) -> None:
    image = build_image(TARGET, "2.0.0")
    url = server.add(image)
    fields: dict[str, str] = {}
    key = None
    target = TARGET
    if case == "other-key":
        key = Ed25519PrivateKey.generate()
    elif case == "wrong-target":
        target = "vehicle-controller:vc9"
    elif case == "newer-hardware":
        fields["min_hardware"] = "3.1"
    elif case == "newer-bootloader":
        fields["min_bootloader"] = "10"
    elif case == "ftp":
        url = "ftp://127.0.0.1/image"
    signed = signed_update(image, "2.0.0", url, target, key=key, **fields).manifest
    if case == "tampered":
        signed = _tampered(signed)
    elif case == "garbage":
        signed = b"\x83\x41"
    state = tmp_path / "state"
    device = SlotDevice(state, target=TARGET, hardware="3.0", bootloader="9", keys=[KEY])
    before = sorted(p.relative_to(state) for p in state.rglob("*"))
    with pytest.raises(ManifestRefused) as refused:
        await device.update(signed)
    assert refused.value.reject_reason is reject, refused.value
    assert sorted(p.relative_to(state) for p in state.rglob("*")) == before  # nothing written
    assert server.requests == []  # nothing downloaded
    assert device.statuses() == []


def test_firmware_keys_from_hex_and_files(tmp_path: Path) -> None:
    (tmp_path / "keys.txt").write_text(f"# installation key\n{public_hex()}\n")
    assert firmware_keys([public_hex(), str(tmp_path / "keys.txt")]) == [KEY, KEY]
    with pytest.raises(ConfigError):
        firmware_keys([str(tmp_path / "missing")])
    with pytest.raises(ConfigError):
        firmware_keys(["ab" * 31 + "zz"])
