"""Property tests: round trips of random valid messages; random and mutated bytes never
escape as anything but a typed DecodeError."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kickstand.protocol import signing
from kickstand.protocol.errors import CommandRejected, DecodeError
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import codec, schema
from kickstand.protocol.v1 import messages as m
from tests.protocol.strategies import commands, up_messages

UP = [
    Channel.BIRTH,
    Channel.DEATH,
    Channel.HEARTBEAT,
    Channel.STATUS,
    Channel.EVENT,
    Channel.TELEMETRY,
    Channel.RESULT,
]
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(up_messages())
def test_round_trip(msg: m.UpMessage) -> None:
    data = codec.encode_up(msg.stamp, msg.body)
    assert len(data) <= codec.MAX_SIZE[codec.channel_of(msg.body)]
    assert codec.decode_up(codec.channel_of(msg.body), data) == msg


@FAST
@given(st.sampled_from(UP), st.binary(max_size=600))
def test_random_bytes_only_raise_decode_error(channel: Channel, data: bytes) -> None:
    try:
        codec.decode_up(channel, data)
    except DecodeError as exc:
        assert exc.reason


@FAST
@given(up_messages(), st.data())
def test_mutated_frames_decode_or_raise_decode_error(msg: m.UpMessage, data: st.DataObject) -> None:
    raw = bytearray(codec.encode_up(msg.stamp, msg.body))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "dup"]))
        pos = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del raw[pos:]
        elif op == "insert":
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        elif op == "dup":
            raw += raw[pos:]
    channel = data.draw(st.sampled_from(UP))
    try:
        decoded = codec.decode_up(channel, bytes(raw))
    except DecodeError:
        return
    # Whatever decodes is a well-typed message that re-encodes.
    codec.encode_up(decoded.stamp, decoded.body)


@FAST
@given(commands)
def test_signed_commands_round_trip_and_tampering_is_refused(command: m.CommandBody) -> None:
    signer = _SIGNER
    now = int(time.time() * 1000)
    env = m.CommandEnvelope(b"\x01" * 16, "st-0001", now, now + 30_000, command)
    blob = signer.sign(env)
    verifier = signing.CommandVerifier(
        "st-0001", {signer.kid: signer.public_key}, signing.MemoryReplayGuard()
    )
    assert verifier.verify(blob) == env
    tampered = bytearray(blob)
    tampered[len(blob) // 2] ^= 0x40
    try:
        signing.CommandVerifier(
            "st-0001", {signer.kid: signer.public_key}, signing.MemoryReplayGuard()
        ).verify(bytes(tampered))
    except CommandRejected:
        return
    raise AssertionError("a tampered command verified")


@FAST
@given(st.binary(max_size=300))
def test_random_command_bytes_are_refused_not_crashing(data: bytes) -> None:
    verifier = signing.CommandVerifier(
        "st-0001", {_SIGNER.kid: _SIGNER.public_key}, signing.MemoryReplayGuard()
    )
    try:
        verifier.verify(data)
    except CommandRejected as exc:
        assert exc.reject_reason


_SIGNER = signing.CommandSigner(signing.generate_private_key())


@FAST
@given(up_messages())
def test_everything_the_codec_emits_matches_the_cddl(msg: m.UpMessage) -> None:
    schema.validate(codec.channel_of(msg.body), codec.encode_up(msg.stamp, msg.body))
