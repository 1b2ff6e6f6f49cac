"""InfluxDB line protocol encoding.

    measurement,tag1=v1,tag2=v2 field1=1.5,field2="text",field3=12i 1700000000000000000

Escaping (the rules InfluxDB 1.x, 2.x and 3.x share):
- measurement: comma and space are escaped with a backslash;
- tag keys, tag values, field keys: comma, equals sign and space are escaped;
- string field values: double quote and backslash are escaped, inside double quotes.

What the versions do *not* agree on is refused with `InvalidPointError` instead of
being guessed at: newlines anywhere (a line is a point), backslashes in names and
tag values (1.x keeps them literally, 2.x may read them as escapes), empty tag
values, non-finite floats, a measurement starting with `#` (a comment line).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

from kickstand.cloud.telemetry.errors import InvalidPointError
from kickstand.cloud.telemetry.points import FieldValue, Point, TelemetryPoint

Precision = Literal["ns", "u", "ms", "s"]

_DIVISOR: dict[str, int] = {"ns": 1, "u": 1_000, "ms": 1_000_000, "s": 1_000_000_000}

_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_STRING_ESCAPES = str.maketrans({'"': r"\"", "\\": r"\\"})


def _check_name(measurement: str, what: str, value: str) -> None:
    if not value:
        raise InvalidPointError(measurement, f"{what} is empty")
    if "\n" in value or "\r" in value:
        raise InvalidPointError(measurement, f"{what} {value!r} contains a newline")
    if "\\" in value:
        raise InvalidPointError(measurement, f"{what} {value!r} contains a backslash")


def escape_measurement(name: str) -> str:
    _check_name(name, "measurement", name)
    if name.startswith("#"):
        raise InvalidPointError(name, "a measurement cannot start with '#' (comment line)")
    return name.translate(_MEASUREMENT_ESCAPES)


def escape_key(measurement: str, what: str, value: str) -> str:
    """Escape a tag key, tag value or field key."""
    _check_name(measurement, what, value)
    return value.translate(_KEY_ESCAPES)


def encode_field_value(measurement: str, key: str, value: FieldValue) -> str:
    # bool before int: bool is a subclass of int.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidPointError(measurement, f"field {key!r} is not finite: {value!r}")
        return repr(value)
    if isinstance(value, str):
        if "\n" in value or "\r" in value:
            raise InvalidPointError(measurement, f"string field {key!r} contains a newline")
        return f'"{value.translate(_STRING_ESCAPES)}"'
    raise InvalidPointError(measurement, f"field {key!r} has unsupported type {type(value)}")


def encode_timestamp(time_ns: int, precision: Precision) -> int:
    # Floor division keeps pre-1970 instants in the right (earlier) unit.
    return time_ns // _DIVISOR[precision]


def encode(point: TelemetryPoint, precision: Precision = "ns") -> str:
    """One line of line protocol (no trailing newline) for a point."""
    if not isinstance(point, Point):
        # The measurement classes build their line directly (the hot path of ingest).
        return f"{point.line_protocol()} {point.time_ns // _DIVISOR[precision]}"
    generic: Point = point
    m = generic.measurement
    parts = [escape_measurement(m)]
    for key in sorted(generic.tags):  # sorted tags: InfluxDB's fast path
        value = generic.tags[key]
        if value == "":
            continue
        if not isinstance(value, str):
            raise InvalidPointError(m, f"tag {key!r} must be a str, got {type(value).__name__}")
        parts.append(f",{escape_key(m, 'tag key', key)}={escape_key(m, 'tag value', value)}")
    fields = ",".join(
        f"{escape_key(m, 'field key', key)}={encode_field_value(m, key, value)}"
        for key, value in generic.fields.items()
    )
    if not fields:
        raise InvalidPointError(m, "a point needs at least one field")
    return f"{''.join(parts)} {fields} {encode_timestamp(generic.time_ns, precision)}"


def encode_many(points: Iterable[TelemetryPoint], precision: Precision = "ns") -> str:
    """A write body: one line per point, newline-terminated."""
    return "".join(encode(p, precision) + "\n" for p in points)


__all__ = [
    "Precision",
    "encode",
    "encode_field_value",
    "encode_many",
    "encode_timestamp",
    "escape_key",
    "escape_measurement",
]
