"""A cluster's pictures (type told by the bytes, size bounded, served back, deleted by key),
parkings (validated shapes), outages written by ingest (a death opens one, a birth closes
it) and out-of-order details; stocks (shape validated, vehicles in stock by position)."""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence

from sqlalchemy import select

from kickstand.cloud.ingest.apply import BatchApplier, Inbound, IngestStats
from kickstand.cloud.models import Vehicle
from kickstand.cloud.stations.models import DeviceOutage
from kickstand.cloud.stations.service import MAX_PICTURE_BYTES
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import enums as pe
from kickstand.protocol.v1 import messages as m
from tests.cloud.api.support import BOTH_DATABASES, Api

OPERATOR = "operator@example.com"
CLUSTERS = "/v1/dashboard/clusters"
STOCKS = "/v1/dashboard/stocks"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
#: Inside the demo network's border (seed list of [lng, lat] points).
SQUARE = [[4.83, 45.75], [4.84, 45.75], [4.84, 45.76], [4.83, 45.76], [4.83, 45.75]]
BOWTIE = [[4.83, 45.75], [4.84, 45.76], [4.84, 45.75], [4.83, 45.76], [4.83, 45.75]]


def message(device_id: str, body: m.UpBody, channel: Channel, boot: int) -> Inbound:
    stamp = m.Stamp(boot, 0, time.time_ns() // 1_000_000)
    return Inbound(device_id, channel, m.UpMessage(stamp, body))


async def test_pictures_are_checked_kept_served_and_deleted(api: Api) -> None:
    headers = await api.login(OPERATOR)
    cluster_id = api.demo.cluster_ids[next(iter(api.demo.cluster_ids))]
    url = f"{CLUSTERS}/{cluster_id}/pictures"

    r = await api.client.post(
        url, files={"cluster_picture": ("a.png", PNG, "image/png")}, headers=headers
    )
    assert r.status_code == 200, r.text
    added = r.json()["data"]
    assert added["content_type"] == "image/png" and added["size"] == len(PNG)
    assert added["picture"].startswith("clusterpictures/") and added["picture"].endswith(".png")

    # Not an image, whatever the client says; too large; empty.
    for data, ctype in (
        (b"<html>hello</html>", "image/jpeg"),
        (b"\xff\xd8\xff" + b"\x00" * MAX_PICTURE_BYTES, "image/jpeg"),
        (b"", "image/png"),
    ):
        r = await api.client.post(
            url, files={"cluster_picture": ("b.jpg", data, ctype)}, headers=headers
        )
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == "cluster_picture"

    r = await api.client.get(url, headers=headers)
    assert [p["picture"] for p in r.json()["data"]] == [added["picture"]]
    r = await api.client.get(f"{url}/{added['picture_id']}", headers=headers)
    assert r.status_code == 200, r.text
    assert base64.b64decode(r.json()["data"]["data_base64"]) == PNG
    r = await api.client.get(f"{CLUSTERS}/{cluster_id}", headers=headers)
    assert r.json()["data"]["pictures"] == [added["picture"]]

    r = await api.client.delete(url, params={"picture": added["picture"]}, headers=headers)
    assert r.status_code == 200, r.text
    r = await api.client.delete(url, params={"picture": added["picture"]}, headers=headers)
    assert r.status_code == 404
    r = await api.client.get(f"{url}/{added['picture_id']}", headers=headers)
    assert r.status_code == 404


async def test_cluster_parkings_take_a_valid_shape_and_list_vehicles_inside(api: Api) -> None:
    headers = await api.login(OPERATOR)
    cluster_id = api.demo.cluster_ids[next(iter(api.demo.cluster_ids))]
    url = f"{CLUSTERS}/{cluster_id}/parkings"
    r = await api.client.post(url, json={"shape": BOWTIE, "capacity": 5}, headers=headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "shape", r.text
    r = await api.client.post(url, json={"shape": SQUARE, "capacity": 5}, headers=headers)
    assert r.status_code == 200, r.text
    parking = r.json()["data"]
    assert parking["cluster_id"] == cluster_id and parking["capacity"] == 5
    async with api.sessionmaker() as session, session.begin():
        vehicle = await session.get_one(Vehicle, api.demo.vehicle_ids["LYF001"])
        vehicle.latitude, vehicle.longitude = 45.755, 4.835
    r = await api.client.get(url, headers=headers)
    (listed,) = r.json()["data"]
    assert listed["virtual_parking_id"] == parking["virtual_parking_id"]
    assert listed["vehicle_ids"] == [api.demo.vehicle_ids["LYF001"]]


@BOTH_DATABASES
async def test_outages_are_written_by_ingest_and_listed(api: Api) -> None:
    headers = await api.login(OPERATOR)
    cluster_id = api.demo.cluster_ids[next(iter(api.demo.cluster_ids))]
    r = await api.client.get(f"{CLUSTERS}/{cluster_id}/stations", headers=headers)
    (station,) = r.json()["data"]
    device_id = station["device_id"]
    applier = BatchApplier(api.sessionmaker, IngestStats(), require_boot=True)
    born = m.Birth(kind=pe.DeviceKind.STATION, firmware="st-1.0.0", hardware="ksm-1")
    await applier.apply([message(device_id, born, Channel.BIRTH, 7)])
    await applier.apply([message(device_id, m.Death(), Channel.DEATH, 7)])

    r = await api.client.get(f"{CLUSTERS}/{cluster_id}/outages", headers=headers)
    assert r.status_code == 200, r.text
    (outage,) = r.json()["data"]
    assert outage["device_id"] == device_id and outage["station_id"] == station["station_id"]
    assert outage["end_date"] is None
    r = await api.client.get(f"{CLUSTERS}/{cluster_id}/out-of-order", headers=headers)
    details = r.json()["data"]
    assert details["cluster_is_down"] is True
    (told,) = details["stations"]
    assert told["online"] is False and told["offline_since"] == outage["start_date"]

    # A second death of the same boot opens nothing more; the next birth closes it.
    await applier.apply([message(device_id, m.Death(), Channel.DEATH, 7)])
    await applier.apply([message(device_id, born, Channel.BIRTH, 8)])
    async with api.sessionmaker() as session:
        rows: Sequence[DeviceOutage] = (
            await session.scalars(select(DeviceOutage).where(DeviceOutage.device_id == device_id))
        ).all()
    assert len(rows) == 1 and rows[0].ended_at is not None
    r = await api.client.get(f"{CLUSTERS}/{cluster_id}/outages", headers=headers)
    (outage,) = r.json()["data"]
    assert outage["end_date"] is not None and outage["duration"] >= 0
    r = await api.client.get(f"{CLUSTERS}/{cluster_id}/out-of-order", headers=headers)
    assert r.json()["data"]["cluster_is_down"] is False


@BOTH_DATABASES
async def test_stocks_hold_the_vehicles_inside_their_shape(api: Api) -> None:
    headers = await api.login(OPERATOR)
    body = {
        "network_id": api.demo.network_id,
        "name": "Depot Gerland",
        "country": 1,
        "city": "Lyon",
        "zipcode": "69007",
        "street": "45 rue de Gerland",
    }
    r = await api.client.post(STOCKS, json={**body, "shape": BOWTIE}, headers=headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "shape", r.text
    r = await api.client.post(STOCKS, json=body, headers=headers)
    assert r.status_code == 200, r.text
    stock_id = r.json()["data"]["stock_id"]
    assert r.json()["data"]["shape"] is None

    # No shape: nothing in it. A free-floating scooter moved inside the shape is in stock;
    # a docked bike at the same place is not.
    async with api.sessionmaker() as session, session.begin():
        for serial in ("LYF001", "LY0001"):
            vehicle = await session.get_one(Vehicle, api.demo.vehicle_ids[serial])
            vehicle.latitude, vehicle.longitude = 45.755, 4.835
    r = await api.client.get(f"{STOCKS}/vehicles", params={"stocks": stock_id}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["data"] == [
        {"stock_id": stock_id, "network_id": api.demo.network_id, "vehicles": []}
    ]
    r = await api.client.put(f"{STOCKS}/{stock_id}/shape", json={"shape": SQUARE}, headers=headers)
    assert r.status_code == 200 and r.json()["data"]["shape"]["type"] == "Polygon", r.text
    r = await api.client.get(f"{STOCKS}/vehicles", params={"stocks": stock_id}, headers=headers)
    (content,) = r.json()["data"]
    assert [v["serial_number"] for v in content["vehicles"]] == ["LYF001"]

    r = await api.client.put(f"{STOCKS}/{stock_id}", json={"city": "Lyon 7e"}, headers=headers)
    assert r.status_code == 200 and r.json()["data"]["city"] == "Lyon 7e"
    assert r.json()["data"]["name"] == "Depot Gerland"
    r = await api.client.get(STOCKS, params={"networks": api.demo.network_id}, headers=headers)
    assert [s["stock_id"] for s in r.json()["data"]] == [stock_id]
    r = await api.client.delete(f"{STOCKS}/{stock_id}", headers=headers)
    assert r.status_code == 200
    r = await api.client.get(f"{STOCKS}/{stock_id}", headers=headers)
    assert r.status_code == 404
    r = await api.client.get(f"{STOCKS}/vehicles", params={"stocks": stock_id}, headers=headers)
    assert r.status_code == 404
