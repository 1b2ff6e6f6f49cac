"""Converters between domain values and their compact wire form, with typed errors.

Used by ``codec.py`` only: it is the one boundary where names become integer
keys and floats become scaled integers.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Generic, TypeVar

from kickstand.protocol.errors import EncodeError, SchemaError

T = TypeVar("T")
# Integer ranges are the cloud's columns: what decodes must be storable (SPEC §6, §10).
U31 = 0x7FFF_FFFF  # a PostgreSQL integer: version numbers
U32 = 0xFFFF_FFFF  # "uint": stored in bigint
U63 = 0x7FFF_FFFF_FFFF_FFFF  # the "uint64" fields (times, counters): a PostgreSQL bigint
I63_MIN = -0x8000_0000_0000_0000  # a signed 64-bit integer's least value (config values)

# Control characters (Unicode category Cc): never in a text field. NUL cannot be stored in a
# PostgreSQL text, and the others forge log lines or drive terminals; no field needs them.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def has_control(text: str) -> bool:
    """True if ``text`` holds a character a v1 text field must not carry (U+0000–U+001F,
    U+007F–U+009F)."""
    if text.isascii():  # the usual case: C-speed, no regex (printable ASCII has no Cc)
        return not text.isprintable()
    return _CONTROL.search(text) is not None


class Conv(ABC, Generic[T]):
    """Encode a domain value to its wire value, and check/convert it back."""

    def encode(self, value: T) -> Any:
        return value

    @abstractmethod
    def decode(self, wire: Any, where: str) -> T:
        """The domain value of ``wire``, or a SchemaError naming ``where``."""

    @staticmethod
    def fail(where: str, expected: str, wire: Any) -> SchemaError:
        shown = repr(wire)
        if len(shown) > 40:
            shown = shown[:37] + "..."
        return SchemaError(f"{where}: expected {expected}, got {shown}", field=where)


@dataclass(frozen=True, slots=True)
class UInt(Conv[int]):
    maximum: int = U32
    minimum: int = 0

    def encode(self, value: int) -> int:
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or not self.minimum <= value <= self.maximum
        ):
            raise EncodeError(f"{value!r} is not an integer in {self.minimum}..{self.maximum}")
        return value

    def decode(self, wire: Any, where: str) -> int:
        if type(wire) is not int or not self.minimum <= wire <= self.maximum:
            raise self.fail(where, f"uint in {self.minimum}..{self.maximum}", wire)
        return wire


def fit_text(text: str, max_bytes: int) -> str:
    """``text`` made fit for a text field: each control character a space, cut to at most
    ``max_bytes`` of UTF-8 on a character boundary. For texts built from what a device does
    not control (an exception's message, a peer's string); the codec itself refuses, never
    repairs."""
    cleaned = _CONTROL.sub(" ", text).encode("utf-8", "replace")[:max_bytes]
    return cleaned.decode("utf-8", "ignore")


def utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True, slots=True)
class Text(Conv[str]):
    """Lengths count UTF-8 bytes, as CDDL's ``.size`` does and a device's buffers do."""

    max_len: int = 64
    min_len: int = 0

    def encode(self, value: str) -> str:
        if not isinstance(value, str) or not self.min_len <= utf8_len(value) <= self.max_len:
            raise EncodeError(f"{value!r} is not text of {self.min_len}..{self.max_len} bytes")
        if has_control(value):
            raise EncodeError(f"{value!r} holds a control character")
        return value

    def decode(self, wire: Any, where: str) -> str:
        if type(wire) is not str or not self.min_len <= utf8_len(wire) <= self.max_len:
            raise self.fail(where, f"text of {self.min_len}..{self.max_len} bytes", wire)
        if has_control(wire):
            raise self.fail(where, "text without control characters", wire)
        return wire


@dataclass(frozen=True, slots=True)
class Bytes(Conv[bytes]):
    min_len: int = 0
    max_len: int = 64

    def encode(self, value: bytes) -> bytes:
        if not isinstance(value, bytes) or not self.min_len <= len(value) <= self.max_len:
            raise EncodeError(f"{value!r} is not {self.min_len}..{self.max_len} bytes")
        return value

    def decode(self, wire: Any, where: str) -> bytes:
        if type(wire) is not bytes or not self.min_len <= len(wire) <= self.max_len:
            raise self.fail(where, f"{self.min_len}..{self.max_len} bytes", wire)
        return wire


@dataclass(frozen=True, slots=True)
class Bool(Conv[bool]):
    def encode(self, value: bool) -> bool:
        if not isinstance(value, bool):
            raise EncodeError(f"{value!r} is not a bool")
        return value

    def decode(self, wire: Any, where: str) -> bool:
        if type(wire) is not bool:
            raise self.fail(where, "bool", wire)
        return wire


E = TypeVar("E", bound=IntEnum)


@dataclass(frozen=True, slots=True)
class Enum(Conv[E]):
    enum: type[E]

    def encode(self, value: E) -> int:
        try:
            return int(self.enum(value))
        except (ValueError, TypeError):
            raise EncodeError(f"{value!r} is not a {self.enum.__name__}") from None

    def decode(self, wire: Any, where: str) -> E:
        if type(wire) is not int:
            raise self.fail(where, self.enum.__name__, wire)
        try:
            return self.enum(wire)
        except ValueError:
            raise self.fail(where, f"a {self.enum.__name__} code", wire) from None


@dataclass(frozen=True, slots=True)
class Scaled(Conv[float]):
    """A float carried as an integer count of ``1/scale`` units (e.g. 1e-6 degree)."""

    scale: int
    minimum: float
    maximum: float
    unit: str = ""  # of the value counted ("°C"), for the SPEC's tables

    def encode(self, value: float) -> int:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not self.minimum <= value <= self.maximum
        ):
            raise EncodeError(f"{value!r} is not a number in {self.minimum}..{self.maximum}")
        return round(value * self.scale)

    def decode(self, wire: Any, where: str) -> float:
        if type(wire) is not int:
            raise self.fail(where, f"integer count of 1/{self.scale}", wire)
        # Compared before dividing: a bignum's quotient would overflow a float.
        if not self.minimum * self.scale <= wire <= self.maximum * self.scale:
            raise self.fail(where, f"a value in {self.minimum}..{self.maximum}", wire)
        value = wire / self.scale
        if not self.minimum <= value <= self.maximum:
            raise self.fail(where, f"a value in {self.minimum}..{self.maximum}", value)
        return value


@dataclass(frozen=True, slots=True)
class ListOf(Conv[tuple[Any, ...]]):
    item: Conv[Any]
    max_items: int

    def encode(self, value: tuple[Any, ...]) -> list[Any]:
        if len(value) > self.max_items:
            raise EncodeError(f"{len(value)} items, at most {self.max_items}")
        return [self.item.encode(v) for v in value]

    def decode(self, wire: Any, where: str) -> tuple[Any, ...]:
        if type(wire) is not list or len(wire) > self.max_items:
            raise self.fail(where, f"array of at most {self.max_items}", wire)
        return tuple(self.item.decode(v, f"{where}[{i}]") for i, v in enumerate(wire))


@dataclass(frozen=True, slots=True)
class Pair(Conv[tuple[Any, Any]]):
    first: Conv[Any]
    second: Conv[Any]

    def encode(self, value: tuple[Any, Any]) -> list[Any]:
        return [self.first.encode(value[0]), self.second.encode(value[1])]

    def decode(self, wire: Any, where: str) -> tuple[Any, Any]:
        if type(wire) is not list or len(wire) != 2:
            raise self.fail(where, "array of 2", wire)
        return (
            self.first.decode(wire[0], f"{where}[0]"),
            self.second.decode(wire[1], f"{where}[1]"),
        )


ConfigValue = int | str | bool | float


def _config_entry_ok(key: Any, value: Any) -> bool:
    """Text keys of at most 64 characters; values bool, int64, finite float or text, and no
    text with a control character."""
    if type(key) is not str or utf8_len(key) > 64 or has_control(key):
        return False
    kind = type(value)
    if kind is bool:
        return True
    if kind is int:
        return I63_MIN <= value <= U63
    if kind is float:
        return math.isfinite(value)
    return kind is str and not has_control(value)


@dataclass(frozen=True, slots=True)
class ConfigMap(Conv[dict[str, ConfigValue]]):
    max_items: int = 64

    def encode(self, value: dict[str, ConfigValue]) -> dict[str, ConfigValue]:
        if len(value) > self.max_items:
            raise EncodeError(f"{len(value)} config values, at most {self.max_items}")
        for k, v in value.items():
            if not _config_entry_ok(k, v):
                raise EncodeError(
                    f"config {k!r}={v!r}: keys are text, values bool, int64, finite float or text"
                )
        return dict(value)

    def decode(self, wire: Any, where: str) -> dict[str, ConfigValue]:
        if type(wire) is not dict or len(wire) > self.max_items:
            raise self.fail(where, f"map of at most {self.max_items} entries", wire)
        for k, v in wire.items():
            if not _config_entry_ok(k, v):
                # repr: the key itself may be what is wrong (a control character, not text)
                raise self.fail(f"{where}[{k!r}]", "text key and scalar value", v)
        return dict(wire)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One attribute of a message class and the integer key it travels under."""

    attr: str
    key: int
    conv: Conv[Any]
    required: bool = False
    # An optional field added to a message after v1 shipped whose dataclass default is not
    # None ("" or 0): that value is left off the wire, so older bytes stay the same.
    omit: object = None
