"""The ingest core: one batch of decoded device messages into the database, in one
transaction — delivery, not domain. What each message changes is in
:mod:`kickstand.cloud.ingest.handlers` (registered per channel and event type), the SQL in
:mod:`kickstand.cloud.ingest.repository`.

The core owns:

* checks without the database, per message (:meth:`BatchApplier.prepare`): device time
  bounded (:func:`~kickstand.cloud.ingest.rules.device_time`), values storable; then the
  rules that refuse a message whatever the database holds (unknown or decommissioned
  device, a spot status from a vehicle, a device never booted);
* dedupe: events and command results (sequenced, not idempotent by nature), and every
  sequenced message of a device without Acks (its gap count needs each seq once), insert
  their (device_id, boot_id, seq) into ``ingested_messages`` first — ``ON CONFLICT DO NOTHING
  RETURNING`` says which are new; only those are applied, in the same transaction. A
  second worker racing on the same key waits for the first to commit, then skips it.
  (Status is a conditional upsert, birth/death/heartbeat conditional UPDATEs: idempotent;
  a device with Acks resends its status and telemetry unclaimed.)
* the order: channels in :data:`~kickstand.cloud.ingest.handlers.ORDER`, events by (device,
  boot, seq) within the batch (the trip engine orders by DEVICE time across batches);
* failures: an event failing for good is rolled back to its savepoint and kept as a dead
  letter, the rest of the batch goes on; a transient error is raised for the worker to
  retry the batch (:func:`~kickstand.cloud.transient.is_transient`);
* what the worker acknowledges (:attr:`BatchOutcome.settled`, SPEC §4.6);
* what operators are told about delivery, in the batch's transaction: dead letters and
  flagged device clocks raise fleet alerts (:mod:`~kickstand.cloud.ingest.operator_alerts`),
  and the messages that reached the cloud are counted per boot for the sweep's check
  against the births' ``pending_from`` (:mod:`~kickstand.cloud.ingest.gaps`).

Rows are touched in a sorted order to keep lock waits between workers deadlock-free
as far as possible; a deadlock that still happens is retried by the worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from kickstand.cloud import trips
from kickstand.cloud.authlist import service as authlist
from kickstand.cloud.ingest import deadletters, rules, silence
from kickstand.cloud.ingest import repository as repo
from kickstand.cloud.ingest.batch import (
    BatchOutcome,
    DeviceInfo,
    Inbound,
    IngestStats,
    Reply,
    clip,
)
from kickstand.cloud.ingest.deadletters import DeadLetterBudget, DeadLetterReason, Letter
from kickstand.cloud.ingest.gaps import GapCheck
from kickstand.cloud.ingest.handlers import ORDER, handlers
from kickstand.cloud.ingest.operator_alerts import OperatorAlerts
from kickstand.cloud.models import DeviceKind, utcnow
from kickstand.cloud.transient import is_transient
from kickstand.protocol import topics
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1 import enums as pe
from kickstand.protocol.v1 import messages as m

if TYPE_CHECKING:
    from kickstand.cloud.alerts.engine import AlertEngine
    from kickstand.cloud.commands.issuer import CommandIssuer
    from kickstand.cloud.devices.identity import DeviceCa
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
#: SQLAlchemy's per-connection savepoint counter (sa_savepoint_<n>), reset per batch.
_SAVEPOINT_SEQ = "_Connection__savepoint_seq"


class _LoneEventFailed(Exception):
    """The event of a one-message batch, applied with no savepoint, failed (and was counted):
    the transaction is rolled back and the batch applied again without it."""

    def __init__(self, key: tuple[str, int, int], letter: Letter) -> None:
        super().__init__(key)
        self.key = key
        self.letter = letter


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


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
        issuer: CommandIssuer | None = None,
        device_ca: DeviceCa | None = None,
    ) -> None:
        """``device_ca``: the installation's CA renewals are signed with (issue 17; None:
        a CertRenew is ignored).
        ``issuer``: signs the commands ingest sends itself (e.g. SetMaintenance where a
        station disagrees with its operator, SPEC §4.4), published as replies after the
        commit; None: ingest sends no command.
        ``alerts``: the fleet alert rules, fed every new message in the same transaction
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
        # Liveness reads last_seen_at against 3 heartbeat intervals (kickstand.cloud.
        # liveness): it is written at least twice per interval.
        self.seen_write_s = min(SEEN_WRITE_S, heartbeat_s / 2)
        self.death_slack_ms = death_slack_ms
        self.clock_ms = clock_ms
        # Identity of devices (kind, station, vehicle, network) rarely changes: cached.
        self._infos: dict[str, tuple[float, DeviceInfo | None]] = {}
        self._seen_written: dict[str, float] = {}
        self.hold_connection = hold_connection
        self._connection: AsyncConnection | None = None
        self.require_boot = require_boot
        self.budget = budget or DeadLetterBudget()
        self.issuer = issuer
        self.device_ca = device_ca
        #: Messages that reached the cloud per boot, against the births' pending_from.
        self.gaps = GapCheck(stats, alerts)
        #: Dead letters and flagged clocks raise operator alerts (with the alert rules on).
        self.operator_alerts = OperatorAlerts(alerts, stats) if alerts is not None else None

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
        if item.prepared:  # again (the batch retried, or isolated): the same verdict
            return item.refused
        item.prepared = True
        if not item.received_ms:
            item.received_ms = self.clock_ms()
        stamp = item.msg.stamp
        # Heartbeats keep their stamp: the TimeReply echoes it to correct that very clock.
        if item.channel is not Channel.HEARTBEAT:
            ts_ms, flagged = rules.device_time(stamp.ts_ms, item.received_ms)
            if flagged:
                self.stats.clock_flagged += 1
                item.flagged_ts_ms = stamp.ts_ms
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
            item.refused = item.letter(DeadLetterReason.UNSTORABLE, problem)
        return item.refused

    def _refuse(
        self, item: Inbound, info: DeviceInfo | None, booted: set[str]
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
        """Keep ``letter`` for the batch's transaction, within the budget (else only counted;
        the budget is spent when the transaction commits)."""
        key = (letter.device_id, letter.reason)
        taken = out.budget.get(key, 0)
        if letter.replay_of is None and self.budget.remaining(*key) <= taken:
            out.dropped[letter.reason] += 1
            if letter.device_id is not None and letter.boot_id is not None and letter.seq:
                out.unsettled.add((letter.device_id, letter.boot_id, letter.seq))
            return
        if letter.replay_of is None:
            out.budget[key] = taken + 1
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
        # Counted once the transaction committed (a batch retried is not counted twice).
        refusals: list[tuple[str, Inbound, str]] = []
        for n, item in enumerate(batch):
            letter = self.prepare(item)
            if letter is not None:
                dead.add(n)
                refusals.append((letter.reason, item, letter.error))
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
                        out.replies.append(self.boot_reply(item, pe.BootStatus.REJECTED))
                    refusals.append((reason, item, error))
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
            fresh = await self._apply_known(session, batch, known, infos, out, failed)
            await deadletters.store(session, out.dead)
            if self.operator_alerts is not None:
                await self.operator_alerts.letters(session, out.dead, infos)
                await self.operator_alerts.clocks(session, known, infos)
            # Last: its row locks (one per device and boot) are held only until the commit.
            await self.gaps.count(session, fresh, out.dead, infos)
        for reason, item, error in refusals:
            self.stats.reject(reason, device=item.device_id, channel=item.channel, error=error)
        self._count_letters(out)
        out.settled = self._settled(batch, infos, out)
        if self.freefloat is not None:
            await self.freefloat.after_commit(self._sessionmaker)
        return out

    def _count_letters(self, out: BatchOutcome) -> None:
        """After the commit: the letters stored, and those over the budget."""
        for letter in out.dead:
            self.stats.dead_lettered[letter.reason] += 1
        self.stats.dead_dropped.update(out.dropped)
        for (device_id, reason), n in out.budget.items():
            self.budget.spend(device_id, reason, n)

    def _settled(
        self, batch: list[Inbound], infos: dict[str, DeviceInfo], out: BatchOutcome
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
        infos: dict[str, DeviceInfo],
        out: BatchOutcome,
        failed: _LoneEventFailed | None,
    ) -> list[Inbound]:
        """Applies ``known``; returns the messages applied (not duplicates)."""
        if not known:
            return []
        fresh = await self._dedupe(session, known, infos)
        by_channel: dict[Channel, list[Inbound]] = {}
        for item in fresh:
            by_channel.setdefault(item.channel, []).append(item)
        for channel in ORDER:
            items = by_channel.get(channel)
            if not items:
                continue
            if channel is Channel.EVENT:
                await self._events(session, items, infos, out, lone=len(batch) == 1, failed=failed)
                continue
            handler = handlers.of_channel(channel)
            if handler is None:  # a channel this cloud does not apply: counted, not lost
                self.stats.ignored[f"no-handler-{channel.value}"] += len(items)
                continue
            await handler(self, session, items, infos, out)
        await self._seen(session, {i.device_id for i in known})
        self.stats.applied += len(fresh)
        for item in fresh:
            self.stats.by_channel[item.channel.value] += 1
        return fresh

    async def store_letters(self, letters: list[Letter]) -> BatchOutcome:
        """Store dead letters in a transaction of their own (a message that failed alone, or
        ones that never decoded); the sequenced ones of devices taking Acks are settled."""
        out = BatchOutcome()
        for letter in letters:
            self._letter(out, letter)
        if not out.dead:
            self._count_letters(out)
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
                if self.operator_alerts is not None:
                    await self.operator_alerts.letters(session, out.dead, infos)
                await self.gaps.count(session, [], out.dead, infos)
        except BaseException:
            await self.release()
            raise
        self._count_letters(out)
        for letter in out.dead:
            info = infos.get(letter.device_id or "")
            if info is not None and info.acks and letter.boot_id is not None and letter.seq:
                if letter.seq <= rules.INT64_MAX and letter.boot_id <= rules.INT64_MAX:
                    out.settled.append((info.device_id, letter.boot_id, letter.seq))
        return out

    # -- lookups ----------------------------------------------------------------------

    async def _devices(self, session: AsyncSession, ids: set[str]) -> dict[str, DeviceInfo]:
        now = time.monotonic()
        infos: dict[str, DeviceInfo] = {}
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
            loaded = await repo.load_devices(session, missing)
            if len(self._infos) > INFO_CACHE_MAX:
                self._infos.clear()
            for device_id in missing:
                info = loaded.get(device_id)
                ttl = INFO_TTL_S if info is not None else UNKNOWN_TTL_S
                self._infos[device_id] = (now + ttl, info)
                if info is not None:
                    infos[device_id] = info
        return infos

    async def _dedupe(
        self, session: AsyncSession, items: list[Inbound], infos: dict[str, DeviceInfo]
    ) -> list[Inbound]:
        """Claim (device, boot, seq) of the messages that must be applied once; keep the
        ones we won.

        Events and results always (not idempotent). Status and telemetry (idempotent) only
        of devices without Acks: their boots are gap-checked against ``pending_from``
        (:mod:`~kickstand.cloud.ingest.gaps`), which needs each seq counted once; a device
        with Acks is not gap-checked, and its resends (every ``ack_timeout_s`` while the
        cloud is behind) would make the claim table grow for nothing."""
        claimed = [i for i in items if _claimed(i, infos)]
        claim = sorted({i.key for i in claimed})
        won = await repo.claim(session, claim, utcnow()) if claim else set()
        fresh: list[Inbound] = []
        for item in items:
            if _claimed(item, infos):
                if item.key not in won:
                    self.stats.duplicates += 1
                    continue
                won.discard(item.key)  # a second copy inside this batch is a duplicate
            fresh.append(item)
        return fresh

    def boot_reply(
        self, item: Inbound, status: pe.BootStatus, *, acks: bool | None = None
    ) -> Reply:
        """``acks``: True answers a birth that asked for Acks (SPEC §4.6); None for the
        others, whose reply stays as before."""
        reply = m.BootReply(
            status=status,
            server_time_ms=self.clock_ms(),
            heartbeat_s=self.heartbeat_s,
            boot_id=item.msg.stamp.boot_id,
            retry_after_s=REJECTED_RETRY_AFTER_S if status is pe.BootStatus.REJECTED else None,
            acks=acks,
        )
        return Reply(topics.down(item.device_id, Channel.BOOT), codec.encode_down(reply), 1)

    async def _seen(self, session: AsyncSession, ids: set[str]) -> None:
        # last_seen_at is for "is it alive" (minutes): written at most every few seconds
        # per device, so busy devices do not serialise the workers on their devices row.
        now = time.monotonic()
        due = sorted(
            i for i in ids if self._seen_written.get(i, 0.0) + self.seen_write_s <= now
        )
        if not due:
            return
        if len(self._seen_written) > INFO_CACHE_MAX:
            self._seen_written.clear()
        for device_id in due:
            self._seen_written[device_id] = now
        await repo.mark_seen(session, due, utcnow())

    # -- events -----------------------------------------------------------------------

    async def _events(
        self,
        session: AsyncSession,
        items: list[Inbound],
        infos: dict[str, DeviceInfo],
        out: BatchOutcome,
        *,
        lone: bool,
        failed: _LoneEventFailed | None,
    ) -> None:
        # An event alone in its batch needs no savepoint (two round trips): if it fails,
        # the batch runs again without it, as the savepoint would have left it.
        savepoint = not (lone and failed is None)
        skip = failed.key if failed is not None else None
        for item in sorted(items, key=lambda i: i.key):
            if item.key != skip:
                await self._event(session, item, infos[item.device_id], out, savepoint=savepoint)

    async def _event(
        self,
        session: AsyncSession,
        item: Inbound,
        info: DeviceInfo,
        out: BatchOutcome,
        *,
        savepoint: bool = True,
    ) -> None:
        """Apply one event; one that fails for good becomes a dead letter (its key stays
        claimed, the rest of the batch goes on)."""
        body = item.msg.body
        item.replies.clear()
        try:
            if savepoint:
                async with session.begin_nested():
                    await handlers.event(self, session, item, info)
            else:
                await handlers.event(self, session, item, info)
                await session.flush()  # what the savepoint's release would flush, here
            out.replies.extend(item.replies)
        except Exception as exc:  # a domain error on one event must not lose the batch
            item.replies.clear()
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

    async def alert(self, session: AsyncSession, item: Inbound, info: DeviceInfo) -> None:
        if self.alerts is not None:
            await self.alerts.on_device_message(
                session, item.device_id, item.msg, device=info.ref
            )

    async def alert_all(
        self, session: AsyncSession, items: list[Inbound], infos: dict[str, DeviceInfo]
    ) -> None:
        if self.alerts is None or not items:
            return
        await self.alerts.prefetch(session, [(infos[i.device_id].ref, i.msg) for i in items])
        for item in items:
            await self.alert(session, item, infos[item.device_id])

    def sample(self, items: list[Inbound]) -> list[Inbound]:
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

    # -- maintenance ------------------------------------------------------------------

    async def sweep(self, now: datetime | None = None) -> int:
        """The rules of time and silence (one worker runs them periodically): unlock windows
        that closed with no event from the device, trips on hold past their network's limit,
        the fleet alert sweeps, devices gone silent taken offline and told of
        (:mod:`~kickstand.cloud.ingest.silence`), and messages lost for good (births'
        ``pending_from`` against what reached the cloud, :mod:`~kickstand.cloud.ingest.gaps`).
        Returns how many things changed."""
        now = now or utcnow()
        async with self._sessionmaker() as session, session.begin():
            changed = len(await trips.expire_stale_rents(session, now))
            changed += len(await trips.end_overdue_holds(session, now))
            too_long = await trips.end_overlong_trips(session, now)
            changed += len(too_long)
            if self.alerts is not None:
                changed += len(await self.alerts.sweep(session, now))
            # After the alerts: they judge a silence by the rule before it is written.
            changed += len(await silence.mark_silent(session, now))
        if self.freefloat is not None:  # the network's trip_auto_lock: lock them now
            for _, device_id in too_long:
                self.freefloat.lock(device_id)
        # A transaction of its own: whatever it meets, the rents above have expired.
        async with self._sessionmaker() as session, session.begin():
            changed += len(await self.gaps.check(session, now))
        return changed

    async def catch_up_lists(self, now: datetime | None = None) -> list[Reply]:
        """FULL authorization lists for online stations left behind (a DIFF lost on the way,
        :func:`kickstand.cloud.authlist.service.catch_up`), committed; the caller publishes
        them (the worker, after its sweep)."""
        if self.issuer is None:
            return []
        async with self._sessionmaker() as session, session.begin():
            issued = await authlist.catch_up(session, self.issuer, now or utcnow())
        return [Reply.command(c) for c in issued]

    async def prune(self, older_than: timedelta) -> int:
        """Forget dedupe keys older than ``older_than`` (the device queues are long
        delivered), and dead letters resolved (replayed, discarded) before that."""
        cutoff = utcnow() - older_than
        async with self._sessionmaker() as session, session.begin():
            removed = await repo.prune_claims(session, cutoff)
            return removed + await deadletters.prune(session, cutoff)


def _claimed(item: Inbound, infos: dict[str, DeviceInfo]) -> bool:
    if item.channel in (Channel.EVENT, Channel.RESULT):
        return True
    if not item.sequenced:
        return False
    info = infos.get(item.device_id)
    return info is not None and not info.acks


__all__ = [
    "DEFAULT_DEATH_SLACK_MS",
    "BatchApplier",
    "BatchOutcome",
    "DeviceInfo",
    "Inbound",
    "IngestStats",
    "Reply",
    "clip",
    "is_transient",
]
