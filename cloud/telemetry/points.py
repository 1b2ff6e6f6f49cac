"""The telemetry points: one frozen dataclass per measurement, plus a generic `Point`.

Every point carries `time_ns` (Unix epoch, nanoseconds). InfluxDB keeps one value
per series (measurement + tag set) and timestamp, so re-sending a point after a
retry overwrites it instead of duplicating it: callers must give distinct points
of one series distinct timestamps.

Tags (indexed, strings) are the identifiers queries filter on; fields are the
measured values. Numeric fields are always written as floats so that a series
never meets a field type conflict (an int then a float) in InfluxDB.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from kickstand.cloud.telemetry.errors import InvalidPointError

FieldValue = float | int | bool | str

# Measurement names as stored in InfluxDB (and in the local store's tables).
VEHICLE_POSITION = "vehicle_position"
VEHICLE_BATTERY = "vehicle_battery"
TEMPERATURE = "temperature"
STATION_ENERGY = "station_energy"
SPOT_STATUS = "spot_status"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ns_from_datetime(moment: datetime) -> int:
    """Epoch nanoseconds of an aware datetime (naive ones are refused: ambiguous)."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment.isoformat()} has no timezone")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def datetime_from_ns(time_ns: int) -> datetime:
    """Aware UTC datetime of epoch nanoseconds (sub-microsecond digits are cut)."""
    return _EPOCH + timedelta(microseconds=time_ns // 1_000)


def _in_range(measurement: str, name: str, value: float | None, low: float, high: float) -> None:
    if value is None:
        return
    try:
        inside = low <= value <= high  # False for NaN and infinities too
    except TypeError:
        inside = False
    if not inside or isinstance(value, bool):
        raise InvalidPointError(measurement, f"{name}={value!r} not a number in [{low}, {high}]")


def _identifier(measurement: str, name: str, value: str | None, *, required: bool) -> None:
    if value is None or value == "":
        if required:
            raise InvalidPointError(measurement, f"{name} is required")
        return
    if not isinstance(value, str):
        raise InvalidPointError(measurement, f"{name} must be a str, got {type(value).__name__}")


def _time(measurement: str, time_ns: int) -> None:
    if isinstance(time_ns, bool) or not isinstance(time_ns, int):
        raise InvalidPointError(measurement, f"time_ns must be an int, got {time_ns!r}")
    # InfluxDB's valid range is roughly years 1677..2262 (int64 nanoseconds).
    if not -9_223_372_036_854_775_806 <= time_ns <= 9_223_372_036_854_775_806:
        raise InvalidPointError(measurement, f"time_ns {time_ns} outside the int64 range")


_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})


def _tag(measurement: str, value: str) -> str:
    """An escaped tag value (the line protocol rules of `lineprotocol.py`)."""
    if value.isalnum():  # serial numbers and ids: nothing to escape
        return value
    if "\n" in value or "\r" in value:
        raise InvalidPointError(measurement, f"tag value {value!r} contains a newline")
    if "\\" in value:
        raise InvalidPointError(measurement, f"tag value {value!r} contains a backslash")
    return value.translate(_TAG_ESCAPES)


def _string_field(measurement: str, value: str) -> str:
    if "\n" in value or "\r" in value:
        raise InvalidPointError(measurement, f"string field {value!r} contains a newline")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _put(target: dict[str, str], key: str, value: str | None) -> None:
    # InfluxDB refuses empty tag values: an absent optional tag is simply left out.
    if value:
        target[key] = value


