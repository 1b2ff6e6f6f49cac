"""Errors of the free-floating package."""

from __future__ import annotations


class FreeFloatError(Exception):
    """Root of the free-floating errors."""


class VehicleCodeError(FreeFloatError, ValueError):
    """A serial number or QR code that names no vehicle we could read.

    ``field`` is the request field (``serial_number`` or ``qr_code``) for the API envelope.
    """

    def __init__(self, field: str, value: object, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.value = value
        self.message = message
