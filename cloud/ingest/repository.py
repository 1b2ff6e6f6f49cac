"""The SQL of ingest, in one place: statements built once, and the PostgreSQL fast paths.

The handlers (:mod:`kickstand.cloud.ingest.handlers`) and the core
(:mod:`kickstand.cloud.ingest.apply`) say what changes; this module says how, per dialect.

What the fast paths measured (``benchmarks/ingest_throughput.py``, 2 workers, status and
telemetry): building a statement and its cache key costs about as much CPU as running it,
so hot statements are built once at import; on PostgreSQL a batch's statuses, positions,
batteries and spot changes are ONE statement each over arrays (``unnest``), prepared once
whatever the batch size, and the status upsert returns the applied spots' rows in the same
round trip. SQLite (tests, the embedded demo) gets the portable executemany forms.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Integer,
    String,
    Table,
    and_,
    bindparam,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import outbox, trips
from kickstand.cloud.events import EventPayload, EventType
from kickstand.cloud.ingest.batch import DeviceInfo
from kickstand.cloud.ingest.tables import DeviceBoot, DeviceCommand, DeviceStatus, IngestedMessage
from kickstand.cloud.models import (
    Cluster,
    Device,
    DeviceKind,
    MaintenanceSource,
    Network,
    Rent,
    Spot,
    Station,
    Vehicle,
)


def _table(model: type[Any]) -> Table:
    """The Core table of a mapped class, typed as one (``__table__`` is a FromClause)."""
    table: Table = model.__table__
    return table


def insert(session: AsyncSession, table: Any) -> Any:
    """INSERT with the dialect's ON CONFLICT clauses."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def pg(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


_DEVICE_ID = _table(Device).c.device_id
# Identity of devices, stations and vehicles in one round trip (device_id is unique on
# stations and on vehicles: one row per device).
_DEVICES = (
    select(
        _DEVICE_ID,
        Device.kind,
        Device.credentials,
        Station.id,
        Cluster.network_id,
        Vehicle.id,
        Vehicle.serial_number,
        Vehicle.network_id,
        Device.boot_id,
        DeviceBoot.acks,
    )
    .outerjoin(Station, Station.device_id == Device.device_id)
    .outerjoin(Cluster, Cluster.id == Station.cluster_id)
    .outerjoin(Vehicle, Vehicle.device_id == Device.device_id)
    # The current boot's birth (devices.boot_id is its text form).
    .outerjoin(
        DeviceBoot,
        and_(
            DeviceBoot.device_id == Device.device_id,
            cast(DeviceBoot.boot_id, String) == Device.boot_id,
        ),
    )
    .where(_DEVICE_ID.in_(bindparam("ids", expanding=True)))
)
# Statements of the hot paths are built once (building one and its cache key costs about
# as much CPU as running it). Core where no ORM object is wanted.
_CLAIM: dict[str, Any] = {}  # per dialect: the dedupe claim (INSERT … ON CONFLICT DO NOTHING)
_SEEN = (
    _table(Device)
    .update()
    .where(_DEVICE_ID.in_(bindparam("ids", expanding=True)))
    .values(last_seen_at=bindparam("now"))
)
_COMMANDS = _table(DeviceCommand)
_RENT_OF_COMMAND = select(_COMMANDS.c.rent_id).where(_COMMANDS.c.command_id == bindparam("cid"))
_OWNER_OF_COMMAND = select(_COMMANDS.c.rent_id, _COMMANDS.c.operator_id).where(
    _COMMANDS.c.command_id == bindparam("cid")
)
_COMMAND_RESULT = (
    _COMMANDS.update()
    .where(
        _COMMANDS.c.command_id == bindparam("cid"),
        _COMMANDS.c.device_id == bindparam("dev"),
        _COMMANDS.c.status.in_(bindparam("allowed_from", expanding=True)),
    )
    .values(
        status=bindparam("new_status"), reason=bindparam("new_reason"), result_at=bindparam("at")
    )
)
_SPOTS_OF = select(_table(Spot)).where(
    _table(Spot).c.station_id.in_(bindparam("stations", expanding=True))
)
_VEHICLES = (
    select(Vehicle, Network)
    .join(Network, Network.id == Vehicle.network_id)
    .where(Vehicle.id.in_(bindparam("ids", expanding=True)))
)


