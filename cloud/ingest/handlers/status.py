"""Status (SPEC §4.4): the device's reported shadow, and the spots and vehicles it moves.

The newest status of each (device, spot) in the batch is upserted; the database keeps the
newer stamp (same boot: higher seq; another boot: later device time, a stamp ahead of the
cloud's clock never ordering), so out-of-order delivery across workers never rolls state
back. A spot's lock and fault state follow its applied status; a vehicle's battery too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import outbox
from kickstand.cloud.ingest import repository as repo
from kickstand.cloud.ingest import rules
from kickstand.cloud.ingest.batch import BatchOutcome, DeviceInfo, Inbound
from kickstand.cloud.ingest.handlers.registry import handlers
from kickstand.cloud.models import DeviceKind, LockStatus, SpotState, utcnow
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import enums as pe
from kickstand.protocol.v1 import messages as m

if TYPE_CHECKING:
    from kickstand.cloud.ingest.apply import BatchApplier

_SPOT_STATE_FROM_DEVICE: dict[int, SpotState] = {
    pe.SpotState.FAULT: SpotState.OUT_OF_ORDER,
    pe.SpotState.MAINTENANCE: SpotState.MAINTENANCE,
}


def newer(a: m.Stamp, b: m.Stamp) -> bool:
    if a.boot_id == b.boot_id:
        return a.seq > b.seq
    return a.ts_ms > b.ts_ms


@handlers.channel(Channel.STATUS)
async def statuses(
    ctx: BatchApplier,
    session: AsyncSession,
    items: list[Inbound],
    infos: dict[str, DeviceInfo],
    out: BatchOutcome,
) -> None:
    newest: dict[tuple[str, int], Inbound] = {}
    for item in items:
        status = item.msg.body
        assert isinstance(status, m.Status)
        k = (item.device_id, status.spot)
        cur = newest.get(k)
        if cur is None or newer(item.msg.stamp, cur.msg.stamp):
            if cur is not None:
                ctx.stats.ignore("superseded-status", device=item.device_id)
            newest[k] = item
        else:
            ctx.stats.ignore("superseded-status", device=item.device_id)
    now = utcnow()
    rows = []
    for (device_id, spot), item in sorted(newest.items()):
        st = item.msg.body
        assert isinstance(st, m.Status)
        rows.append(
            {
                "device_id": device_id,
                "spot": spot,
                "boot_id": item.msg.stamp.boot_id,
                "seq": item.msg.stamp.seq,
                "ts_ms": item.msg.stamp.ts_ms,
                "state": int(st.state),
                "lock": int(st.lock) if st.lock is not None else None,
                "serial_number": st.serial_number,
                "fault": st.fault,
                "battery_pct": st.battery_pct,
                "received_at": now,
            }
        )
    # A stored stamp further ahead than this cannot order a status of another boot.
    horizon_ms = ctx.clock_ms() + rules.STATUS_ORDER_SLACK_MS
    applied, spots = await repo.upsert_statuses(session, rows, horizon_ms)
    stale = len(rows) - len(applied)
    if stale:
        ctx.stats.ignored["stale-status"] += stale
    spot_updates: list[tuple[int, int, m.Status]] = []
    battery: list[dict[str, Any]] = []
    vehicles: list[Inbound] = []
    for key in sorted(applied):
        item = newest[key]
        st = item.msg.body
        assert isinstance(st, m.Status)
        info = infos[item.device_id]
        if info.kind == DeviceKind.STATION and st.spot >= 1 and info.station_id is not None:
            spot_updates.append((info.station_id, st.spot, st))
        elif info.kind == DeviceKind.VEHICLE and info.vehicle_id is not None:
            if st.battery_pct is not None:
                battery.append({"vid": info.vehicle_id, "b": st.battery_pct, "v": None})
            vehicles.append(item)
    await ctx.alert_all(session, ctx.sample(vehicles), infos)
    if spot_updates:
        await _spot_statuses(ctx, session, spot_updates, spots)
    if battery:
        await repo.update_batteries(session, battery)


async def _spot_statuses(
    ctx: BatchApplier,
    session: AsyncSession,
    updates: list[tuple[int, int, m.Status]],
    spots: dict[tuple[int, int], Any] | None,
) -> None:
    """``spots``: the rows of the updated spots by (station id, number), if read already."""
    if spots is None:
        spots = await repo.spots_of(session, sorted({u[0] for u in updates}))
    changes: list[dict[str, Any]] = []
    records: list[repo.Record] = []
    for station_id, number, st in updates:
        row = spots.get((station_id, number))
        if row is None:
            ctx.stats.ignore("unknown-spot", station_id=station_id, spot=number)
            continue
        lock_status = row.lock_status
        if st.lock is pe.LockState.LOCKED:
            lock_status = int(LockStatus.LOCKED)
        elif st.lock is pe.LockState.OPEN:
            lock_status = int(LockStatus.UNLOCKED)
        state = row.state
        device_state = _SPOT_STATE_FROM_DEVICE.get(int(st.state))
        if device_state is not None:
            state = device_state
        elif state == SpotState.OUT_OF_ORDER:
            state = SpotState.ACTIVE  # the board recovered
        if lock_status != row.lock_status or state != row.state:
            changes.append({"sid": row.id, "lock": lock_status, "state": state})
            records.append(
                (
                    outbox.DOCK_UPDATED,
                    "spot",
                    row.id,
                    {
                        "spot_id": row.id,
                        "station_id": station_id,
                        "displayed_number": number,
                        "lock_status": lock_status,
                        "state": state,
                        "fault": st.fault,
                    },
                )
            )
    await repo.record(session, records)
    await repo.update_spots(session, changes)


__all__ = ["newer", "statuses"]
