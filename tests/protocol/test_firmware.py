"""Signed firmware manifests (SPEC §13): sign, verify, refuse; the vectors and the CDDL."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import cbor2
import pycddl
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kickstand.protocol import firmware
from kickstand.protocol.errors import EncodeError, ManifestError
from kickstand.protocol.jsonform import load_vector_file, to_jsonable
from kickstand.protocol.signing import public_key_bytes
from kickstand.protocol.v1.enums import RejectReason

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(40, 72)))
PUBLIC = public_key_bytes(KEY)
IMAGE = b"kickstand" * 100
MANIFEST = firmware.Manifest(
    target="vehicle-controller:vc1",
    version="1.10.0",
    size=len(IMAGE),
    sha256=hashlib.sha256(IMAGE).digest(),
    url="http://127.0.0.1:1/v1/firmware/images/" + hashlib.sha256(IMAGE).hexdigest(),
    min_hardware="2.0",
    issued_at=1_765_000_000,
)
FIRMWARE = load_vector_file()["firmware"]
SCHEMA = (Path(firmware.__file__).parent / "schema" / "firmware.cddl").read_text()


def test_signed_manifest_verifies_to_the_same_manifest() -> None:
    signed = firmware.sign_manifest(KEY, MANIFEST)
    assert firmware.verify_manifest(signed, [bytes(32 * [9]), PUBLIC]) == MANIFEST
    body, signature, kid = cbor2.loads(signed)
    assert kid == hashlib.sha256(PUBLIC).digest()[:8] and len(signature) == 64
    assert body == cbor2.dumps(cbor2.loads(body), canonical=True)


@pytest.mark.parametrize(
    ("mutate", "problem", "reject"),
    [
        (lambda s: s[:-20] + bytes(20), "malformed", RejectReason.MALFORMED),
        (lambda s: s.replace(b"1.10.0", b"9.10.0"), "bad-signature", RejectReason.BAD_SIGNATURE),
        (lambda s: s + b"\x00", "malformed", RejectReason.MALFORMED),
        (lambda s: s + bytes(2000), "too-large", RejectReason.MALFORMED),
    ],
)
def test_tampered_manifests_are_refused(mutate, problem: str, reject: RejectReason) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ManifestError) as info:
        firmware.verify_manifest(mutate(firmware.sign_manifest(KEY, MANIFEST)), [PUBLIC])
    assert (info.value.problem, info.value.reject_reason) == (problem, reject)


def test_a_key_the_device_does_not_hold_is_unknown() -> None:
    other = Ed25519PrivateKey.generate()
    with pytest.raises(ManifestError) as info:
        firmware.verify_manifest(firmware.sign_manifest(other, MANIFEST), [PUBLIC])
    assert info.value.problem == "unknown-key"
    assert info.value.reject_reason == RejectReason.UNKNOWN_KEY


@pytest.mark.parametrize(
    "change",
    [
        {"target": "toaster"},
        {"target": "spot-board:"},
        {"size": 0},
        {"size": firmware.MAX_IMAGE_SIZE + 1},
        {"sha256": bytes(31)},
        {"url": ""},
        {"version": "x" * 33},
    ],
)
def test_a_manifest_out_of_range_does_not_encode(change: dict[str, object]) -> None:
    with pytest.raises(EncodeError):
        firmware.encode_manifest(dataclasses.replace(MANIFEST, **change))  # type: ignore[arg-type]


def test_unknown_keys_are_ignored_but_a_missing_one_refuses() -> None:
    wire = dict(cbor2.loads(firmware.encode_manifest(MANIFEST)))
    wire[99] = "later"
    assert firmware.decode_manifest(cbor2.dumps(wire, canonical=True)) == MANIFEST
    del wire[7]
    with pytest.raises(ManifestError, match="min_bootloader"):
        firmware.decode_manifest(cbor2.dumps(wire, canonical=True))


@pytest.mark.parametrize(
    ("have", "need", "ok"),
    [("1.10", "1.9", True), ("1.9", "1.10", False), ("2", "", True), ("2.0", "2.0", True),
     ("2.0-rc1", "2.0", True), ("1", "1.0", False)],
)
def test_versions_compare_part_by_part(have: str, need: str, ok: bool) -> None:
    assert firmware.version_at_least(have, need) is ok


def test_targets() -> None:
    assert firmware.valid_target("station-mainboard")
    assert firmware.target_of("bms", "b-1") == "bms:b-1"
    assert not firmware.valid_target("spot-board:a b")
    assert not firmware.valid_target("station-mainboard:x")


def test_the_vectors_verify_with_their_key() -> None:
    public = bytes.fromhex(FIRMWARE["key"]["public_hex"])
    assert firmware.firmware_key_id(public).hex() == FIRMWARE["key"]["key_id_hex"]
    for vec in FIRMWARE["manifests"]:
        data = bytes.fromhex(vec["hex"])
        if vec["valid"]:
            manifest = firmware.verify_manifest(data, [public])
            assert to_jsonable(manifest) == vec["decoded"]
        else:
            with pytest.raises(ManifestError) as info:
                firmware.verify_manifest(data, [public])
            assert info.value.problem == vec["problem"], vec["name"]
            assert RejectReason(info.value.reject_reason).name == vec["reject"]


def test_what_we_sign_matches_the_cddl() -> None:
    signed = pycddl.Schema(SCHEMA)
    manifest = pycddl.Schema("root = manifest\n" + SCHEMA)  # the first rule is the root
    datas = [firmware.sign_manifest(KEY, MANIFEST)]
    datas += [bytes.fromhex(v["hex"]) for v in FIRMWARE["manifests"] if v["valid"]]
    for data in datas:
        signed.validate_cbor(data)
        manifest.validate_cbor(cbor2.loads(data)[0])
    with pytest.raises(pycddl.ValidationError):
        manifest.validate_cbor(cbor2.dumps({1: "station-mainboard"}))
