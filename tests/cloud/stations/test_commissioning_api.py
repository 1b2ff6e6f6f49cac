"""Seed 002 Clusters and Stations through the API: a cluster created, listed, searched and
edited; a station commissioned (device, station, spots 1..N, ``station.created``) shows on
the rider map; ingest accepts the new device's birth it refused before; decommissioning
(refused while a trip started there runs or a vehicle is docked) takes it off the map,
its device's births refused, ``station.deleted``; a cluster is deleted only once empty."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from kickstand.cloud.ingest.apply import BatchApplier, Inbound, IngestStats
from kickstand.cloud.models import (
    Device,
    DeviceKind,
    OutboxEvent,
    Spot,
    Station,
    Trip,
    TripStatus,
    Vehicle,
)
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1 import enums as pe
from kickstand.protocol.v1 import messages as m
from tests.cloud.api.support import BOTH_DATABASES, Api

OPERATOR = "operator@example.com"
CLUSTERS = "/v1/dashboard/clusters"
STATIONS = "/v1/dashboard/stations"
#: Inside the demo network's border, away from the seeded clusters.
LAT, LNG = 45.7555, 4.8355


def birth(device_id: str, boot: int) -> Inbound:
    body = m.Birth(kind=pe.DeviceKind.STATION, firmware="st-1.0.0", hardware="ksm-1")
    stamp = m.Stamp(boot, 0, time.time_ns() // 1_000_000)
    return Inbound(device_id, Channel.BIRTH, m.UpMessage(stamp, body))


async def boot_status(applier: BatchApplier, device_id: str, boot: int) -> pe.BootStatus:
    """What ingest answers a birth of ``device_id`` (its BootReply's status)."""
    out = await applier.apply([birth(device_id, boot)])
    (reply,) = [r for r in out.replies if r.topic.endswith("/boot")]
    answer = codec.decode_down(Channel.BOOT, reply.payload)
    assert isinstance(answer, m.BootReply)
    return answer.status


async def map_cluster(api: Api, headers: dict[str, str], cluster_id: int) -> dict[str, Any] | None:
    r = await api.client.get(
        "/v1/map",
        params={"lat": LAT, "lng": LNG, "latdeg": 0.05, "lngdeg": 0.05},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    found = [c for c in r.json()["data"]["clusters"] if c["cluster_id"] == cluster_id]
    return found[0] if found else None


async def topics(api: Api, resource_id: int) -> list[str]:
    async with api.sessionmaker() as session:
        rows: Any = await session.scalars(
            select(OutboxEvent.topic)
            .where(OutboxEvent.topic.like("station.%"))
            .where(OutboxEvent.resource_id == str(resource_id))
            .order_by(OutboxEvent.id)
        )
        return list(rows.all())


async def new_cluster(api: Api, headers: dict[str, str], name: str = "Quai Test") -> int:
    r = await api.client.post(
        CLUSTERS,
        json={
            "network_id": api.demo.network_id,
            "name": name,
            "latitude": LAT,
            "longitude": LNG,
            "location": "6 Rue des Boeufs, Lyon",
            "has_badge_reader": False,
        },
        headers=headers,
    )
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["network_id"] == api.demo.network_id and data["station_count"] == 0
    assert data["location"] == "6 Rue des Boeufs, Lyon" and data["total_spots"] == 0
    return int(data["cluster_id"])


@BOTH_DATABASES
async def test_a_cluster_is_created_listed_searched_and_edited(api: Api) -> None:
    headers = await api.login(OPERATOR)
    cluster_id = await new_cluster(api, headers, "Gare Zeta Nord")

    r = await api.client.get(CLUSTERS, params={"name": "zETA"}, headers=headers)
    assert r.status_code == 200, r.text
    assert [c["cluster_id"] for c in r.json()["data"]] == [cluster_id]
    r = await api.client.get(
        CLUSTERS, params={"name": "zeta", "badge_reader": True}, headers=headers
    )
    assert r.json()["data"] == []
    # Keyset pages over every cluster of the network, no row twice, none missed.
    seen: list[int] = []
    params: dict[str, Any] = {"networks": api.demo.network_id, "page_size": 10}
    while True:
        r = await api.client.get(CLUSTERS, params=params, headers=headers)
        assert r.status_code == 200, r.text
        seen += [c["cluster_id"] for c in r.json()["data"]]
        if r.json()["next_primary_key"] is None:
            break
        params["last_primary_key"] = r.json()["next_primary_key"]
    assert len(seen) == len(set(seen)) == len(api.demo.cluster_ids) + 1
    assert seen == sorted(seen, reverse=True)

    url = f"{CLUSTERS}/{cluster_id}"
    for path, body in (
        ("location", {"location": "1 Place Charles Béraudier"}),
        ("settings", {"max_unlock_distance": 80, "comment": "keys at the kiosk"}),
        ("description", {"lang": "fr", "description": "Sous la verrière"}),
        ("description", {"lang": "en", "description": "Under the glass roof"}),
        ("commissioning-date", {"date": "2026-12-01T08:00:00Z"}),
    ):
        r = await api.client.put(f"{url}/{path}", json=body, headers=headers)
        assert r.status_code == 200 and r.json() == {"code": 0}, (path, r.text)
    r = await api.client.put(
        f"{url}/settings", json={"max_unlock_distance": 10, "comment": "x"}, headers=headers
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "max_unlock_distance"

    r = await api.client.get(url, params={"lang": "fr"}, headers=headers)
    data = r.json()["data"]
    assert data["description"] == "Sous la verrière"
    assert data["location"] == "1 Place Charles Béraudier"
    assert (data["max_unlock_distance"], data["comment"]) == (80, "keys at the kiosk")
    assert datetime.fromisoformat(data["commissioning_date"]) == datetime(
        2026, 12, 1, 8, tzinfo=UTC
    )
    r = await api.client.get(url, params={"lang": "de"}, headers=headers)
    assert r.json()["data"]["description"] == "Under the glass roof"  # the last written

    r = await api.client.get(f"{CLUSTERS}/999999", headers=headers)
    assert r.status_code == 404


@BOTH_DATABASES
async def test_commissioning_puts_a_station_on_the_map_and_decommissioning_takes_it_off(
    api: Api,
) -> None:
    headers = await api.login(OPERATOR)
    rider = await api.login("alice@example.com")
    cluster_id = await new_cluster(api, headers)
    device_id = f"st-N{api.backend}"
    applier = BatchApplier(api.sessionmaker, IngestStats(), require_boot=True)
    # Unknown to the cloud: its birth is refused.
    assert await boot_status(applier, device_id, 1) is pe.BootStatus.REJECTED

    r = await api.client.post(
        STATIONS,
        json={"cluster_id": cluster_id, "device_id": device_id, "name": "Quai A", "spots": 4},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    station = r.json()["data"]
    station_id = station["station_id"]
    assert [s["displayed_number"] for s in station["spots"]] == [1, 2, 3, 4]
    assert station["online"] is False and station["network_id"] == api.demo.network_id
    async with api.sessionmaker() as session:
        stmt = select(Device).where(Device.device_id == device_id)
        device: Device = (await session.scalars(stmt)).one()
        assert device.kind == DeviceKind.STATION
    assert await topics(api, station_id) == ["station.created"]

    # The same mainboard twice: refused.
    r = await api.client.post(
        STATIONS,
        json={"cluster_id": cluster_id, "device_id": device_id, "name": "Quai B", "spots": 2},
        headers=headers,
    )
    assert r.status_code == 409 and r.json()["reason"] == "device-registered", r.text

    # The rider map shows the cluster's four spots; the station is down until it boots.
    on_map = await map_cluster(api, rider, cluster_id)
    assert on_map is not None and on_map["total_spots"] == 4 and on_map["free_spots"] == 4
    assert on_map["cluster_is_down"] is True

    # Ingest knows it now (a fresh applier: no cached "unknown"): its birth is accepted.
    applier = BatchApplier(api.sessionmaker, IngestStats(), require_boot=True)
    assert await boot_status(applier, device_id, 2) is pe.BootStatus.ACCEPTED
    on_map = await map_cluster(api, rider, cluster_id)
    assert on_map is not None and on_map["cluster_is_down"] is False
    r = await api.client.get(f"{CLUSTERS}/{cluster_id}/stations", headers=headers)
    assert [s["online"] for s in r.json()["data"]] == [True]

    # A cluster with a station in service is not deleted.
    r = await api.client.delete(f"{CLUSTERS}/{cluster_id}", headers=headers)
    assert r.status_code == 409 and r.json()["reason"] == "cluster-has-stations", r.text

    # A vehicle docked there, then a trip that started there: decommissioning waits.
    async with api.sessionmaker() as session, session.begin():
        spot: Spot = (
            await session.scalars(
                select(Spot).where(Spot.station_id == station_id, Spot.displayed_number == 1)
            )
        ).one()
        vehicle = await session.get_one(Vehicle, api.demo.vehicle_ids["LY0001"])
        vehicle.spot_id = spot.id
    r = await api.client.delete(f"{STATIONS}/{station_id}", headers=headers)
    assert r.status_code == 409 and r.json()["reason"] == "vehicles-docked", r.text
    async with api.sessionmaker() as session, session.begin():
        vehicle = await session.get_one(Vehicle, api.demo.vehicle_ids["LY0001"])
        vehicle.spot_id = None
        trip = Trip(
            user_id=api.demo.user_ids["alice@example.com"],
            vehicle_id=vehicle.id,
            network_id=api.demo.network_id,
            status=TripStatus.RUNNING,
            start_spot_id=spot.id,
            start_cluster_id=cluster_id,
            started_at=datetime.now(UTC),
            currency="EUR",
        )
        session.add(trip)
    r = await api.client.delete(f"{STATIONS}/{station_id}", headers=headers)
    assert r.status_code == 409 and r.json()["reason"] == "trip-open", r.text
    async with api.sessionmaker() as session, session.begin():
        (await session.get_one(Trip, trip.id)).status = TripStatus.FINISHED

    r = await api.client.delete(f"{STATIONS}/{station_id}", headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["decommissioned_at"] is not None
    # Its birth told webhooks it came online (station.updated), then the decommissioning.
    assert await topics(api, station_id) == [
        "station.created",
        "station.updated",
        "station.deleted",
    ]
    r = await api.client.delete(f"{STATIONS}/{station_id}", headers=headers)
    assert r.status_code == 409 and r.json()["reason"] == "station-decommissioned"

    on_map = await map_cluster(api, rider, cluster_id)
    assert on_map is not None and on_map["total_spots"] == 0
    r = await api.client.get(f"/v1/clusters/{cluster_id}/spots", headers=rider)
    assert r.status_code == 200 and r.json()["data"] == []
    # Its mainboard's next birth is refused (a fresh applier: nothing cached).
    applier = BatchApplier(api.sessionmaker, IngestStats(), require_boot=True)
    assert await boot_status(applier, device_id, 3) is pe.BootStatus.REJECTED
    async with api.sessionmaker() as session:
        kept = await session.get_one(Station, station_id)
        assert kept.decommissioned_at is not None  # kept for the history of its trips

    # Now empty, the cluster is decommissioned: off the map, not editable.
    r = await api.client.delete(f"{CLUSTERS}/{cluster_id}", headers=headers)
    assert r.status_code == 200, r.text
    assert await map_cluster(api, rider, cluster_id) is None
    r = await api.client.put(
        f"{CLUSTERS}/{cluster_id}/location", json={"location": "elsewhere 1"}, headers=headers
    )
    assert r.status_code == 409 and r.json()["reason"] == "cluster-decommissioned"
    r = await api.client.get(CLUSTERS, params={"name": "Quai Test"}, headers=headers)
    assert r.json()["data"] == []


async def test_commissioning_refuses_bad_input_and_a_rider(api: Api) -> None:
    headers = await api.login(OPERATOR)
    cluster_id = await new_cluster(api, headers)
    for body, field in (
        ({"cluster_id": cluster_id, "device_id": "st 1", "name": "x", "spots": 2}, "device_id"),
        (
            {"cluster_id": cluster_id, "device_id": "vh-AB1234", "name": "x", "spots": 2},
            "device_id",
        ),
        ({"cluster_id": cluster_id, "device_id": "st-0077", "name": "x", "spots": 0}, "spots"),
        ({"cluster_id": cluster_id, "device_id": "st-0077", "name": "x", "spots": 65}, "spots"),
    ):
        r = await api.client.post(STATIONS, json=body, headers=headers)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, r.text
    r = await api.client.post(
        STATIONS,
        json={"cluster_id": 999999, "device_id": "st-0077", "name": "x", "spots": 2},
        headers=headers,
    )
    assert r.status_code == 404
    rider = await api.login("alice@example.com")
    r = await api.client.post(
        STATIONS,
        json={"cluster_id": cluster_id, "device_id": "st-0077", "name": "x", "spots": 2},
        headers=rider,
    )
    assert r.status_code == 403 and r.json()["reason"] == "not-an-operator"
