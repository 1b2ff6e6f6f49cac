"""The protocol's test vectors on the device side: boot and time replies decode, and every
signed command verifies through the agent's own verifier (its settings, device clock and
on-disk replay guard) — and is refused as a replay after a restart."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from kickstand.edge.core.clock import DeviceClock
from kickstand.edge.core.config import EdgeSettings
from kickstand.edge.core.replay import SqliteReplayGuard
from kickstand.protocol.errors import CommandRejected
from kickstand.protocol.jsonform import load_vector_keys, load_vectors, to_jsonable
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1.enums import RejectReason

VECTORS = load_vectors()
KEYS = load_vector_keys()


@pytest.mark.parametrize(
    "vec", [v for v in VECTORS if v["channel"] in ("boot", "time", "ack")], ids=lambda v: v["name"]
)
def test_down_vectors(vec: dict[str, Any]) -> None:
    data = bytes.fromhex(vec["hex"])
    if vec["valid"]:
        assert to_jsonable(codec.decode_down(Channel(vec["channel"]), data)) == vec["decoded"]
    else:
        with pytest.raises(Exception) as info:
            codec.decode_down(Channel(vec["channel"]), data)
        assert getattr(info.value, "code", None) == vec["error"]


@pytest.mark.parametrize(
    "vec", [v for v in VECTORS if v["channel"] == "cmd" and v["valid"]], ids=lambda v: v["name"]
)
def test_command_vectors_verify_on_the_device_and_never_replay(
    vec: dict[str, Any], tmp_path: Path
) -> None:
    settings = EdgeSettings(
        device_id=KEYS["device_id"], state_dir=tmp_path, command_keys=[KEYS["public_hex"]]
    )
    at = int(vec["verify_at_ms"])
    clock = DeviceClock(offset_ms=at - time.time_ns() // 1_000_000)
    guard_path = tmp_path / "replay.sqlite3"
    envelope = settings.verifier(clock, SqliteReplayGuard(guard_path, clock=clock.now_ms)).verify(
        bytes.fromhex(vec["hex"])
    )
    assert to_jsonable(envelope) == vec["decoded"]
    # A reboot: a new guard on the same file still knows the command id.
    again = settings.verifier(clock, SqliteReplayGuard(guard_path, clock=clock.now_ms))
    with pytest.raises(CommandRejected) as info:
        again.verify(bytes.fromhex(vec["hex"]))
    assert info.value.reject_reason == RejectReason.REPLAYED


@pytest.mark.parametrize(
    "vec", [v for v in VECTORS if v["channel"] == "cmd" and not v["valid"]], ids=lambda v: v["name"]
)
def test_invalid_command_vectors_are_refused_malformed_on_the_device(
    vec: dict[str, Any], tmp_path: Path
) -> None:
    """Signed correctly, but the payload repeats a key, has bytes after it, or holds a value
    out of range: the agent's verifier refuses it before anything moves."""
    settings = EdgeSettings(
        device_id=KEYS["device_id"], state_dir=tmp_path, command_keys=[KEYS["public_hex"]]
    )
    clock = DeviceClock(offset_ms=int(vec["verify_at_ms"]) - time.time_ns() // 1_000_000)
    guard = SqliteReplayGuard(tmp_path / "replay.sqlite3", clock=clock.now_ms)
    verifier = settings.verifier(clock, guard)
    with pytest.raises(CommandRejected) as info:
        verifier.verify(bytes.fromhex(vec["hex"]))
    assert info.value.reject_reason == RejectReason.MALFORMED
