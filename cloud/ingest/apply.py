"""Apply one batch of decoded device messages to the database, in one transaction.

The database is the arbiter between workers (a shared subscription hands the messages
of ONE device to several workers, in any interleaving):

* events and command results (sequenced, not idempotent by nature) insert their
  (device_id, boot_id, seq) into ``ingested_messages`` first — ``ON CONFLICT DO NOTHING
  RETURNING`` says which are new; only those are applied, in the same transaction. A
  second worker racing on the same key waits for the first to commit, then skips it.
* status is a conditional upsert into ``device_status`` (newer stamp wins: same boot →
  higher seq, other boot → later device time), so an older status never overwrites a
  newer one, whichever worker gets it last.
* birth / death / heartbeat are conditional UPDATEs of ``devices`` (a death only
  applies to the current boot and not before that boot's last birth).
* events are ordered by (device, boot, seq) within the batch; the trip engine orders
  by DEVICE time across batches (late events are reconciled there).

Rows are touched in a sorted order to keep lock waits between workers deadlock-free
as far as possible; a deadlock that still happens is retried by the worker.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any

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
from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from kickstand.cloud import outbox, trips
from kickstand.cloud.alerts.device_rules import DeviceRef
from kickstand.cloud.ingest import deadletters, rules
from kickstand.cloud.ingest.deadletters import (
    PAYLOAD_MAX,
    DeadLetterBudget,
    DeadLetterReason,
    Letter,
)
from kickstand.cloud.ingest.tables import (
    CommandStatus,
    DeviceBoot,
    DeviceCommand,
    DeviceStatus,
    IngestedMessage,
)
from kickstand.cloud.models import (
    Cluster,
    Device,
    DeviceKind,
    LockStatus,
    Network,
    Rent,
    Spot,
    SpotState,
    Station,
    Vehicle,
    utcnow,
)
from kickstand.cloud.telemetry.points import (
    StationEnergy,
    TelemetryPoint,
    Temperature,
    VehicleBattery,
    VehiclePosition,
)
from kickstand.protocol import topics
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1 import enums as pe
from kickstand.protocol.v1 import messages as m

if TYPE_CHECKING:
    from kickstand.cloud.alerts.engine import AlertEngine
    from kickstand.cloud.freefloat.hook import FreeFloatHook

log = logging.getLogger("kickstand.cloud.ingest.apply")

#: A Will is stamped when the connection that set it was made, i.e. just before that
#: connection's birth: a death up to this much older than the boot's last birth applies.
DEFAULT_DEATH_SLACK_MS = 2_000
REJECTED_RETRY_AFTER_S = 300
#: Device identity cache: known devices for INFO_TTL_S, unknown ones for UNKNOWN_TTL_S (a
#: device created in the database is accepted within that time; a decommissioning takes
#: effect within INFO_TTL_S).
INFO_TTL_S = 30.0
UNKNOWN_TTL_S = 5.0
INFO_CACHE_MAX = 200_000
SEEN_WRITE_S = 5.0


@dataclass(slots=True)
class Inbound:
    """A decoded device message of a batch, with what it came as (for a dead letter)."""

    device_id: str
    channel: Channel
    msg: m.UpMessage
    #: The payload as received (empty: re-encoded from ``msg`` when needed).
    raw: bytes = b""
    topic: str = ""
    #: Cloud receive time, ms since the epoch (0: the time it is applied).
    received_ms: int = 0
    #: Checked by :meth:`BatchApplier.prepare` (storable, device time bounded).
    prepared: bool = False
    #: The dead letter this is a replay of (a failure counts on that row).
    replay_of: int | None = None

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.device_id, self.msg.stamp.boot_id, self.msg.stamp.seq)

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.msg.stamp.ts_ms / 1000, UTC)

    @property
    def sequenced(self) -> bool:
        return self.msg.stamp.seq >= 1

    def letter(self, reason: str, error: BaseException | str, **extra: Any) -> Letter:
        raw = self.raw
        if not raw:
            try:
                raw = codec.encode_up(self.msg.stamp, self.msg.body)
            except Exception:  # a message that cannot be encoded again: keep its repr
                raw = repr(self.msg).encode()[:PAYLOAD_MAX]
        return Letter.of_error(
            reason,
            error,
            topic=self.topic or topics.up(self.device_id, self.channel),
            payload=raw,
            device_id=self.device_id,
            channel=self.channel.value,
            boot_id=self.msg.stamp.boot_id,
            seq=self.msg.stamp.seq if self.sequenced else None,
            replay_of=self.replay_of,
            **extra,
        )


class _LoneEventFailed(Exception):
    """The event of a one-message batch, applied with no savepoint, failed (and was counted):
    the transaction is rolled back and the batch applied again without it."""

    def __init__(self, key: tuple[str, int, int], letter: Letter) -> None:
        super().__init__(key)
        self.key = key
        self.letter = letter


@dataclass(slots=True)
class Reply:
    topic: str
    payload: bytes
    qos: int


@dataclass(slots=True)
class BatchOutcome:
    replies: list[Reply] = field(default_factory=list)
    points: list[TelemetryPoint] = field(default_factory=list)
    #: Dead letters stored in the batch's transaction.
    dead: list[Letter] = field(default_factory=list)
    #: Sequenced messages whose fate the batch committed (applied, duplicate or dead
    #: letter) of devices that take Acks: what the worker acknowledges (SPEC §4.6).
    settled: list[tuple[str, int, int]] = field(default_factory=list)
    #: Keys of dead letters over the budget: not stored, so not acknowledged.
    unsettled: set[tuple[str, int, int]] = field(default_factory=set)

    def merge(self, other: BatchOutcome) -> None:
        self.replies.extend(other.replies)
        self.points.extend(other.points)
        self.dead.extend(other.dead)
        self.settled.extend(other.settled)
        self.unsettled.update(other.unsettled)


#: A logged value longer than this is cut (a 60 KB topic must not become a 180 KB line).
LOG_VALUE_MAX = 120
#: At most one rejection line per reason per this many seconds (with the count since).
LOG_EVERY_S = 10.0


def clip(value: object, limit: int = LOG_VALUE_MAX) -> str:
    """``value`` as text for a log line or a column: printable, at most ``limit`` chars."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        text = f"{text[: limit - 12]}…(+{len(text) - limit + 12})"
    return text.encode("unicode_escape").decode("ascii")[: limit * 2]


