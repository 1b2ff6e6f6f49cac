"""`LocalTelemetryStore`: the embedded default (no `INFLUX_URL`): one SQLite file,
the same write and query interface as the InfluxDB store.

Like InfluxDB, a point is keyed by its series (measurement + tags) and timestamp:
writing it again overwrites it (fields absent from the new point are kept).
`write()` only appends to a memory buffer; a background task writes batches in a
worker thread, so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from kickstand.cloud.telemetry.errors import TelemetryQueryError, WriterClosedError
from kickstand.cloud.telemetry.lineprotocol import encode
from kickstand.cloud.telemetry.points import (
    Point,
    SpotStatus,
    StationEnergy,
    TelemetryPoint,
    Temperature,
    VehicleBattery,
    VehiclePosition,
)
from kickstand.cloud.telemetry.store import (
    ENERGY_LOOKBACK_NS,
    MAX_HEATMAP_POSITIONS,
    BatterySample,
    BoundingBox,
    DailyEnergy,
    HeatmapPoint,
    PositionSample,
    TemperatureSample,
    WriterStats,
    aggregate_heatmap,
    check_limit,
    check_networks,
    check_zoom,
    daily_consumption,
    energy_plan,
    heatmap_period_ns,
    read_fleet,
    time_range_ns,
)

log = logging.getLogger("kickstand.cloud.telemetry.local")

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vehicle_position (
    vehicle TEXT NOT NULL, device TEXT NOT NULL, network TEXT NOT NULL, trip TEXT NOT NULL,
    time_ns INTEGER NOT NULL, lat REAL NOT NULL, lon REAL NOT NULL, speed REAL, heading REAL,
    PRIMARY KEY (vehicle, device, network, trip, time_ns)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS vehicle_position_by_time ON vehicle_position (vehicle, time_ns);
CREATE INDEX IF NOT EXISTS vehicle_position_by_network
    ON vehicle_position (network, time_ns);
CREATE TABLE IF NOT EXISTS vehicle_battery (
    vehicle TEXT NOT NULL, device TEXT NOT NULL, network TEXT NOT NULL,
    time_ns INTEGER NOT NULL, internal_pct REAL, vae_pct REAL, voltage REAL,
    PRIMARY KEY (vehicle, device, network, time_ns)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS vehicle_battery_by_time ON vehicle_battery (vehicle, time_ns);
CREATE TABLE IF NOT EXISTS temperature (
    station TEXT NOT NULL, spot TEXT NOT NULL, network TEXT NOT NULL,
    time_ns INTEGER NOT NULL, celsius REAL NOT NULL,
    PRIMARY KEY (station, spot, network, time_ns)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS station_energy (
    station TEXT NOT NULL, network TEXT NOT NULL, time_ns INTEGER NOT NULL,
    energy_wh REAL NOT NULL, power_w REAL,
    PRIMARY KEY (station, network, time_ns)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS station_energy_by_time ON station_energy (station, time_ns);
CREATE TABLE IF NOT EXISTS spot_status (
    station TEXT NOT NULL, spot TEXT NOT NULL, network TEXT NOT NULL,
    time_ns INTEGER NOT NULL, lock_status INTEGER NOT NULL, vehicle TEXT,
    PRIMARY KEY (station, spot, network, time_ns)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS points (
    measurement TEXT NOT NULL, series TEXT NOT NULL, time_ns INTEGER NOT NULL,
    tags TEXT NOT NULL, fields TEXT NOT NULL,
    PRIMARY KEY (measurement, series, time_ns)
) WITHOUT ROWID;
"""

