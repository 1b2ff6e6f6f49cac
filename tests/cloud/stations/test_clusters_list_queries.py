"""``GET /v1/dashboard/clusters``: a page of clusters is read in a fixed number of SQL
statements, whatever its size (set-based reads of each row's stations and pictures), with
the same answer as before; on SQLite and PostgreSQL, through HTTP.

Made here, in the demo network (its operator lists them, searched by name): clusters
"Pair 0", "Pair 1" and "Score 0" … "Score 19". Every cluster has a live station with two
active spots (a vehicle docked in the first) and a decommissioned station (not counted);
cluster i of the 22 has i % 3 pictures; "Score 4" has a description, also in French.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from kickstand.cloud.models import (
    Cluster,
    Spot,
    SpotState,
    Station,
    Vehicle,
    VehicleState,
    VehicleType,
)
from kickstand.cloud.stations.models import ClusterDescription, ClusterPicture
from tests.cloud.api.support import BOTH_DATABASES, Api

pytestmark = BOTH_DATABASES

OPERATOR = "operator@example.com"
CLUSTERS = "/v1/dashboard/clusters"
BIG = 20


async def build(api: Api) -> None:
    now = datetime.now(UTC)
    network = api.demo.network_id
    async with api.sessionmaker() as session:
        clusters = [
            Cluster(network_id=network, name=f"Pair {i}", latitude=45.7, longitude=4.8 + i / 100)
            for i in range(2)
        ] + [
            Cluster(network_id=network, name=f"Score {i}", latitude=45.8, longitude=4.8 + i / 100)
            for i in range(BIG)
        ]
        # Score 4 has a default description and a French one.
        clusters[6].description = "Default"
        session.add_all(clusters)
        await session.flush()
        session.add(ClusterDescription(cluster_id=clusters[6].id, lang="fr", description="Bonjour"))
        for i, cluster in enumerate(clusters):
            live = Station(cluster_id=cluster.id, device_id=f"st-list-{i}", name=f"S{i}")
            gone = Station(
                cluster_id=cluster.id,
                device_id=f"st-list-{i}-gone",
                name=f"G{i}",
                decommissioned_at=now,
            )
            session.add_all([live, gone])
            await session.flush()
            spots = [
                Spot(station_id=live.id, displayed_number=n, state=SpotState.ACTIVE) for n in (1, 2)
            ]
            session.add_all(spots)
            await session.flush()
            session.add(
                Vehicle(
                    serial_number=f"LST{i:03d}", vehicle_type=VehicleType.BIKE,
                    network_id=cluster.network_id, state=VehicleState.AVAILABLE,
                    spot_id=spots[0].id,
                )
            )  # fmt: skip
            session.add_all(
                ClusterPicture(
                    cluster_id=cluster.id,
                    key=f"clusterpictures/list-{i}-{k}.png",
                    content_type="image/png",
                    size=8,
                    data=b"\x89PNG\r\n\x1a\n",
                )
                for k in range(i % 3)
            )
        await session.commit()


async def _page(api: Api, headers: dict[str, str], query: str) -> Any:
    r = await api.client.get(f"{CLUSTERS}?{query}", headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["code"] == 0
    return body


async def test_each_cluster_with_its_stations_spots_and_pictures(api: Api) -> None:
    await build(api)
    headers = await api.login(OPERATOR)
    body = await _page(api, headers, "name=score&page_size=50")
    rows = body["data"]
    assert body["next_primary_key"] is None
    # Newest first, the listing's default.
    assert [r["name"] for r in rows] == [f"Score {i}" for i in reversed(range(BIG))]
    for row in rows:
        # Clusters 0 and 1 of the build are the pair.
        n = int(row["name"].split()[1]) + 2
        assert row["station_count"] == 1, row
        assert row["pictures"] == [f"clusterpictures/list-{n}-{k}.png" for k in range(n % 3)]
        assert (row["total_spots"], row["free_spots"], row["available_vehicles"]) == (2, 1, 1)
        assert row["cluster_is_down"] is True and row["network_id"] == api.demo.network_id
        assert row["decommissioned_at"] is None
        assert row["description"] == ("Default" if row["name"] == "Score 4" else None)
    # Keyset pages of 10: the same clusters, in the same order, with the same fields.
    first = await _page(api, headers, "name=score&page_size=10")
    rest = await _page(
        api, headers, f"name=score&page_size=10&last_primary_key={first['next_primary_key']}"
    )
    assert first["data"] + rest["data"] == rows
    # One cluster's details answer what the listing answered for it.
    r = await api.client.get(f"{CLUSTERS}/{rows[4]['id']}", headers=headers)
    assert r.status_code == 200 and r.json()["data"] == rows[4]
    # In a language it has, else its default.
    c4 = next(row for row in rows if row["name"] == "Score 4")
    for lang, description in (("fr", "Bonjour"), ("de", "Default")):
        r = await api.client.get(f"{CLUSTERS}/{c4['id']}?lang={lang}", headers=headers)
        assert r.status_code == 200 and r.json()["data"] == {**c4, "description": description}


async def test_the_same_statements_for_2_and_20_clusters(api: Api) -> None:
    """Per page, never per cluster: the statements of 2 clusters are those of 20."""
    await build(api)
    headers = await api.login(OPERATOR)
    engine: AsyncEngine = api.sessionmaker.kw["bind"]
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    counts: dict[int, int] = {}
    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        for name, size in (("pair", 2), ("score", BIG)):
            seen.clear()
            body = await _page(api, headers, f"name={name}&page_size=50")
            assert len(body["data"]) == size
            counts[size] = len([s for s in seen if s.lstrip().upper().startswith("SELECT")])
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert counts[2] == counts[BIG], counts
