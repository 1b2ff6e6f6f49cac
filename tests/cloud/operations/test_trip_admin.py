"""Seed 002 Trips for operators (list, detail, stop billing) and the rider's hold/resume,
over HTTP on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select

from kickstand.cloud.models import Network, OutboxEvent, TripStatus
from kickstand.cloud.operations.models import TripBillingStop
from tests.cloud.api.support import Api
from tests.cloud.operations.support import (
    ON_POSTGRES,
    OPERATOR,
    end_trip,
    other_operator,
    start_trip,
    trip_row,
)


@ON_POSTGRES
async def test_operator_lists_trips_with_the_seed_filters(api: Api) -> None:
    finished = await start_trip(api, "st-0001", 1, "LY0001", minutes_ago=40)
    await end_trip(api, "st-0002", 5, "LY0001", minutes_ago=10)  # 30 minutes
    running = await start_trip(api, "st-0001", 2, "LY0002", email="bob@example.com")
    operator = await api.login(OPERATOR)
    network = api.demo.network_id

    async def ids(**params: object) -> list[int]:
        r = await api.client.get(
            "/v1/dashboard/trips", params={"networks": network, **params}, headers=operator
        )
        assert r.status_code == 200, r.text
        return [t["trip_id"] for t in r.json()["data"]]

    assert await ids() == [running, finished]
    assert await ids(primary_key_dir="ASC") == [finished, running]
    assert await ids(state="finished") == [finished]
    assert await ids(state="running,on-hold") == [running]
    assert await ids(serial_number="ly0002") == [running]
    assert await ids(email="bob@") == [running]
    assert await ids(user_id=api.demo.user_ids["alice@example.com"]) == [finished]
    start_cluster = api.demo.cluster_ids
    first = next(iter(start_cluster.values()))
    assert await ids(cluster_start_id=first) == [running, finished]
    assert await ids(cluster_end_id=first) == []
    assert await ids(duration_min=25 * 60, duration_max=35 * 60) == [running, finished]
    assert await ids(duration_min=36 * 60) == []
    assert await ids(trip_id_min=running) == [running]
    since = (datetime.now(UTC) - timedelta(minutes=35)).isoformat()
    assert await ids(start_date_min=since) == [running]
    assert await ids(end_date_min=since) == [finished]

    r = await api.client.get(
        "/v1/dashboard/trips", params={"networks": network, "state": "parked"}, headers=operator
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "state"
    r = await api.client.get("/v1/dashboard/trips", params={"networks": network}, headers=operator)
    page = r.json()
    assert page["total"] == 2 and page["data"][0]["email"] == "bob@example.com"

    # Another network's operator sees none of them, and is refused this network.
    other = await other_operator(api)
    r = await api.client.get("/v1/dashboard/trips", params={"networks": network}, headers=other)
    assert r.status_code == 403 and r.json()["reason"] == "network-not-allowed"
    r = await api.client.get(f"/v1/dashboard/trips/{finished}", headers=other)
    assert r.status_code == 403


@ON_POSTGRES
async def test_detail_has_the_price_breakdown_and_stop_billing_bills_again(api: Api) -> None:
    trip_id = await start_trip(api, "st-0001", 1, "LY0001", minutes_ago=40)
    await end_trip(api, "st-0002", 5, "LY0001", minutes_ago=10)
    operator = await api.login(OPERATOR)
    r = await api.client.get(f"/v1/dashboard/trips/{trip_id}", headers=operator)
    assert r.status_code == 200, r.text
    detail = r.json()["data"]
    assert detail["state"] == "finished" and detail["email"] == "alice@example.com"
    assert detail["cost_detail"]["unlock_price"] is not None
    full = Decimal(detail["cost"])
    assert detail["cost_detail"]["riding_minutes"] >= 25  # 30 minutes, less any included
    assert detail["billing_stops"] == [] and detail["billing_time_stop"] is None
    # No telemetry store in this app: the detail answers without positions.
    assert detail["positions"] is None

    # The dock was never reported in time: bill until 5 minutes into the trip.
    trip = await trip_row(api, trip_id)
    stop = trip.started_at + timedelta(minutes=5)
    r = await api.client.put(
        f"/v1/dashboard/trips/{trip_id}/billing-stop",
        json={"date": stop.isoformat(), "reason": "dock not reported"},
        headers=operator,
    )
    assert r.status_code == 200, r.text
    trip = await trip_row(api, trip_id)
    assert trip.billing_stopped_at == stop and trip.cost is not None and trip.cost < full
    r = await api.client.get(f"/v1/dashboard/trips/{trip_id}", headers=operator)
    detail = r.json()["data"]
    assert Decimal(detail["cost"]) == trip.cost and detail["cost_detail"]["riding_minutes"] <= 5
    (audit,) = detail["billing_stops"]
    assert audit["reason"] == "dock not reported"
    assert audit["user_id"] == api.demo.user_ids[OPERATOR]
    async with api.sessionmaker() as s:
        topics = list(
            await s.scalars(
                select(OutboxEvent.payload).where(
                    OutboxEvent.topic == "trip.updated", OutboxEvent.resource_id == str(trip_id)
                )
            )
        )
        assert topics and topics[-1]["billing_stopped_at"] is not None

    # Erased: billed to the end again; the same request twice is recorded once.
    for _ in range(2):
        r = await api.client.put(
            f"/v1/dashboard/trips/{trip_id}/billing-stop",
            json={"date": None, "reason": "the dock was found"},
            headers=operator,
        )
        assert r.status_code == 200, r.text
    assert (await trip_row(api, trip_id)).cost == full
    async with api.sessionmaker() as s:
        stops = list(await s.scalars(select(TripBillingStop).order_by(TripBillingStop.id)))
        assert [x.stop_at for x in stops] == [stop, None]

    # Before the start or in the future: refused, naming the field.
    for bad in (trip.started_at - timedelta(minutes=1), datetime.now(UTC) + timedelta(hours=1)):
        r = await api.client.put(
            f"/v1/dashboard/trips/{trip_id}/billing-stop",
            json={"date": bad.isoformat(), "reason": "x"},
            headers=operator,
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "date", r.text
    r = await api.client.put(
        f"/v1/dashboard/trips/{trip_id}/billing-stop",
        json={"date": None, "reason": ""},
        headers=operator,
    )
    assert r.status_code == 422


@ON_POSTGRES
async def test_stop_billing_of_a_stuck_running_trip(api: Api) -> None:
    trip_id = await start_trip(api, "st-0001", 3, "LY0003", minutes_ago=120)
    operator = await api.login(OPERATOR)
    trip = await trip_row(api, trip_id)
    r = await api.client.put(
        f"/v1/dashboard/trips/{trip_id}/billing-stop",
        json={"date": (trip.started_at + timedelta(minutes=15)).isoformat(), "reason": "lost"},
        headers=operator,
    )
    assert r.status_code == 200, r.text
    # The running trip stops accruing: its cost so far is its first 15 minutes'.
    r = await api.client.get(f"/v1/dashboard/trips/{trip_id}", headers=operator)
    data = r.json()["data"]
    assert data["state"] == "running" and data["billing_time_stop"] is not None
    assert data["cost_detail"]["riding_minutes"] <= 15
    r = await api.client.get(f"/v1/dashboard/trips/{trip_id}", headers=operator)
    assert r.json()["data"]["cost"] == data["cost"]


@ON_POSTGRES
async def test_rider_holds_and_resumes_a_trip(api: Api) -> None:
    trip_id = await start_trip(api, "st-0001", 2, "LY0002", minutes_ago=10)
    alice = await api.login()
    r = await api.client.post(f"/v1/trips/{trip_id}/hold", headers=alice)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["state"] == "on-hold" and r.json()["data"]["on_hold_since"]
    assert (await trip_row(api, trip_id)).status == TripStatus.ON_HOLD
    # Holding again changes nothing.
    r = await api.client.post(f"/v1/trips/{trip_id}/hold", headers=alice)
    assert r.status_code == 200 and r.json()["data"]["state"] == "on-hold"
    r = await api.client.post(f"/v1/trips/{trip_id}/resume", headers=alice)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["state"] == "running" and len(data["hold_periods"]) == 1
    # Someone else's trip is not found.
    bob = await api.login("bob@example.com")
    r = await api.client.post(f"/v1/trips/{trip_id}/hold", headers=bob)
    assert r.status_code == 404
    # A finished trip cannot be held or resumed.
    await end_trip(api, "st-0002", 5, "LY0002", minutes_ago=0)
    for action in ("hold", "resume"):
        r = await api.client.post(f"/v1/trips/{trip_id}/{action}", headers=alice)
        assert r.status_code == 409, r.text


@ON_POSTGRES
async def test_hold_refused_where_the_network_forbids_it(api: Api) -> None:
    async with api.sessionmaker() as s:
        network = await s.get_one(Network, api.demo.network_id)
        network.trip_on_hold = False
        await s.commit()
    trip_id = await start_trip(api, "st-0001", 1, "LY0001", minutes_ago=5)
    r = await api.client.post(f"/v1/trips/{trip_id}/hold", headers=await api.login())
    assert r.status_code == 409 and r.json()["reason"] == "hold-not-allowed", r.text
