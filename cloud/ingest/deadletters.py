"""Dead letters: device messages ingest could not apply, kept for an operator.

A message lands here when it cannot be decoded (bad topic, not CBOR, schema), when a rule
refuses it (unknown device, a spot status from a vehicle, a message from a device that was
never accepted, a value PostgreSQL cannot store) or when applying it fails for good (a bug,
a constraint violation) once isolated from its batch. Transient database errors never land
here: the batch is retried, unacknowledged.

Storing one is its fate committed: a sequenced message stored here is acknowledged to the
device (SPEC §4.6). A sequenced message has one row per (device, boot, seq); failing again
(a resend, a failed replay) counts an attempt on it. A flood is bounded by
:class:`DeadLetterBudget`: at most ``per_hour`` rows per device and reason per hour per
worker, the rest only counted (``IngestStats.dead_dropped``).

The dashboard side (list, detail, discard) is here too; replay is in
:mod:`kickstand.cloud.ingest.replay` (it runs the ingest's own decode and apply path).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Select, bindparam, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.ingest.tables import DeadLetter, DeadLetterStatus
from kickstand.cloud.keyset import Keyset, page_query
from kickstand.cloud.models import table_of, utcnow

#: Raw bytes kept per letter; a longer payload is cut (and can no longer be replayed).
PAYLOAD_MAX = 16 * 1024
TOPIC_MAX = 256
ERROR_MAX = 1000
#: PostgreSQL's bigint: a boot_id or seq beyond it is kept in the payload only.
_INT64_MAX = 2**63 - 1


class DeadLetterReason:
    """Why a message is a dead letter (the ``reason`` column and the counters' label)."""

    BAD_TOPIC = "bad-topic"
    #: Decode errors use the codec's codes: "malformed", "schema", "unknown-type".
    UNKNOWN_DEVICE = "unknown-device"
    DECOMMISSIONED = "decommissioned-device"
    NO_BOOT = "no-boot"
    VEHICLE_SPOT_STATUS = "vehicle-spot-status"
    UNSTORABLE = "unstorable"
    APPLY_FAILED = "apply-failed"


@dataclass(slots=True)
class Letter:
    """A dead letter to store. ``replay_of``: the row a failed replay counts on."""

    topic: str
    payload: bytes
    reason: str
    error_class: str
    error: str
    device_id: str | None = None
    channel: str | None = None
    boot_id: int | None = None
    seq: int | None = None
    network_id: int | None = None
    replay_of: int | None = None

    @classmethod
    def of_error(cls, reason: str, exc: BaseException | str, **fields: Any) -> Letter:
        if isinstance(exc, BaseException):
            return cls(reason=reason, error_class=type(exc).__name__, error=str(exc), **fields)
        return cls(reason=reason, error_class=reason, error=exc, **fields)


class DeadLetterBudget:
    """At most ``per_hour`` letters per (device, reason) per clock hour; the rest are only
    counted (a flood of garbage must not fill the disk). Spent once the letters are
    committed (a batch retried through a database outage does not spend it again)."""

    def __init__(self, per_hour: int = 100, max_keys: int = 100_000) -> None:
        self.per_hour = per_hour
        self.max_keys = max_keys
        self._hour = -1
        self._used: dict[tuple[str | None, str], int] = {}

    def _roll(self, now_s: float | None) -> None:
        hour = int((time.time() if now_s is None else now_s) // 3600)
        if hour != self._hour or len(self._used) > self.max_keys:
            self._hour = hour
            self._used.clear()

    def remaining(self, device_id: str | None, reason: str, now_s: float | None = None) -> int:
        self._roll(now_s)
        return self.per_hour - self._used.get((device_id, reason), 0)

    def spend(self, device_id: str | None, reason: str, n: int = 1) -> None:
        key = (device_id, reason)
        self._used[key] = self._used.get(key, 0) + n


def _row(letter: Letter, now: datetime) -> dict[str, Any]:
    sequenced = (
        letter.seq is not None
        and letter.boot_id is not None
        and 0 <= letter.boot_id <= _INT64_MAX
        and 1 <= letter.seq <= _INT64_MAX
    )
    return {
        "device_id": _text(letter.device_id)[:64] if letter.device_id else None,
        "network_id": letter.network_id,
        "topic": _text(letter.topic)[:TOPIC_MAX],
        "channel": letter.channel[:16] if letter.channel else None,
        "payload": bytes(letter.payload[:PAYLOAD_MAX]),
        "payload_size": len(letter.payload),
        "boot_id": letter.boot_id if sequenced else None,
        "seq": letter.seq if sequenced else None,
        "reason": letter.reason[:48],
        "error_class": letter.error_class[:120],
        "error": _text(letter.error)[:ERROR_MAX],
        "first_failed_at": now,
        "last_failed_at": now,
        "attempts": 1,
        "status": DeadLetterStatus.OPEN,
    }


def _text(value: str) -> str:
    # A NUL cannot be stored in a PostgreSQL text column; it is what some letters are about.
    return value.replace("\x00", "\\x00")


_TABLE = table_of(DeadLetter)
_AGAIN = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("rid"))
    .values(
        attempts=_TABLE.c.attempts + 1,
        last_failed_at=bindparam("now"),
        error_class=bindparam("ec"),
        error=bindparam("err"),
        reason=bindparam("why"),
        status=DeadLetterStatus.OPEN,
    )
)


