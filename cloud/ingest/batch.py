"""What a batch is made of: the decoded messages (:class:`Inbound`), what applying them
gives back (:class:`BatchOutcome`: replies, telemetry points, dead letters, Acks), what a
worker counts (:class:`IngestStats`) and what ingest knows of a device (:class:`DeviceInfo`).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kickstand.cloud.alerts.device_rules import DeviceRef
from kickstand.cloud.ingest.deadletters import PAYLOAD_MAX, Letter
from kickstand.cloud.models import DeviceKind
from kickstand.cloud.telemetry.points import TelemetryPoint
from kickstand.protocol import topics
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1 import messages as m

if TYPE_CHECKING:
    from kickstand.cloud.rent_gateway import IssuedCommand

log = logging.getLogger("kickstand.cloud.ingest.batch")


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
    #: Checked by ``BatchApplier.prepare`` (device time bounded, storable).
    prepared: bool = False
    #: What ``prepare`` found unstorable in it (it is a dead letter whenever it is applied).
    refused: Letter | None = None
    #: The dead letter this is a replay of (a failure counts on that row).
    replay_of: int | None = None
    #: ``prepare`` found its stamp implausible (SPEC §4.2): applied at the receive time;
    #: the stamp as it came.
    flagged_ts_ms: int | None = None
    #: A birth applied as its boot's first (the gap check counts that boot from its start).
    first_birth: bool = False
    #: What applying it publishes after the commit (an event's commands, badge replies);
    #: dropped with the event when it fails.
    replies: list[Reply] = field(default_factory=list)

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


@dataclass(slots=True)
class Reply:
    topic: str
    payload: bytes
    qos: int

    @classmethod
    def command(cls, issued: IssuedCommand) -> Reply:
        """A signed (and recorded) command, on its device's ``cmd`` channel."""
        return cls(topics.down(issued.device_id, Channel.COMMAND), issued.payload, 1)


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
    #: Dead letters over the budget, per reason (counted, not stored).
    dropped: Counter[str] = field(default_factory=Counter)
    #: Dead-letter budget this outcome takes, per (device, reason), once committed.
    budget: dict[tuple[str | None, str], int] = field(default_factory=dict)

    def merge(self, other: BatchOutcome) -> None:
        self.replies.extend(other.replies)
        self.points.extend(other.points)
        self.dead.extend(other.dead)
        self.settled.extend(other.settled)
        self.unsettled.update(other.unsettled)
        self.dropped.update(other.dropped)


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
    #: Boots found short of their birth's pending_from by the gap check, and the messages
    #: missing (SPEC §4.2; :mod:`kickstand.cloud.ingest.gaps`).
    seq_gaps: int = 0
    seq_missing: int = 0
    #: Operator alerts of delivery (dead letters, clocks) that failed to be raised.
    alert_failures: int = 0
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
class DeviceInfo:
    """What ingest knows of a device (cached: identity rarely changes)."""

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


__all__ = ["BatchOutcome", "DeviceInfo", "Inbound", "IngestStats", "Reply", "clip"]
