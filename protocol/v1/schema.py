"""CDDL validators of protocol v1, compiled once per channel on first use."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pycddl

from kickstand.protocol.errors import SchemaError
from kickstand.protocol.topics import Channel

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schema"


def schema_text(channel: Channel) -> str:
    own = (SCHEMA_DIR / f"{channel.value}.cddl").read_text()
    return own + "\n" + (SCHEMA_DIR / "common.cddl").read_text()


@cache
def validator(channel: Channel) -> pycddl.Schema:
    return pycddl.Schema(schema_text(channel))


def validate(channel: Channel, data: bytes) -> None:
    try:
        validator(channel).validate_cbor(data)
    except pycddl.ValidationError as exc:
        reason = " ".join(str(exc).split())
        if len(reason) > 200:
            reason = reason[:197] + "..."
        raise SchemaError(
            f"does not match the {channel.value} schema: {reason}", channel=channel
        ) from None
