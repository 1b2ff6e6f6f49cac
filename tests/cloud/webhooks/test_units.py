"""Signing, topic matching and the retry schedule (no services)."""

from __future__ import annotations

import random

import pytest

from kickstand.cloud.events import CATALOGUE
from kickstand.cloud.webhooks import signing
from kickstand.cloud.webhooks.delivery import DeliveryPolicy, event_id_for
from kickstand.cloud.webhooks.errors import InvalidEndpointError, SignatureError
from kickstand.cloud.webhooks.service import check_topics, check_url
from kickstand.cloud.webhooks.topics import invalid_patterns, matches, topic_names


def test_sign_verify_round_trip_and_refusals() -> None:
    secret = signing.new_secret()
    body = b'{"id":"x"}'
    header = signing.sign(secret, body, timestamp=1_700_000_000)
    assert signing.verify(secret, header, body, now=1_700_000_010) == 1_700_000_000
    with pytest.raises(SignatureError, match="mismatch"):
        signing.verify(secret, header, body + b" ", now=1_700_000_010)
    with pytest.raises(SignatureError, match="tolerance"):
        signing.verify(secret, header, body, now=1_700_001_000)
    with pytest.raises(SignatureError, match="missing"):
        signing.verify(secret, None, body)
    with pytest.raises(SignatureError, match="malformed"):
        signing.verify(secret, "v1=abc", body)
    # rotation: either of two v1 values is accepted
    other = signing.compute("old-secret", 1_700_000_000, body)
    assert signing.verify(secret, f"{header},v1={other}", body, now=1_700_000_000)


def test_topic_catalogue_covers_the_issue() -> None:
    names = topic_names()
    for topic in [
        "trip.created",
        "trip.updated",
        "trip.terminated",
        "vehicule.battery.low",
        "vehicule.battery_vae.low",
        "vehicule.position.forbidden",
        "boitier.locked",
        "boitier.unlocked",
        "boitier.pass.unrecognized",
        "boitier.pin.incorrect",
        "boitier.chain_type.updated",
        "station.updated",
        "dock.updated",
        "zone.updated",
        "fleet_alert.created",
        "fleet_alert.stopped",
        "webhook_endpoint.disabled",
    ]:
        assert topic in names
    assert names == set(CATALOGUE)  # the served topics are the event catalogue


def test_wildcards() -> None:
    assert matches("*", "trip.created")
    assert matches("trip.*", "trip.created")
    assert matches("boitier.pass.*", "boitier.pass.unrecognized")
    assert not matches("boitier.pass.*", "boitier.pin.incorrect")
    assert not matches("trip.*", "tripx.created")
    assert not matches("trip.created", "trip.updated")
    assert invalid_patterns(["trip.*", "trips.*", "nope"]) == ["trips.*", "nope"]
    assert check_topics([" trip.* ", "trip.*", "dock.updated"]) == ["dock.updated", "trip.*"]
    with pytest.raises(InvalidEndpointError):
        check_topics(["vehicle.updated"])  # the seed spells it "vehicule"
    with pytest.raises(InvalidEndpointError):
        check_topics([])
    with pytest.raises(InvalidEndpointError):
        check_url("ftp://example.com/hook")
    assert check_url("https://ops.example.com/hook") == "https://ops.example.com/hook"


def test_retry_schedule_spans_hours_with_jitter() -> None:
    policy = DeliveryPolicy()
    rng = random.Random(1)
    delays = [policy.delay_s(n, rng) for n in range(1, len(policy.schedule_s) + 1)]
    assert all(d is not None for d in delays)
    assert 9 <= delays[0] <= 11
    assert 12 * 3600 * 0.9 <= delays[-1] <= 12 * 3600 * 1.1
    assert sum(d for d in delays if d) > 24 * 3600
    assert policy.delay_s(len(policy.schedule_s) + 1, rng) is None  # then: failed
    jittered = {policy.delay_s(1, rng) for _ in range(20)}
    assert len(jittered) > 1


def test_event_ids_are_stable() -> None:
    assert event_id_for(42) == event_id_for(42) != event_id_for(43)


def test_free_floating_topics_can_be_subscribed_to() -> None:
    from kickstand.cloud.freefloat.hook import VEHICLE_POSITION_OUT_OF_NETWORK
    from kickstand.cloud.freefloat.service import TRIP_RETURN_REFUSED

    assert {TRIP_RETURN_REFUSED.topic, VEHICLE_POSITION_OUT_OF_NETWORK.topic} <= topic_names()
