from __future__ import annotations

import time
from pathlib import Path

import pytest

from kickstand.protocol import signing
from kickstand.protocol.errors import CommandRejected
from kickstand.protocol.v1 import messages as m
from kickstand.protocol.v1.enums import RejectReason


def _env(device: str = "st-0001", ttl_ms: int = 30_000) -> m.CommandEnvelope:
    now = int(time.time() * 1000)
    return m.CommandEnvelope(bytes(16), device, now, now + ttl_ms, m.Unlock(2))


def test_wrong_device_and_unknown_key_are_refused() -> None:
    signer = signing.CommandSigner(signing.generate_private_key())
    other = signing.CommandSigner(signing.generate_private_key())
    verifier = signing.CommandVerifier(
        "st-0001", {signer.kid: signer.public_key}, signing.MemoryReplayGuard()
    )
    with pytest.raises(CommandRejected) as info:
        verifier.verify(signer.sign(_env("st-0002")))
    assert info.value.reject_reason == RejectReason.WRONG_DEVICE
    with pytest.raises(CommandRejected) as info:
        verifier.verify(other.sign(_env()))
    assert info.value.reject_reason == RejectReason.UNKNOWN_KEY


def test_same_kid_other_key_fails_signature() -> None:
    signer = signing.CommandSigner(signing.generate_private_key(), kid=b"k1")
    impostor = signing.CommandSigner(signing.generate_private_key(), kid=b"k1")
    verifier = signing.CommandVerifier(
        "st-0001", {b"k1": signer.public_key}, signing.MemoryReplayGuard()
    )
    with pytest.raises(CommandRejected) as info:
        verifier.verify(impostor.sign(_env()))
    assert info.value.reject_reason == RejectReason.BAD_SIGNATURE


def test_key_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "command.key"
    key = signing.load_or_create_private_key(path)
    again = signing.load_or_create_private_key(path)
    assert signing.public_key_bytes(key) == signing.public_key_bytes(again)
    assert path.stat().st_mode & 0o777 == 0o600


def test_replay_guard_forgets_only_after_expiry() -> None:
    now = [1_000]
    guard = signing.MemoryReplayGuard(lambda: now[0])
    assert guard.check_and_remember(b"a" * 16, 2_000)
    for i in range(1100):
        guard.check_and_remember(i.to_bytes(16, "big"), 1_500)
    now[0] = 1_800  # the 1100 fillers expired, the first id not yet
    guard.check_and_remember(b"b" * 16, 3_000)
    assert not guard.check_and_remember(b"a" * 16, 2_000)
