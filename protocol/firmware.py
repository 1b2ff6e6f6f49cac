"""Firmware manifests (SPEC §13): what an image is, signed with the installation's firmware key.

The cloud signs a :class:`Manifest` (target, version, size, SHA-256, where the image is
served, the least hardware and bootloader it runs on) with the installation's **firmware
signing key**, an Ed25519 key apart from the command key, so that a leaked command key
cannot install software. A device verifies the manifest against the firmware public keys it
was provisioned with before it downloads or writes anything, then checks the image's size
and digest against the manifest while streaming and again before installing.

Wire form (CBOR, canonical encoding: RFC 8949 §4.2.1 as cbor2's ``canonical=True``)::

    SignedManifest = [manifest: bstr, signature: bstr .size 64, key_id: bstr .size 8]
    signature = Ed25519(firmware key, b"kickstand-firmware-v1" || manifest)
    key_id    = SHA-256(raw public key)[:8]

The context prefix keeps a firmware signature from ever being read as another message's.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kickstand.protocol.errors import EncodeError, ManifestError, SchemaError
from kickstand.protocol.v1.codec import (
    MAX_IMAGE_SIZE,
    MAX_MANIFEST_BYTES,
    MAX_SIGNED_MANIFEST_BYTES,
)
from kickstand.protocol.v1.enums import RejectReason
from kickstand.protocol.v1.fields import U63, Bytes, FieldSpec, Text, UInt
from kickstand.protocol.v1.wellformed import NotOneItem, loads_strict

SIGNATURE_CONTEXT = b"kickstand-firmware-v1"
KEY_ID_SIZE = 8

STATION_MAINBOARD = "station-mainboard"
#: Targets with a model: ``<kind>:<model>``.
MODEL_KINDS = ("spot-board", "vehicle-controller", "bms")
_MODEL = re.compile(r"[A-Za-z0-9._-]{1,32}")


def valid_target(target: str) -> bool:
    """``station-mainboard``, or ``spot-board:<model>``, ``vehicle-controller:<model>``,
    ``bms:<model>`` with a model of 1..32 of ``A-Z a-z 0-9 . _ -``."""
    if target == STATION_MAINBOARD:
        return True
    kind, sep, model = target.partition(":")
    return bool(sep) and kind in MODEL_KINDS and _MODEL.fullmatch(model) is not None


def target_of(kind: str, model: str = "") -> str:
    """The target text of a device part: ``target_of("spot-board", "sb2")``."""
    target = kind if not model else f"{kind}:{model}"
    if not valid_target(target):
        raise EncodeError(f"{target!r} is not a firmware target")
    return target


@dataclass(frozen=True, slots=True)
class Manifest:
    target: str
    version: str
    size: int  # bytes of the image
    sha256: bytes
    url: str  # http(s) URL the image is served from (the cloud API's or any store's)
    min_hardware: str = ""  # "" = any
    min_bootloader: str = ""  # "" = any
    issued_at: int = 0  # unix seconds

    @property
    def sha256_hex(self) -> str:
        return self.sha256.hex()


def _fs(attr: str, key: int, conv: Any) -> FieldSpec:
    return FieldSpec(attr, key, conv, True)


#: Every key is required: a manifest is complete or refused (no default is signed by omission).
MANIFEST_FIELDS: tuple[FieldSpec, ...] = (
    _fs("target", 1, Text(64, 1)),
    _fs("version", 2, Text(32, 1)),
    _fs("size", 3, UInt(MAX_IMAGE_SIZE, 1)),
    _fs("sha256", 4, Bytes(32, 32)),
    _fs("url", 5, Text(512, 1)),
    _fs("min_hardware", 6, Text(32)),
    _fs("min_bootloader", 7, Text(32)),
    _fs("issued_at", 8, UInt(U63)),
)


def _malformed(reason: str, problem: str = "malformed") -> ManifestError:
    return ManifestError(reason, problem=problem, reject_reason=RejectReason.MALFORMED)


def encode_manifest(manifest: Manifest) -> bytes:
    """The manifest's canonical CBOR: the bytes that are signed."""
    if not valid_target(manifest.target):
        raise EncodeError(f"Manifest.target {manifest.target!r} is not a firmware target")
    out: dict[int, Any] = {}
    for spec in MANIFEST_FIELDS:
        try:
            out[spec.key] = spec.conv.encode(getattr(manifest, spec.attr))
        except EncodeError as exc:
            raise EncodeError(f"Manifest.{spec.attr}: {exc.reason}") from None
    data = cbor2.dumps(out, canonical=True)
    if len(data) > MAX_MANIFEST_BYTES:
        raise EncodeError(f"manifest of {len(data)} bytes is over {MAX_MANIFEST_BYTES}")
    return data


