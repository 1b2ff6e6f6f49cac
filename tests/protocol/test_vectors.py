"""The v1 test vectors: every implementation (ours, a firmware's) must agree with them."""

from __future__ import annotations

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kickstand.protocol import signing
from kickstand.protocol.errors import CommandRejected, DecodeError, SchemaError
from kickstand.protocol.jsonform import (
    load_vector_file,
    load_vector_keys,
    load_vectors,
    to_jsonable,
)
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import codec, schema
from kickstand.protocol.v1.enums import RejectReason
from kickstand.protocol.v1.wellformed import loads_strict

VECTORS = load_vectors()
SPOTBUS = load_vector_file()["spotbus"]
UP = {
    c.value
    for c in (
        Channel.BIRTH,
        Channel.DEATH,
        Channel.HEARTBEAT,
        Channel.STATUS,
        Channel.EVENT,
        Channel.TELEMETRY,
        Channel.RESULT,
    )
}


DOWN = {"boot", "time", "ack", "badge"}


def by_kind(valid: bool, channels: set[str]) -> list[dict[str, object]]:
    return [v for v in VECTORS if v["valid"] is valid and v["channel"] in channels]


def test_vectors_cover_every_channel() -> None:
    assert {v["channel"] for v in VECTORS} == {c.value for c in Channel}
    assert len(by_kind(False, UP)) >= 20


def test_invalid_vectors_cover_every_error_class_and_rule() -> None:
    invalid = [v for v in VECTORS if not v["valid"]]
    assert {v["error"] for v in invalid} == {"malformed", "schema", "unknown-type", "refused"}
    assert set(load_vector_file()["classes"]) == {
        *(v["error"] for v in invalid),
        *(f["error"] for f in SPOTBUS if not f["valid"]),
    }
    names = {str(v["name"]) for v in invalid}
    for rule in (
        "boot-id-zero",
        "ts-ms-2-pow-63",
        "status-fault-nul",
        "duplicate-key",
        "trailing-bytes",
        "cmd-duplicate-key",
        "cmd-trailing-bytes",
    ):
        assert rule in names
    # Every refusal of SPEC §7.2 but REPLAYED (a second delivery of any valid command) has
    # its vector.
    rejects = {v["reject"] for v in invalid if v["channel"] == "cmd"}
    assert rejects == {
        r.name
        for r in (
            RejectReason.MALFORMED,
            RejectReason.BAD_SIGNATURE,
            RejectReason.UNKNOWN_KEY,
            RejectReason.NOT_SUPPORTED,
            RejectReason.WRONG_DEVICE,
            RejectReason.EXPIRED,
            RejectReason.NOT_YET_VALID,
        )
    }


def test_every_valid_vector_says_whether_it_round_trips() -> None:
    valid = [v for v in VECTORS if v["valid"]]
    assert all(type(v["round_trip"]) is bool for v in valid)
    decode_only = {v["name"] for v in valid if not v["round_trip"]}
    assert decode_only == {"status-indefinite-lengths", "status-unknown-key-ignored"}
    assert all(v["note"] for v in valid if not v["round_trip"])


@pytest.mark.parametrize("vec", by_kind(True, UP), ids=lambda v: str(v["name"]))
def test_valid_up_vector_decodes_and_reencodes_identically(vec: dict[str, object]) -> None:
    data = bytes.fromhex(str(vec["hex"]))
    msg = codec.decode_up(Channel(vec["channel"]), data)
    assert to_jsonable(msg) == vec["decoded"]
    if vec["round_trip"]:
        assert codec.encode_up(msg.stamp, msg.body) == data
    else:  # decode-only: the canonical encoding of what it says is other bytes
        again = codec.encode_up(msg.stamp, msg.body)
        assert again != data
        assert codec.decode_up(Channel(vec["channel"]), again) == msg


@pytest.mark.parametrize("vec", by_kind(False, UP | DOWN), ids=lambda v: str(v["name"]))
def test_invalid_vector_raises_the_named_error(vec: dict[str, object]) -> None:
    data = bytes.fromhex(str(vec["hex"]))
    channel = Channel(vec["channel"])
    with pytest.raises(DecodeError) as info:
        if channel.value in UP:
            codec.decode_up(channel, data)
        else:
            codec.decode_down(channel, data)
    assert info.value.code == vec["error"], str(info.value)
    assert str(info.value)  # a readable reason


@pytest.mark.parametrize("vec", by_kind(True, DOWN), ids=lambda v: str(v["name"]))
def test_down_vectors(vec: dict[str, object]) -> None:
    data = bytes.fromhex(str(vec["hex"]))
    msg = codec.decode_down(Channel(vec["channel"]), data)
    assert to_jsonable(msg) == vec["decoded"]
    assert codec.encode_down(msg) == data


def _verifier(at_ms: int) -> signing.CommandVerifier:
    keys = load_vector_keys()
    return signing.CommandVerifier(
        keys["device_id"],
        {bytes.fromhex(keys["kid_hex"]): bytes.fromhex(keys["public_hex"])},
        signing.MemoryReplayGuard(lambda: at_ms),
        clock=lambda: at_ms,
    )


