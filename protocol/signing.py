"""Command signing: COSE_Sign1 (RFC 9052) with EdDSA over Ed25519.

The cloud signs every command envelope; the device verifies, before anything
moves, that (in this order) the COSE structure is sound, the key id is one it
trusts, the signature holds, the command is bound to this device, it is not
expired nor issued in the future beyond the allowed clock skew, and its
command id was never executed before. Each refusal is a
:class:`~kickstand.protocol.errors.CommandRejected` with the RejectReason the
device sends back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kickstand.protocol import cose
from kickstand.protocol.errors import (
    CommandRejected,
    EncodeError,
    ProtocolError,
    UnknownTypeError,
)
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import codec, schema
from kickstand.protocol.v1.enums import RejectReason
from kickstand.protocol.v1.messages import CommandEnvelope

DEFAULT_MAX_SKEW_MS = 30_000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# ------------------------------------------------------------------ keys


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def public_key_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """A key file holds the 32-byte seed as hex (one line) or a PEM PKCS#8 key."""
    raw = path.read_bytes().strip()
    if raw.startswith(b"-----BEGIN"):
        key = serialization.load_pem_private_key(raw, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 key")
        return key
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(raw.decode()))


def load_or_create_private_key(path: Path) -> Ed25519PrivateKey:
    if path.exists():
        return load_private_key(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_private_key()
    path.write_text(private_key_bytes(key).hex() + "\n")
    path.chmod(0o600)
    return key


def key_id(public: bytes) -> bytes:
    """A short, stable key id: the first 8 bytes of the raw public key."""
    return public[:8]


# ------------------------------------------------------------------ signing


class CommandSigner:
    def __init__(self, private_key: Ed25519PrivateKey, kid: bytes | None = None) -> None:
        public = public_key_bytes(private_key)
        self.kid = kid if kid is not None else key_id(public)
        self.public_key = public
        self._private_key = private_key

    def sign(self, envelope: CommandEnvelope) -> bytes:
        encoded = cose.sign1(self._private_key, self.kid, codec.encode_command_payload(envelope))
        limit = codec.MAX_SIZE[Channel.COMMAND]
        if len(encoded) > limit:
            # The device (and the broker's message_size_limit) would refuse it: say so here.
            raise EncodeError(f"signed command of {len(encoded)} bytes is over {limit}")
        return encoded


# ------------------------------------------------------------------ verifying


class ReplayGuard(Protocol):
    """Remembers executed command ids at least until they expire."""

    def check_and_remember(self, command_id: bytes, expires_at_ms: int) -> bool:
        """True if the id is new (and is now remembered); False if it was seen."""
        ...


class MemoryReplayGuard:
    def __init__(self, clock: Callable[[], int] = _now_ms) -> None:
        self._seen: dict[bytes, int] = {}
        self._clock = clock
        self._lock = threading.Lock()

    def check_and_remember(self, command_id: bytes, expires_at_ms: int) -> bool:
        with self._lock:
            now = self._clock()
            if len(self._seen) > 1024:
                self._seen = {k: exp for k, exp in self._seen.items() if exp >= now}
            if command_id in self._seen:
                return False
            self._seen[command_id] = expires_at_ms
            return True


class CommandVerifier:
    def __init__(
        self,
        device_id: str,
        trusted_keys: Mapping[bytes, bytes],
        replay_guard: ReplayGuard,
        clock: Callable[[], int] = _now_ms,
        max_skew_ms: int = DEFAULT_MAX_SKEW_MS,
    ) -> None:
        """``trusted_keys`` maps key id -> raw Ed25519 public key (32 bytes)."""
        self.device_id = device_id
        self._keys = {
            kid: Ed25519PublicKey.from_public_bytes(pub) for kid, pub in trusted_keys.items()
        }
        self._replay = replay_guard
        self._clock = clock
        self._max_skew_ms = max_skew_ms

    def verify(self, data: bytes) -> CommandEnvelope:
        """Return the verified envelope or raise CommandRejected (never anything else)."""
        try:
            if len(data) > codec.MAX_SIZE[Channel.COMMAND]:
                raise ValueError(f"{len(data)} bytes is over the limit")
            schema.validate(Channel.COMMAND, bytes(data))
            msg = cose.decode_sign1(bytes(data))
        except Exception as exc:
            raise CommandRejected(
                f"not a COSE_Sign1 message: {exc}", RejectReason.MALFORMED
            ) from None
        if msg.algorithm != cose.EDDSA:
            raise CommandRejected(
                f"algorithm {msg.algorithm!r} is not EdDSA", RejectReason.BAD_SIGNATURE
            )
        kid = msg.kid
        key = self._keys.get(kid) if isinstance(kid, bytes) else None
        if key is None:
            raise CommandRejected(f"key id {kid!r} is not trusted", RejectReason.UNKNOWN_KEY)
        if not msg.verify(key):
            raise CommandRejected("signature does not verify", RejectReason.BAD_SIGNATURE)
        try:
            envelope = codec.decode_command_payload(msg.payload)
        except UnknownTypeError as exc:
            # A newer cloud's command (SPEC §8): the device says it cannot do it, not that
            # the cloud sent garbage.
            raise CommandRejected(str(exc), RejectReason.NOT_SUPPORTED) from None
        except ProtocolError as exc:
            raise CommandRejected(str(exc), RejectReason.MALFORMED) from None
        cid = envelope.command_id
        if envelope.device_id != self.device_id:
            raise CommandRejected(
                f"command is for {envelope.device_id}, not {self.device_id}",
                RejectReason.WRONG_DEVICE,
                command_id=cid,
            )
        now = self._clock()
        if now > envelope.expires_at_ms:
            raise CommandRejected(
                f"expired {(now - envelope.expires_at_ms) / 1000:.1f} s ago",
                RejectReason.EXPIRED,
                command_id=cid,
            )
        if envelope.issued_at_ms > now + self._max_skew_ms:
            raise CommandRejected(
                f"issued {(envelope.issued_at_ms - now) / 1000:.1f} s in the future",
                RejectReason.NOT_YET_VALID,
                command_id=cid,
            )
        if not self._replay.check_and_remember(cid, envelope.expires_at_ms):
            raise CommandRejected(
                "command id already executed", RejectReason.REPLAYED, command_id=cid
            )
        return envelope
