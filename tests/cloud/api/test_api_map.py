"""Map, clusters (area, nearby, detail, spots, vehicles), networks, badges."""

from __future__ import annotations

from datetime import UTC, datetime

from kickstand.cloud.badges import badge_presented
from tests.cloud.api.support import Api

LYON = {"lat": 45.7600, "lng": 4.8400}


async def test_clusters_in_area_with_counts(api: Api) -> None:
    r = await api.client.get("/v1/clusters", params={**LYON, "latDeg": 0.1, "lngDeg": 0.1})
    assert r.status_code == 200
    clusters = r.json()["data"]
    assert {c["name"] for c in clusters} == {"Bellecour", "Hôtel de Ville", "Part-Dieu", "Perrache"}
    for c in clusters:
        assert (c["total_spots"], c["free_spots"], c["available_vehicles"]) == (6, 3, 3)
        assert c["cluster_is_down"] is True  # no station has come online yet
        assert c["network_id"] == api.demo.network_id
    # A box around Part-Dieu only (0.01° ≈ 1.1 km tall).
    r = await api.client.get(
        "/v1/clusters", params={"lat": 45.7606, "lng": 4.8594, "latDeg": 0.01, "lngDeg": 0.01}
    )
    assert [c["name"] for c in r.json()["data"]] == ["Part-Dieu"]
    far = await api.client.get(
        "/v1/clusters", params={"lat": 48.85, "lng": 2.35, "latDeg": 0.1, "lngDeg": 0.1}
    )
    assert far.json()["data"] == []


async def test_area_validation_names_the_field(api: Api) -> None:
    r = await api.client.get(
        "/v1/clusters", params={"lat": 100, "lng": 4.8, "latDeg": 1, "lngDeg": 1}
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "lat" and "lat" in r.json()["message"]
    r = await api.client.get("/v1/clusters", params={"lat": 45.7, "lng": 4.8})
    assert {e["field"] for e in r.json()["errors"]} == {"latDeg", "lngDeg"}


async def test_nearby_detail_spots_vehicles(api: Api) -> None:
    near = (
        await api.client.get("/v1/clusters/nearby", params={"lat": 45.7580, "lng": 4.8320})
    ).json()["data"]
    assert near[0]["name"] == "Bellecour" and near[0]["distance"] < 50
    assert [c["distance"] for c in near] == sorted(c["distance"] for c in near)
    cid = api.demo.cluster_ids["Bellecour"]
    detail = (await api.client.get(f"/v1/clusters/{cid}")).json()["data"]
    assert detail["cluster_id"] == cid and detail["has_badge_reader"] is True
    spots = (await api.client.get(f"/v1/clusters/{cid}/spots")).json()["data"]
    assert [s["displayed_number"] for s in spots] == [1, 2, 3, 4, 5, 6]
    assert [s["vehicle_id"] is not None for s in spots] == [True] * 3 + [False] * 3
    vehicles = (await api.client.get(f"/v1/clusters/{cid}/vehicles")).json()["data"]
    assert [v["serial_number"] for v in vehicles] == ["LY0001", "LY0002", "LY0003"]
    assert vehicles[2]["vehicle_type"] == "e-bike"
    missing = await api.client.get("/v1/clusters/9999")
    assert missing.status_code == 404 and missing.json() == {
        "code": 10,
        "message": "cluster 9999 does not exist",
        "reason": "not-found",
    }


async def test_networks_list_area_distance_detail(api: Api) -> None:
    all_networks = (await api.client.get("/v1/networks")).json()["data"]
    assert [n["name"] for n in all_networks] == ["Lyon"]
    lyon = all_networks[0]
    assert lyon["currency"] == "EUR" and lyon["max_simultaneous_rented_vehicle"] == 2
    assert lyon["shape"][0] == [4.77, 45.705]
    in_area = await api.client.get("/v1/networks", params={**LYON, "latdeg": 0.05, "lngdeg": 0.05})
    assert len(in_area.json()["data"]) == 1
    paris = await api.client.get(
        "/v1/networks", params={"lat": 48.85, "lng": 2.35, "latdeg": 0.5, "lngdeg": 0.5}
    )
    assert paris.json()["data"] == []
    partial = await api.client.get("/v1/networks", params={"lat": 45.0})
    assert partial.status_code == 422 and {e["field"] for e in partial.json()["errors"]} == {
        "lng",
        "latdeg",
        "lngdeg",
    }
    by_distance = (
        await api.client.get("/v1/networks/by-distance", params={"lat": 48.85, "lng": 2.35})
    ).json()
    assert 380_000 < by_distance["data"][0]["distance"] < 400_000  # Paris → Lyon centre ≈ 392 km
    detail = (await api.client.get(f"/v1/networks/{api.demo.network_id}")).json()["data"]
    assert detail["allow_trip_on_hold"] is True and detail["trip_max_pause"] == 1800
    pricing = (await api.client.get(f"/v1/networks/{api.demo.network_id}/pricing")).json()["data"]
    assert [
        (p["start_dow"], p["end_hod"], p["unlock_price"], p["use_per_minute_price"])
        for p in pricing
    ] == [
        (0, "24:00:00", "1.00", "0.1"),
        (6, "00:00:00", "0.50", "0.15"),
    ]
    assert (await api.client.get("/v1/networks/999/pricing")).status_code == 404


async def test_map_shows_clusters_free_floating_vehicles_and_my_rents(api: Api) -> None:
    auth = await api.login()
    m = (
        await api.client.get(
            "/v1/map", params={**LYON, "latdeg": 0.05, "lngdeg": 0.05}, headers=auth
        )
    ).json()
    data = m["data"]
    assert len(data["clusters"]) == 4
    assert {v["serial_number"] for v in data["vehicles"]} == {
        "LYF001",
        "LYF002",
        "LYF003",
        "LYF004",
    }
    assert data["rents"] == [] and [n["name"] for n in data["networks"]] == ["Lyon"]
    assert (await api.client.get("/v1/map", params=LYON)).status_code == 401


async def test_badge_link_then_present_then_rename(api: Api) -> None:
    auth = await api.login("bob@example.com")
    cid = api.demo.cluster_ids["Part-Dieu"]
    r = await api.client.post(
        "/v1/badges", json={"cluster_id": cid, "name": "Navigo"}, headers=auth
    )
    assert r.status_code == 201 and r.json()["data"]["linked"] is False
    badge_id = r.json()["data"]["badge_id"]
    too_long = await api.client.post(
        "/v1/badges", json={"cluster_id": cid, "name": "x" * 31}, headers=auth
    )
    assert too_long.status_code == 422 and too_long.json()["errors"][0]["field"] == "name"
    # The rider presents the badge at the Part-Dieu station (st-0003): the ingest reports it.
    async with api.sessionmaker() as session:
        linked = await badge_presented(session, "st-0003", "04aabbccddee01", datetime.now(UTC))
        await session.commit()
    assert linked is not None and linked.id == badge_id
    badges = (await api.client.get("/v1/badges", headers=auth)).json()["data"]
    assert badges == [
        {
            "badge_id": badge_id,
            "name": "Navigo",
            "network_id": api.demo.network_id,
            "linked": True,
            "uid_suffix": "EE01",
            "link_expires_at": None,
        }
    ]
    renamed = await api.client.patch(
        f"/v1/badges/{badge_id}", json={"name": "Work card"}, headers=auth
    )
    assert renamed.json()["data"]["name"] == "Work card"
    alice = await api.login()
    stolen = await api.client.patch(f"/v1/badges/{badge_id}", json={"name": "mine"}, headers=alice)
    assert stolen.status_code == 404