# -- identity, dedupe, liveness ---------------------------------------------------------


async def load_devices(session: AsyncSession, ids: set[str]) -> dict[str, DeviceInfo]:
    rows: Any = (await session.execute(_DEVICES, {"ids": sorted(ids)})).all()
    infos: dict[str, DeviceInfo] = {}
    for (
        device_id, kind, creds, station_id, station_network, vid, serial, vnetwork, boot,
        acks,
    ) in rows:  # fmt: skip
        info = DeviceInfo(
            device_id,
            kind,
            bool((creds or {}).get("decommissioned")),
            station_id=station_id,
            network_id=station_network,
            booted=boot is not None,
            acks=bool(acks),
        )
        if kind == DeviceKind.VEHICLE and vid is not None:
            info.vehicle_id, info.serial_number, info.network_id = vid, serial, vnetwork
        infos[device_id] = info
    return infos


async def claim(
    session: AsyncSession, keys: list[tuple[str, int, int]], now: datetime
) -> set[tuple[str, int, int]]:
    """Insert the dedupe keys; returns the ones this transaction inserted (won)."""
    # executemany ("insertmanyvalues"): the statement compiles once and is cached,
    # whatever the batch size; RETURNING gives the keys this transaction inserted.
    stmt = _CLAIM.get(session.get_bind().dialect.name)
    if stmt is None:
        table = _table(IngestedMessage)
        stmt = _CLAIM[session.get_bind().dialect.name] = (
            insert(session, table)
            .on_conflict_do_nothing(index_elements=["device_id", "boot_id", "seq"])
            .returning(table.c.device_id, table.c.boot_id, table.c.seq)
        )
    params = [{"device_id": d, "boot_id": b, "seq": s, "ingested_at": now} for d, b, s in keys]
    rows: Any = (await session.execute(stmt, params)).all()
    return {(str(d), int(b), int(s)) for d, b, s in rows}


async def mark_seen(session: AsyncSession, ids: list[str], now: datetime) -> None:
    await session.execute(_SEEN, {"ids": ids, "now": now})


