"""The webhook topics: the event catalogue (:mod:`kickstand.cloud.events`) as served.

Endpoints subscribe to topic names or wildcards: ``"*"`` (everything) or a prefix
ending in ``.*`` (``"trip.*"``, ``"boitier.*"``, ``"boitier.pass.*"``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kickstand.cloud.events import CATALOGUE
from kickstand.cloud.events import catalogue as ev

#: Disabling of an endpoint that keeps failing (ours; the operator is told through it).
WEBHOOK_ENDPOINT_DISABLED = ev.WEBHOOK_ENDPOINT_DISABLED


@dataclass(frozen=True)
class Topic:
    name: str
    description: str
    #: The payload field naming the event's network(s): ``network_id`` or ``network_ids``.
    scope: str
    #: JSON Schema of the payload (the envelope's ``data``) as sent.
    payload_schema: dict[str, Any]

    @property
    def resource(self) -> str:
        return self.name.split(".", 1)[0]


@functools.cache
def catalogue() -> tuple[Topic, ...]:
    """Every topic an endpoint can subscribe to, sorted: the event catalogue's (built once:
    the catalogue is fixed at import)."""
    return tuple(
        Topic(
            e.topic,
            e.description,
            e.payload.SCOPE_FIELD,
            e.payload.model_json_schema(by_alias=True, mode="serialization"),
        )
        for e in CATALOGUE.values()
    )


def topic_names() -> frozenset[str]:
    return frozenset(topic.name for topic in catalogue())


def matches(pattern: str, topic: str) -> bool:
    if pattern == "*" or pattern == topic:
        return True
    return pattern.endswith(".*") and topic.startswith(pattern[:-1])


def subscribed(patterns: Iterable[str], topic: str) -> bool:
    return any(matches(p, topic) for p in patterns)


def invalid_patterns(patterns: Sequence[str]) -> list[str]:
    """Patterns that name no topic of the catalogue (a typo would silently get nothing)."""
    names = topic_names()
    return [p for p in patterns if not any(matches(p, name) for name in names)]
