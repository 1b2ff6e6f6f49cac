"""Errors of the edge agents: one small tree, each class carrying what a caller needs."""

from __future__ import annotations

from kickstand.protocol.v1.enums import RejectReason


class EdgeError(Exception):
    """Root of the edge agents' errors."""


class QueueError(EdgeError):
    """The on-disk queue cannot store or read a message (disk full, corrupt file)."""


class ConfigError(EdgeError):
    """A configuration file that cannot be read or does not validate."""


class TransportError(EdgeError):
    """A hardware transport (serial port, NFC reader, inputs) failed or is not available."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class CommandRefused(EdgeError):
    """Raised by a command handler to refuse a command before anything moved.

    The router answers it with a CommandResult REJECTED carrying ``reject_reason``.
    """

    def __init__(self, reject_reason: RejectReason, detail: str = "") -> None:
        super().__init__(f"{reject_reason.name}: {detail}" if detail else reject_reason.name)
        self.reject_reason = reject_reason
        self.detail = detail


class CommandFailed(EdgeError):
    """Raised by a command handler when the hardware did not complete the action.

    The router answers it with a CommandResult FAILED carrying ``reject_reason``.
    """

    def __init__(self, reject_reason: RejectReason, detail: str = "") -> None:
        super().__init__(f"{reject_reason.name}: {detail}" if detail else reject_reason.name)
        self.reject_reason = reject_reason
        self.detail = detail


class DeviceCertificateError(EdgeError):
    """The device's TLS identity cannot be used: the link does not connect, and keeps
    retrying (a certificate put in place, or a clock set right, ends it) while the agent goes
    on offline.

    ``reason``: ``missing`` (a configured file is absent), ``unreadable`` (not PEM, or the key
    does not match the certificate), ``expired``, ``not-yet-valid`` (the certificate's dates
    against the device clock), ``refused`` (the broker's TLS handshake or CONNACK refused it:
    revoked, another CA, expired by the broker's clock), ``server-untrusted`` (the broker's
    certificate does not verify against ``ca_file``: never connected anyway).
    """

    def __init__(self, reason: str, detail: str, *, path: str | None = None) -> None:
        where = f"{path}: " if path else ""
        super().__init__(f"device certificate {reason}: {where}{detail}")
        self.reason = reason
        self.detail = detail
        self.path = path
