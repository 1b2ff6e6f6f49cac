"""Messages lost for good: the ``pending_from`` of a birth against what reached the cloud.

SPEC §4.2: a birth carries ``pending_from``, the lowest ``seq`` still in the device's queue;
every ``seq`` below it was delivered (the broker's PUBACK, or the cloud's Ack) or thinned.
A device without end-to-end Acks (§4.6) forgets a message on the broker's PUBACK, so a
broker that crashes before ingest applied it loses it for good. The rule:

* **Count.** Every batch adds, per (device, boot) of a device without Acks, the sequenced
  messages that reached the cloud in its transaction: applied (each has won its dedupe
  claim — every sequenced message of such a device is claimed — so a resend is not counted
  twice) or kept as dead letters (a replay is not counted again). Devices with Acks are
  not counted (never checked). One upsert per batch over all its devices
  (``device_boot_counts``), after the rest of the batch's writes so its row locks are
  held only to the commit. Counting is commutative: messages of a boot applied by several
  workers, in any order, in any batches, before or after the boot's birth, add up to the
  same number.
* **Check** (the periodic sweep, :meth:`GapCheck.check`): for the boots of devices without
  Acks whose last birth the cloud received more than ``grace_s`` ago (what was still in
  flight — in the broker, in another worker's batch — when the birth was applied has been
  applied since), ``missing = pending_from − 1 − delivered``. A shortfall is counted
  (``IngestStats.seq_gaps`` and ``seq_missing``), logged and raises the
  ``device-messages-missing`` alert with the number missing; a later birth of the boot is
  checked again (an alert occurrence when more are missing). Boots with a shortfall are
  checked again every sweep for ``horizon_s``: messages that come after all (a worker
  farther behind than the grace) stop the alert.
* **Not checked:** devices with Acks (nothing below their ``pending_from`` can be lost: it
  was committed before it was acknowledged); boots whose first birth was not applied by a
  counting cloud (``complete``: the birth handler marks a birth that creates its boot's row —
  a device sends nothing of a boot before its first birth is accepted, §4.3 — so boots that
  began before this count existed, or during a rolling upgrade, are never half-counted);
  boots whose last birth is older than ``horizon_s``.

What the count cannot tell apart: telemetry the device deliberately thinned (SPEC §4.1.4)
is missing too (the alert's text says so). Counting only events and results (never thinned,
already claimed in ``ingested_messages``) does not help: ``pending_from`` numbers every
channel's messages, and nothing tells the cloud how many of the missing seqs were events.
Each seq is counted once: a device without Acks has every sequenced message claimed in
``ingested_messages`` (a broker's redelivery of a status or telemetry is a duplicate there),
so the count never reports messages the cloud has, nor hides a gap behind resends.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.ingest import repository as repo
from kickstand.cloud.ingest.batch import DeviceInfo, Inbound, IngestStats
from kickstand.cloud.ingest.deadletters import Letter
from kickstand.cloud.ingest.rules import INT64_MAX
from kickstand.cloud.ingest.tables import DeviceBoot, DeviceBootCount
from kickstand.cloud.models import table_of
from kickstand.protocol.topics import Channel

if TYPE_CHECKING:
    from kickstand.cloud.alerts.engine import AlertEngine

log = logging.getLogger("kickstand.cloud.ingest.gaps")

_COUNTS = table_of(DeviceBootCount)
# One statement per batch on PostgreSQL, prepared once whatever the batch size. A boot seen
# with nothing to add (its birth) gets its row, and an existing row is not touched.
_PG_COUNT = text(
    "INSERT INTO device_boot_counts (device_id, boot_id, delivered, complete, missing) "
    "SELECT d, b, n, c, 0 FROM unnest(CAST(:d AS varchar[]), CAST(:b AS bigint[]), "
    "CAST(:n AS bigint[]), CAST(:c AS boolean[])) AS u(d, b, n, c) "
    "ON CONFLICT (device_id, boot_id) DO UPDATE "
    "SET delivered = device_boot_counts.delivered + excluded.delivered, "
    "complete = device_boot_counts.complete OR excluded.complete "
    "WHERE excluded.delivered <> 0 OR excluded.complete"
)
_CANDIDATES = (
    select(
        DeviceBoot.device_id,
        DeviceBoot.boot_id,
        DeviceBoot.pending_from,
        _COUNTS.c.delivered,
        _COUNTS.c.checked_pending_from,
        _COUNTS.c.missing,
    )
    .join(
        _COUNTS,
        (_COUNTS.c.device_id == DeviceBoot.device_id) & (_COUNTS.c.boot_id == DeviceBoot.boot_id),
    )
    .where(
        DeviceBoot.acks.is_(False),
        DeviceBoot.accepted.is_(True),
        DeviceBoot.pending_from > 1,
        DeviceBoot.received_at < bindparam("settled_before"),
        DeviceBoot.received_at >= bindparam("horizon"),
        _COUNTS.c.complete.is_(True),
        (_COUNTS.c.checked_pending_from.is_distinct_from(DeviceBoot.pending_from))
        | (_COUNTS.c.missing > 0),
    )
    .order_by(DeviceBoot.device_id, DeviceBoot.boot_id)
)
# Compare and set: of workers sweeping at once, one acts on a finding.
_MARK = (
    update(_COUNTS)
    .where(
        _COUNTS.c.device_id == bindparam("d"),
        _COUNTS.c.boot_id == bindparam("b"),
        _COUNTS.c.checked_pending_from.is_not_distinct_from(bindparam("old_pf")),
        _COUNTS.c.missing == bindparam("old_missing"),
    )
    .values(checked_pending_from=bindparam("pf"), missing=bindparam("m"))
)
_STILL_MISSING = select(_COUNTS.c.boot_id).where(
    _COUNTS.c.device_id == bindparam("d"), _COUNTS.c.missing > 0
)


def _storable(boot_id: int | None, seq: int | None) -> bool:
    return boot_id is not None and seq is not None and 0 <= boot_id <= INT64_MAX and seq >= 1


def _checked(infos: dict[str, DeviceInfo], device_id: str | None) -> bool:
    """A device whose boots the sweep checks: known, without Acks."""
    info = infos.get(device_id or "")
    return info is not None and not info.acks


@dataclass(slots=True)
class GapFinding:
    device_id: str
    boot_id: int
    pending_from: int
    delivered: int
    #: Missing now, and when the boot was checked last.
    missing: int
    before: int


@dataclass
class GapCheck:
    """Counts what reaches the cloud per boot; the sweep compares with ``pending_from``."""

    stats: IngestStats
    alerts: AlertEngine | None = None
    #: A birth's earlier messages may still be in flight this long after it was applied.
    grace_s: float = 300.0
    #: Boots whose last birth is older than this are no longer checked.
    horizon_s: float = 86_400.0
    #: Findings of the last check (tests, logs).
    last: list[GapFinding] = field(default_factory=list)

    async def count(
        self,
        session: AsyncSession,
        applied: Iterable[Inbound],
        letters: Iterable[Letter],
        infos: dict[str, DeviceInfo],
    ) -> None:
        """Add the batch's sequenced messages that reached the cloud (in its transaction)."""
        keys: set[tuple[str, int, int]] = set()
        boots: set[tuple[str, int]] = set()
        first: set[tuple[str, int]] = set()
        for item in applied:
            if item.replay_of is not None:
                continue  # counted when it was stored as a dead letter
            stamp = item.msg.stamp
            if item.sequenced:
                if _checked(infos, item.device_id):
                    keys.add(item.key)
            elif item.channel is Channel.BIRTH and 0 <= stamp.boot_id <= INT64_MAX:
                boots.add((item.device_id, stamp.boot_id))  # the boot's row, counted from 0
                if item.first_birth:
                    first.add((item.device_id, stamp.boot_id))
        for letter in letters:
            if letter.replay_of is not None or not _checked(infos, letter.device_id):
                continue
            if _storable(letter.boot_id, letter.seq):
                assert letter.device_id is not None and letter.boot_id is not None
                assert letter.seq is not None
                keys.add((letter.device_id, letter.boot_id, letter.seq))
        per_boot: Counter[tuple[str, int]] = Counter((d, b) for d, b, _ in keys)
        for boot in boots:
            per_boot[boot] += 0
        if not per_boot:
            return
        # Sorted: workers lock the rows in one order (no deadlock between them).
        rows = sorted(per_boot.items())
        if repo.pg(session):
            await session.execute(
                _PG_COUNT,
                {
                    "d": [d for (d, _), _ in rows],
                    "b": [b for (_, b), _ in rows],
                    "n": [n for _, n in rows],
                    "c": [boot in first for boot, _ in rows],
                },
            )
            return
        ins = repo.insert(session, _COUNTS)
        await session.execute(
            ins.on_conflict_do_update(
                index_elements=["device_id", "boot_id"],
                set_={
                    "delivered": _COUNTS.c.delivered + ins.excluded.delivered,
                    "complete": _COUNTS.c.complete | ins.excluded.complete,
                },
                where=(ins.excluded.delivered != 0) | ins.excluded.complete,
            ),
            [
                {
                    "device_id": d,
                    "boot_id": b,
                    "delivered": n,
                    "complete": (d, b) in first,
                    "missing": 0,
                }
                for (d, b), n in rows
            ],
        )

    async def check(self, session: AsyncSession, now: datetime) -> list[GapFinding]:
        """Compare the boots due with their last birth's ``pending_from``; count, log, and
        raise or stop the alerts (in the caller's transaction). Returns what changed: boots
        with more missing than checked before, or fewer (come after all)."""
        rows: Any = (
            await session.execute(
                _CANDIDATES,
                {
                    "settled_before": now - timedelta(seconds=self.grace_s),
                    "horizon": now - timedelta(seconds=self.horizon_s),
                },
            )
        ).all()
        findings: list[GapFinding] = []
        for device_id, boot_id, pending_from, delivered, checked, before in rows:
            missing = max(0, pending_from - 1 - delivered)
            if checked == pending_from and missing == before:
                continue  # still as reported
            marked = await session.execute(
                _MARK,
                {
                    "d": device_id,
                    "b": boot_id,
                    "old_pf": checked,
                    "old_missing": before,
                    "pf": pending_from,
                    "m": missing,
                },
            )
            if not getattr(marked, "rowcount", 0):
                continue  # another worker's sweep took it
            if missing == before:
                continue  # a new birth, nothing more missing
            findings.append(
                GapFinding(device_id, boot_id, pending_from, delivered, missing, before)
            )
        self.last = findings
        ids = {f.device_id for f in findings}
        infos = await repo.load_devices(session, ids) if ids else {}
        for finding in findings:
            await self._act(session, finding, infos.get(finding.device_id), now)
        return findings

    async def _act(
        self, session: AsyncSession, f: GapFinding, info: DeviceInfo | None, now: datetime
    ) -> None:
        ref = info.ref if info is not None else None
        if f.missing > f.before:
            self.stats.seq_gaps += 1
            self.stats.seq_missing += f.missing - f.before
            log.warning(
                "event=ingest_seq_gap device=%s boot_id=%s pending_from=%s delivered=%s missing=%s",
                f.device_id,
                f.boot_id,
                f.pending_from,
                f.delivered,
                f.missing,
            )
            if self.alerts is not None:
                await self.alerts.on_messages_missing(
                    session,
                    f.device_id,
                    boot_id=f.boot_id,
                    missing=f.missing,
                    pending_from=f.pending_from,
                    delivered=f.delivered,
                    device=ref,
                    now=now,
                )
        elif f.missing == 0 and f.before > 0:
            log.info(
                "event=ingest_seq_gap_filled device=%s boot_id=%s delivered=%s",
                f.device_id,
                f.boot_id,
                f.delivered,
            )
            still = (await session.execute(_STILL_MISSING, {"d": f.device_id})).first()
            if still is None and self.alerts is not None:
                await self.alerts.on_messages_recovered(session, f.device_id, device=ref, now=now)


__all__ = ["GapCheck", "GapFinding"]
