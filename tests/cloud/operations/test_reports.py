"""Riders report problems (with pictures); technicians list, read and resolve them; a
maintenance opened from a report is shown with it. HTTP on PostgreSQL."""

from __future__ import annotations

import base64

from tests.cloud.api.support import Api
from tests.cloud.operations.support import ON_POSTGRES, OPERATOR, other_operator, spot_id

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@ON_POSTGRES
async def test_a_report_from_the_rider_to_the_technician(api: Api) -> None:
    alice = await api.login()
    vehicle_id = api.demo.vehicle_ids["LY0001"]
    r = await api.client.post(
        "/v1/reports",
        json={"message": "the front brake is loose", "vehicle_id": vehicle_id},
        headers=alice,
    )
    assert r.status_code == 200, r.text
    report = r.json()["data"]
    report_id = report["report_id"]
    assert report["network_id"] == api.demo.network_id and report["resolved"] is False

    r = await api.client.post(
        f"/v1/reports/{report_id}/pictures",
        files={"chat_image": ("brake.png", PNG, "image/png")},
        headers=alice,
    )
    assert r.status_code == 200, r.text
    picture = r.json()["data"]
    r = await api.client.get(picture["url"], headers=alice)
    assert r.status_code == 200 and base64.b64decode(r.json()["data"]["data"]) == PNG
    # Not a picture, or too large: refused naming the field.
    r = await api.client.post(
        f"/v1/reports/{report_id}/pictures",
        files={"chat_image": ("notes.txt", b"hello", "text/plain")},
        headers=alice,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "chat_image"
    r = await api.client.post(
        f"/v1/reports/{report_id}/pictures",
        files={"chat_image": ("big.png", b"\0" * (5 * 1024 * 1024 + 1), "image/png")},
        headers=alice,
    )
    assert r.status_code == 422
    r = await api.client.get("/v1/reports", headers=alice)
    (mine,) = r.json()["data"]
    assert mine["report_id"] == report_id and len(mine["pictures"]) == 1

    # Bob sees none of it.
    bob = await api.login("bob@example.com")
    assert (await api.client.get(f"/v1/reports/{report_id}", headers=bob)).status_code == 404
    assert (await api.client.get("/v1/reports", headers=bob)).json()["data"] == []
    r = await api.client.post(
        f"/v1/reports/{report_id}/pictures",
        files={"chat_image": ("x.png", PNG, "image/png")},
        headers=bob,
    )
    assert r.status_code == 404

    # The technician: current reports of the network, the detail, the picture.
    operator = await api.login(OPERATOR)
    network = api.demo.network_id
    r = await api.client.get(
        "/v1/dashboard/reports",
        params={"networks": network, "archived": "false", "email": "alice"},
        headers=operator,
    )
    assert r.status_code == 200, r.text
    assert [x["report_id"] for x in r.json()["data"]] == [report_id]
    assert r.json()["total"] == 1
    r = await api.client.post(
        "/v1/dashboard/maintenance-types",
        json={"key": "brakes", "target_type": "vehicle", "severity": "high"},
        headers=operator,
    )
    r = await api.client.post(
        f"/v1/dashboard/vehicles/{vehicle_id}/maintenances",
        json={"maintenance_type": "brakes", "report_id": report_id},
        headers=operator,
    )
    assert r.status_code == 200, r.text
    r = await api.client.get(f"/v1/dashboard/reports/{report_id}", headers=operator)
    detail = r.json()["data"]
    assert detail["sender"] == "alice@example.com"
    assert [x["maintenance_type"] for x in detail["maintenances"]] == ["brakes"]
    (pic,) = detail["pictures"]
    r = await api.client.get(pic["url"], headers=operator)
    assert r.status_code == 200 and r.json()["data"]["content_type"] == "image/png"

    # Resolved: archived, and the rider sees it resolved.
    r = await api.client.post(f"/v1/dashboard/reports/{report_id}/resolve", headers=operator)
    assert r.status_code == 200
    r = await api.client.get(
        "/v1/dashboard/reports", params={"networks": network, "archived": "true"}, headers=operator
    )
    assert [x["report_id"] for x in r.json()["data"]] == [report_id]
    r = await api.client.get(
        "/v1/dashboard/reports", params={"networks": network, "archived": "false"}, headers=operator
    )
    assert r.json()["data"] == []
    r = await api.client.get(f"/v1/reports/{report_id}", headers=alice)
    assert r.json()["data"]["resolved"] is True

    # Another network's technician is refused.
    other = await other_operator(api)
    r = await api.client.get(f"/v1/dashboard/reports/{report_id}", headers=other)
    assert r.status_code == 403
    r = await api.client.post(f"/v1/dashboard/reports/{report_id}/resolve", headers=other)
    assert r.status_code == 403


@ON_POSTGRES
async def test_what_a_report_names_must_agree(api: Api) -> None:
    alice = await api.login()
    r = await api.client.post("/v1/reports", json={"message": "something"}, headers=alice)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "network_id"
    spot = await spot_id(api, "st-0001", 4)
    r = await api.client.post(
        "/v1/reports", json={"message": "spot light broken", "spot_id": spot}, headers=alice
    )
    assert r.status_code == 200 and r.json()["data"]["spot_id"] == spot
    await other_operator(api)  # adds network "Elsewhere"
    r = await api.client.get("/v1/networks", headers=alice)
    elsewhere = max(n["network_id"] for n in r.json()["data"])
    r = await api.client.post(
        "/v1/reports",
        json={"message": "mixed", "spot_id": spot, "network_id": elsewhere},
        headers=alice,
    )
    assert r.status_code == 422, r.text
    r = await api.client.post(
        "/v1/reports", json={"message": "nowhere", "vehicle_id": 999999}, headers=alice
    )
    assert r.status_code == 404
