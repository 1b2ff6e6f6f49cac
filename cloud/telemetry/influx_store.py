"""`InfluxTelemetryStore`: the `TelemetryStore` over InfluxDB (v1-compatible API):
writes through `InfluxV1Writer`, queries in InfluxQL."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import date, datetime
from types import TracebackType
from typing import Any, Self

from kickstand.cloud.telemetry.points import (
    STATION_ENERGY,
    TEMPERATURE,
    VEHICLE_BATTERY,
    VEHICLE_POSITION,
    TelemetryPoint,
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
from kickstand.cloud.telemetry.writer import InfluxV1Writer


def quote(value: str) -> str:
    """An InfluxQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of one statement's result, as dicts, all series merged."""
    out: list[dict[str, Any]] = []
    for series in result.get("series", []):
        columns = series["columns"]
        tags = series.get("tags") or {}
        for values in series.get("values", []):
            row = dict(zip(columns, values, strict=False))
            row.update(tags)
            out.append(row)
    return out


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _has_fix(r: dict[str, Any]) -> bool:
    return r.get("lat") is not None and r.get("lon") is not None


def _position(r: dict[str, Any]) -> PositionSample:
    return PositionSample(
        time_ns=int(r["time"]),
        lat=float(r["lat"]),
        lon=float(r["lon"]),
        speed=_opt_float(r.get("speed")),
        heading=_opt_float(r.get("heading")),
        trip=r.get("trip") or None,
    )


class InfluxTelemetryStore:
    """`TelemetryStore` backed by InfluxDB; owns its `InfluxV1Writer`."""

    def __init__(self, writer: InfluxV1Writer) -> None:
        self.writer = writer

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
        await self.writer.start()

    async def close(self) -> None:
        await self.writer.close()

    def write(self, point: TelemetryPoint) -> None:
        self.writer.write(point)

    async def flush(self) -> None:
        await self.writer.flush()

    @property
    def stats(self) -> WriterStats:
        return self.writer.stats

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
        where = f"vehicle = {quote(vehicle)}"
        if trip is not None:
            where += f" AND trip = {quote(trip)}"
        q = (
            f"SELECT lat, lon, speed, heading, trip FROM {VEHICLE_POSITION} WHERE {where} "
            f"AND time >= {start_ns} AND time <= {end_ns} ORDER BY time ASC "
            f"LIMIT {check_limit(limit)}"
        )
        (result,) = await self.writer.query(q)
        samples = [_position(r) for r in rows(result) if _has_fix(r)]
        samples.sort(key=lambda s: s.time_ns)
        return samples[:limit]

    async def fleet_positions(
        self, vehicles: Sequence[str], start: datetime, end: datetime
    ) -> dict[str, list[PositionSample]]:
        start_ns, end_ns = time_range_ns(start, end)

        async def read(names: list[str], at_most: int) -> list[tuple[str, PositionSample]]:
            named = " OR ".join(f"vehicle = {quote(v)}" for v in names)
            # GROUP BY vehicle: each row carries its series' tag (``rows`` merges it in);
            # LIMIT counts per series there: read_fleet caps the total.
            q = (
                f"SELECT lat, lon, speed, heading, trip FROM {VEHICLE_POSITION} "
                f"WHERE ({named}) AND time >= {start_ns} AND time < {end_ns} "
                f"GROUP BY vehicle ORDER BY time ASC LIMIT {at_most}"
            )
            (result,) = await self.writer.query(q)
            found = [(str(r["vehicle"]), _position(r)) for r in rows(result) if _has_fix(r)]
            return sorted(found, key=lambda vs: vs[1].time_ns)

        return await read_fleet(vehicles, read)

    async def battery_history(
        self, vehicle: str, start: datetime, end: datetime, *, limit: int = 10_000
    ) -> list[BatterySample]:
        start_ns, end_ns = time_range_ns(start, end)
        q = (
            f"SELECT internal_pct, vae_pct, voltage FROM {VEHICLE_BATTERY} "
            f"WHERE vehicle = {quote(vehicle)} AND time >= {start_ns} AND time <= {end_ns} "
            f"ORDER BY time ASC LIMIT {check_limit(limit)}"
        )
        (result,) = await self.writer.query(q)
        samples = [
            BatterySample(
                time_ns=int(r["time"]),
                internal_pct=_opt_float(r.get("internal_pct")),
                vae_pct=_opt_float(r.get("vae_pct")),
                voltage=_opt_float(r.get("voltage")),
            )
            for r in rows(result)
        ]
        samples.sort(key=lambda s: s.time_ns)
        return samples[:limit]

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
        # The station's own readings carry no spot tag: InfluxQL's `spot = ''` selects them.
        q = (
            f"SELECT celsius FROM {TEMPERATURE} WHERE station = {quote(station)} "
            f"AND spot = {quote(spot or '')} AND time >= {start_ns} AND time <= {end_ns} "
            f"ORDER BY time ASC LIMIT {check_limit(limit)}"
        )
        (result,) = await self.writer.query(q)
        samples = [
            TemperatureSample(time_ns=int(r["time"]), celsius=float(r["celsius"]))
            for r in rows(result)
            if r.get("celsius") is not None
        ]
        samples.sort(key=lambda s: s.time_ns)
        return samples[:limit]

    async def station_energy_consumption(
        self, station: str, start_date: date, end_date: date, timezone: str
    ) -> list[DailyEnergy]:
        plan = energy_plan(start_date, end_date, timezone)
        base = f"FROM {STATION_ENERGY} WHERE station = {quote(station)}"
        statements = [
            f"SELECT last(energy_wh) {base} AND time < {b} AND time >= {b - ENERGY_LOOKBACK_NS}"
            for b in plan.boundaries_ns
        ]
        statements += [
            f"SELECT first(energy_wh) {base} AND time >= {b} AND time < {nxt}"
            for b, nxt in itertools.pairwise(plan.boundaries_ns)
        ]
        # One request for all the statements; POST because the text can be long.
        results = await self.writer.query("; ".join(statements), method="POST")
        values: list[float | None] = []
        for result in results:
            found = rows(result)
            first_row = found[0] if found else {}
            values.append(_opt_float(first_row.get("last", first_row.get("first"))))
        count = len(plan.boundaries_ns)
        return daily_consumption(plan, values[:count], values[count:])

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
        network_filter = " OR ".join(f"network = {quote(n)}" for n in nets)
        q = (
            f"SELECT lat, lon FROM {VEHICLE_POSITION} WHERE ({network_filter}) "
            f"AND time >= {start_ns} AND time < {end_ns} "
            f"AND lat >= {area.south:.9f} AND lat <= {area.north:.9f} "
            f"AND lon >= {area.west:.9f} AND lon <= {area.east:.9f} "
            f"LIMIT {max_positions + 1}"
        )
        (result,) = await self.writer.query(q)
        return aggregate_heatmap(
            (
                (int(r["time"]), float(r["lat"]), float(r["lon"]))
                for r in rows(result)
                if r.get("lat") is not None and r.get("lon") is not None
            ),
            zoom,
            limit=max_positions,
        )


__all__ = ["InfluxTelemetryStore", "quote", "rows"]
