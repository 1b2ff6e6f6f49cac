"""Kickstand protocol: the one definition of what crosses the wire.

- :mod:`kickstand.protocol.topics` — the MQTT topic tree
- :mod:`kickstand.protocol.v1` — messages, enums, codec, CDDL validators of v1
- :mod:`kickstand.protocol.signing` — COSE_Sign1 / Ed25519 command signing
- :mod:`kickstand.protocol.sequence` — dedupe and gap detection on (device, boot, seq)
- :mod:`kickstand.protocol.spotbus` — serial framing to spot lock boards and lock boxes
- :mod:`kickstand.protocol.errors` — the error tree

See ``protocol/SPEC.md``.
"""

from kickstand.protocol.errors import (
    CommandRejected,
    DecodeError,
    EncodeError,
    FrameError,
    ProtocolError,
    SchemaError,
    TopicError,
    UnknownTypeError,
)

PROTOCOL_VERSION = 1

__all__ = [
    "PROTOCOL_VERSION",
    "CommandRejected",
    "DecodeError",
    "EncodeError",
    "FrameError",
    "ProtocolError",
    "SchemaError",
    "TopicError",
    "UnknownTypeError",
]
