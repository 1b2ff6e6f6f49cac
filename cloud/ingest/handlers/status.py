"""Status (SPEC §4.4): the device's reported shadow, and the spots and vehicles it moves.

The newest status of each (device, spot) in the batch is upserted; the database keeps the
newer stamp (same boot: higher seq; another boot: later device time, a stamp ahead of the
cloud's clock never ordering), so out-of-order delivery across workers never rolls state
back. A spot's lock and fault state follow its applied status; a vehicle's battery too.

Status is authoritative for what a spot holds (SPEC §4.4): the vehicle a station reports
in a spot is moved there, a spot reported EMPTY is emptied (:func:`trips.spot_reported`;
never a trip started or ended). Maintenance belongs to the operator (:func:`spot_state`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import trips
from kickstand.cloud.events import catalogue as ev
from kickstand.cloud.events import payloads as p
from kickstand.cloud.ingest import repository as repo
from kickstand.cloud.ingest import rules
from kickstand.cloud.ingest.batch import BatchOutcome, DeviceInfo, Inbound, Reply
from kickstand.cloud.ingest.handlers.registry import handlers
from kickstand.cloud.models import DeviceKind, MaintenanceSource, SpotState, utcnow
from kickstand.protocol import topics
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import enums as pe
from kickstand.protocol.v1 import messages as m

if TYPE_CHECKING:
    from kickstand.cloud.ingest.apply import BatchApplier


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
    spot_updates: list[tuple[int, int, m.Status, Inbound]] = []
    battery: list[dict[str, Any]] = []
    vehicles: list[Inbound] = []
    in_service: dict[int, Inbound] = {}  # stations whose spot 0 says it is not in maintenance
    for key in sorted(applied):
        item = newest[key]
        st = item.msg.body
        assert isinstance(st, m.Status)
        info = infos[item.device_id]
        if info.kind == DeviceKind.STATION and st.spot >= 1 and info.station_id is not None:
            spot_updates.append((info.station_id, st.spot, st, item))
        elif info.kind == DeviceKind.STATION and info.station_id is not None:
            if st.state != pe.DeviceState.MAINTENANCE:
                in_service[info.station_id] = item
        elif info.kind == DeviceKind.VEHICLE and info.vehicle_id is not None:
            if st.battery_pct is not None:
                battery.append({"vid": info.vehicle_id, "b": st.battery_pct, "v": None})
            vehicles.append(item)
    await ctx.alert_all(session, ctx.sample(vehicles), infos)
    if spot_updates:
        await _spot_statuses(ctx, session, spot_updates, spots, infos, out)
    if battery:
        await repo.update_batteries(session, battery)
    if in_service:
        # The operator holds the whole station in maintenance: it is told again (§4.4).
        for station_id in sorted(await repo.stations_held(session, sorted(in_service))):
            device_id = in_service[station_id].device_id
            ctx.stats.ignore("maintenance-disagrees", device=device_id, spot=0)
            await resend_maintenance(ctx, session, device_id, 0, out)


async def _spot_statuses(
    ctx: BatchApplier,
    session: AsyncSession,
    updates: list[tuple[int, int, m.Status, Inbound]],
    spots: dict[tuple[int, int], Any] | None,
    infos: dict[str, DeviceInfo],
    out: BatchOutcome,
) -> None:
    """``spots``: the rows of the updated spots by (station id, number), if read already."""
    if spots is None:
        spots = await repo.spots_of(session, sorted({u[0] for u in updates}))
    changes: list[dict[str, Any]] = []
    changed: list[tuple[Any, Inbound, m.Status, int, SpotState, str | None]] = []
    for station_id, number, st, item in updates:
        row = spots.get((station_id, number))
        if row is None:
            ctx.stats.ignore("unknown-spot", station_id=station_id, spot=number)
            continue
        # The API's lock_status is the protocol's LockState code (SPEC §6, LockState).
        lock_status = int(st.lock) if st.lock is not None else row.lock_status
        state, source = spot_state(row.state, row.maintenance_source, st.state)
        if source == MaintenanceSource.OPERATOR and st.state != pe.SpotState.MAINTENANCE:
            # The operator owns maintenance: the station is told again (SPEC §4.4).
            ctx.stats.ignore("maintenance-disagrees", device=item.device_id, spot=number)
            await resend_maintenance(ctx, session, item.device_id, number, out)
        if lock_status != row.lock_status and ctx.alerts is not None:
            # A lock jammed, or working again: the spot-lock-fault rule (changes only).
            await ctx.alerts.on_spot_lock(session, item.device_id, station_id, number, lock_status)
        if lock_status != row.lock_status or state != row.state or source != row.maintenance_source:
            changes.append({"sid": row.id, "lock": lock_status, "state": state, "src": source})
            changed.append((row, item, st, lock_status, state, source))
    # A change of lock or state is rare: what the spots hold is read only for those.
    held = await repo.spot_occupants(session, [c[0].id for c in changed]) if changed else {}
    records: list[repo.Record] = []
    for row, item, st, lock_status, state, source in changed:
        vehicle_id, serial = held.get(row.id, (None, None))
        event = p.DockEvent(
            spot_id=row.id,
            station_id=row.station_id,
            station_device_id=item.device_id,
            network_id=infos[item.device_id].network_id,
            displayed_number=row.displayed_number,
            lock_status=lock_status,
            state=state,
            maintenance_source=source,
            contained_vehicle_id=vehicle_id,
            serial_number=serial,
            status_at=row.status_at,
            fault=st.fault,
        )
        records.append((ev.DOCK_UPDATED, row.id, event))
    await repo.record(session, records)
    await repo.update_spots(session, changes)
    await _occupancy(ctx, session, updates, spots)


async def _occupancy(
    ctx: BatchApplier,
    session: AsyncSession,
    updates: list[tuple[int, int, m.Status, Inbound]],
    spots: dict[tuple[int, int], Any],
) -> None:
    """Where a status disagrees with the cloud on what a spot holds, the vehicle moves
    (:func:`trips.spot_reported`). The cloud's record is read for the whole batch in one
    query: a status that agrees (nearly all) costs nothing more."""
    said: list[tuple[int, m.Status, Inbound]] = []
    for station_id, number, st, item in updates:
        row = spots.get((station_id, number))
        # A fault or maintenance without a serial number says nothing of occupancy.
        if row is not None and (st.serial_number is not None or st.state == pe.SpotState.EMPTY):
            said.append((row.id, st, item))
    if not said:
        return
    held = await repo.spot_occupants(session, [spot_id for spot_id, _, _ in said])
    for spot_id, st, item in said:
        # The same vehicle, or empty and empty.
        if held.get(spot_id, (None, None))[1] == st.serial_number:
            continue
        number = st.spot
        # Where the cloud held the vehicle before the status moves it (vehicle-in-two-spots).
        before = (
            await ctx.alerts.spot_of_vehicle(session, st.serial_number)
            if ctx.alerts is not None
            else None
        )
        done = await trips.spot_reported(
            session,
            item.device_id,
            number,
            st.serial_number,
            st.state == pe.SpotState.EMPTY,
            item.at,
        )
        if done == "moved" and ctx.alerts is not None:
            await ctx.alerts.on_vehicle_placed(session, st.serial_number, before)
        if done is not None and done not in ("moved", "cleared"):
            ctx.stats.ignore(f"status-{done}", device=item.device_id, spot=number)


def spot_state(
    current: SpotState, source: str | None, reported: int
) -> tuple[SpotState, str | None]:
    """The spot's state and maintenance owner after the station reported ``reported``
    (SPEC §4.4): the operator's maintenance (of the spot or of the whole station) holds
    whatever the station says (the whole station's is checked on its spot 0); a station's
    own MAINTENANCE lasts until it reports anything else; FAULT is out of order until the
    board recovers."""
    if source in (MaintenanceSource.OPERATOR, MaintenanceSource.STATION):
        return SpotState.MAINTENANCE, source
    if reported == pe.SpotState.MAINTENANCE:
        return SpotState.MAINTENANCE, MaintenanceSource.DEVICE
    if reported == pe.SpotState.FAULT:
        return SpotState.OUT_OF_ORDER, None
    if current in (SpotState.MAINTENANCE, SpotState.OUT_OF_ORDER):
        return SpotState.ACTIVE, None  # the station put it back in service / it recovered
    return current, None


async def resend_maintenance(
    ctx: BatchApplier, session: AsyncSession, device_id: str, spot: int, out: BatchOutcome
) -> None:
    """Send SetMaintenance(on) to a station that reports a spot the operator holds in
    maintenance as in service (a station that missed the command, or was reset); spot 0:
    the whole station."""
    if ctx.issuer is None:
        return
    # Imported here: commands.records imports the ingest package, whose handlers are this.
    from kickstand.cloud.commands.records import record_command

    issued = ctx.issuer.issue(device_id, m.SetMaintenance(spot=spot, on=True))
    await record_command(session, issued)
    out.replies.append(Reply(topics.down(device_id, Channel.COMMAND), issued.payload, 1))


__all__ = ["newer", "statuses"]