async def store(session: AsyncSession, letters: Sequence[Letter]) -> None:
    """Write ``letters`` in the caller's transaction: new rows, or one more attempt on the
    row of the same sequenced message (or of the replayed letter)."""
    if not letters:
        return
    now = utcnow()
    again = [lt for lt in letters if lt.replay_of is not None]
    for letter in again:
        await session.execute(
            _AGAIN,
            {
                "rid": letter.replay_of,
                "now": now,
                "ec": letter.error_class[:120],
                "err": _text(letter.error)[:ERROR_MAX],
                "why": letter.reason[:48],
            },
        )
    rows = [_row(lt, now) for lt in letters if lt.replay_of is None]
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    ins = insert(_TABLE)
    stmt = ins.on_conflict_do_update(
        index_elements=["device_id", "boot_id", "seq"],
        index_where=text("seq IS NOT NULL"),
        set_={
            "attempts": _TABLE.c.attempts + 1,
            "last_failed_at": ins.excluded.last_failed_at,
            "error_class": ins.excluded.error_class,
            "error": ins.excluded.error,
            "reason": ins.excluded.reason,
            "status": DeadLetterStatus.OPEN,
        },
    )
    # One row per statement when a batch holds the same message twice (ON CONFLICT cannot
    # touch one row twice in a statement); else one executemany.
    keys = [(r["device_id"], r["boot_id"], r["seq"]) for r in rows if r["seq"] is not None]
    if len(keys) != len(set(keys)):
        for row in rows:
            await session.execute(stmt, row)
        return
    await session.execute(stmt, rows)


async def prune(session: AsyncSession, cutoff: datetime) -> int:
    """Forget letters replayed or discarded before ``cutoff``; open ones stay until an
    operator acts."""
    result = await session.execute(
        _TABLE.delete().where(
            _TABLE.c.status != DeadLetterStatus.OPEN, _TABLE.c.resolved_at < cutoff
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


# -- the dashboard's side ---------------------------------------------------------------

Status = Literal["open", "replayed", "discarded"]


@dataclass(frozen=True)
class LetterFilters:
    device_id: str | None = None
    status: Status | None = None
    reason: str | None = None
    #: None: every network and the letters of no network (an admin).
    allowed_networks: Collection[int] | None = None


def _visible(query: Select[Any], allowed: Collection[int] | None) -> Select[Any]:
    if allowed is None:
        return query
    return query.where(DeadLetter.network_id.in_(sorted(allowed)))


async def list_letters(
    session: AsyncSession, f: LetterFilters, keyset: Keyset
) -> Sequence[DeadLetter]:
    """One keyset page by id (:mod:`kickstand.cloud.keyset`: one row more than the page)."""
    query = _visible(select(DeadLetter), f.allowed_networks)
    if f.device_id is not None:
        query = query.where(DeadLetter.device_id == f.device_id)
    if f.status is not None:
        query = query.where(DeadLetter.status == f.status)
    if f.reason is not None:
        query = query.where(DeadLetter.reason == f.reason)
    return (await session.scalars(page_query(query, DeadLetter.id, keyset))).all()


async def get_letter(
    session: AsyncSession, letter_id: int, allowed: Collection[int] | None
) -> DeadLetter | None:
    """The letter, if it exists and the caller may see it."""
    query = _visible(select(DeadLetter).where(DeadLetter.id == letter_id), allowed)
    letter: DeadLetter | None = (await session.scalars(query)).one_or_none()
    return letter


def resolve(letter: DeadLetter, status: str, operator_id: int | None) -> None:
    letter.status = status
    letter.resolved_at = utcnow()
    letter.resolved_by = operator_id


def describe(letter: DeadLetter, *, payload: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": letter.id,
        "device_id": letter.device_id,
        "network_id": letter.network_id,
        "topic": letter.topic,
        "channel": letter.channel,
        "boot_id": letter.boot_id,
        "seq": letter.seq,
        "reason": letter.reason,
        "error_class": letter.error_class,
        "error": letter.error,
        "payload_size": letter.payload_size,
        "replayable": letter.payload_size <= PAYLOAD_MAX,
        "first_failed_at": letter.first_failed_at,
        "last_failed_at": letter.last_failed_at,
        "attempts": letter.attempts,
        "status": letter.status,
        "resolved_at": letter.resolved_at,
        "resolved_by": letter.resolved_by,
    }
    if payload:
        out["payload_hex"] = letter.payload.hex()
    return out


__all__ = [
    "PAYLOAD_MAX",
    "DeadLetterBudget",
    "DeadLetterReason",
    "Letter",
    "LetterFilters",
    "describe",
    "get_letter",
    "list_letters",
    "prune",
    "resolve",
    "store",
]
