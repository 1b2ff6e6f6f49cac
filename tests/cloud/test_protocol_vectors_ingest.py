"""The protocol's test vectors through the ingest worker's entry point: every valid device
message decodes to the vector's values; every invalid one is a counted rejection."""

from __future__ import annotations

from typing import Any

import pytest

from kickstand.cloud.ingest.consumer import Received
from kickstand.cloud.ingest.worker import IngestWorker
from kickstand.protocol import topics
from kickstand.protocol.jsonform import load_vectors, to_jsonable
from kickstand.protocol.topics import Channel

UP = {c.value for c in topics.UP_CHANNELS}
VECTORS = [v for v in load_vectors() if v["channel"] in UP]


@pytest.fixture
def worker() -> IngestWorker:
    # Never started: only its decoding entry point is used, no broker or database.
    return IngestWorker("mqtt://127.0.0.1:1", sessionmaker=None)  # type: ignore[arg-type]


def _received(vec: dict[str, Any]) -> Received:
    topic = topics.up("st-0001", Channel(vec["channel"]))
    return Received(topic, bytes.fromhex(vec["hex"]), mid=1, qos=1, generation=0)


@pytest.mark.parametrize("vec", [v for v in VECTORS if v["valid"]], ids=lambda v: v["name"])
def test_valid_vectors_decode_at_ingest(worker: IngestWorker, vec: dict[str, Any]) -> None:
    inbound = worker._decode(_received(vec))
    assert inbound is not None
    assert inbound.device_id == "st-0001"
    assert to_jsonable(inbound.msg) == vec["decoded"]
    assert not worker.stats.rejected


@pytest.mark.parametrize("vec", [v for v in VECTORS if not v["valid"]], ids=lambda v: v["name"])
def test_invalid_vectors_are_counted_rejections(worker: IngestWorker, vec: dict[str, Any]) -> None:
    """Counted under the vector's class (SPEC §11): the reason operators see."""
    assert worker._decode(_received(vec)) is None
    assert worker.stats.rejected == {vec["error"]: 1}


def test_the_device_message_vectors_cover_every_decoding_class() -> None:
    classes = {v["error"] for v in VECTORS if not v["valid"]}
    assert classes == {"malformed", "schema", "unknown-type"}
    # decode-only vectors reach ingest too: a newer device's extra key must not be refused
    assert any(v["valid"] and not v["round_trip"] for v in VECTORS)


def test_a_device_message_on_a_command_topic_is_rejected(worker: IngestWorker) -> None:
    vec = next(v for v in VECTORS if v["name"] == "heartbeat")
    item = Received("ks/v1/c/st-0001/cmd", bytes.fromhex(vec["hex"]), 1, 1, 0)
    assert worker._decode(item) is None
    assert worker.stats.rejected == {"bad-topic": 1}