async def prune_claims(session: AsyncSession, cutoff: datetime) -> int:
    table = _table(IngestedMessage)
    result = await session.execute(table.delete().where(table.c.ingested_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)


# -- birth, death, heartbeat ------------------------------------------------------------


_BOOT_KNOWN = select(DeviceBoot.id).where(
    DeviceBoot.device_id == bindparam("d"), DeviceBoot.boot_id == bindparam("b")
)


async def boot_known(session: AsyncSession, device_id: str, boot_id: int) -> bool:
    """Whether a birth of this boot was applied before."""
    return (await session.execute(_BOOT_KNOWN, {"d": device_id, "b": boot_id})).first() is not None


async def upsert_boot(session: AsyncSession, values: dict[str, Any]) -> None:
    """The boot's row, created or replaced by its (latest) birth."""
    ins = insert(session, DeviceBoot).values(values)
    await session.execute(
        ins.on_conflict_do_update(
            index_elements=["device_id", "boot_id"],
            set_={k: ins.excluded[k] for k in values if k not in ("device_id", "boot_id")},
        )
    )


async def born(session: AsyncSession, device_id: str, values: dict[str, Any]) -> bool:
    """Update the device row after an accepted birth; returns whether it was online."""
    was_online: bool = (
        await session.execute(select(Device.online).where(Device.device_id == device_id))
    ).scalar_one()
    await session.execute(update(Device).where(Device.device_id == device_id).values(**values))
    return was_online


async def died(
    session: AsyncSession, device_id: str, boot_id: int, ts_ms: int, slack_ms: int
) -> bool:
    """Mark the device offline if ``boot_id`` is its current boot and no birth of that boot
    is newer than the death (by more than ``slack_ms``); returns whether it did."""
    later_birth = exists().where(
        DeviceBoot.device_id == device_id,
        DeviceBoot.boot_id == boot_id,
        DeviceBoot.birth_ts_ms > ts_ms + slack_ms,
    )
    result = await session.execute(
        update(Device)
        .where(
            Device.device_id == device_id,
            Device.boot_id == str(boot_id),
            Device.online.is_(True),
            ~later_birth,
        )
        .values(online=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def boot_died(
    session: AsyncSession, device_id: str, boot_id: int, values: dict[str, Any]
) -> None:
    await session.execute(
        update(DeviceBoot)
        .where(DeviceBoot.device_id == device_id, DeviceBoot.boot_id == boot_id)
        .values(**values)
    )


_OFFLINE_OF = select(_DEVICE_ID).where(
    _DEVICE_ID.in_(bindparam("ids", expanding=True)), _table(Device).c.online.is_(False)
)
_DEVICES_T = _table(Device)
_REVIVE = (
    update(_DEVICES_T)
    .where(
        _DEVICES_T.c.device_id == bindparam("d"),
        _DEVICES_T.c.boot_id == bindparam("bs"),
        _DEVICES_T.c.online.is_(False),
        # Not when the boot's death is newer than the heartbeat (a late heartbeat after a
        # graceful death).
        ~exists().where(
            DeviceBoot.device_id == bindparam("d"),
            DeviceBoot.boot_id == bindparam("b"),
            DeviceBoot.death_ts_ms >= bindparam("ts"),
        ),
    )
    .values(online=True, last_seen_at=bindparam("now"))
)


async def heartbeats(
    session: AsyncSession, params: list[dict[str, Any]], now: datetime
) -> list[str]:
    """``params``: d (device), bs (boot id text), b (boot id), ts (device time). A heartbeat
    of the current boot brings an offline device online again (dead or gone silent),
    unless the boot's death is newer than the heartbeat. Returns the devices it brought
    online (their change is told, :func:`~kickstand.cloud.ingest.handlers.session.emit_online`).
    One query when none is offline (nearly always)."""
    ids = sorted({p["d"] for p in params})
    offline = set((await session.scalars(_OFFLINE_OF, {"ids": ids})).all())
    revived: list[str] = []
    for param in params:
        if param["d"] in offline:
            result = await session.execute(_REVIVE, {**param, "now": now})
            if getattr(result, "rowcount", 0):
                revived.append(param["d"])
                offline.discard(param["d"])
    return revived


_SILENCED = (
    update(_DEVICES_T)
    .where(
        _DEVICES_T.c.device_id == bindparam("d"),
        _DEVICES_T.c.online.is_(True),
        _DEVICES_T.c.last_seen_at == bindparam("seen"),
    )
    .values(online=False)
)


async def silenced(session: AsyncSession, device_id: str, last_seen_at: datetime) -> bool:
    """Mark a device offline that the liveness rule finds silent since ``last_seen_at``;
    compare and set: a message received meanwhile (or another worker's sweep) wins.
    Returns whether this transaction did."""
    result = await session.execute(_SILENCED, {"d": device_id, "seen": last_seen_at})
    return bool(getattr(result, "rowcount", 0))


# -- status -----------------------------------------------------------------------------


async def upsert_statuses(
    session: AsyncSession, rows: list[dict[str, Any]], horizon_ms: int
) -> tuple[set[tuple[str, int]], dict[tuple[int, int], Any] | None]:
    """The newer of each (device, spot) wins; returns the applied (device, spot) keys and,
    on PostgreSQL, the rows of their spots by (station id, number) (None: not read)."""
    returned: Any
    spots: dict[tuple[int, int], Any] | None = None
    if pg(session):
        columns: dict[str, Any] = {name: [r[name] for r in rows] for name in _STATUS_COLUMNS}
        columns["horizon_ms"] = horizon_ms
        returned = (await session.execute(_PG_STATUS_UPSERT_SPOTS, columns)).all()
        spots = {(r.station_id, r.displayed_number): r for r in returned if r.id is not None}
        returned = [(r.device_id, r.spot) for r in returned]
    else:
        ins = insert(session, _table(DeviceStatus))
        col = _table(DeviceStatus).c
        stmt = ins.on_conflict_do_update(
            index_elements=["device_id", "spot"],
            set_={k: ins.excluded[k] for k in rows[0] if k not in ("device_id", "spot")},
            where=or_(
                and_(col.boot_id == ins.excluded.boot_id, col.seq < ins.excluded.seq),
                and_(
                    col.boot_id != ins.excluded.boot_id,
                    or_(col.ts_ms < ins.excluded.ts_ms, col.ts_ms > literal(horizon_ms)),
                ),
            ),
        ).returning(col.device_id, col.spot)
        returned = (await session.execute(stmt, rows)).all()
    return {(str(d), int(s)) for d, s in returned}, spots


async def spots_of(session: AsyncSession, station_ids: list[int]) -> dict[tuple[int, int], Any]:
    """The spot rows of stations by (station id, displayed number)."""
    return {
        (s.station_id, s.displayed_number): s
        for s in (await session.execute(_SPOTS_OF, {"stations": station_ids})).all()
    }


_STATIONS_HELD = (
    select(_table(Spot).c.station_id)
    .where(
        _table(Spot).c.station_id.in_(bindparam("stations", expanding=True)),
        _table(Spot).c.maintenance_source == MaintenanceSource.STATION.value,
    )
    .distinct()
)


async def stations_held(session: AsyncSession, station_ids: list[int]) -> set[int]:
    """Of these stations, the ones the operator holds in maintenance as a whole."""
    return set((await session.scalars(_STATIONS_HELD, {"stations": station_ids})).all())


async def update_spots(session: AsyncSession, changes: list[dict[str, Any]]) -> None:
    """``changes``: sid, lock, state (a SpotState), src (maintenance source or None)."""
    if not changes:
        return
    if pg(session):
        await session.execute(
            _PG_SPOTS,
            {
                "sid": [c["sid"] for c in changes],
                "lock": [c["lock"] for c in changes],
                "state": [str(c["state"].value) for c in changes],
                "src": [c["src"] for c in changes],
            },
        )
        return
    table = _table(Spot)
    await session.execute(
        update(table)
        .where(table.c.id == bindparam("sid"))
        .values(
            lock_status=bindparam("lock"),
            state=bindparam("state"),
            maintenance_source=bindparam("src"),
        ),
        changes,
    )


async def vehicles_with_networks(session: AsyncSession, ids: list[int]) -> Any:
    """Vehicles and their networks, loaded into the session (the alert rules read them)."""
    return (await session.execute(_VEHICLES, {"ids": ids})).all()


# -- commands and rents -----------------------------------------------------------------


async def command_result(session: AsyncSession, params: dict[str, Any]) -> None:
    await session.execute(_COMMAND_RESULT, params)


async def rent_of_command(session: AsyncSession, command_id: bytes) -> int | None:
    rent_id: int | None = (
        await session.execute(_RENT_OF_COMMAND, {"cid": command_id.hex()})
    ).scalar_one_or_none()
    return rent_id


async def owner_of_command(session: AsyncSession, command_id: bytes) -> tuple[int | None, bool]:
    """The command's rent, and whether an operator sent it without one (a technician's
    unlock, :mod:`kickstand.cloud.technician`): one read for a removal."""
    row = (await session.execute(_OWNER_OF_COMMAND, {"cid": command_id.hex()})).first()
    if row is None:
        return None, False
    return row.rent_id, row.rent_id is None and row.operator_id is not None


async def open_rent_at_spot(session: AsyncSession, device_id: str, spot: int) -> int | None:
    rent_id: int | None = (
        await session.execute(
            select(Rent.id)
            .join(Spot, Spot.id == Rent.spot_id)
            .join(Station, Station.id == Spot.station_id)
            .where(
                Station.device_id == device_id,
                Spot.displayed_number == spot,
                Rent.status.in_(trips.STARTABLE_RENT_STATUSES),
            )
            .order_by(Rent.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    return rent_id


# Bulk updates: on PostgreSQL one statement over arrays (unnest) — a fixed SQL text,
# prepared once, whatever the batch size; elsewhere an executemany.

_PG_POSITIONS = text(
    "UPDATE vehicles AS v SET latitude = u.lat, longitude = u.lon, position_at = u.at "
    "FROM unnest(CAST(:vid AS integer[]), CAST(:lat AS float8[]), CAST(:lon AS float8[]), "
    "CAST(:at AS timestamptz[])) AS u(vid, lat, lon, at) "
    "WHERE v.id = u.vid AND v.spot_id IS NULL AND (v.position_at IS NULL OR v.position_at < u.at)"
)
_PG_BATTERIES = text(
    "UPDATE vehicles AS v SET battery_level = COALESCE(u.b, v.battery_level), "
    "assist_battery_level = COALESCE(u.v, v.assist_battery_level) "
    "FROM unnest(CAST(:vid AS integer[]), CAST(:b AS integer[]), CAST(:v AS integer[])) "
    "AS u(vid, b, v) WHERE v.id = u.vid"
)


_STATUS_COLUMNS = (
    "device_id", "spot", "boot_id", "seq", "ts_ms", "state", "lock", "serial_number", "fault",
    "battery_pct", "received_at",
)  # fmt: skip
# The newer stamp wins: same boot → higher seq; another boot → later device time, unless
# the stored stamp is ahead of the cloud's clock (past :horizon_ms): a clock that ran ahead
# must not freeze the row against the true statuses that follow (SPEC §4.2).
_PG_STATUS_UPSERT = text(
    "INSERT INTO device_status (device_id, spot, boot_id, seq, ts_ms, state, lock, "
    "serial_number, fault, battery_pct, received_at) "
    "SELECT * FROM unnest(CAST(:device_id AS varchar[]), CAST(:spot AS integer[]), "
    "CAST(:boot_id AS bigint[]), CAST(:seq AS bigint[]), CAST(:ts_ms AS bigint[]), "
    "CAST(:state AS integer[]), CAST(:lock AS integer[]), CAST(:serial_number AS varchar[]), "
    "CAST(:fault AS varchar[]), CAST(:battery_pct AS integer[]), "
    "CAST(:received_at AS timestamptz[])) "
    "ON CONFLICT (device_id, spot) DO UPDATE SET boot_id = excluded.boot_id, "
    "seq = excluded.seq, ts_ms = excluded.ts_ms, state = excluded.state, lock = excluded.lock, "
    "serial_number = excluded.serial_number, fault = excluded.fault, "
    "battery_pct = excluded.battery_pct, received_at = excluded.received_at "
    "WHERE (device_status.boot_id = excluded.boot_id AND device_status.seq < excluded.seq) "
    "OR (device_status.boot_id <> excluded.boot_id AND (device_status.ts_ms < excluded.ts_ms "
    "OR device_status.ts_ms > CAST(:horizon_ms AS bigint))) "
    "RETURNING device_id, spot"
)
# The same, with the spot rows of the statuses applied (one round trip instead of two).
_PG_STATUS_UPSERT_SPOTS = text(
    f"WITH applied AS ({_PG_STATUS_UPSERT.text}) "
    "SELECT a.device_id, a.spot, s.id, s.station_id, s.displayed_number, s.lock_status, "
    "s.state, s.maintenance_source, s.status_at FROM applied AS a "
    "LEFT JOIN stations AS st ON st.device_id = a.device_id "
    "LEFT JOIN spots AS s ON s.station_id = st.id AND s.displayed_number = a.spot"
).columns(
    device_id=String,
    spot=Integer,
    id=Integer,
    station_id=Integer,
    displayed_number=Integer,
    lock_status=Integer,
    state=_table(Spot).c.state.type,
    maintenance_source=String,
    status_at=_table(Spot).c.status_at.type,
)
_PG_SPOTS = text(
    "UPDATE spots AS s SET lock_status = u.lock, state = u.state, maintenance_source = u.src "
    "FROM unnest(CAST(:sid AS integer[]), CAST(:lock AS integer[]), CAST(:state AS varchar[]), "
    "CAST(:src AS varchar[])) AS u(sid, lock, state, src) WHERE s.id = u.sid"
)


# -- vehicles ---------------------------------------------------------------------------


async def update_positions(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Docked vehicles keep their station's position; older fixes never win."""
    if pg(session):
        await session.execute(
            _PG_POSITIONS,
            {
                "vid": [r["vid"] for r in rows],
                "lat": [r["lat"] for r in rows],
                "lon": [r["lon"] for r in rows],
                "at": [r["at"] for r in rows],
            },
        )
        return
    vehicles = _table(Vehicle)
    await session.execute(
        update(vehicles)
        .where(
            vehicles.c.id == bindparam("vid"),
            vehicles.c.spot_id.is_(None),
            or_(vehicles.c.position_at.is_(None), vehicles.c.position_at < bindparam("at")),
        )
        .values(latitude=bindparam("lat"), longitude=bindparam("lon"), position_at=bindparam("at")),
        rows,
    )


async def spot_occupants(session: AsyncSession, spot_ids: list[int]) -> dict[int, tuple[int, str]]:
    """The vehicle (id, serial number) the cloud has in each of these spots (absent: none)."""
    rows = await session.execute(
        select(Vehicle.spot_id, Vehicle.id, Vehicle.serial_number).where(
            Vehicle.spot_id.in_(spot_ids)
        )
    )
    return {spot_id: (vid, serial) for spot_id, vid, serial in rows.all() if spot_id is not None}


async def update_batteries(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """``b`` internal battery %, ``v`` e-assist battery % (None: unchanged)."""
    if pg(session):
        await session.execute(
            _PG_BATTERIES,
            {
                "vid": [r["vid"] for r in rows],
                "b": [r["b"] for r in rows],
                "v": [r["v"] for r in rows],
            },
        )
        return
    vehicles = _table(Vehicle)
    await session.execute(
        update(vehicles)
        .where(vehicles.c.id == bindparam("vid"))
        .values(
            battery_level=func.coalesce(bindparam("b"), vehicles.c.battery_level),
            assist_battery_level=func.coalesce(bindparam("v"), vehicles.c.assist_battery_level),
        ),
        rows,
    )


#: An outbox record: its catalogue definition, resource id, payload.
Record = tuple[EventType[Any], int | str, EventPayload]


async def record(session: AsyncSession, records: list[Record]) -> None:
    """The ingest's outbox records. One alone, with nothing waiting in the unit of work, is
    one Core INSERT now (no flush machinery for it); otherwise they join the unit of work
    after what waits there, in one INSERT with it (outbox ids keep the order of changes)."""
    if len(records) == 1 and not session.new:
        await outbox.insert(session, *records[0])
        return
    for record in records:
        outbox.emit(session, *record)


__all__ = [
    "Record",
    "boot_died",
    "boot_known",
    "born",
    "claim",
    "command_result",
    "died",
    "heartbeats",
    "insert",
    "load_devices",
    "mark_seen",
    "open_rent_at_spot",
    "pg",
    "prune_claims",
    "record",
    "rent_of_command",
    "silenced",
    "spots_of",
    "stations_held",
    "update_batteries",
    "update_positions",
    "update_spots",
    "upsert_boot",
    "upsert_statuses",
    "vehicles_with_networks",
]
