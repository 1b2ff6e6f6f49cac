"""Errors of the vehicle registry (on the cloud core's kinds: 404, 409, 422)."""

from __future__ import annotations

from kickstand.cloud.errors import CloudError, ConflictError


class VehicleError(CloudError):
    """Root of the vehicle registry's errors."""


class VehicleBusyError(ConflictError, VehicleError):
    """The vehicle is on a trip or held by a rent: it cannot be changed now."""

    def __init__(self, vehicle_id: int, action: str, trip_id: int | None) -> None:
        held = f"on trip {trip_id}" if trip_id is not None else "held by a rent"
        super().__init__(f"vehicle {vehicle_id} is {held}: cannot {action}", reason="vehicle-busy")
        self.vehicle_id = vehicle_id
        self.trip_id = trip_id


class VehicleDecommissionedError(ConflictError, VehicleError):
    def __init__(self, vehicle_id: int) -> None:
        super().__init__(f"vehicle {vehicle_id} is decommissioned", reason="vehicle-decommissioned")
        self.vehicle_id = vehicle_id


class SerialInUseError(ConflictError, VehicleError):
    def __init__(self, serial_number: str) -> None:
        super().__init__(
            f"serial number {serial_number!r} is already registered", reason="serial-in-use"
        )
        self.serial_number = serial_number


class DeviceInUseError(ConflictError, VehicleError):
    def __init__(self, device_id: str, why: str) -> None:
        super().__init__(f"device {device_id!r} {why}", reason="device-in-use")
        self.device_id = device_id


class ExternalLockConflictError(ConflictError, VehicleError):
    """A lock already on the vehicle, or a lock serial number already in use."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="external-lock-in-use")


class VehicleDockedElsewhereError(ConflictError, VehicleError):
    """Docked in a station of another network than the one asked: take it out first."""

    def __init__(self, vehicle_id: int, station_network_id: int) -> None:
        super().__init__(
            f"vehicle {vehicle_id} is docked in a station of network {station_network_id}",
            reason="vehicle-docked-elsewhere",
        )
        self.vehicle_id = vehicle_id
        self.station_network_id = station_network_id
