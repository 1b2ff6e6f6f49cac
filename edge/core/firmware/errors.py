"""Errors of the device-side firmware library, under the edge agents' one root."""

from __future__ import annotations

from kickstand.edge.core.errors import CommandRefused, EdgeError
from kickstand.protocol.v1.enums import FirmwareState, RejectReason


class ManifestRefused(CommandRefused):
    """A FirmwareUpdate refused before anything is downloaded or written: its manifest does
    not verify with the device's firmware keys, or is not for this device (target, hardware,
    bootloader). The command router answers REJECTED with ``reject_reason``."""


class FirmwareError(EdgeError):
    """A firmware update that failed after it started. ``state`` is the FirmwareStatus state
    to report (DOWNLOAD_FAILED, VERIFY_FAILED, INSTALL_FAILED), ``reason`` the words for
    people (sent as FirmwareStatus.reason), ``reject_reason`` the CommandResult FAILED's."""

    def __init__(
        self,
        reason: str,
        state: FirmwareState,
        reject_reason: RejectReason = RejectReason.HARDWARE_FAULT,
    ) -> None:
        super().__init__(f"{state.name}: {reason}")
        self.reason = reason
        self.state = state
        self.reject_reason = reject_reason


class SlotError(EdgeError):
    """The A/B slots' boot record cannot be read or written (disk fault): the device keeps
    running its active slot and reports the update failed."""
