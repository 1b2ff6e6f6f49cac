"""What the vehicle routes take and answer (seed 002 ``Vehicles``, ``VehiclesExternalLocks``)."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from kickstand.cloud.api.ids import Id, Text
from kickstand.cloud.models import VehicleState, VehicleType
from kickstand.cloud.vehicles.models import DecommissionReason, ExternalLockType
from kickstand.protocol.topics import DEVICE_ID_RE

#: Seed 002 serial numbers (``Generate vehicle QR code``): stored upper case.
SERIAL_PATTERN = r"^[a-zA-Z0-9]{6,10}$"


class VehicleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    serial_number: Text = Field(pattern=SERIAL_PATTERN, description="6 to 10 letters or digits.")
    vehicle_type: VehicleType
    model: Text = Field(min_length=1, max_length=64)
    network_id: Id
    device_id: Text | None = Field(
        default=None,
        pattern=DEVICE_ID_RE.pattern,
        description="The vehicle controller's device id (e.g. `vh-AB12345`): registered as "
        "a vehicle device so its birth is accepted.",
    )


class NetworkChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    network_id: Id = Field(description="Identifier of the new network for the vehicle.")


class DecommissionPublic(BaseModel):
    reason: DecommissionReason
    comment: str | None
    #: Sold for (positive) or recycling cost (negative), in ``currency``.
    amount: str | None
    currency: str
    decommissioned_at: datetime
    decommissioned_by: int | None


class ExternalLockPublic(BaseModel):
    """An external lock as operators see it: never its code."""

    lock_id: int
    vehicle_id: int
    model: str
    type: ExternalLockType
    serial_number: str
    code_updated_at: datetime
    registered_at: datetime


class VehiclePublic(BaseModel):
    vehicle_id: int
    serial_number: str
    vehicle_type: VehicleType
    model: str | None
    network_id: int
    state: VehicleState
    battery_level: int | None
    assist_battery_level: int | None
    latitude: float | None
    longitude: float | None
    position_at: datetime | None
    spot_id: int | None
    device_id: str | None
    #: The controller is online by the one liveness rule (False without a controller).
    online: bool
    in_maintenance: bool
    #: A rider could rent it now (``kickstand.cloud.rentable``, the one rule).
    is_available: bool


class VehicleDetail(VehiclePublic):
    docked_at: datetime | None
    current_trip_id: int | None
    external_lock: ExternalLockPublic | None
    decommission: DecommissionPublic | None


class DecommissionedVehicle(VehiclePublic):
    decommission: DecommissionPublic


class RidesOnDay(BaseModel):
    day: date
    trips: int


class VehicleStatistic(BaseModel):
    """Trips of the vehicle in the last ``days`` local days of its network (cancelled ones
    left out); distances are straight lines from start to end position."""

    vehicle_id: int
    days: int
    since: datetime
    trip_count: int
    rider_count: int
    total_duration_s: float
    average_duration_s: float | None
    max_duration_s: float | None
    total_distance_m: float
    average_distance_m: float | None
    trips_with_distance: int
    last_trip_at: datetime | None
    #: One entry per local day of the period, oldest first (days without a trip: 0).
    rides_per_day: list[RidesOnDay]
    average_rides_per_day: float


class ExternalLockCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vehicle_id: Id
    model: Text = Field(min_length=1, max_length=64)
    type: ExternalLockType
    serial_number: Text = Field(min_length=1, max_length=64)
    code: Text = Field(min_length=1, max_length=16, description="The code to open the lock.")


class ExternalLockCode(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Text = Field(min_length=1, max_length=16, description="The new code.")


__all__ = [
    "SERIAL_PATTERN",
    "DecommissionPublic",
    "DecommissionedVehicle",
    "ExternalLockCode",
    "ExternalLockCreate",
    "ExternalLockPublic",
    "NetworkChange",
    "RidesOnDay",
    "VehicleCreate",
    "VehicleDetail",
    "VehiclePublic",
    "VehicleStatistic",
]