@dataclass(frozen=True, slots=True)
class Point:
    """A generic point: any measurement, tags and fields (escaped by the encoder)."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time_ns: int

    def __post_init__(self) -> None:
        if not self.measurement:
            raise InvalidPointError("?", "measurement is empty")
        if not self.fields:
            raise InvalidPointError(self.measurement, "a point needs at least one field")
        _time(self.measurement, self.time_ns)

    def to_point(self) -> Point:
        return self


@dataclass(frozen=True, slots=True)
class VehiclePosition:
    """A GPS fix of a vehicle. `speed` in km/h, `heading` in degrees from north."""

    measurement: ClassVar[str] = VEHICLE_POSITION

    vehicle: str  # serial_number
    lat: float
    lon: float
    time_ns: int
    speed: float | None = None
    heading: float | None = None
    network: str | None = None
    device: str | None = None  # controller id, when it differs from the serial
    trip: str | None = None

    def __post_init__(self) -> None:
        m = self.measurement
        _identifier(m, "vehicle", self.vehicle, required=True)
        _identifier(m, "network", self.network, required=False)
        _identifier(m, "device", self.device, required=False)
        _identifier(m, "trip", self.trip, required=False)
        _in_range(m, "lat", self.lat, -90.0, 90.0)
        _in_range(m, "lon", self.lon, -180.0, 180.0)
        _in_range(m, "speed", self.speed, 0.0, 500.0)
        _in_range(m, "heading", self.heading, 0.0, 360.0)
        _time(m, self.time_ns)

    def to_point(self) -> Point:
        tags: dict[str, str] = {"vehicle": self.vehicle}
        _put(tags, "device", self.device)
        _put(tags, "network", self.network)
        _put(tags, "trip", self.trip)
        fields: dict[str, FieldValue] = {"lat": float(self.lat), "lon": float(self.lon)}
        if self.speed is not None:
            fields["speed"] = float(self.speed)
        if self.heading is not None:
            fields["heading"] = float(self.heading)
        return Point(self.measurement, tags, fields, self.time_ns)

    def line_protocol(self) -> str:
        """Measurement, tags and fields as one line-protocol prefix (no timestamp);
        the same text `encode(self.to_point())` gives, built without the detour."""
        m = self.measurement
        line = m
        if self.device:
            line += ",device=" + _tag(m, self.device)
        if self.network:
            line += ",network=" + _tag(m, self.network)
        if self.trip:
            line += ",trip=" + _tag(m, self.trip)
        line += f",vehicle={_tag(m, self.vehicle)} lat={float(self.lat)!r},lon={float(self.lon)!r}"
        if self.speed is not None:
            line += f",speed={float(self.speed)!r}"
        if self.heading is not None:
            line += f",heading={float(self.heading)!r}"
        return line


@dataclass(frozen=True, slots=True)
class VehicleBattery:
    """Battery levels of a vehicle: the controller's internal battery and the
    e-assist (VAE) battery, in percent; `voltage` of the e-assist pack in volts."""

    measurement: ClassVar[str] = VEHICLE_BATTERY

    vehicle: str
    time_ns: int
    internal_pct: float | None = None
    vae_pct: float | None = None
    voltage: float | None = None
    network: str | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        m = self.measurement
        _identifier(m, "vehicle", self.vehicle, required=True)
        _identifier(m, "network", self.network, required=False)
        _identifier(m, "device", self.device, required=False)
        _in_range(m, "internal_pct", self.internal_pct, 0.0, 100.0)
        _in_range(m, "vae_pct", self.vae_pct, 0.0, 100.0)
        _in_range(m, "voltage", self.voltage, 0.0, 1000.0)
        if self.internal_pct is None and self.vae_pct is None and self.voltage is None:
            raise InvalidPointError(m, "at least one of internal_pct, vae_pct, voltage is needed")
        _time(m, self.time_ns)

    def to_point(self) -> Point:
        tags: dict[str, str] = {"vehicle": self.vehicle}
        _put(tags, "device", self.device)
        _put(tags, "network", self.network)
        fields: dict[str, FieldValue] = {}
        if self.internal_pct is not None:
            fields["internal_pct"] = float(self.internal_pct)
        if self.vae_pct is not None:
            fields["vae_pct"] = float(self.vae_pct)
        if self.voltage is not None:
            fields["voltage"] = float(self.voltage)
        return Point(self.measurement, tags, fields, self.time_ns)

    def line_protocol(self) -> str:
        m = self.measurement
        line = m
        if self.device:
            line += ",device=" + _tag(m, self.device)
        if self.network:
            line += ",network=" + _tag(m, self.network)
        line += ",vehicle=" + _tag(m, self.vehicle) + " "
        fields = []
        if self.internal_pct is not None:
            fields.append(f"internal_pct={float(self.internal_pct)!r}")
        if self.vae_pct is not None:
            fields.append(f"vae_pct={float(self.vae_pct)!r}")
        if self.voltage is not None:
            fields.append(f"voltage={float(self.voltage)!r}")
        return line + ",".join(fields)


@dataclass(frozen=True, slots=True)
class Temperature:
    """A temperature reading of a station (spot=None) or of one of its spots, in °C."""

    measurement: ClassVar[str] = TEMPERATURE

    station: str
    celsius: float
    time_ns: int
    spot: str | None = None
    network: str | None = None

    def __post_init__(self) -> None:
        m = self.measurement
        _identifier(m, "station", self.station, required=True)
        _identifier(m, "spot", self.spot, required=False)
        _identifier(m, "network", self.network, required=False)
        _in_range(m, "celsius", self.celsius, -100.0, 200.0)
        _time(m, self.time_ns)

    def to_point(self) -> Point:
        tags: dict[str, str] = {"station": self.station}
        _put(tags, "spot", self.spot)
        _put(tags, "network", self.network)
        return Point(self.measurement, tags, {"celsius": float(self.celsius)}, self.time_ns)

    def line_protocol(self) -> str:
        m = self.measurement
        line = m
        if self.network:
            line += ",network=" + _tag(m, self.network)
        if self.spot:
            line += ",spot=" + _tag(m, self.spot)
        return line + f",station={_tag(m, self.station)} celsius={float(self.celsius)!r}"


@dataclass(frozen=True, slots=True)
class StationEnergy:
    """A station's energy meter: `energy_wh` is the meter's cumulative counter (Wh),
    `power_w` the instant power draw."""

    measurement: ClassVar[str] = STATION_ENERGY

    station: str
    energy_wh: float
    time_ns: int
    power_w: float | None = None
    network: str | None = None

    def __post_init__(self) -> None:
        m = self.measurement
        _identifier(m, "station", self.station, required=True)
        _identifier(m, "network", self.network, required=False)
        _in_range(m, "energy_wh", self.energy_wh, 0.0, 1e15)
        _in_range(m, "power_w", self.power_w, -1e7, 1e7)
        _time(m, self.time_ns)

    def to_point(self) -> Point:
        tags: dict[str, str] = {"station": self.station}
        _put(tags, "network", self.network)
        fields: dict[str, FieldValue] = {"energy_wh": float(self.energy_wh)}
        if self.power_w is not None:
            fields["power_w"] = float(self.power_w)
        return Point(self.measurement, tags, fields, self.time_ns)

    def line_protocol(self) -> str:
        m = self.measurement
        line = m
        if self.network:
            line += ",network=" + _tag(m, self.network)
        line += f",station={_tag(m, self.station)} energy_wh={float(self.energy_wh)!r}"
        if self.power_w is not None:
            line += f",power_w={float(self.power_w)!r}"
        return line


@dataclass(frozen=True, slots=True)
class SpotStatus:
    """The state of one spot: `lock_status` as in the rider API (integer code), the
    docked vehicle's serial number if any."""

    measurement: ClassVar[str] = SPOT_STATUS

    station: str
    spot: str
    lock_status: int
    time_ns: int
    vehicle: str | None = None
    network: str | None = None

    def __post_init__(self) -> None:
        m = self.measurement
        _identifier(m, "station", self.station, required=True)
        _identifier(m, "spot", self.spot, required=True)
        _identifier(m, "vehicle", self.vehicle, required=False)
        _identifier(m, "network", self.network, required=False)
        if isinstance(self.lock_status, bool) or not isinstance(self.lock_status, int):
            raise InvalidPointError(m, f"lock_status must be an int, got {self.lock_status!r}")
        _time(m, self.time_ns)

    def to_point(self) -> Point:
        tags: dict[str, str] = {"station": self.station, "spot": self.spot}
        _put(tags, "network", self.network)
        # Integer code stored as a float, like every numeric field (no type conflicts).
        fields: dict[str, FieldValue] = {
            "lock_status": float(self.lock_status),
            "vehicle": self.vehicle or "",
        }
        return Point(self.measurement, tags, fields, self.time_ns)

    def line_protocol(self) -> str:
        m = self.measurement
        line = m
        if self.network:
            line += ",network=" + _tag(m, self.network)
        return (
            line + f",spot={_tag(m, self.spot)},station={_tag(m, self.station)} "
            f"lock_status={float(self.lock_status)!r},"
            f"vehicle={_string_field(m, self.vehicle or '')}"
        )


TelemetryPoint = VehiclePosition | VehicleBattery | Temperature | StationEnergy | SpotStatus | Point

__all__ = [
    "SPOT_STATUS",
    "STATION_ENERGY",
    "TEMPERATURE",
    "VEHICLE_BATTERY",
    "VEHICLE_POSITION",
    "FieldValue",
    "Point",
    "SpotStatus",
    "StationEnergy",
    "TelemetryPoint",
    "Temperature",
    "VehicleBattery",
    "VehiclePosition",
    "datetime_from_ns",
    "ns_from_datetime",
]