def decode_manifest(data: bytes) -> Manifest:
    """The Manifest of ``data`` (unsigned bytes); ManifestError if it is not one. Unknown keys
    are ignored (SPEC §8); the encoding must be canonical, so one manifest has one form."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise _malformed(f"manifest of {len(data)} bytes is over {MAX_MANIFEST_BYTES}", "too-large")
    try:
        wire = loads_strict(data)
    except NotOneItem as exc:
        raise _malformed(f"manifest is not one CBOR item: {exc}") from None
    except Exception as exc:  # cbor2 raises several types; all mean "not CBOR"
        raise _malformed(f"manifest is not CBOR: {exc}") from None
    if type(wire) is not dict:
        raise _malformed("manifest is not a map")
    if cbor2.dumps(wire, canonical=True) != bytes(data):
        raise _malformed("manifest is not in canonical CBOR")
    kwargs: dict[str, Any] = {}
    for spec in MANIFEST_FIELDS:
        if spec.key not in wire:
            raise _malformed(f"manifest.{spec.attr} (key {spec.key}) is missing")
        try:
            kwargs[spec.attr] = spec.conv.decode(wire[spec.key], f"manifest.{spec.attr}")
        except SchemaError as exc:
            problem = "too-large" if spec.attr == "size" and type(wire[spec.key]) is int else ""
            raise _malformed(exc.reason, problem or "malformed") from None
    if not valid_target(kwargs["target"]):
        raise _malformed(f"manifest.target {kwargs['target']!r} is not a firmware target")
    return Manifest(**kwargs)


def firmware_key_id(public_key: bytes) -> bytes:
    """The 8-byte id of a raw Ed25519 public key: the first 8 bytes of its SHA-256."""
    return hashlib.sha256(public_key).digest()[:KEY_ID_SIZE]


def _raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def sign_manifest(private_key: Ed25519PrivateKey, manifest: Manifest) -> bytes:
    """The SignedManifest bytes of ``manifest`` (the cloud's side)."""
    body = encode_manifest(manifest)
    signature = private_key.sign(SIGNATURE_CONTEXT + body)
    return cbor2.dumps([body, signature, firmware_key_id(_raw_public(private_key))])


def verify_manifest(signed: bytes, public_keys: Iterable[bytes]) -> Manifest:
    """The Manifest of ``signed`` if one of ``public_keys`` (raw 32-byte Ed25519 keys) signed
    it; ManifestError otherwise. Checks in order: size, shape, key id, signature, then the
    manifest's own fields (only signed bytes are ever interpreted)."""
    if not isinstance(signed, bytes | bytearray):
        raise _malformed(f"signed manifest must be bytes, not {type(signed).__name__}")
    if len(signed) > MAX_SIGNED_MANIFEST_BYTES:
        raise _malformed(
            f"signed manifest of {len(signed)} bytes is over {MAX_SIGNED_MANIFEST_BYTES}",
            "too-large",
        )
    try:
        wire = loads_strict(bytes(signed))
    except Exception as exc:  # NotOneItem or any cbor2 error: not the array we need
        raise _malformed(f"signed manifest is not one CBOR item: {exc}") from None
    if (
        type(wire) is not list
        or len(wire) != 3
        or type(wire[0]) is not bytes
        or type(wire[1]) is not bytes
        or len(wire[1]) != 64
        or type(wire[2]) is not bytes
        or len(wire[2]) != KEY_ID_SIZE
    ):
        raise _malformed("expected [manifest bstr, signature bstr(64), key_id bstr(8)]")
    body, signature, kid = wire
    trusted = {firmware_key_id(bytes(k)): bytes(k) for k in public_keys}
    raw = trusted.get(kid)
    if raw is None:
        raise ManifestError(
            f"firmware key {kid.hex()} is not trusted",
            problem="unknown-key",
            reject_reason=RejectReason.UNKNOWN_KEY,
        )
    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(signature, SIGNATURE_CONTEXT + body)
    except InvalidSignature:
        raise ManifestError(
            "manifest signature does not verify",
            problem="bad-signature",
            reject_reason=RejectReason.BAD_SIGNATURE,
        ) from None
    return decode_manifest(body)


def _version_part(part: str) -> tuple[int, int, str]:
    return (0, int(part), "") if part.isdigit() else (1, 0, part)


def version_key(version: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key of a version text (SPEC §13.4): dot-separated parts, numbers as numbers
    (``1.10`` > ``1.9``), other parts as text after numbers."""
    return tuple(_version_part(p) for p in version.split("."))


def version_at_least(have: str, need: str) -> bool:
    """``need`` is "" (any) or ``have`` is ``need`` or later."""
    return not need or version_key(have) >= version_key(need)