_UPSERT: dict[type, str] = {
    VehiclePosition: (
        "INSERT INTO vehicle_position VALUES (?,?,?,?,?,?,?,?,?) "
        "ON CONFLICT DO UPDATE SET lat=excluded.lat, lon=excluded.lon, "
        "speed=coalesce(excluded.speed, speed), heading=coalesce(excluded.heading, heading)"
    ),
    VehicleBattery: (
        "INSERT INTO vehicle_battery VALUES (?,?,?,?,?,?,?) "
        "ON CONFLICT DO UPDATE SET internal_pct=coalesce(excluded.internal_pct, internal_pct), "
        "vae_pct=coalesce(excluded.vae_pct, vae_pct), voltage=coalesce(excluded.voltage, voltage)"
    ),
    Temperature: (
        "INSERT INTO temperature VALUES (?,?,?,?,?) "
        "ON CONFLICT DO UPDATE SET celsius=excluded.celsius"
    ),
    StationEnergy: (
        "INSERT INTO station_energy VALUES (?,?,?,?,?) "
        "ON CONFLICT DO UPDATE SET energy_wh=excluded.energy_wh, "
        "power_w=coalesce(excluded.power_w, power_w)"
    ),
    SpotStatus: (
        "INSERT INTO spot_status VALUES (?,?,?,?,?,?) "
        "ON CONFLICT DO UPDATE SET lock_status=excluded.lock_status, vehicle=excluded.vehicle"
    ),
    Point: (
        "INSERT INTO points VALUES (?,?,?,?,?) "
        "ON CONFLICT DO UPDATE SET tags=excluded.tags, "
        "fields=json_patch(fields, excluded.fields)"
    ),
}


def _row(point: TelemetryPoint) -> tuple[Any, ...]:
    if isinstance(point, VehiclePosition):
        return (point.vehicle, point.device or "", point.network or "", point.trip or "",
                point.time_ns, point.lat, point.lon, point.speed, point.heading)
    if isinstance(point, VehicleBattery):
        return (point.vehicle, point.device or "", point.network or "", point.time_ns,
                point.internal_pct, point.vae_pct, point.voltage)
    if isinstance(point, Temperature):
        return (point.station, point.spot or "", point.network or "", point.time_ns,
                point.celsius)
    if isinstance(point, StationEnergy):
        return (point.station, point.network or "", point.time_ns, point.energy_wh,
                point.power_w)
    if isinstance(point, SpotStatus):
        return (point.station, point.spot, point.network or "", point.time_ns,
                point.lock_status, point.vehicle)
    tags = json.dumps(dict(sorted(point.tags.items())), separators=(",", ":"))
    series = point.measurement + "," + ",".join(f"{k}={v}" for k, v in sorted(point.tags.items()))
    return (point.measurement, series, point.time_ns, tags,
            json.dumps(dict(point.fields), separators=(",", ":")))