class LogLimiter:
    """A warning line at most every ``every_s`` per (event, reason), saying how many
    happened since the last line; every value clipped."""

    def __init__(self, every_s: float = LOG_EVERY_S) -> None:
        self.every_s = every_s
        self._last: dict[str, tuple[float, int]] = {}

    def warn(self, event: str, reason: str, /, **context: Any) -> None:
        now = time.monotonic()
        key = f"{event}|{reason}"
        last, count = self._last.get(key, (-1e18, 0))
        if now - last < self.every_s:
            self._last[key] = (last, count + 1)
            return
        if len(self._last) > 10_000:  # reasons are few; a flood of keys must not grow it
            self._last.clear()
        self._last[key] = (now, 0)
        details = " ".join(f"{k}={clip(v)}" for k, v in context.items())
        log.warning("event=%s reason=%s suppressed=%s %s", event, reason, count, details)


@dataclass(slots=True)
class IngestStats:
    """Counters of one worker: plain ints and Counters (per reason / channel), to export as
    they are. ``lag_s``: receive-to-commit time of the last batch's newest message;
    ``oldest_s``: the same for its oldest one (how far behind the worker runs)."""

    received: int = 0
    applied: int = 0
    duplicates: int = 0
    batches: int = 0
    retries: int = 0
    acks_sent: int = 0
    clock_flagged: int = 0
    lag_s: float = 0.0
    oldest_s: float = 0.0
    rejected: Counter[str] = field(default_factory=Counter)
    ignored: Counter[str] = field(default_factory=Counter)
    by_channel: Counter[str] = field(default_factory=Counter)
    #: Messages stored in the dead-letter table, per reason.
    dead_lettered: Counter[str] = field(default_factory=Counter)
    #: Dead letters not stored (over the cap per device, reason and hour), per reason.
    dead_dropped: Counter[str] = field(default_factory=Counter)
    #: Rejection log lines, rate-limited (not a counter: exporters skip it).
    log_limiter: LogLimiter = field(default_factory=lambda: LogLimiter(), repr=False)

    def export(self) -> dict[str, float | dict[str, int]]:
        """Every counter by name: numbers, and {label: count} for the per-reason ones
        (what a Prometheus exporter turns into counters and gauges)."""
        out: dict[str, float | dict[str, int]] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, Counter):
                out[name] = dict(value)
            elif isinstance(value, int | float):
                out[name] = value
        return out

    def reject(self, reason: str, **context: Any) -> None:
        self.rejected[reason] += 1
        self.log_limited("ingest_rejected", reason, **context)

    def ignore(self, reason: str, **context: Any) -> None:
        self.ignored[reason] += 1
        if log.isEnabledFor(logging.DEBUG):
            details = " ".join(f"{k}={clip(v)}" for k, v in context.items())
            log.debug("event=ingest_ignored reason=%s %s", reason, details)

    def log_limited(self, event: str, reason: str, /, **context: Any) -> None:
        self.log_limiter.warn(event, reason, **context)


@dataclass(slots=True)
class _DeviceInfo:
    device_id: str
    kind: DeviceKind
    decommissioned: bool
    station_id: int | None = None
    network_id: int | None = None
    vehicle_id: int | None = None
    serial_number: str | None = None
    #: A birth of this device was accepted once (it has a current boot).
    booted: bool = False
    #: Its current boot's birth said acks=True: it is sent Acks (SPEC §4.6).
    acks: bool = False

    @property
    def ref(self) -> DeviceRef:
        """The row the alert rules know this device by (a station first, as they look)."""
        if self.station_id is not None:
            return DeviceRef(station_id=self.station_id)
        return DeviceRef(vehicle_id=self.vehicle_id)


def _table(model: type[Any]) -> Table:
    """The Core table of a mapped class, typed as one (``__table__`` is a FromClause)."""
    table: Table = model.__table__
    return table


def _insert(session: AsyncSession, table: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


#: SQLSTATE classes whose errors pass (retry the batch): connection exception, insufficient
#: resources (disk full, out of memory, too many connections), system error (I/O).
TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "53", "58"})
#: And single states: serialization failure, deadlock, lock not available, admin / crash
#: shutdown, cannot connect now ("the database system is starting up", a standby, a
#: failover), with PostgreSQL's own reasons for each.
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03"})
#: SQLite's busy / locked result codes (primary and extended).
_SQLITE_BUSY = frozenset({5, 6, 261, 262, 517})


def _sqlstate(exc: BaseException) -> str | None:
    code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    return code if isinstance(code, str) and len(code) == 5 else None


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, what SQLAlchemy wraps (``orig``) and their causes, without cycles."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        cur = todo.pop()
        if cur is None or any(cur is s for s in seen) or len(seen) > 16:
            continue
        seen.append(cur)
        todo.extend((getattr(cur, "orig", None), cur.__cause__, cur.__context__))
    return seen


def is_transient(exc: BaseException) -> bool:
    """Will the same batch succeed later, unchanged? Then retry it (never acknowledge it).

    Decided by SQLSTATE (:data:`TRANSIENT_SQLSTATE_CLASSES`, :data:`TRANSIENT_SQLSTATES`),
    never by message text, so "the database system is starting up" (57P03) is a wait and
    a constraint violation (class 23) or a bad value (class 22) is not. Without a SQLSTATE:
    a connection SQLAlchemy invalidated, asyncpg's connection errors, OSError (refused,
    reset), TimeoutError, a pool checkout timeout and SQLite's busy/locked codes pass;
    everything else is permanent.
    """
    import asyncpg  # the PostgreSQL driver; imported here so SQLite-only tools need no PG

    for cur in _chain(exc):
        if isinstance(cur, DBAPIError) and cur.connection_invalidated:
            return True
        code = _sqlstate(cur)
        if code is not None:
            # The first SQLSTATE found decides: a wrapped cause says the same or nothing.
            return code[:2] in TRANSIENT_SQLSTATE_CLASSES or code in TRANSIENT_SQLSTATES
        if isinstance(
            cur,
            OSError
            | TimeoutError
            | asyncpg.exceptions.PostgresConnectionError
            | sa_exc.TimeoutError
            | sa_exc.DisconnectionError,
        ):
            return True
        if getattr(cur, "sqlite_errorcode", None) in _SQLITE_BUSY:
            return True
    return False


