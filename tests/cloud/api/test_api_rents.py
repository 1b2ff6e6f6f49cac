"""Unlock (rent) with Idempotency-Key: retries, concurrency, device outcomes; trip cost."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from kickstand.cloud import trips
from kickstand.cloud.ingest.tables import DeviceCommand
from kickstand.cloud.models import Rent, RentStatus, Spot, Station, Trip
from kickstand.cloud.rent_gateway import UnlockOutcome
from tests.cloud.api.support import BOTH_DATABASES, Api

T0 = datetime(2026, 11, 18, 10, 0, tzinfo=ZoneInfo("Europe/Paris"))  # a Wednesday


async def spot_id(api: Api, device_id: str, number: int) -> int:
    async with api.sessionmaker() as session:
        stmt = (
            select(Spot.id)
            .join(Station)
            .where(Station.device_id == device_id, Spot.displayed_number == number)
        )
        return int((await session.scalars(stmt)).one())


async def commands_of(api: Api, rent_id: int) -> list[tuple[str, str, int | None, str]]:
    async with api.sessionmaker() as session:
        rows = await session.execute(
            select(
                DeviceCommand.device_id,
                DeviceCommand.command_type,
                DeviceCommand.spot,
                DeviceCommand.status,
            ).where(DeviceCommand.rent_id == rent_id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def count_rents(api: Api) -> int:
    async with api.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Rent)) or 0)


@BOTH_DATABASES
async def test_unlock_retry_returns_first_answer_and_opens_one_rent(api: Api) -> None:
    auth = await api.login()
    sid = await spot_id(api, "st-0001", 1)
    headers = {**auth, "Idempotency-Key": "unlock-0001-aaaa"}
    first = await api.client.post("/v1/rents", json={"spot_id": sid}, headers=headers)
    assert first.status_code == 201, first.text
    data = first.json()["data"]
    assert data["status"] == "unlocked" and data["serial_number"] == "LY0001"
    assert data["displayed_number"] == 1 and data["being_rented"] is False
    assert api.gateway.calls == [("spot", "st-0001", "1", str(data["rent_id"]))]
    # The command's audit row was written with the rent, before anything was sent.
    assert await commands_of(api, data["rent_id"]) == [("st-0001", "unlock", 1, "pending")]

    again = await api.client.post("/v1/rents", json={"spot_id": sid}, headers=headers)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert len(api.gateway.calls) == 1 and await count_rents(api) == 1

    other_body = await api.client.post("/v1/rents", json={"spot_id": sid + 1}, headers=headers)
    assert other_body.status_code == 422 and other_body.json()["code"] == 16

    current = (await api.client.get("/v1/rents", headers=auth)).json()["data"]
    assert [r["rent_id"] for r in current] == [data["rent_id"]]


@BOTH_DATABASES
async def test_concurrent_retries_with_one_key(api: Api) -> None:
    auth = await api.login()
    api.gateway.delay = 0.3  # the first request is still waiting for the station
    sid = await spot_id(api, "st-0002", 1)
    headers = {**auth, "Idempotency-Key": "same-key-0002"}
    answers = await asyncio.gather(
        *(api.client.post("/v1/rents", json={"spot_id": sid}, headers=headers) for _ in range(5))
    )
    assert {r.status_code for r in answers} == {201}
    assert len({r.json()["data"]["rent_id"] for r in answers}) == 1
    assert len(api.gateway.calls) == 1 and await count_rents(api) == 1


@BOTH_DATABASES
async def test_concurrent_riders_same_vehicle_one_wins(api: Api) -> None:
    alice, bob = await api.login("alice@example.com"), await api.login("bob@example.com")
    api.gateway.delay = 0.05
    sid = await spot_id(api, "st-0003", 2)
    answers = await asyncio.gather(
        api.client.post(
            "/v1/rents", json={"spot_id": sid}, headers={**alice, "Idempotency-Key": "alice-race-1"}
        ),
        api.client.post(
            "/v1/rents", json={"spot_id": sid}, headers={**bob, "Idempotency-Key": "bob-race-1"}
        ),
    )
    codes = sorted(r.status_code for r in answers)
    assert codes == [201, 409], [r.text for r in answers]
    loser = next(r for r in answers if r.status_code == 409).json()
    assert loser["code"] in (11, 12) and loser["reason"] in (
        "vehicle-rented",
        "vehicle-unavailable",
    )
    assert await count_rents(api) == 1 and len(api.gateway.calls) == 1


@BOTH_DATABASES
async def test_offline_station_fails_fast_and_frees_the_vehicle(api: Api) -> None:
    auth = await api.login()
    api.gateway.outcome = UnlockOutcome.offline()
    sid = await spot_id(api, "st-0004", 1)
    r = await api.client.post(
        "/v1/rents", json={"spot_id": sid}, headers={**auth, "Idempotency-Key": "offline-001"}
    )
    assert r.status_code == 503
    body = r.json()
    assert body["code"] == 13 and "offline" in body["message"]
    assert body["data"]["status"] == "refused"
    assert await commands_of(api, body["data"]["rent_id"]) == [
        ("st-0004", "unlock", 1, "not-sent")
    ]
    assert int(r.headers["retry-after"]) > 0
    # Nothing was sent, so nothing is stored under the key: the same key runs again (still
    # offline: a new 503, not a replay), then succeeds once the station is back.
    again = await api.client.post(
        "/v1/rents", json={"spot_id": sid}, headers={**auth, "Idempotency-Key": "offline-001"}
    )
    assert again.status_code == 503 and "idempotent-replayed" not in again.headers
    assert again.json()["data"]["rent_id"] != body["data"]["rent_id"]
    api.gateway.outcome = UnlockOutcome.unlocked()
    retry = await api.client.post(
        "/v1/rents", json={"spot_id": sid}, headers={**auth, "Idempotency-Key": "offline-001"}
    )
    assert retry.status_code == 201 and "idempotent-replayed" not in retry.headers
    assert len(api.gateway.calls) == 3
    # Now something happened under the key: it replays.
    replayed = await api.client.post(
        "/v1/rents", json={"spot_id": sid}, headers={**auth, "Idempotency-Key": "offline-001"}
    )
    assert replayed.status_code == 201 and replayed.headers["idempotent-replayed"] == "true"
    assert replayed.json() == retry.json() and len(api.gateway.calls) == 3


async def test_timeout_and_refusal_answers(api: Api) -> None:
    auth = await api.login()
    api.gateway.outcome = UnlockOutcome.timeout()
    r = await api.client.post(
        "/v1/rents",
        json={"spot_id": await spot_id(api, "st-0004", 2)},
        headers={**auth, "Idempotency-Key": "timeout-001"},
    )
    assert r.status_code == 504 and r.json()["code"] == 14
    assert r.json()["data"]["status"] == "unlock-timeout"
    api.gateway.outcome = UnlockOutcome.refused("spot jammed")
    r = await api.client.post(
        "/v1/rents",
        json={"spot_id": await spot_id(api, "st-0004", 3)},
        headers={**auth, "Idempotency-Key": "refused-001"},
    )
    assert r.status_code == 409 and r.json()["code"] == 15 and "spot jammed" in r.json()["message"]


async def test_rent_validation_and_business_errors(api: Api) -> None:
    auth = await api.login()
    missing_key = await api.client.post("/v1/rents", json={"spot_id": 1}, headers=auth)
    assert missing_key.status_code == 422
    assert missing_key.json()["errors"][0]["field"] == "Idempotency-Key"
    no_target = await api.client.post(
        "/v1/rents", json={}, headers={**auth, "Idempotency-Key": "empty-body-1"}
    )
    assert no_target.status_code == 422 and no_target.json()["code"] == 2
    empty_spot = await api.client.post(
        "/v1/rents",
        json={"spot_id": await spot_id(api, "st-0001", 6)},
        headers={**auth, "Idempotency-Key": "empty-spot-1"},
    )
    assert empty_spot.status_code == 404 and empty_spot.json()["reason"] == "spot-empty"
    unknown = await api.client.post(
        "/v1/rents",
        json={"vehicle_id": 99999},
        headers={**auth, "Idempotency-Key": "unknown-veh-1"},
    )
    assert unknown.status_code == 404 and unknown.json()["code"] == 10
    assert api.gateway.calls == []


async def test_max_simultaneous_rents(api: Api) -> None:
    auth = await api.login()
    for n, (station, number) in enumerate([("st-0001", 1), ("st-0001", 2), ("st-0001", 3)]):
        r = await api.client.post(
            "/v1/rents",
            json={"spot_id": await spot_id(api, station, number)},
            headers={**auth, "Idempotency-Key": f"max-rents-{n}"},
        )
        if n < 2:  # the demo network allows 2
            assert r.status_code == 201, r.text
        else:
            assert r.status_code == 409 and r.json()["reason"] == "too-many-rents"


async def test_free_floating_unlock_uses_vehicle_lock(api: Api) -> None:
    auth = await api.login()
    vid = api.demo.vehicle_ids["LYF002"]
    r = await api.client.post(
        "/v1/rents", json={"vehicle_id": vid}, headers={**auth, "Idempotency-Key": "ff-unlock-1"}
    )
    assert r.status_code == 201, r.text
    assert r.json()["data"]["free_floating"] is True
    assert api.gateway.calls[0][:2] == ("vehicle", "vh-LYF002")


@BOTH_DATABASES
async def test_trip_detail_cost_after_dock_events(api: Api) -> None:
    auth = await api.login()
    sid = await spot_id(api, "st-0001", 2)
    r = await api.client.post(
        "/v1/rents", json={"spot_id": sid}, headers={**auth, "Idempotency-Key": "journey-0001"}
    )
    assert r.status_code == 201
    rent_id = r.json()["data"]["rent_id"]
    # The station reports the removal, then another station the dock (device times).
    async with api.sessionmaker() as session:
        started = await trips.vehicle_removed(session, "st-0001", 2, "LY0002", T0, rent_id=rent_id)
        await session.commit()
    assert started.action == "created"
    current = (await api.client.get("/v1/rents", headers=auth)).json()["data"]
    assert current[0]["being_rented"] is True and current[0]["trip_id"] is not None
    async with api.sessionmaker() as session:
        ended = await trips.vehicle_docked(
            session, "st-0002", 5, "LY0002", T0 + timedelta(minutes=20, seconds=30)
        )
        await session.commit()
    assert ended.action == "ended"

    page = (await api.client.get("/v1/trips", headers=auth)).json()
    assert page["code"] == 0 and page["total"] == 1
    trip_id = page["data"][0]["trip_id"]
    detail = (await api.client.get(f"/v1/trips/{trip_id}", headers=auth)).json()["data"]
    # 1.00 unlock, 300 s included, then 15 min 30 s → 16 started minutes × 0.10 = 1.60 → 2.60.
    assert detail["cost"] == "2.60" and detail["currency"] == "EUR"
    assert detail["state"] == "finished" and detail["duration"] == 1230
    assert detail["cost_detail"]["riding_minutes"] == 16
    assert (await api.client.get("/v1/rents", headers=auth)).json()["data"] == []
    # Someone else's trip does not exist for bob.
    bob = await api.login("bob@example.com")
    assert (await api.client.get(f"/v1/trips/{trip_id}", headers=bob)).status_code == 404
    async with api.sessionmaker() as session:
        rent = await session.get_one(Rent, rent_id)
        assert rent.status == RentStatus.STARTED
        assert int(await session.scalar(select(func.count()).select_from(Trip)) or 0) == 1


async def test_trip_history_keyset_pagination(api: Api) -> None:
    auth = await api.login()
    async with api.sessionmaker() as session:
        for n in range(12):  # 12 badge rides at st-0004 spot 1, one after the other
            start = T0 + timedelta(minutes=10 * n)
            await trips.vehicle_removed(
                session, "st-0004", 1, "LY0010", start, badge_uid="04A1B2C3D4E5F6"
            )
            await trips.vehicle_docked(
                session, "st-0004", 1, "LY0010", start + timedelta(minutes=5)
            )
        await session.commit()
    first = (await api.client.get("/v1/trips?page_size=10", headers=auth)).json()
    assert first["total"] == 12 and len(first["data"]) == 10
    ids = [t["trip_id"] for t in first["data"]]
    assert ids == sorted(ids, reverse=True)
    nxt = first["next_primary_key"]
    second = (
        await api.client.get(f"/v1/trips?page_size=10&last_primary_key={nxt}", headers=auth)
    ).json()
    assert len(second["data"]) == 2 and second["next_primary_key"] is None
    assert not set(ids) & {t["trip_id"] for t in second["data"]}
    bad = await api.client.get("/v1/trips?page_size=5", headers=auth)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "page_size"


async def test_a_key_abandoned_by_a_dead_process_is_recovered(api: Api) -> None:
    from datetime import UTC

    from kickstand.cloud.api.idempotency import RENT_OPERATION as OPERATION
    from kickstand.cloud.api.idempotency import request_hash as _request_hash
    from kickstand.cloud.api.schemas import RentCreate
    from kickstand.cloud.models import IdempotencyKey, RentKind

    auth = await api.login()
    user_id = api.demo.user_ids["alice@example.com"]
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    sid_a, sid_b = await spot_id(api, "st-0002", 2), await spot_id(api, "st-0002", 3)
    async with api.sessionmaker() as session:
        for key, sid in (("dead-with-rent", sid_a), ("dead-no-rent", sid_b)):
            session.add(
                IdempotencyKey(
                    user_id=user_id,
                    key=key,
                    operation=OPERATION,
                    request_hash=_request_hash(RentCreate(spot_id=sid)),
                    created_at=long_ago,
                )
            )
        vehicle_id = api.demo.vehicle_ids["LY0005"]  # docked in st-0002 spot 2
        session.add(
            Rent(
                user_id=user_id,
                vehicle_id=vehicle_id,
                spot_id=sid_a,
                kind=RentKind.APP_SPOT,
                status=RentStatus.PENDING,
                idempotency_key="dead-with-rent",
                created_at=long_ago,
                expires_at=long_ago + timedelta(seconds=60),
            )
        )
        await session.commit()
    # The rent the dead process left pending is answered as a timed-out unlock.
    r = await api.client.post(
        "/v1/rents", json={"spot_id": sid_a}, headers={**auth, "Idempotency-Key": "dead-with-rent"}
    )
    assert r.status_code == 504 and r.json()["data"]["status"] == "unlock-timeout"
    again = await api.client.post(
        "/v1/rents", json={"spot_id": sid_a}, headers={**auth, "Idempotency-Key": "dead-with-rent"}
    )
    assert again.json() == r.json() and again.headers["idempotent-replayed"] == "true"
    # A key that got no rent is released: the first retry says so, the next one works.
    r = await api.client.post(
        "/v1/rents", json={"spot_id": sid_b}, headers={**auth, "Idempotency-Key": "dead-no-rent"}
    )
    assert r.status_code == 409 and r.json()["reason"] == "idempotency-retry"
    r = await api.client.post(
        "/v1/rents", json={"spot_id": sid_b}, headers={**auth, "Idempotency-Key": "dead-no-rent"}
    )
    assert r.status_code == 201, r.text
    assert api.gateway.calls == [("spot", "st-0002", "3", str(r.json()["data"]["rent_id"]))]


@BOTH_DATABASES
async def test_one_rider_many_concurrent_unlocks_respects_the_limit(api: Api) -> None:
    auth = await api.login()
    api.gateway.delay = 0.05
    spots = [await spot_id(api, "st-0003", n) for n in (1, 2, 3)] + [
        await spot_id(api, "st-0004", 1)
    ]
    answers = await asyncio.gather(
        *(
            api.client.post(
                "/v1/rents",
                json={"spot_id": sid},
                headers={**auth, "Idempotency-Key": f"burst-{sid}"},
            )
            for sid in spots
        )
    )
    codes = sorted(r.status_code for r in answers)
    assert codes == [201, 201, 409, 409], [r.text for r in answers]  # the demo network allows 2
    assert {r.json()["reason"] for r in answers if r.status_code == 409} == {"too-many-rents"}
    assert await count_rents(api) == 2
