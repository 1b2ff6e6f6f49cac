"""One error tree for everything that crosses the wire.

Every error carries a machine-readable ``code`` (the same words the SPEC uses)
and the data a caller needs to log or answer it.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Root of all protocol errors. ``code`` is stable; the message is for people."""

    code = "protocol-error"

    def __init__(self, reason: str, *, channel: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.channel = channel

    def __str__(self) -> str:
        where = f"[{self.channel}] " if self.channel else ""
        return f"{where}{self.code}: {self.reason}"


class TopicError(ProtocolError):
    """A topic outside the v1 tree, or a device id that is not valid."""

    code = "bad-topic"


class DecodeError(ProtocolError):
    """Bytes that are not exactly one well-formed CBOR item with unique map keys (SPEC §11):
    empty, over the size limit, not CBOR, truncated, a byte after the item, a key twice.
    The root of every decoding error: its subclasses are well-formed but wrong."""

    code = "malformed"


class SchemaError(DecodeError):
    """One well-formed CBOR item of the wrong shape, type or range (a field missing or
    mistyped, an integer or a text outside its limits, a control character, boot_id 0)."""

    code = "schema"

    def __init__(self, reason: str, *, channel: str | None = None, field: str | None = None):
        super().__init__(reason, channel=channel)
        self.field = field


class UnknownTypeError(SchemaError):
    """An event or command type code this version does not know."""

    code = "unknown-type"


class EncodeError(ProtocolError):
    """A message object that cannot be put on the wire (a value out of range)."""

    code = "encode"


class CommandRejected(ProtocolError):
    """A command the device must refuse; ``reject_reason`` is sent back in the result."""

    code = "command-rejected"

    def __init__(self, reason: str, reject_reason: int, *, command_id: bytes | None = None):
        super().__init__(reason, channel="cmd")
        self.reject_reason = reject_reason
        self.command_id = command_id


class FrameError(ProtocolError):
    """A spot-bus frame that fails its CRC, length or address checks."""

    code = "bad-frame"


class ManifestError(ProtocolError):
    """A signed firmware manifest (SPEC §13) the device must refuse before anything is
    written. ``problem`` says which check failed: ``malformed`` (not the SignedManifest or
    Manifest shape, or a field out of range), ``too-large`` (the bytes, or the image size
    they announce, over the protocol's limit), ``unknown-key`` (a key id the device does not
    trust) or ``bad-signature``; ``reject_reason`` is the RejectReason a device answers."""

    code = "bad-manifest"

    def __init__(self, reason: str, *, problem: str, reject_reason: int) -> None:
        super().__init__(reason, channel="cmd")
        self.problem = problem
        self.reject_reason = reject_reason