@pytest.mark.parametrize("vec", by_kind(True, {"cmd"}), ids=lambda v: str(v["name"]))
def test_command_vectors_verify_and_are_deterministic(vec: dict[str, object]) -> None:
    data = bytes.fromhex(str(vec["hex"]))
    at = int(str(vec["verify_at_ms"]))
    envelope = _verifier(at).verify(data)
    assert to_jsonable(envelope) == vec["decoded"]
    seed = bytes.fromhex(load_vector_keys()["ed25519_seed_hex"])
    assert signing.CommandSigner(Ed25519PrivateKey.from_private_bytes(seed)).sign(envelope) == data


def _command_class(data: bytes) -> str:
    """The vector class of a command's bytes: the COSE message's, else its payload's."""
    try:
        item = loads_strict(data)
    except Exception:
        return "malformed"
    if not (
        isinstance(item, cbor2.CBORTag)
        and item.tag == 18
        and type(item.value) is list
        and len(item.value) == 4
    ):
        return "schema"
    try:
        codec.decode_command_payload(item.value[2])
    except DecodeError as exc:
        return exc.code
    return "refused"


@pytest.mark.parametrize("vec", by_kind(False, {"cmd"}), ids=lambda v: str(v["name"]))
def test_invalid_command_vectors_are_refused_with_their_reason(vec: dict[str, object]) -> None:
    data = bytes.fromhex(str(vec["hex"]))
    assert _command_class(data) == vec["error"]
    with pytest.raises(CommandRejected) as info:
        _verifier(int(str(vec["verify_at_ms"]))).verify(data)
    assert RejectReason(info.value.reject_reason).name == vec["reject"], str(info.value)


def test_command_vector_refusals() -> None:
    vec = next(v for v in VECTORS if v["name"] == "cmd-unlock")
    data = bytes.fromhex(str(vec["hex"]))
    at = int(str(vec["verify_at_ms"]))
    cases = {
        RejectReason.BAD_SIGNATURE: (_verifier(at), data[:-1] + bytes([data[-1] ^ 0x01])),
        RejectReason.EXPIRED: (_verifier(at + 60_000), data),
        RejectReason.NOT_YET_VALID: (_verifier(at - 120_000), data),
        RejectReason.MALFORMED: (_verifier(at), data[:40]),
    }
    for reason, (verifier, blob) in cases.items():
        with pytest.raises(CommandRejected) as info:
            verifier.verify(blob)
        assert info.value.reject_reason == reason, str(info.value)
    replay = _verifier(at)
    replay.verify(data)
    with pytest.raises(CommandRejected) as info:
        replay.verify(data)
    assert info.value.reject_reason == RejectReason.REPLAYED


# The CDDL files are the published contract: what the codec emits must validate against them.


@pytest.mark.parametrize(
    "vec",
    [v for v in VECTORS if v["valid"] and v["channel"] != "cmd"],
    ids=lambda v: str(v["name"]),
)
def test_valid_vectors_match_the_cddl(vec: dict[str, object]) -> None:
    schema.validate(Channel(vec["channel"]), bytes.fromhex(str(vec["hex"])))


@pytest.mark.parametrize("vec", by_kind(True, {"cmd"}), ids=lambda v: str(v["name"]))
def test_signed_commands_match_the_cddl(vec: dict[str, object]) -> None:
    schema.validate(Channel.COMMAND, bytes.fromhex(str(vec["hex"])))


def test_spec_tables_match_the_codec() -> None:
    from kickstand.protocol import spec_tables

    text = spec_tables.SPEC.read_text()
    assert spec_tables.spliced(text) == text, (
        "protocol/SPEC.md is out of date: run python -m kickstand.protocol.spec_tables --write"
    )


def test_spec_worked_example_is_the_vector() -> None:
    from kickstand.protocol import spec_tables

    vec = next(v for v in VECTORS if v["name"] == "status-spot-short")
    lines = spec_tables.SPEC.read_text().split("Example — a spot status", 1)[1].split("```")[1]
    hex_in_spec = "".join(
        line.split()[0]
        + (
            line.split()[1]
            if len(line.split()) > 1 and all(c in "0123456789abcdef" for c in line.split()[1])
            else ""
        )
        for line in lines.strip().splitlines()
    )
    assert hex_in_spec == vec["hex"]


@pytest.mark.parametrize(
    "name",
    [
        "boot-id-zero",
        "ts-ms-2-pow-63",
        "ts-ms-bignum-2-pow-64",
        "telemetry-energy-2-pow-63",
        "birth-config-version-2-pow-31",
        "event-serial-17-utf8-bytes",
        "boot-boot-id-zero",
        "ack-boot-id-zero",
        "time-server-time-2-pow-63",
    ],
)
def test_the_cddl_states_the_storable_ranges_too(name: str) -> None:
    vec = next(v for v in VECTORS if v["name"] == name)
    with pytest.raises(SchemaError):
        schema.validate(Channel(vec["channel"]), bytes.fromhex(str(vec["hex"])))


def test_the_vectors_file_is_what_the_generator_writes() -> None:
    """A codec change that alters the bytes must show up as a diff of the committed file."""
    from kickstand.protocol.jsonform import vectors_path
    from tests.protocol import make_vectors

    assert vectors_path().read_text() == make_vectors.render(), (
        "protocol/vectors/v1.json is stale: run .venv/bin/python tests/protocol/make_vectors.py"
    )
