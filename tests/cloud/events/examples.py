"""A valid payload of any catalogue topic, built from its model's field types."""

from __future__ import annotations

import types
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar, Union, get_args, get_origin

from kickstand.cloud.events import EventPayload, EventType, NetworkEvent

P = TypeVar("P", bound=EventPayload)
AT = datetime(2026, 12, 6, 9, 30, 15, 250000, tzinfo=UTC)
_PLAIN: dict[Any, Any] = {
    int: 7,
    str: "text",
    bool: True,
    float: 45.76,
    datetime: AT,
    Decimal: Decimal("2.60"),
}


def value_for(annotation: Any) -> Any:
    """A non-null value of the type (``X | None`` gives an X: every field is exercised)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        kinds = [a for a in get_args(annotation) if a is not type(None)]
        return value_for(kinds[0])
    if origin is list:
        return [value_for(get_args(annotation)[0])]
    if origin is dict:
        return {"key": "value", "n": 1}
    return _PLAIN[annotation]


def example(event: EventType[P], network_id: int) -> P:
    """A payload of ``event`` about network ``network_id``."""
    model = event.payload
    values = {name: value_for(f.annotation) for name, f in model.model_fields.items()}
    scope: Any = network_id if issubclass(model, NetworkEvent) else [network_id]
    values[model.SCOPE_FIELD] = scope
    return model(**values)
