"""Birth, death and heartbeat (SPEC §4.3): the device's session and liveness."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import outbox, trips
from kickstand.cloud.authlist import service as authlist
from kickstand.cloud.events import catalogue as ev
from kickstand.cloud.events import payloads as p
from kickstand.cloud.ingest import repository as repo
from kickstand.cloud.ingest.batch import BatchOutcome, DeviceInfo, Inbound, Reply, clip
from kickstand.cloud.ingest.handlers.registry import handlers
from kickstand.cloud.models import DeviceKind, Vehicle, utcnow
from kickstand.cloud.stations import repository as outages
from kickstand.protocol import topics
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1 import enums as pe
from kickstand.protocol.v1 import messages as m

if TYPE_CHECKING:
    from kickstand.cloud.ingest.apply import BatchApplier

log = logging.getLogger("kickstand.cloud.ingest.handlers.session")


def _by_device_time(item: Inbound) -> int:
    return item.msg.stamp.ts_ms


@handlers.channel(Channel.BIRTH)
async def births(
    ctx: BatchApplier,
    session: AsyncSession,
    items: list[Inbound],
    infos: dict[str, DeviceInfo],
    out: BatchOutcome,
) -> None:
    for item in sorted(items, key=_by_device_time):
        await _birth(ctx, session, item, infos[item.device_id], out)


async def _birth(
    ctx: BatchApplier, session: AsyncSession, item: Inbound, info: DeviceInfo, out: BatchOutcome
) -> None:
    birth = item.msg.body
    assert isinstance(birth, m.Birth)
    station = info.kind == DeviceKind.STATION
    expected = pe.DeviceKind.STATION if station else pe.DeviceKind.VEHICLE
    if birth.kind != expected:
        ctx.stats.reject("kind-mismatch", device=item.device_id, birth_kind=birth.kind.name)
        out.replies.append(ctx.boot_reply(item, pe.BootStatus.REJECTED))
        return
    stamp = item.msg.stamp
    now = utcnow()
    # The gap check counts a boot only from its first birth (kickstand.cloud.ingest.gaps).
    item.first_birth = not await repo.boot_known(session, item.device_id, stamp.boot_id)
    await repo.upsert_boot(
        session,
        {
            "device_id": item.device_id,
            "boot_id": stamp.boot_id,
            "birth_ts_ms": stamp.ts_ms,
            "received_at": now,
            "firmware": birth.firmware,
            "hardware": birth.hardware,
            "config_version": birth.config_version,
            "auth_list_version": birth.auth_list_version,
            "inventory": [
                {"kind": c.kind, "index": c.index, "firmware": c.firmware} for c in birth.inventory
            ],
            "pending_from": birth.pending_from,
            "serial_number": birth.serial_number,
            "accepted": True,
            "died_at": None,
            "death_ts_ms": None,
            "death_reason": None,
            "acks": birth.acks,
        },
    )
    was_online = await repo.born(
        session,
        item.device_id,
        {
            "boot_id": str(stamp.boot_id),
            "online": True,
            "last_seen_at": now,
            # The interval its BootReply gives it: liveness counts silence in it.
            "heartbeat_s": ctx.heartbeat_s,
            "firmware_version": birth.firmware,
            "hardware_version": birth.hardware,
            "config_version": birth.config_version,
        },
    )
    if not was_online:
        await emit_online(session, info, True, now)
    # This worker's view of the device now (others see it within INFO_TTL_S; until then
    # they may not Ack it, and the device's resend after its ack timeout is Acked).
    info.booted = True
    info.acks = birth.acks
    out.replies.append(
        ctx.boot_reply(item, pe.BootStatus.ACCEPTED, acks=True if birth.acks else None)
    )
    if station and info.network_id is not None:
        # The station's local authorization list: a FULL when it holds another version.
        issued = await authlist.at_birth(
            session, ctx.issuer, item.device_id, info.network_id, birth.auth_list_version
        )
        out.replies.extend(Reply.command(c) for c in issued)
    await ctx.alert(session, item, info)
    log.info(
        "event=device_birth device=%s boot_id=%s firmware=%s pending_from=%s acks=%s",
        item.device_id,
        stamp.boot_id,
        clip(birth.firmware),
        birth.pending_from,
        birth.acks,
    )


async def emit_online(session: AsyncSession, info: DeviceInfo, online: bool, at: datetime) -> None:
    """``station.updated`` / ``vehicule.updated`` with ``online``: the device's resource as
    it stands (a device attached to no station or vehicle yet has none to tell of). The
    device's outage history (seed 002 station outages) opens or closes here too."""
    if online:
        await outages.outage_ended(session, info.device_id, at)
    else:
        await outages.outage_started(session, info.device_id, at)
    if info.kind == DeviceKind.STATION and info.station_id is not None:
        event = p.StationEvent(
            station_id=info.station_id,
            device_id=info.device_id,
            network_id=info.network_id,
            online=online,
            at=at,
        )
        outbox.emit(session, ev.STATION_UPDATED, info.station_id, event)
    elif info.kind == DeviceKind.VEHICLE and info.vehicle_id is not None:
        vehicle = await session.get_one(Vehicle, info.vehicle_id)
        payload = trips.vehicle_payload(vehicle, online=online, at=at)
        outbox.emit(session, ev.VEHICLE_UPDATED, vehicle.id, payload)


