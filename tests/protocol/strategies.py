"""Hypothesis strategies producing valid v1 messages."""

from __future__ import annotations

import dataclasses
import typing
from enum import IntEnum
from typing import Any

from hypothesis import strategies as st

from kickstand.protocol.v1 import codec
from kickstand.protocol.v1 import messages as m
from kickstand.protocol.v1.enums import DeviceState, SpotState
from kickstand.protocol.v1.fields import (
    I63_MIN,
    U32,
    U63,
    Bool,
    Bytes,
    ConfigMap,
    Conv,
    Enum,
    ListOf,
    Pair,
    Scaled,
    Text,
    UInt,
    utf8_len,
)

ALNUM = st.characters(min_codepoint=48, max_codepoint=122).filter(str.isalnum)
# Any character a text field may carry: everything but controls (Cc) and lone surrogates,
# which UTF-8 cannot encode.
PRINTABLE = st.characters(exclude_categories=("Cc", "Cs"))


def for_conv(conv: Conv[Any]) -> st.SearchStrategy[Any]:
    match conv:
        case UInt(maximum=hi, minimum=lo):
            return st.integers(lo, hi)
        case Text(max_len=hi, min_len=lo):
            return st.text(PRINTABLE, min_size=lo, max_size=min(hi, 20)).map(lambda t: _fit(t, hi))
        case Bytes(min_len=lo, max_len=hi):
            return st.binary(min_size=lo, max_size=hi)
        case Bool():
            return st.booleans()
        case Enum(enum=e):
            return st.sampled_from(list(e))
        case Scaled(scale=s, minimum=lo, maximum=hi):
            return st.integers(round(lo * s), round(hi * s)).map(lambda i: i / s)
        case ListOf(item=item, max_items=n):
            return st.lists(for_conv(item), max_size=min(n, 5)).map(tuple)
        case Pair(first=a, second=b):
            return st.tuples(for_conv(a), for_conv(b))
        case ConfigMap():
            return st.dictionaries(st.text(ALNUM, max_size=8), CONFIG_VALUES, max_size=4)
    # Component and status state have their own converters
    return st.builds(
        m.Component,
        st.text(ALNUM, min_size=1, max_size=8),
        st.integers(0, 255),
        st.text(ALNUM, max_size=8),
    )


def _fit(text: str, max_bytes: int) -> str:
    """``text`` shortened to at most ``max_bytes`` of UTF-8 (text limits count bytes)."""
    while utf8_len(text) > max_bytes:
        text = text[:-1]
    return text


CONFIG_VALUES: st.SearchStrategy[Any] = st.one_of(
    st.booleans(),
    st.integers(I63_MIN, U63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(PRINTABLE, max_size=20),
)


def body_of(cls: type) -> st.SearchStrategy[Any]:
    specs = codec.BODY_FIELDS[cls] if cls in codec.BODY_FIELDS else codec.COMMAND_FIELDS[cls]
    kwargs: dict[str, st.SearchStrategy[Any]] = {}
    for spec in specs:
        if cls is m.Status and spec.attr == "state":
            continue
        s = for_conv(spec.conv)
        kwargs[spec.attr] = (
            s if spec.required else st.one_of(st.none(), s) if _optional(cls, spec.attr) else s
        )
    if cls is m.Status:
        return st.one_of(
            st.builds(
                m.Status,
                spot=st.just(0),
                state=st.sampled_from(list(DeviceState)),
                **{k: v for k, v in kwargs.items() if k != "spot"},
            ),
            st.builds(
                m.Status,
                spot=st.integers(1, 255),
                state=st.sampled_from(list(SpotState)),
                **{k: v for k, v in kwargs.items() if k != "spot"},
            ),
        )
    return st.builds(cls, **kwargs)


def _optional(cls: type, attr: str) -> bool:
    hints = typing.get_type_hints(cls)
    return type(None) in typing.get_args(hints[attr])


UP_CLASSES = [c for c in codec.BODY_FIELDS]
up_bodies = st.one_of(*[body_of(c) for c in UP_CLASSES])


@st.composite
def up_messages(draw: st.DrawFn) -> m.UpMessage:
    body = draw(up_bodies)
    seq = (
        draw(st.integers(1, 2**32 - 1)) if codec.channel_of(body) in codec.SEQUENCED_CHANNELS else 0
    )
    ts_ms = draw(st.one_of(st.integers(0, 2**44), st.integers(0, U63)))
    stamp = m.Stamp(draw(st.integers(1, U32)), seq, ts_ms)
    return m.UpMessage(stamp, body)


commands = st.one_of(*[body_of(c) for c in codec.COMMAND_FIELDS])


def is_enum(value: object) -> bool:
    return isinstance(value, IntEnum)


__all__ = ["commands", "dataclasses", "is_enum", "up_messages"]
