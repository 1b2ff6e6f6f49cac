"""Converters between domain values and their compact wire form, with typed errors.

Used by ``codec.py`` only: it is the one boundary where names become integer
keys and floats become scaled integers.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Generic, TypeVar

from kickstand.protocol.errors import EncodeError, SchemaError

T = TypeVar("T")
U32 = 0xFFFF_FFFF
U64 = 0xFFFF_FFFF_FFFF_FFFF


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

    def encode(self, value: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= self.maximum:
            raise EncodeError(f"{value!r} is not an integer in 0..{self.maximum}")
        return value

    def decode(self, wire: Any, where: str) -> int:
        if type(wire) is not int or not 0 <= wire <= self.maximum:
            raise self.fail(where, f"uint <= {self.maximum}", wire)
        return wire


@dataclass(frozen=True, slots=True)
class Text(Conv[str]):
    max_len: int = 64
    min_len: int = 0

    def encode(self, value: str) -> str:
        if not isinstance(value, str) or not self.min_len <= len(value) <= self.max_len:
            raise EncodeError(f"{value!r} is not text of {self.min_len}..{self.max_len} chars")
        return value

    def decode(self, wire: Any, where: str) -> str:
        if type(wire) is not str or not self.min_len <= len(wire) <= self.max_len:
            raise self.fail(where, f"text of {self.min_len}..{self.max_len} chars", wire)
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


@dataclass(frozen=True, slots=True)
class ConfigMap(Conv[dict[str, ConfigValue]]):
    max_items: int = 64

    def encode(self, value: dict[str, ConfigValue]) -> dict[str, ConfigValue]:
        if len(value) > self.max_items:
            raise EncodeError(f"{len(value)} config values, at most {self.max_items}")
        for k, v in value.items():
            if not isinstance(k, str) or not isinstance(v, int | str | bool | float):
                raise EncodeError(f"config {k!r}={v!r}: keys are text, values scalars")
        return dict(value)

    def decode(self, wire: Any, where: str) -> dict[str, ConfigValue]:
        if type(wire) is not dict or len(wire) > self.max_items:
            raise self.fail(where, f"map of at most {self.max_items} entries", wire)
        for k, v in wire.items():
            if type(k) is not str or len(k) > 64 or not isinstance(v, int | str | bool | float):
                raise self.fail(f"{where}.{k}", "text key and scalar value", v)
        return dict(wire)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One attribute of a message class and the integer key it travels under."""

    attr: str
    key: int
    conv: Conv[Any]
    required: bool = False