@handlers.channel(Channel.DEATH)
async def deaths(
    ctx: BatchApplier,
    session: AsyncSession,
    items: list[Inbound],
    infos: dict[str, DeviceInfo],
    out: BatchOutcome,
) -> None:
    """A death applies only to the device's current boot and not before that boot's last
    birth (a Will is stamped at its connect: ``death_slack_ms`` before the birth)."""
    for item in sorted(items, key=_by_device_time):
        death = item.msg.body
        assert isinstance(death, m.Death)
        stamp = item.msg.stamp
        info = infos[item.device_id]
        if not await repo.died(
            session, item.device_id, stamp.boot_id, stamp.ts_ms, ctx.death_slack_ms
        ):
            ctx.stats.ignore(
                "stale-death", device=item.device_id, boot_id=stamp.boot_id, ts_ms=stamp.ts_ms
            )
            continue
        now = utcnow()
        await repo.boot_died(
            session,
            item.device_id,
            stamp.boot_id,
            {"died_at": now, "death_ts_ms": stamp.ts_ms, "death_reason": death.reason or "will"},
        )
        await emit_online(session, info, False, now)
        await ctx.alert(session, item, info)
        log.info(
            "event=device_death device=%s boot_id=%s reason=%s",
            item.device_id,
            stamp.boot_id,
            clip(death.reason or "will"),
        )


@handlers.channel(Channel.HEARTBEAT)
async def heartbeats(
    ctx: BatchApplier,
    session: AsyncSession,
    items: list[Inbound],
    infos: dict[str, DeviceInfo],
    out: BatchOutcome,
) -> None:
    """Each heartbeat is answered with a TimeReply echoing its stamp; one of the current
    boot brings the device online again (unless that boot's death is newer), told as a
    birth tells it."""
    params = []
    for item in sorted(items, key=lambda i: i.device_id):
        stamp = item.msg.stamp
        params.append(
            {"d": item.device_id, "bs": str(stamp.boot_id), "b": stamp.boot_id, "ts": stamp.ts_ms}
        )
        reply = m.TimeReply(server_time_ms=ctx.clock_ms(), device_ts_ms=stamp.ts_ms)
        out.replies.append(
            Reply(topics.down(item.device_id, Channel.TIME), codec.encode_down(reply), 0)
        )
    now = utcnow()
    for device_id in await repo.heartbeats(session, params, now):
        await emit_online(session, infos[device_id], True, now)


__all__ = ["births", "deaths", "emit_online", "heartbeats"]
