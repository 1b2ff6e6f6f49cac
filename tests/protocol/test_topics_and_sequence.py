from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kickstand.protocol import topics
from kickstand.protocol.errors import TopicError
from kickstand.protocol.sequence import BootSequence, SequenceTracker, Verdict
from kickstand.protocol.topics import Channel, Direction


def test_topic_round_trip() -> None:
    t = topics.up("st-0001", Channel.EVENT)
    assert t == "ks/v1/d/st-0001/evt"
    assert topics.parse(t) == topics.Topic(Direction.UP, "st-0001", Channel.EVENT)
    assert topics.down("vh-EB102938", Channel.COMMAND) == "ks/v1/c/vh-EB102938/cmd"
    assert topics.ingest_subscription() == "$share/ingest/ks/v1/d/+/+"


@pytest.mark.parametrize(
    "bad",
    [
        "ks/v1/d/st-0001",
        "ks/v2/d/st-0001/evt",
        "ks/v1/x/st-0001/evt",
        "ks/v1/d/st-0001/cmd",
        "ks/v1/c/st-0001/evt",
        "ks/v1/d/ST_01/evt",
        "ks/v1/d/st-0001/evt/extra",
        "ks/v1/d/+/evt",
    ],
)
def test_bad_topics_are_refused(bad: str) -> None:
    with pytest.raises(TopicError):
        topics.parse(bad)


def test_wrong_direction_channel() -> None:
    with pytest.raises(TopicError):
        topics.up("st-0001", Channel.COMMAND)


def test_sequence_dedupe_and_gaps() -> None:
    t = SequenceTracker()
    got = [t.accept("st-0001", 7, s) for s in (1, 2, 2, 5, 3, 5)]
    assert got == [
        Verdict.NEW,
        Verdict.NEW,
        Verdict.DUPLICATE,
        Verdict.NEW,
        Verdict.NEW,
        Verdict.DUPLICATE,
    ]
    assert t.boot("st-0001", 7).missing == [4]
    assert t.accept("st-0001", 8, 1) is Verdict.NEW  # a new boot counts afresh
    assert (
        t.accept("st-0001", 7, 4) is Verdict.NEW
    )  # the old boot's late message still applies once
    assert t.boot("st-0001", 7).contiguous == 5


def test_birth_declares_delivered() -> None:
    seqs = BootSequence()
    seqs.accept(1)
    seqs.accept(10)
    seqs.delivered_below(9)  # 2..8 were thinned telemetry; 9 is still queued on the device
    assert seqs.contiguous == 8 and seqs.missing == [9]
    assert seqs.accept(9) is Verdict.NEW
    assert seqs.contiguous == 10 and seqs.missing == []


@given(st.lists(st.integers(1, 300), max_size=600))
def test_each_seq_is_new_exactly_once(seqs: list[int]) -> None:
    track = BootSequence()
    news = [s for s in seqs if track.accept(s) is Verdict.NEW]
    assert sorted(news) == sorted(set(seqs))
