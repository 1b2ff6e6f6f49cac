"""The event catalogue: one definition per topic, payloads that cannot drift, docs from it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from kickstand.cloud import outbox
from kickstand.cloud.events import CATALOGUE, EventType, catalogue, networks_of
from kickstand.cloud.events import payloads as p
from kickstand.cloud.events.docs import DOC, render
from kickstand.cloud.webhooks.topics import catalogue as served

from .examples import example

CLOUD = Path(__file__).resolve().parents[3] / "cloud"
TOPICS = sorted(CATALOGUE)
_WRITES_OUTBOX = re.compile(
    r"(?<!class )OutboxEvent\(|table_of\(OutboxEvent\)|insert\(OutboxEvent|INSERT INTO outbox\b",
    re.IGNORECASE,
)


class _Session:
    """What ``outbox.emit`` needs of a session: somewhere to add the row."""

    def __init__(self) -> None:
        self.added: list[Any] = []

    def add(self, row: Any) -> None:
        self.added.append(row)


def _stored(event: EventType[Any], payload: p.EventPayload) -> dict[str, Any]:
    """The payload as an outbox row holds it, through JSON as the database keeps it."""
    session = _Session()
    row = outbox.emit(session, event, 1, payload)  # type: ignore[arg-type]
    assert session.added == [row] and row.topic == event.topic
    assert row.resource_type == event.resource_type and row.resource_id == "1"
    stored: dict[str, Any] = json.loads(json.dumps(row.payload))
    return stored


@pytest.mark.parametrize("topic", TOPICS)
def test_a_topic_round_trips_through_its_outbox_row(topic: str) -> None:
    event = CATALOGUE[topic]
    payload = example(event, network_id=3)
    stored = _stored(event, payload)
    # What a receiver gets validates against the definition and says the same thing.
    assert event.payload.model_validate(stored) == payload
    fields = event.payload.model_fields.items()
    assert set(stored) == {f.serialization_alias or n for n, f in fields}
    # Its network scope is read by the definition (what webhook delivery uses).
    assert networks_of(topic, stored) == {3}


@pytest.mark.parametrize("topic", TOPICS)
def test_a_payload_that_drifts_from_its_definition_is_refused(topic: str) -> None:
    event = CATALOGUE[topic]
    stored = _stored(event, example(event, network_id=3))
    with pytest.raises(ValidationError):  # a key the definition does not have
        event.payload.model_validate({**stored, "surprise": 1})
    for key in stored:  # every field is part of the shape (defaults are sent too)
        if event.payload.model_fields.get(key, None) is not None and (
            event.payload.model_fields[key].is_required()
        ):
            with pytest.raises(ValidationError):
                event.payload.model_validate({k: v for k, v in stored.items() if k != key})
    scope = event.payload.SCOPE_FIELD
    with pytest.raises(ValidationError):  # the scope cannot be forgotten
        event.payload(**{k: v for k, v in stored.items() if k != scope})


def test_emit_refuses_a_payload_of_another_definition() -> None:
    trip = example(catalogue.TRIP_CREATED, network_id=1)
    with pytest.raises(TypeError, match=r"rent\.updated carries RentEvent"):
        outbox.emit(_Session(), catalogue.RENT_UPDATED, 1, trip)  # type: ignore[arg-type]


def test_network_scope_of_events_about_no_network_and_several() -> None:
    assert networks_of("dock.updated", {"network_id": None}) == frozenset()
    assert networks_of("webhook_endpoint.disabled", {"network_ids": [1, 2]}) == {1, 2}
    assert networks_of("webhook_endpoint.disabled", {"network_ids": None}) == frozenset()
    # A row written before its topic was catalogued is read by the key it carries.
    assert networks_of("legacy.topic", {"network_id": 4}) == {4}


def test_every_definition_has_an_emitter_and_nothing_else_writes_the_outbox() -> None:
    sources = {
        path: path.read_text(encoding="utf-8")
        for path in CLOUD.rglob("*.py")
        if "events" not in path.relative_to(CLOUD).parts
    }
    names = [n for n, v in vars(catalogue).items() if isinstance(v, EventType)]
    code = "\n".join(sources.values())
    unused = [n for n in names if not re.search(rf"\b{n}\b", code)]
    assert unused == [], "a topic in the catalogue that nothing emits"
    writers = [
        str(path.relative_to(CLOUD))
        for path, text in sources.items()
        if path.name != "outbox.py" and _WRITES_OUTBOX.search(text)
    ]
    assert writers == [], "outbox rows written around outbox.emit"


def test_served_topics_and_docs_are_the_catalogue() -> None:
    topics = {t.name: t for t in served()}
    assert list(topics) == list(CATALOGUE)
    assert topics["dock.updated"].scope == "network_id"
    assert topics["webhook_endpoint.disabled"].scope == "network_ids"
    assert "return" in topics["trip.return.refused"].payload_schema["properties"]
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/webhook-topics.md is stale: python -m kickstand.cloud.events.docs --write"
    )
