"""Checks a decoded device message passes before ingest applies it (no database needed).

* :func:`unstorable` — a value the codec may accept but PostgreSQL cannot store (an
  integer beyond bigint, a NUL in a text, a float that is not finite). Checked per message
  before the batch, so one such message is dead-lettered alone instead of failing its batch
  (and the one-by-one retry of a thousand others behind it).
* :func:`device_time` — the rule of SPEC §4.2 "Device time, bounded": the stamp a message
  is applied with.
"""

from __future__ import annotations

import math
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime

#: A stamp more than this ahead of the cloud's receive time is not trusted. Queued messages
#: are legitimately hours or days OLD (a station offline): there is no bound on the past
#: other than :data:`EPOCH_FLOOR_MS`.
FUTURE_MS = 10 * 60_000
#: 2020-01-01T00:00:00Z: a stamp before it is a clock that was never set (an RTC at 1970).
EPOCH_FLOOR_MS = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp() * 1000)
#: Across boots the newer status wins by device time (SPEC §4.2); a stored stamp this far
#: ahead of the newcomer's receive time cannot order anything, so the newcomer wins.
STATUS_ORDER_SLACK_MS = 60_000

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def device_time(ts_ms: int, received_ms: int) -> tuple[int, bool]:
    """The time a message is applied at, and whether its device clock is flagged.

    ``ts_ms`` (device time, SPEC §4.2) is used when ``EPOCH_FLOOR_MS <= ts_ms <=
    received_ms + FUTURE_MS``; otherwise ``received_ms`` (the cloud's receive time) is
    used instead and the device's clock is flagged (a counter and a log line; the message
    is applied, not refused). A stamp in the past is never corrected: a queued message
    may arrive hours after it happened and must count when it happened.
    """
    if ts_ms < EPOCH_FLOOR_MS or ts_ms > received_ms + FUTURE_MS:
        return received_ms, True
    return ts_ms, False


#: Field names per message class (``dataclasses.fields`` costs more than the check).
_FIELDS: dict[type, tuple[str, ...]] = {}


def unstorable(value: object, *, _depth: int = 0) -> str | None:
    """Why ``value`` (a decoded message, its stamp or body) cannot be stored, or None.

    Walks dataclass fields, tuples and lists; checks every int against PostgreSQL's
    bigint, every str for NUL, every float for finiteness. About 2 µs for a status."""
    if _depth > 8:
        return "nested too deep"
    if value is None or value is True or value is False:
        return None
    if isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            return None
        return f"integer {value} is beyond a 64-bit signed integer"
    if isinstance(value, str):
        return "text with a NUL character" if "\x00" in value else None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"float {value} is not finite"
    if isinstance(value, tuple | list):
        for item in value:
            problem = unstorable(item, _depth=_depth + 1)
            if problem is not None:
                return problem
        return None
    cls = type(value)
    names = _FIELDS.get(cls)
    if names is None:
        if not is_dataclass(value):
            return None
        names = _FIELDS[cls] = tuple(f.name for f in fields(value))
    for name in names:
        item = getattr(value, name)
        kind = type(item)
        # The common cases, without a call.
        if item is None or (kind is float and math.isfinite(item)):
            continue
        if isinstance(item, int) and INT64_MIN <= item <= INT64_MAX:
            continue
        if kind is str and "\x00" not in item:
            continue
        problem = unstorable(item, _depth=_depth + 1)
        if problem is not None:
            return f"{name}: {problem}"
    return None


__all__ = [
    "EPOCH_FLOOR_MS",
    "FUTURE_MS",
    "STATUS_ORDER_SLACK_MS",
    "device_time",
    "unstorable",
]
