"""A plain JSON form of protocol messages: for test vectors, logs and debugging tools.

Bytes become lowercase hex, enums their names, dataclasses ``{"type": ..., **fields}``.
"""

from __future__ import annotations

import dataclasses
import json
from enum import IntEnum
from importlib import resources
from pathlib import Path
from typing import Any

from kickstand.protocol.v1 import messages


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {"type": type(value).__name__}
        for f in dataclasses.fields(value):
            out[f.name] = to_jsonable(getattr(value, f.name))
        return out
    if isinstance(value, IntEnum):
        return value.name
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple | list):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return value


def vectors_path() -> Path:
    return Path(str(resources.files("kickstand.protocol").joinpath("vectors/v1.json")))


def load_vector_file() -> dict[str, Any]:
    """The whole vectors file: ``vectors``, ``spotbus``, ``classes``, ``test_keys``…"""
    data: dict[str, Any] = json.loads(vectors_path().read_text())
    return data


def load_vectors() -> list[dict[str, Any]]:
    """The v1 message vectors: ``{name, channel, hex, valid, decoded | error}`` each."""
    data: list[dict[str, Any]] = load_vector_file()["vectors"]
    return data


def load_vector_keys() -> dict[str, str]:
    """The TEST-ONLY signing key of the command vectors (never use it on a device)."""
    keys: dict[str, str] = load_vector_file()["test_keys"]
    return keys


MESSAGE_CLASSES = {
    name: cls
    for name, cls in vars(messages).items()
    if isinstance(cls, type) and dataclasses.is_dataclass(cls)
}
