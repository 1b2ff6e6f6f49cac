"""Free-floating trips and geofencing wired into the system.

    from kickstand.cloud.freefloat import FreeFloatHook, find_vehicle, return_check

* :mod:`.service` — find a vehicle by serial number or QR code; judge a return
  (:func:`return_check`); end a trip at the vehicle's Locked event (:func:`vehicle_locked`).
* :mod:`.hook` — :class:`FreeFloatHook`, called by the ingest for vehicles: positions →
  zone transitions (speed limits, forbidden zones, network area) and Locked → verdict.

Zones and their cached index: :mod:`kickstand.cloud.geofence.store`.
"""

from kickstand.cloud.freefloat.errors import FreeFloatError, VehicleCodeError
from kickstand.cloud.freefloat.hook import (
    DEFAULT_VEHICLE_MAX_KMH,
    VEHICLE_POSITION_FORBIDDEN,
    VEHICLE_POSITION_OUT_OF_NETWORK,
    CommandSender,
    FreeFloatHook,
    SentCommand,
)
from kickstand.cloud.freefloat.service import (
    TRIP_RETURN_REFUSED,
    LockOutcome,
    ReturnCheck,
    find_vehicle,
    normalise_serial,
    return_check,
    serial_from_qr,
    vehicle_locked,
)

__all__ = [
    "DEFAULT_VEHICLE_MAX_KMH",
    "TRIP_RETURN_REFUSED",
    "VEHICLE_POSITION_FORBIDDEN",
    "VEHICLE_POSITION_OUT_OF_NETWORK",
    "CommandSender",
    "FreeFloatError",
    "FreeFloatHook",
    "LockOutcome",
    "ReturnCheck",
    "SentCommand",
    "VehicleCodeError",
    "find_vehicle",
    "normalise_serial",
    "return_check",
    "serial_from_qr",
    "vehicle_locked",
]
