"""Telemetry (SPEC §5): points for the telemetry store, positions and batteries of
vehicles (the newest fix per vehicle per batch), geofencing of the positions."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.ingest import repository as repo
from kickstand.cloud.ingest.batch import BatchOutcome, DeviceInfo, Inbound
from kickstand.cloud.ingest.handlers.registry import handlers
from kickstand.cloud.models import DeviceKind
from kickstand.cloud.telemetry.points import (
    StationEnergy,
    TelemetryPoint,
    Temperature,
    VehicleBattery,
    VehiclePosition,
)
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import messages as m

if TYPE_CHECKING:
    from kickstand.cloud.ingest.apply import BatchApplier


@handlers.channel(Channel.TELEMETRY)
async def telemetry(
    ctx: BatchApplier,
    session: AsyncSession,
    items: list[Inbound],
    infos: dict[str, DeviceInfo],
    out: BatchOutcome,
) -> None:
    latest_pos: dict[int, tuple[int, m.Telemetry]] = {}
    latest_item: dict[int, Inbound] = {}
    for item in items:
        t = item.msg.body
        assert isinstance(t, m.Telemetry)
        info = infos[item.device_id]
        ts_ns = item.msg.stamp.ts_ms * 1_000_000
        network = str(info.network_id) if info.network_id is not None else None
        try:
            out.points.extend(_points(item.device_id, info, t, ts_ns, network))
        except Exception as exc:  # a point the store refuses must not sink the batch
            ctx.stats.reject("bad-telemetry", device=item.device_id, error=exc)
        if info.vehicle_id is not None:
            if ctx.freefloat is not None and info.network_id is not None:
                ctx.freefloat.add_position(
                    info.vehicle_id, item.device_id, info.network_id, t.lon, t.lat, item.at
                )
            prev = latest_pos.get(info.vehicle_id)
            if prev is None or prev[0] < item.msg.stamp.ts_ms:
                latest_pos[info.vehicle_id] = (item.msg.stamp.ts_ms, t)
                latest_item[info.vehicle_id] = item
    pos_rows: list[dict[str, Any]] = []
    bat_rows: list[dict[str, Any]] = []
    for vid, (ts_ms, t) in sorted(latest_pos.items()):
        at = datetime.fromtimestamp(ts_ms / 1000, UTC)
        if t.lat is not None and t.lon is not None:
            pos_rows.append({"vid": vid, "lat": t.lat, "lon": t.lon, "at": at})
        if t.battery_pct is not None or t.vae_pct is not None:
            bat_rows.append({"vid": vid, "b": t.battery_pct, "v": t.vae_pct})
    if pos_rows:
        await repo.update_positions(session, pos_rows)
    # The alert rules (geofence, battery) see the newest fix of each vehicle per batch.
    due = ctx.sample([latest_item[vid] for vid in sorted(latest_item)])
    # The rules read the vehicle of each fix and its network: all in one query, kept
    # in the session for the loop.
    located: list[int] = []
    for item in due:
        vehicle_id = infos[item.device_id].vehicle_id
        if vehicle_id is not None and _has_fix(item.msg.body):
            located.append(vehicle_id)
    loaded = await repo.vehicles_with_networks(session, located) if located else ()
    await ctx.alert_all(session, due, infos)
    del loaded
    if bat_rows:
        await repo.update_batteries(session, bat_rows)


def _has_fix(body: object) -> bool:
    return isinstance(body, m.Telemetry) and body.lat is not None and body.lon is not None


def _points(
    device_id: str, info: DeviceInfo, t: m.Telemetry, ts_ns: int, network: str | None
) -> Iterable[TelemetryPoint]:
    if info.kind == DeviceKind.VEHICLE:
        vehicle = info.serial_number or device_id
        if t.lat is not None and t.lon is not None:
            yield VehiclePosition(
                vehicle, t.lat, t.lon, ts_ns, speed=t.speed_kmh,
                heading=float(t.heading_deg) if t.heading_deg is not None else None,
                network=network, device=device_id,
            )
        if t.battery_pct is not None or t.vae_pct is not None or t.vae_mv is not None:
            yield VehicleBattery(
                vehicle, ts_ns,
                internal_pct=float(t.battery_pct) if t.battery_pct is not None else None,
                vae_pct=float(t.vae_pct) if t.vae_pct is not None else None,
                voltage=t.vae_mv / 1000 if t.vae_mv is not None else None,
                network=network, device=device_id,
            )
        return
    if t.temperature_c is not None:
        yield Temperature(device_id, t.temperature_c, ts_ns, network=network)
    for spot, celsius in t.spot_temperatures_c:
        yield Temperature(device_id, celsius, ts_ns, spot=str(spot), network=network)
    if t.energy_wh is not None:
        yield StationEnergy(
            device_id, float(t.energy_wh), ts_ns,
            power_w=float(t.power_w) if t.power_w is not None else None, network=network,
        )


__all__ = ["telemetry"]