#: SQLAlchemy's per-connection savepoint counter (sa_savepoint_<n>), reset per batch.
_SAVEPOINT_SEQ = "_Connection__savepoint_seq"
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

_SPOT_STATE_FROM_DEVICE: dict[int, SpotState] = {
    pe.SpotState.FAULT: SpotState.OUT_OF_ORDER,
    pe.SpotState.MAINTENANCE: SpotState.MAINTENANCE,
}


class BatchApplier:
    """Turns a batch of decoded messages into one database transaction."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        stats: IngestStats,
        *,
        heartbeat_s: int = 30,
        death_slack_ms: int = DEFAULT_DEATH_SLACK_MS,
        clock_ms: Callable[[], int] = _now_ms,
        alerts: AlertEngine | None = None,
        freefloat: FreeFloatHook | None = None,
        alert_sample_s: float = 5.0,
        hold_connection: bool = False,
        require_boot: bool = False,
        budget: DeadLetterBudget | None = None,
    ) -> None:
        """``alerts``: the fleet alert rules, fed every new message in the same transaction
        — events, births and deaths always; a vehicle's telemetry and status at most once
        per ``alert_sample_s`` (its newest one: a geofence or battery rule needs no finer
        grain, and the rules cost several queries per call).
        ``freefloat``: geofencing of vehicle positions and free-float lock verdicts.
        ``hold_connection``: keep one connection between batches (a worker does; call
        :meth:`release` when done).
        ``require_boot``: a sequenced message of a device that never had a birth accepted
        is a dead letter (the workers; off for callers that feed messages directly).
        ``budget``: dead letters stored per device, reason and hour."""
        self.alert_sample_s = alert_sample_s
        self._sampled: dict[tuple[str, Channel], float] = {}
        self._sessionmaker = sessionmaker
        self.alerts = alerts
        self.freefloat = freefloat
        self.stats = stats
        self.heartbeat_s = heartbeat_s
        self.death_slack_ms = death_slack_ms
        self._clock_ms = clock_ms
        # Identity of devices (kind, station, vehicle, network) rarely changes: cached.
        self._infos: dict[str, tuple[float, _DeviceInfo | None]] = {}
        self._seen_written: dict[str, float] = {}
        self.hold_connection = hold_connection
        self._connection: AsyncConnection | None = None
        self.require_boot = require_boot
        self.budget = budget or DeadLetterBudget()

    async def _session(self) -> AsyncSession:
        """A session for one batch. With ``hold_connection`` it runs on this applier's own
        connection, kept between batches: a pool checkout costs a liveness ping (three round
        trips) and pool bookkeeping, per batch, i.e. per message when devices are quiet."""
        if not self.hold_connection:
            return self._sessionmaker()
        if self._connection is None:
            bind = self._sessionmaker.kw["bind"]
            engine: AsyncEngine = bind if isinstance(bind, AsyncEngine) else bind.engine
            self._connection = await engine.connect()
        sync = self._connection.sync_connection
        if sync is None or not hasattr(sync, _SAVEPOINT_SEQ):
            # Savepoint names count up per connection: never reset, every event would
            # prepare two new statements (and push useful ones out of asyncpg's cache).
            self.hold_connection = False
            await self.release()
            return self._sessionmaker()
        setattr(sync, _SAVEPOINT_SEQ, 0)
        return self._sessionmaker(bind=self._connection)

    async def release(self) -> None:
        """Give the held connection back to the pool (after a failure: the next batch takes
        a fresh, pinged one)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    async def apply(self, batch: list[Inbound]) -> BatchOutcome:
        """Apply ``batch`` in one transaction. Raises only what the whole batch failed on
        (transient: retry it; else the worker applies its messages one by one)."""
        if not batch:
            return BatchOutcome()
        try:
            try:
                return await self._apply(batch)
            except _LoneEventFailed as failed:
                return await self._apply(batch, failed=failed)
        except BaseException:
            await self.release()
            raise

    def prepare(self, item: Inbound) -> Letter | None:
        """Checks without the database, once per message: a device time out of bounds is
        replaced by the receive time (:func:`rules.device_time`) and the device's clock
        flagged; then a value PostgreSQL cannot store makes it a dead letter (returned)."""
        if item.prepared:
            return None
        item.prepared = True
        if not item.received_ms:
            item.received_ms = self._clock_ms()
        stamp = item.msg.stamp
        # Heartbeats keep their stamp: the TimeReply echoes it to correct that very clock.
        if item.channel is not Channel.HEARTBEAT:
            ts_ms, flagged = rules.device_time(stamp.ts_ms, item.received_ms)
            if flagged:
                self.stats.clock_flagged += 1
                self.stats.log_limited(
                    "device_clock_flagged",
                    item.device_id,
                    device=item.device_id,
                    ts_ms=stamp.ts_ms,
                    received_ms=item.received_ms,
                )
                # Birth and death stay in the device's own clock when storable: a death is
                # ordered against its boot's birth (both wrong the same way is still the
                # right order).
                keep = item.channel in (Channel.BIRTH, Channel.DEATH)
                if not keep or stamp.ts_ms > rules.INT64_MAX:
                    item.msg = m.UpMessage(
                        m.Stamp(stamp.boot_id, stamp.seq, ts_ms), item.msg.body
                    )
        problem = rules.unstorable(item.msg)
        if problem is not None:
            return item.letter(DeadLetterReason.UNSTORABLE, problem)
        return None

    def _refuse(
        self, item: Inbound, info: _DeviceInfo | None, booted: set[str]
    ) -> tuple[str, str] | None:
        """A rule that refuses the message whatever the database holds: (reason, error)."""
        if info is None:
            return DeadLetterReason.UNKNOWN_DEVICE, "no such device"
        if info.decommissioned:
            return DeadLetterReason.DECOMMISSIONED, "the device is decommissioned"
        if (
            self.require_boot
            and item.sequenced
            and not info.booted
            and item.device_id not in booted
        ):
            return DeadLetterReason.NO_BOOT, "no birth of this device was ever accepted"
        body = item.msg.body
        if info.kind == DeviceKind.VEHICLE and isinstance(body, m.Status) and body.spot >= 1:
            return DeadLetterReason.VEHICLE_SPOT_STATUS, f"a vehicle reported spot {body.spot}"
        return None

    def _letter(self, out: BatchOutcome, letter: Letter) -> None:
        """Keep ``letter`` for the batch's transaction, within the budget (else only counted)."""
        if letter.replay_of is None and not self.budget.allow(letter.device_id, letter.reason):
            self.stats.dead_dropped[letter.reason] += 1
            if letter.device_id is not None and letter.boot_id is not None and letter.seq:
                out.unsettled.add((letter.device_id, letter.boot_id, letter.seq))
            return
        out.dead.append(letter)

    async def _apply(
        self, batch: list[Inbound], failed: _LoneEventFailed | None = None
    ) -> BatchOutcome:
        """``failed``: the event of a one-message batch that failed: the batch is applied
        again without it (the key claimed, the device seen, the dead letter stored)."""
        out = BatchOutcome()
        if self.freefloat is not None:
            self.freefloat.begin_batch()
        dead: set[int] = set()
        for n, item in enumerate(batch):
            letter = self.prepare(item)
            if letter is not None:
                dead.add(n)
                self.stats.reject(letter.reason, device=item.device_id, error=letter.error)
                self._letter(out, letter)
        async with await self._session() as session, session.begin():
            infos = await self._devices(session, {i.device_id for i in batch})
            booted = {i.device_id for i in batch if i.channel is Channel.BIRTH}
            known: list[Inbound] = []
            for n, item in enumerate(batch):
                if n in dead:
                    continue
                info = infos.get(item.device_id)
                refused = self._refuse(item, info, booted)
                if refused is not None:
                    reason, error = refused
                    if item.channel is Channel.BIRTH:
                        out.replies.append(self._boot_reply(item, pe.BootStatus.REJECTED))
                    self.stats.reject(reason, device=item.device_id, channel=item.channel)
                    self._letter(
                        out,
                        item.letter(
                            reason, error, network_id=info.network_id if info else None
                        ),
                    )
                    continue
                known.append(item)
            if failed is not None:
                failed.letter.network_id = infos[failed.key[0]].network_id
                self._letter(out, failed.letter)
            if known:
                await self._apply_known(session, batch, known, infos, out, failed)
            await deadletters.store(session, out.dead)
        for letter in out.dead:
            self.stats.dead_lettered[letter.reason] += 1
        out.settled = self._settled(batch, infos, out)
        if self.freefloat is not None:
            await self.freefloat.after_commit(self._sessionmaker)
        return out

    def _settled(
        self, batch: list[Inbound], infos: dict[str, _DeviceInfo], out: BatchOutcome
    ) -> list[tuple[str, int, int]]:
        """The sequenced messages of devices taking Acks whose fate this batch committed:
        all of them but the dead letters over the budget (not stored: not acknowledged,
        the device keeps them)."""
        settled: list[tuple[str, int, int]] = []
        for item in batch:
            info = infos.get(item.device_id)
            if info is None or not info.acks or not item.sequenced:
                continue
            if item.key in out.unsettled or item.msg.stamp.seq > rules.INT64_MAX:
                continue
            settled.append(item.key)
        return settled

    async def _apply_known(
        self,
        session: AsyncSession,
        batch: list[Inbound],
        known: list[Inbound],
        infos: dict[str, _DeviceInfo],
        out: BatchOutcome,
        failed: _LoneEventFailed | None,
    ) -> None:
        fresh = await self._dedupe(session, known)
        by_channel: dict[Channel, list[Inbound]] = {}
        for item in fresh:
            by_channel.setdefault(item.channel, []).append(item)
        ts_key: Callable[[Inbound], int] = lambda i: i.msg.stamp.ts_ms  # noqa: E731
        for item in sorted(by_channel.get(Channel.BIRTH, []), key=ts_key):
            await self._birth(session, item, infos[item.device_id], out)
        for item in sorted(by_channel.get(Channel.DEATH, []), key=ts_key):
            await self._death(session, item, infos[item.device_id])
        await self._heartbeats(session, by_channel.get(Channel.HEARTBEAT, []), out)
        await self._statuses(session, by_channel.get(Channel.STATUS, []), infos)
        await self._telemetry(session, by_channel.get(Channel.TELEMETRY, []), infos, out)
        # An event alone in its batch needs no savepoint (two round trips): if it fails,
        # the batch runs again without it, as the savepoint would have left it.
        lone = len(batch) == 1 and failed is None
        skip = failed.key if failed is not None else None
        for item in sorted(by_channel.get(Channel.EVENT, []), key=lambda i: i.key):
            if item.key != skip:
                await self._event(session, item, infos[item.device_id], out, savepoint=not lone)
        for item in by_channel.get(Channel.RESULT, []):
            await self._result(session, item)
        await self._seen(session, {i.device_id for i in known})
        self.stats.applied += len(fresh)
        for item in fresh:
            self.stats.by_channel[item.channel.value] += 1

    async def store_letters(self, letters: list[Letter]) -> BatchOutcome:
        """Store dead letters in a transaction of their own (a message that failed alone, or
        ones that never decoded); the sequenced ones of devices taking Acks are settled."""
        out = BatchOutcome()
        for letter in letters:
            self._letter(out, letter)
        if not out.dead:
            return out
        ids = {lt.device_id for lt in out.dead if lt.device_id is not None}
        try:
            async with self._sessionmaker() as session, session.begin():
                infos = await self._devices(session, ids) if ids else {}
                for letter in out.dead:
                    info = infos.get(letter.device_id or "")
                    if letter.network_id is None and info is not None:
                        letter.network_id = info.network_id
                await deadletters.store(session, out.dead)
        except BaseException:
            await self.release()
            raise
        for letter in out.dead:
            self.stats.dead_lettered[letter.reason] += 1
            info = infos.get(letter.device_id or "")
            if info is not None and info.acks and letter.boot_id is not None and letter.seq:
                if letter.seq <= rules.INT64_MAX and letter.boot_id <= rules.INT64_MAX:
                    out.settled.append((info.device_id, letter.boot_id, letter.seq))
        return out

    # -- lookups ----------------------------------------------------------------------

    async def _devices(self, session: AsyncSession, ids: set[str]) -> dict[str, _DeviceInfo]:
        now = time.monotonic()
        infos: dict[str, _DeviceInfo] = {}
        missing: set[str] = set()
        for device_id in ids:
            cached = self._infos.get(device_id)
            if cached is None or cached[0] < now:
                missing.add(device_id)
                continue
            info = cached[1]
            # A device never booted is looked up again: another worker may accept its birth
            # any moment, and its next messages must not be refused as "no boot".
            if info is not None and self.require_boot and not info.booted:
                missing.add(device_id)
            elif info is not None:
                infos[device_id] = info
        if missing:
            loaded = await self._load_devices(session, missing)
            if len(self._infos) > INFO_CACHE_MAX:
                self._infos.clear()
            for device_id in missing:
                info = loaded.get(device_id)
                ttl = INFO_TTL_S if info is not None else UNKNOWN_TTL_S
                self._infos[device_id] = (now + ttl, info)
                if info is not None:
                    infos[device_id] = info
        return infos

    async def _load_devices(
        self, session: AsyncSession, ids: set[str]
    ) -> dict[str, _DeviceInfo]:
        rows: Any = (await session.execute(_DEVICES, {"ids": sorted(ids)})).all()
        infos: dict[str, _DeviceInfo] = {}
        for (
            device_id, kind, creds, station_id, station_network, vid, serial, vnetwork, boot,
            acks,
        ) in rows:  # fmt: skip
            info = _DeviceInfo(
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

    async def _dedupe(self, session: AsyncSession, items: list[Inbound]) -> list[Inbound]:
        """Claim (device, boot, seq) of events and results; keep the ones we won."""
        claim = sorted(
            {i.key for i in items if i.channel in (Channel.EVENT, Channel.RESULT)}
        )
        won: set[tuple[str, int, int]] = set()
        if claim:
            now = utcnow()
            # executemany ("insertmanyvalues"): the statement compiles once and is cached,
            # whatever the batch size; RETURNING gives the keys this transaction inserted.
            stmt = _CLAIM.get(session.get_bind().dialect.name)
            if stmt is None:
                table = _table(IngestedMessage)
                stmt = _CLAIM[session.get_bind().dialect.name] = (
                    _insert(session, table)
                    .on_conflict_do_nothing(index_elements=["device_id", "boot_id", "seq"])
                    .returning(table.c.device_id, table.c.boot_id, table.c.seq)
                )
            params = [
                {"device_id": d, "boot_id": b, "seq": s, "ingested_at": now} for d, b, s in claim
            ]
            rows: Any = (await session.execute(stmt, params)).all()
            won = {(str(d), int(b), int(s)) for d, b, s in rows}
        fresh: list[Inbound] = []
        for item in items:
            if item.channel in (Channel.EVENT, Channel.RESULT):
                if item.key not in won:
                    self.stats.duplicates += 1
                    continue
                won.discard(item.key)  # a second copy inside this batch is a duplicate
            fresh.append(item)
        return fresh

    # -- birth / death / heartbeat ------------------------------------------------------

    def _boot_reply(
        self, item: Inbound, status: pe.BootStatus, *, acks: bool | None = None
    ) -> Reply:
        """``acks``: True answers a birth that asked for Acks (SPEC §4.6); None for the
        others, whose reply stays as before."""
        reply = m.BootReply(
            status=status,
            server_time_ms=self._clock_ms(),
            heartbeat_s=self.heartbeat_s,
            boot_id=item.msg.stamp.boot_id,
            retry_after_s=REJECTED_RETRY_AFTER_S if status is pe.BootStatus.REJECTED else None,
            acks=acks,
        )
        return Reply(topics.down(item.device_id, Channel.BOOT), codec.encode_down(reply), 1)

    async def _birth(
        self, session: AsyncSession, item: Inbound, info: _DeviceInfo, out: BatchOutcome
    ) -> None:
        birth = item.msg.body
        assert isinstance(birth, m.Birth)
        station = info.kind == DeviceKind.STATION
        expected = pe.DeviceKind.STATION if station else pe.DeviceKind.VEHICLE
        if birth.kind != expected:
            self.stats.reject("kind-mismatch", device=item.device_id, birth_kind=birth.kind.name)
            out.replies.append(self._boot_reply(item, pe.BootStatus.REJECTED))
            return
        stamp = item.msg.stamp
        now = utcnow()
        values = {
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
        }
        ins = _insert(session, DeviceBoot).values(values)
        await session.execute(
            ins.on_conflict_do_update(
                index_elements=["device_id", "boot_id"],
                set_={k: ins.excluded[k] for k in values if k not in ("device_id", "boot_id")},
            )
        )
        was_online: bool = (
            await session.execute(
                select(Device.online).where(Device.device_id == item.device_id)
            )
        ).scalar_one()
        await session.execute(
            update(Device)
            .where(Device.device_id == item.device_id)
            .values(
                boot_id=str(stamp.boot_id),
                online=True,
                last_seen_at=now,
                firmware_version=birth.firmware,
                hardware_version=birth.hardware,
                config_version=birth.config_version,
            )
        )
        if not was_online:
            self._emit_online(session, info, True, now)
        # This worker's view of the device now (others see it within INFO_TTL_S; until then
        # they may not Ack it, and the device's resend after its ack timeout is Acked).
        info.booted = True
        info.acks = birth.acks
        out.replies.append(
            self._boot_reply(item, pe.BootStatus.ACCEPTED, acks=True if birth.acks else None)
        )
        await self._alert(session, item, info)
        log.info(
            "event=device_birth device=%s boot_id=%s firmware=%s pending_from=%s acks=%s",
            item.device_id,
            stamp.boot_id,
            clip(birth.firmware),
            birth.pending_from,
            birth.acks,
        )

    def _emit_online(
        self, session: AsyncSession, info: _DeviceInfo, online: bool, at: datetime
    ) -> None:
        if info.kind == DeviceKind.STATION:
            topic, resource, rid = "station.updated", "station", info.device_id
        else:
            topic, resource, rid = outbox.VEHICLE_UPDATED, "vehicle", info.device_id
        outbox.emit(
            session, topic, resource, rid, {"device_id": info.device_id, "online": online, "at": at}
        )

    async def _death(self, session: AsyncSession, item: Inbound, info: _DeviceInfo) -> None:
        death = item.msg.body
        assert isinstance(death, m.Death)
        stamp = item.msg.stamp
        boot = str(stamp.boot_id)
        later_birth = exists().where(
            DeviceBoot.device_id == item.device_id,
            DeviceBoot.boot_id == stamp.boot_id,
            DeviceBoot.birth_ts_ms > stamp.ts_ms + self.death_slack_ms,
        )
        result = await session.execute(
            update(Device)
            .where(
                Device.device_id == item.device_id,
                Device.boot_id == boot,
                Device.online.is_(True),
                ~later_birth,
            )
            .values(online=False)
        )
        if getattr(result, "rowcount", 0) == 0:
            self.stats.ignore(
                "stale-death", device=item.device_id, boot_id=stamp.boot_id, ts_ms=stamp.ts_ms
            )
            return
        now = utcnow()
        await session.execute(
            update(DeviceBoot)
            .where(DeviceBoot.device_id == item.device_id, DeviceBoot.boot_id == stamp.boot_id)
            .values(died_at=now, death_ts_ms=stamp.ts_ms, death_reason=death.reason or "will")
        )
        self._emit_online(session, info, False, now)
        await self._alert(session, item, info)
        log.info(
            "event=device_death device=%s boot_id=%s reason=%s",
            item.device_id,
            stamp.boot_id,
            death.reason or "will",
        )

    async def _heartbeats(
        self, session: AsyncSession, items: list[Inbound], out: BatchOutcome
    ) -> None:
        if not items:
            return
        now = utcnow()
        # A heartbeat of the current boot proves the device is online again, unless the
        # boot's death is newer than the heartbeat (late heartbeat after a graceful death).
        dead_after = exists().where(
            DeviceBoot.device_id == bindparam("d"),
            DeviceBoot.boot_id == bindparam("b"),
            DeviceBoot.death_ts_ms >= bindparam("ts"),
        )
        params = []
        for item in sorted(items, key=lambda i: i.device_id):
            stamp = item.msg.stamp
            params.append({"d": item.device_id, "bs": str(stamp.boot_id), "b": stamp.boot_id,
                           "ts": stamp.ts_ms})
            reply = m.TimeReply(server_time_ms=self._clock_ms(), device_ts_ms=stamp.ts_ms)
            out.replies.append(
                Reply(topics.down(item.device_id, Channel.TIME), codec.encode_down(reply), 0)
            )
        devices = _table(Device)
        await session.execute(
            update(devices)
            .where(
                devices.c.device_id == bindparam("d"),
                devices.c.boot_id == bindparam("bs"),
                devices.c.online.is_(False),
                ~dead_after,
            )
            .values(online=True, last_seen_at=now),
            params,
        )

    async def _seen(self, session: AsyncSession, ids: set[str]) -> None:
        # last_seen_at is for "is it alive" (minutes): written at most every few seconds
        # per device, so busy devices do not serialise the workers on their devices row.
        now = time.monotonic()
        due = sorted(i for i in ids if self._seen_written.get(i, 0.0) + SEEN_WRITE_S <= now)
        if not due:
            return
        if len(self._seen_written) > INFO_CACHE_MAX:
            self._seen_written.clear()
        for device_id in due:
            self._seen_written[device_id] = now
        await session.execute(_SEEN, {"ids": due, "now": utcnow()})

    # -- status -----------------------------------------------------------------------

    async def _statuses(
        self, session: AsyncSession, items: list[Inbound], infos: dict[str, _DeviceInfo]
    ) -> None:
        if not items:
            return
        newest: dict[tuple[str, int], Inbound] = {}
        for item in items:
            status = item.msg.body
            assert isinstance(status, m.Status)
            k = (item.device_id, status.spot)
            cur = newest.get(k)
            if cur is None or _newer(item.msg.stamp, cur.msg.stamp):
                if cur is not None:
                    self.stats.ignore("superseded-status", device=item.device_id)
                newest[k] = item
            else:
                self.stats.ignore("superseded-status", device=item.device_id)
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
        returned: Any
        spots: dict[tuple[int, int], Any] | None = None
        # A stored stamp further ahead than this cannot order a status of another boot.
        horizon_ms = self._clock_ms() + rules.STATUS_ORDER_SLACK_MS
        if _pg(session):
            columns: dict[str, Any] = {name: [r[name] for r in rows] for name in _STATUS_COLUMNS}
            columns["horizon_ms"] = horizon_ms
            returned = (await session.execute(_PG_STATUS_UPSERT_SPOTS, columns)).all()
            spots = {(r.station_id, r.displayed_number): r for r in returned if r.id is not None}
            returned = [(r.device_id, r.spot) for r in returned]
        else:
            ins = _insert(session, _table(DeviceStatus))
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
        applied = {(str(d), int(s)) for d, s in returned}
        stale = len(rows) - len(applied)
        if stale:
            self.stats.ignored["stale-status"] += stale
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
        await self._alert_all(session, self._sample(vehicles), infos)
        if spot_updates:
            await self._apply_spot_statuses(session, spot_updates, spots)
        if battery:
            await _update_batteries(session, battery)

    async def _apply_spot_statuses(
        self,
        session: AsyncSession,
        updates: list[tuple[int, int, m.Status]],
        spots: dict[tuple[int, int], Any] | None,
    ) -> None:
        """``spots``: the rows of the updated spots by (station id, number), if read already."""
        if spots is None:
            station_ids = sorted({u[0] for u in updates})
            spots = {
                (s.station_id, s.displayed_number): s
                for s in (await session.execute(_SPOTS_OF, {"stations": station_ids})).all()
            }
        changes: list[dict[str, Any]] = []
        records: list[_Record] = []
        for station_id, number, st in updates:
            row = spots.get((station_id, number))
            if row is None:
                self.stats.ignore("unknown-spot", station_id=station_id, spot=number)
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
        await _record(session, records)
        if changes and _pg(session):
            await session.execute(
                _PG_SPOTS,
                {
                    "sid": [c["sid"] for c in changes],
                    "lock": [c["lock"] for c in changes],
                    "state": [str(c["state"].value) for c in changes],
                },
            )
        elif changes:
            table = _table(Spot)
            await session.execute(
                update(table)
                .where(table.c.id == bindparam("sid"))
                .values(lock_status=bindparam("lock"), state=bindparam("state")),
                changes,
            )

    # -- telemetry --------------------------------------------------------------------

    async def _telemetry(
        self,
        session: AsyncSession,
        items: list[Inbound],
        infos: dict[str, _DeviceInfo],
        out: BatchOutcome,
    ) -> None:
        if not items:
            return
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
                self.stats.reject("bad-telemetry", device=item.device_id, error=exc)
            if info.vehicle_id is not None:
                if self.freefloat is not None and info.network_id is not None:
                    self.freefloat.add_position(
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
            await _update_positions(session, pos_rows)
        # The alert rules (geofence, battery) see the newest fix of each vehicle per batch.
        due = self._sample([latest_item[vid] for vid in sorted(latest_item)])
        # The rules read the vehicle of each fix and its network: all in one query, kept
        # for the loop.
        located = [infos[i.device_id].vehicle_id for i in due if _has_fix(i.msg.body)]
        loaded = (await session.execute(_VEHICLES, {"ids": located})).all() if located else ()
        await self._alert_all(session, due, infos)
        del loaded
        if bat_rows:
            await _update_batteries(session, bat_rows)

    # -- events -----------------------------------------------------------------------

    async def _event(
        self,
        session: AsyncSession,
        item: Inbound,
        info: _DeviceInfo,
        out: BatchOutcome,
        *,
        savepoint: bool = True,
    ) -> None:
        """Apply one event; one that fails for good becomes a dead letter (its key stays
        claimed, the rest of the batch goes on)."""
        body = item.msg.body
        try:
            if savepoint:
                async with session.begin_nested():
                    await self._dispatch_event(session, item, info, body)
            else:
                await self._dispatch_event(session, item, info, body)
                await session.flush()  # what the savepoint's release would flush, here
        except Exception as exc:  # a domain error on one event must not lose the batch
            if is_transient(exc):
                raise
            self._rolled_back(session)
            self.stats.reject(
                "event-apply-failed", device=item.device_id, event=type(body).__name__, error=exc
            )
            letter = item.letter(
                DeadLetterReason.APPLY_FAILED, exc, network_id=info.network_id
            )
            if not savepoint:
                raise _LoneEventFailed(item.key, letter) from exc
            self._letter(out, letter)

    def _rolled_back(self, session: AsyncSession) -> None:
        if self.alerts is not None:
            self.alerts.forget_causes(session)

    async def _dispatch_event(
        self, session: AsyncSession, item: Inbound, info: _DeviceInfo, body: object
    ) -> None:
        at = item.at
        dev = item.device_id
        station = info.kind == DeviceKind.STATION
        if isinstance(body, m.VehicleDocked) and station:
            r = await trips.vehicle_docked(session, dev, body.spot, body.serial_number, at)
            await self._trip_result(session, item, r)
        elif isinstance(body, m.VehicleRemoved) and station:
            rent_id = await self._rent_of_command(session, body.command_id)
            r = await trips.vehicle_removed(
                session,
                dev,
                body.spot,
                body.serial_number,
                at,
                badge_uid=body.badge_uid.hex().upper() if body.badge_uid else None,
                rent_id=rent_id,
            )
            await self._trip_result(session, item, r)
        elif isinstance(body, m.UnlockExpired) and station:
            rent_id = await self._rent_of_command(session, body.command_id)
            if rent_id is None:
                rent_id = await self._open_rent_at_spot(session, dev, body.spot)
            if rent_id is None:
                self.stats.ignore("unlock-expired-without-rent", device=dev, spot=body.spot)
            else:
                await trips.rent_expired(session, rent_id, at)
        elif isinstance(body, m.Unlocked) and not station:
            rent_id = await self._rent_of_command(session, body.command_id)
            r = await trips.vehicle_unlocked_freefloat(
                session, dev, at, rent_id=rent_id, latitude=None, longitude=None
            )
            await self._trip_result(session, item, r)
        elif isinstance(body, m.Locked) and not station:
            if self.freefloat is not None:
                r = await self.freefloat.on_locked(session, dev, at)
            else:
                r = await trips.vehicle_locked_freefloat(session, dev, at)
            await self._trip_result(session, item, r)
        await self._alert(session, item, info)
        record: _Record = (
            "device.event",
            "station" if station else "vehicle",
            dev,
            {
                "device_id": dev,
                "event": type(body).__name__,
                "at": at,
                "boot_id": item.msg.stamp.boot_id,
                "seq": item.msg.stamp.seq,
                "data": _event_data(body),
            },
        )
        await _record(session, [record])

    async def _alert(self, session: AsyncSession, item: Inbound, info: _DeviceInfo) -> None:
        if self.alerts is not None:
            await self.alerts.on_device_message(
                session, item.device_id, item.msg, device=info.ref
            )

    async def _alert_all(
        self, session: AsyncSession, items: list[Inbound], infos: dict[str, _DeviceInfo]
    ) -> None:
        if self.alerts is None or not items:
            return
        await self.alerts.prefetch(session, [(infos[i.device_id].ref, i.msg) for i in items])
        for item in items:
            await self._alert(session, item, infos[item.device_id])

    def _sample(self, items: list[Inbound]) -> list[Inbound]:
        """The items the alert rules see (a device and channel at most every alert_sample_s)."""
        if self.alerts is None:
            return []
        due: list[Inbound] = []
        now = time.monotonic()
        for item in items:
            key = (item.device_id, item.channel)
            if self._sampled.get(key, -1e18) + self.alert_sample_s > now:
                self.stats.ignored["alert-sampled-out"] += 1
                continue
            if len(self._sampled) > INFO_CACHE_MAX:
                self._sampled.clear()
            self._sampled[key] = now
            due.append(item)
        return due

    async def _trip_result(
        self, session: AsyncSession, item: Inbound, result: trips.TripEventResult
    ) -> None:
        if result.action in ("ended", "reconciled") and result.trip is not None:
            if self.alerts is not None:
                await self.alerts.on_trip_terminated(session, result.trip)
        if result.action == "ignored":
            self.stats.ignore(
                f"trip-{result.reason or 'ignored'}",
                device=item.device_id,
                event=type(item.msg.body).__name__,
            )

    async def _rent_of_command(self, session: AsyncSession, command_id: bytes | None) -> int | None:
        if command_id is None:
            return None
        rent_id: int | None = (
            await session.execute(_RENT_OF_COMMAND, {"cid": command_id.hex()})
        ).scalar_one_or_none()
        return rent_id

    async def _open_rent_at_spot(self, session: AsyncSession, dev: str, spot: int) -> int | None:
        rent_id: int | None = (
            await session.execute(
                select(Rent.id)
                .join(Spot, Spot.id == Rent.spot_id)
                .join(Station, Station.id == Spot.station_id)
                .where(
                    Station.device_id == dev,
                    Spot.displayed_number == spot,
                    Rent.status.in_(trips.STARTABLE_RENT_STATUSES),
                )
                .order_by(Rent.id.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        return rent_id

    # -- command results --------------------------------------------------------------

    async def _result(self, session: AsyncSession, item: Inbound) -> None:
        res = item.msg.body
        assert isinstance(res, m.CommandResult)
        status = RESULT_STATUS[res.status]
        reason = res.reason.name.lower().replace("_", "-") if res.reason is not None else None
        if res.detail:
            reason = f"{reason}: {res.detail}" if reason else res.detail
        allowed_from = (
            (CommandStatus.PENDING,)
            if status == CommandStatus.ACCEPTED
            else (CommandStatus.PENDING, CommandStatus.ACCEPTED)
        )
        await session.execute(
            _COMMAND_RESULT,
            {
                "cid": res.command_id.hex(),
                "dev": item.device_id,
                "allowed_from": list(allowed_from),
                "new_status": status,
                "new_reason": reason[:200] if reason else None,
                "at": item.at,
            },
        )

    # -- maintenance ------------------------------------------------------------------

    async def sweep(self, now: datetime | None = None) -> int:
        """The rules of time and silence (one worker runs them periodically): unlock windows
        that closed with no event from the device, trips on hold past their network's limit,
        and the fleet alert sweeps. Returns how many things changed."""
        now = now or utcnow()
        async with self._sessionmaker() as session, session.begin():
            changed = len(await trips.expire_stale_rents(session, now))
            changed += len(await trips.end_overdue_holds(session, now))
            if self.alerts is not None:
                changed += len(await self.alerts.sweep(session, now))
        return changed

    async def prune(self, older_than: timedelta) -> int:
        """Forget dedupe keys older than ``older_than`` (the device queues are long delivered)."""
        cutoff = utcnow() - older_than
        async with self._sessionmaker() as session, session.begin():
            result = await session.execute(
                _table(IngestedMessage).delete().where(
                    _table(IngestedMessage).c.ingested_at < cutoff
                )
            )
        return int(getattr(result, "rowcount", 0) or 0)


def _pg(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


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
    "s.state FROM applied AS a LEFT JOIN stations AS st ON st.device_id = a.device_id "
    "LEFT JOIN spots AS s ON s.station_id = st.id AND s.displayed_number = a.spot"
).columns(
    device_id=String,
    spot=Integer,
    id=Integer,
    station_id=Integer,
    displayed_number=Integer,
    lock_status=Integer,
    state=_table(Spot).c.state.type,
)
_PG_SPOTS = text(
    "UPDATE spots AS s SET lock_status = u.lock, state = u.state "
    "FROM unnest(CAST(:sid AS integer[]), CAST(:lock AS integer[]), CAST(:state AS varchar[])) "
    "AS u(sid, lock, state) WHERE s.id = u.sid"
)


async def _update_positions(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Docked vehicles keep their station's position; older fixes never win."""
    if _pg(session):
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


async def _update_batteries(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """``b`` internal battery %, ``v`` e-assist battery % (None: unchanged)."""
    if _pg(session):
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


#: An outbox record: topic, resource type, resource id, payload.
_Record = tuple[str, str, int | str, dict[str, Any]]


async def _record(session: AsyncSession, records: list[_Record]) -> None:
    """The ingest's outbox records. One alone, with nothing waiting in the unit of work, is
    one Core INSERT now (no flush machinery for it); otherwise they join the unit of work
    after what waits there, in one INSERT with it (outbox ids keep the order of changes)."""
    if len(records) == 1 and not session.new:
        await outbox.insert(session, *records[0])
        return
    for record in records:
        outbox.emit(session, *record)


def _has_fix(body: object) -> bool:
    return isinstance(body, m.Telemetry) and body.lat is not None and body.lon is not None


def _newer(a: m.Stamp, b: m.Stamp) -> bool:
    if a.boot_id == b.boot_id:
        return a.seq > b.seq
    return a.ts_ms > b.ts_ms


RESULT_STATUS = {
    pe.ResultStatus.ACCEPTED: CommandStatus.ACCEPTED,
    pe.ResultStatus.DONE: CommandStatus.DONE,
    pe.ResultStatus.REJECTED: CommandStatus.REJECTED,
    pe.ResultStatus.FAILED: CommandStatus.FAILED,
}

def _event_data(body: object) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name in getattr(body, "__slots__", ()):
        value = getattr(body, name)
        if isinstance(value, bytes):
            value = value.hex().upper()
        elif isinstance(value, Enum):
            value = value.name.lower()
        data[name] = value
    return data


def _points(
    device_id: str, info: _DeviceInfo, t: m.Telemetry, ts_ns: int, network: str | None
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
