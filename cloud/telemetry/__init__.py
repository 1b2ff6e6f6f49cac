"""Telemetry: points to InfluxDB (v1-compatible HTTP API) or to a local SQLite
store, and the queries the dashboard serves from them.

    from kickstand.cloud.telemetry import open_telemetry_store, VehiclePosition

    async with open_telemetry_store(os.environ.get("INFLUX_URL"), "kickstand",
                                    spool_dir=..., local_path=...) as store:
        store.write(VehiclePosition("AB12345", 48.85, 2.35, time_ns, network="5"))
        await store.vehicle_timeline("AB12345", start, end)
"""

from kickstand.cloud.telemetry.errors import (
    InvalidPointError,
    QueryRangeError,
    SpoolLockedError,
    TelemetryError,
    TelemetryQueryError,
    TelemetryUnavailableError,
    WriterClosedError,
)
from kickstand.cloud.telemetry.factory import open_telemetry_store, telemetry_store_from_settings
from kickstand.cloud.telemetry.influx_store import InfluxTelemetryStore
from kickstand.cloud.telemetry.lineprotocol import Precision, encode, encode_many
from kickstand.cloud.telemetry.local import LocalTelemetryStore
from kickstand.cloud.telemetry.points import (
    Point,
    SpotStatus,
    StationEnergy,
    TelemetryPoint,
    Temperature,
    VehicleBattery,
    VehiclePosition,
    datetime_from_ns,
    ns_from_datetime,
)
from kickstand.cloud.telemetry.store import (
    BatterySample,
    BoundingBox,
    DailyEnergy,
    HeatmapPoint,
    PositionSample,
    TelemetryStore,
    TemperatureSample,
    WriterStats,
)
from kickstand.cloud.telemetry.writer import InfluxV1Writer

__all__ = [
    "BatterySample",
    "BoundingBox",
    "DailyEnergy",
    "HeatmapPoint",
    "InfluxTelemetryStore",
    "InfluxV1Writer",
    "InvalidPointError",
    "LocalTelemetryStore",
    "Point",
    "PositionSample",
    "Precision",
    "QueryRangeError",
    "SpoolLockedError",
    "SpotStatus",
    "StationEnergy",
    "TelemetryError",
    "TelemetryPoint",
    "TelemetryQueryError",
    "TelemetryStore",
    "TelemetryUnavailableError",
    "Temperature",
    "TemperatureSample",
    "VehicleBattery",
    "VehiclePosition",
    "WriterClosedError",
    "WriterStats",
    "datetime_from_ns",
    "encode",
    "encode_many",
    "ns_from_datetime",
    "open_telemetry_store",
    "telemetry_store_from_settings",
]
