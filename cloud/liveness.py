"""The one answer to "is this device online?" (SPEC §4.3.6), for the map, the rent path,
the command gateway and the dashboard.

A device is online when its current boot was accepted and has not died (``devices.online``,
kept by ingest from births, deaths and heartbeats) AND something of it arrived within
:data:`SILENT_INTERVALS` heartbeat intervals (``devices.last_seen_at``, receive time). The
interval is the one its last BootReply gave it (``devices.heartbeat_s``). Silence is judged
here, at read time, so every reader sees a silent device go offline at the same instant;
nothing has to write it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func

from kickstand.cloud.models import Device

#: Silence longer than this many heartbeat intervals is offline (SPEC §4.3.6).
SILENT_INTERVALS = 3
#: For a device that has no interval on record (never booted since migration 0008).
DEFAULT_HEARTBEAT_S = 30


@dataclass(frozen=True, slots=True)
class Presence:
    """What the cloud holds of a device's session: enough to judge it without a query."""

    online: bool | None
    last_seen_at: datetime | None
    heartbeat_s: int | None = None

    def offline_after(self) -> timedelta:
        return timedelta(seconds=SILENT_INTERVALS * (self.heartbeat_s or DEFAULT_HEARTBEAT_S))


def _aware(at: datetime) -> datetime:
    # SQLite gives naive datetimes back; every time the cloud stores is UTC.
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def why_offline(presence: Presence | None, now: datetime) -> str | None:
    """Why the device is offline at ``now`` (None: it is online)."""
    if presence is None or presence.online is None:
        return "unknown device"
    last_seen = presence.last_seen_at
    if not presence.online:
        seen = f" (last seen {_aware(last_seen).isoformat()})" if last_seen else ""
        return f"device is offline{seen}"
    limit = presence.offline_after()
    if last_seen is None or _aware(now) - _aware(last_seen) > limit:
        return f"device silent for more than {limit.total_seconds():.0f} s"
    return None


def is_online(presence: Presence | None, now: datetime) -> bool:
    return why_offline(presence, now) is None


#: Select these (the device outer-joined) and judge them with :func:`online_of`.
PRESENCE_COLUMNS = (Device.online, Device.last_seen_at, Device.heartbeat_s)


def presence_of(columns: Any) -> Presence:
    """The :class:`Presence` of the three :data:`PRESENCE_COLUMNS` values of a row."""
    online, last_seen_at, heartbeat_s = columns
    return Presence(online, last_seen_at, heartbeat_s)


def online_of(columns: Any, now: datetime) -> bool:
    """:func:`is_online` of the three :data:`PRESENCE_COLUMNS` values of a row."""
    return is_online(presence_of(columns), now)


def online_clause(dialect: str, now: datetime) -> ColumnElement[bool]:
    """:func:`is_online` as a SQL condition on ``devices`` (a listing filtered by it keeps
    full pages): online, and seen within :data:`SILENT_INTERVALS` heartbeat intervals."""
    limit_s = SILENT_INTERVALS * func.coalesce(Device.heartbeat_s, DEFAULT_HEARTBEAT_S)
    if dialect == "sqlite":
        # Stored as naive UTC text (kickstand.cloud.dbtypes.UTCDateTime): compare in days.
        at = _aware(now).astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
        silent_s = (func.julianday(at) - func.julianday(Device.last_seen_at)) * 86400.0
        return and_(Device.online.is_(True), Device.last_seen_at.is_not(None), silent_s <= limit_s)
    since = func.make_interval(0, 0, 0, 0, 0, 0, limit_s)
    return and_(
        Device.online.is_(True),
        Device.last_seen_at.is_not(None),
        Device.last_seen_at >= _aware(now) - since,
    )


__all__ = [
    "DEFAULT_HEARTBEAT_S",
    "PRESENCE_COLUMNS",
    "SILENT_INTERVALS",
    "Presence",
    "is_online",
    "online_clause",
    "online_of",
    "presence_of",
    "why_offline",
]