class LocalTelemetryStore:
    """`TelemetryStore` in a SQLite file (`":memory:"` for a throw-away one)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        batch_size: int = 5_000,
        flush_interval: float = 1.0,
        max_buffer: int = 100_000,
    ) -> None:
        if batch_size < 1 or max_buffer < batch_size:
            raise ValueError("need 1 <= batch_size <= max_buffer")
        self.path = str(path)
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_buffer = max_buffer
        self._buffer: list[TelemetryPoint] = []
        self._stats = WriterStats()
        self._conn: sqlite3.Connection | None = None
        self._db_lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running = False

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        if self._running:
            return
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = await asyncio.to_thread(self._open)
        self._running = True
        self._task = asyncio.create_task(self._flush_loop(), name="local-telemetry-flush")

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        return conn

    async def close(self) -> None:
        if not self._running:
            return
        self._running = False
        if self._task is not None:
            # Let the loop finish its batch (a cancelled to_thread would leave the
            # insert running beside ours), then it exits.
            self._wakeup.set()
            await self._task
            self._task = None
        await self.flush()
        async with self._db_lock:
            if self._conn is not None:
                await asyncio.to_thread(self._conn.close)
                self._conn = None

    def write(self, point: TelemetryPoint) -> None:
        """Queue a point; validates it the way the InfluxDB writer does (raises
        `InvalidPointError`) and never waits on the disk."""
        if not self._running:
            raise WriterClosedError("LocalTelemetryStore")
        encode(point)  # same validation and same errors as the InfluxDB path
        if len(self._buffer) >= self._max_buffer:
            # The disk is far behind: shed load rather than grow without bound.
            self._stats.dropped += 1
            if self._stats.dropped % 10_000 == 1:
                log.error("local_telemetry_buffer_full dropped=%d", self._stats.dropped)
            return
        self._buffer.append(point)
        if len(self._buffer) >= self._batch_size:
            self._wakeup.set()

    async def flush(self) -> None:
        while self._buffer:
            batch = self._buffer[: self._batch_size]
            del self._buffer[: self._batch_size]
            try:
                await self._run(self._insert, batch)
            except sqlite3.Error as exc:
                self._stats.dropped += len(batch)
                self._stats.failed_requests += 1
                log.error("local_telemetry_write_failed points=%d error=%s", len(batch), exc)
            else:
                self._stats.written += len(batch)
            self._stats.requests += 1

    @property
    def stats(self) -> WriterStats:
        return replace(self._stats, buffered=len(self._buffer))

    async def _flush_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._flush_interval)
            self._wakeup.clear()
            try:
                await self.flush()
            except Exception:  # keep the loop alive whatever happens
                log.exception("local_telemetry_flush_failed")
            if not self._running:
                return

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        async with self._db_lock:
            if self._conn is None:
                raise WriterClosedError("LocalTelemetryStore")
            return await asyncio.to_thread(func, self._conn, *args)

    @staticmethod
    def _insert(conn: sqlite3.Connection, batch: list[TelemetryPoint]) -> None:
        grouped: dict[type, list[tuple[Any, ...]]] = {}
        for point in batch:
            grouped.setdefault(type(point), []).append(_row(point))
        with conn:
            conn.execute("BEGIN")
            for kind, values in grouped.items():
                conn.executemany(_UPSERT[kind], values)

    async def _select(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        await self.flush()  # a query sees every point written before it
        try:
            return await self._run(_fetch, sql, params)
        except sqlite3.Error as exc:
            raise TelemetryQueryError(sql, str(exc)) from exc

    # ------------------------------------------------------------ queries

    async def vehicle_timeline(
        self,
        vehicle: str,
        start: datetime,
        end: datetime,
        *,
        trip: str | None = None,
        limit: int = 10_000,
    ) -> list[PositionSample]:
        start_ns, end_ns = time_range_ns(start, end)
        sql = (
            "SELECT time_ns, lat, lon, speed, heading, trip FROM vehicle_position "
            "WHERE vehicle = ? AND time_ns >= ? AND time_ns <= ?"
        )
        params: list[Any] = [vehicle, start_ns, end_ns]
        if trip is not None:
            sql += " AND trip = ?"
            params.append(trip)
        sql += " ORDER BY time_ns LIMIT ?"
        params.append(check_limit(limit))
        return [
            PositionSample(t, lat, lon, speed, heading, trip_id or None)
            for t, lat, lon, speed, heading, trip_id in await self._select(sql, params)
        ]

    async def fleet_positions(
        self, vehicles: Sequence[str], start: datetime, end: datetime
    ) -> dict[str, list[PositionSample]]:
        start_ns, end_ns = time_range_ns(start, end)

        async def read(names: list[str], at_most: int) -> list[tuple[str, PositionSample]]:
            marks = ",".join("?" * len(names))
            sql = (
                "SELECT vehicle, time_ns, lat, lon, speed, heading, trip FROM vehicle_position "
                f"WHERE vehicle IN ({marks}) AND time_ns >= ? AND time_ns < ? "
                "ORDER BY time_ns LIMIT ?"
            )
            return [
                (v, PositionSample(t, lat, lon, speed, heading, trip_id or None))
                for v, t, lat, lon, speed, heading, trip_id in await self._select(
                    sql, [*names, start_ns, end_ns, at_most]
                )
            ]

        return await read_fleet(vehicles, read)

    async def battery_history(
        self, vehicle: str, start: datetime, end: datetime, *, limit: int = 10_000
    ) -> list[BatterySample]:
        start_ns, end_ns = time_range_ns(start, end)
        sql = (
            "SELECT time_ns, internal_pct, vae_pct, voltage FROM vehicle_battery "
            "WHERE vehicle = ? AND time_ns >= ? AND time_ns <= ? ORDER BY time_ns LIMIT ?"
        )
        found = await self._select(sql, [vehicle, start_ns, end_ns, check_limit(limit)])
        return [BatterySample(*row) for row in found]

    async def temperature_history(
        self,
        station: str,
        start: datetime,
        end: datetime,
        *,
        spot: str | None = None,
        limit: int = 10_000,
    ) -> list[TemperatureSample]:
        start_ns, end_ns = time_range_ns(start, end)
        # The station's own readings are stored under the spot "" (the key has no NULL).
        sql = (
            "SELECT time_ns, celsius FROM temperature WHERE station = ? AND spot = ? "
            "AND time_ns >= ? AND time_ns <= ? ORDER BY time_ns LIMIT ?"
        )
        params = [station, spot or "", start_ns, end_ns, check_limit(limit)]
        return [TemperatureSample(*row) for row in await self._select(sql, params)]

    async def station_energy_consumption(
        self, station: str, start_date: date, end_date: date, timezone: str
    ) -> list[DailyEnergy]:
        plan = energy_plan(start_date, end_date, timezone)
        await self.flush()
        try:
            last_before, first_after = await self._run(
                _energy_readings, station, plan.boundaries_ns
            )
        except sqlite3.Error as exc:
            raise TelemetryQueryError("station_energy", str(exc)) from exc
        return daily_consumption(plan, last_before, first_after)

    async def heatmap(
        self,
        networks: Sequence[str | int],
        area: BoundingBox,
        date_min: datetime,
        date_max: datetime,
        zoom: int,
        *,
        max_positions: int = MAX_HEATMAP_POSITIONS,
    ) -> list[HeatmapPoint]:
        check_zoom(zoom)
        nets = check_networks(networks)
        start_ns, end_ns = heatmap_period_ns(date_min, date_max)
        marks = ",".join("?" * len(nets))
        sql = (
            f"SELECT time_ns, lat, lon FROM vehicle_position WHERE network IN ({marks}) "
            "AND time_ns >= ? AND time_ns < ? AND lat BETWEEN ? AND ? AND lon BETWEEN ? AND ? "
            f"LIMIT {max_positions + 1}"
        )
        found = await self._select(
            sql, [*nets, start_ns, end_ns, area.south, area.north, area.west, area.east]
        )
        return aggregate_heatmap(
            ((t, lat, lon) for t, lat, lon in found), zoom, limit=max_positions
        )


def _fetch(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(sql, params).fetchall()


def _energy_readings(
    conn: sqlite3.Connection, station: str, boundaries: list[int]
) -> tuple[list[float | None], list[float | None]]:
    last_before: list[float | None] = []
    for b in boundaries:
        row = conn.execute(
            "SELECT energy_wh FROM station_energy WHERE station = ? AND time_ns < ? "
            "AND time_ns >= ? ORDER BY time_ns DESC LIMIT 1",
            (station, b, b - ENERGY_LOOKBACK_NS),
        ).fetchone()
        last_before.append(None if row is None else float(row[0]))
    first_after: list[float | None] = []
    for b, nxt in itertools.pairwise(boundaries):
        row = conn.execute(
            "SELECT energy_wh FROM station_energy WHERE station = ? AND time_ns >= ? "
            "AND time_ns < ? ORDER BY time_ns LIMIT 1",
            (station, b, nxt),
        ).fetchone()
        first_after.append(None if row is None else float(row[0]))
    return last_before, first_after


__all__ = ["LocalTelemetryStore"]
