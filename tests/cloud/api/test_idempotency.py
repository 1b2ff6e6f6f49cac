"""The Idempotency-Key dependency on its own (any POST), the rent key space it gives
``POST /v1/rents`` and ``POST /v1/freefloat/unlock`` together, and a technician's unlock:
a key released when nothing was sent (offline), kept when the station may still act."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel
from sqlalchemy import func, select

from kickstand.cloud.api.errors import ApiError
from kickstand.cloud.api.idempotency import Idempotency, request_hash
from kickstand.cloud.models import IdempotencyKey, Rent
from kickstand.cloud.rent_gateway import UnlockOutcome
from kickstand.protocol.v1 import messages as m
from tests.cloud.api.support import Api
from tests.cloud.api.test_api_rents import spot_id


class Thing(BaseModel):
    name: str


def _idem(api: Api, operation: str = "POST /v1/things", key: str = "thing-key-1") -> Idempotency:
    return Idempotency(api.sessionmaker, api.demo.user_ids["alice@example.com"], operation, key)


async def test_claim_store_replay_for_any_operation(api: Api) -> None:
    idem = _idem(api)
    first = request_hash(Thing(name="a"))
    async with api.sessionmaker() as session:
        key_id = await idem.claim(session, first, datetime.now(UTC))
        assert key_id is not None
        await idem.store(session, key_id, 201, {"code": 0, "data": {"name": "a"}})
        await session.commit()
    async with api.sessionmaker() as session:  # a repeat: the claim fails, nothing else
        assert await idem.claim(session, first, datetime.now(UTC)) is None

    replayed = await idem.replay(first, wait_s=1)
    assert replayed.status_code == 201 and replayed.headers["idempotent-replayed"] == "true"
    assert replayed.body == b'{"code":0,"data":{"name":"a"}}'

    with pytest.raises(ApiError) as reused:
        await idem.replay(request_hash(Thing(name="b")), wait_s=1)
    assert reused.value.status == 422 and reused.value.reason == "idempotency-key-reused"

    # The same key for another operation is another key.
    other = _idem(api, operation="POST /v1/others")
    async with api.sessionmaker() as session:
        assert await other.claim(session, first, datetime.now(UTC)) is not None


async def test_in_progress_waits_then_409_and_abandoned_key_is_released(api: Api) -> None:
    running, abandoned = _idem(api, key="running-key"), _idem(api, key="abandoned-key")
    digest = request_hash(Thing(name="a"))
    async with api.sessionmaker() as session:
        assert await running.claim(session, digest, datetime.now(UTC)) is not None
        long_ago = datetime.now(UTC) - timedelta(minutes=5)
        assert await abandoned.claim(session, digest, long_ago) is not None
        await session.commit()

    with pytest.raises(ApiError) as busy:
        await running.replay(digest, wait_s=0.2)
    assert busy.value.status == 409 and busy.value.reason == "idempotency-in-progress"

    # Its claimer died and nothing is recoverable: released, so the retry runs again.
    with pytest.raises(ApiError) as retry:
        await abandoned.replay(digest, wait_s=0.2)
    assert retry.value.status == 409 and retry.value.reason == "idempotency-retry"
    async with api.sessionmaker() as session:
        assert await abandoned.claim(session, digest, datetime.now(UTC)) is not None


async def test_free_floating_unlock_and_rents_share_one_key_space(api: Api) -> None:
    auth = await api.login()
    headers = {**auth, "Idempotency-Key": "shared-space-1"}
    r = await api.client.post(
        "/v1/freefloat/unlock", json={"serial_number": "LYF002"}, headers=headers
    )
    assert r.status_code == 201, r.text
    vid = api.demo.vehicle_ids["LYF002"]
    again = await api.client.post("/v1/rents", json={"vehicle_id": vid}, headers=headers)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == r.json()
    other = await api.client.post("/v1/rents", json={"spot_id": 1}, headers=headers)
    assert other.status_code == 422 and other.json()["reason"] == "idempotency-key-reused"
    async with api.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Rent)) == 1
        keys = await session.scalar(select(func.count()).select_from(IdempotencyKey))
        assert keys == 1


def _unlocks(api: Api) -> list[str]:
    """The Unlock commands the (fake) gateway was asked to send, by command id."""
    return [c.command_id.hex() for c in api.gateway.sent if isinstance(c.command, m.Unlock)]


async def test_a_technician_unlock_not_sent_releases_its_key(api: Api) -> None:
    headers = {**await api.login("operator@example.com"), "Idempotency-Key": "tech-offline-1"}
    url = f"/v1/dashboard/spots/{await spot_id(api, 'st-0001', 1)}/unlock"
    api.gateway.outcome = UnlockOutcome.offline("st-0001: device is offline")
    first = await api.client.post(url, json={"reason": "jammed"}, headers=headers)
    assert first.status_code == 503 and int(first.headers["retry-after"]) > 0
    # Nothing was sent: the same key runs again (a new Unlock), not a replayed 503.
    again = await api.client.post(url, json={"reason": "jammed"}, headers=headers)
    assert again.status_code == 503 and "idempotent-replayed" not in again.headers
    api.gateway.outcome = UnlockOutcome.unlocked()
    done = await api.client.post(url, json={"reason": "jammed"}, headers=headers)
    assert done.status_code == 200, done.text
    assert done.json()["data"]["command"]["outcome"] == "done"
    assert len(set(_unlocks(api))) == 3
    replayed = await api.client.post(url, json={"reason": "jammed"}, headers=headers)
    assert replayed.status_code == 200 and replayed.headers["idempotent-replayed"] == "true"
    assert replayed.json() == done.json() and len(_unlocks(api)) == 3


async def test_a_timed_out_technician_unlock_still_replays(api: Api) -> None:
    headers = {**await api.login("operator@example.com"), "Idempotency-Key": "tech-timeout-1"}
    url = f"/v1/dashboard/spots/{await spot_id(api, 'st-0001', 2)}/unlock"
    api.gateway.outcome = UnlockOutcome.timeout()
    first = await api.client.post(url, json={"reason": "jammed"}, headers=headers)
    assert first.status_code == 504, first.text
    # Sent: the station may still open the spot, so the retry gets the stored answer.
    api.gateway.outcome = UnlockOutcome.unlocked()
    again = await api.client.post(url, json={"reason": "jammed"}, headers=headers)
    assert again.status_code == 504 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json() and len(_unlocks(api)) == 1


async def test_release_frees_the_key_in_the_callers_transaction(api: Api) -> None:
    idem = _idem(api, key="released-key")
    digest = request_hash(Thing(name="a"))
    async with api.sessionmaker() as session:
        key_id = await idem.claim(session, digest, datetime.now(UTC))
        assert key_id is not None
        await session.commit()
    async with api.sessionmaker() as session:
        await idem.release(session, key_id)
        await session.rollback()  # the caller's transaction did not commit: still claimed
    async with api.sessionmaker() as session:
        assert await idem.claim(session, digest, datetime.now(UTC)) is None
    async with api.sessionmaker() as session:
        await idem.release(session, key_id)
        await session.commit()
    async with api.sessionmaker() as session:
        assert await idem.claim(session, digest, datetime.now(UTC)) is not None
