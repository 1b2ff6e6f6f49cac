"""Seed 002 Users as support reads them: app devices kept at login, wallets credited and
withdrawn with a reason, last actions, rider API requests, search, global count, report;
another network's operator reaches none of it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.cloud.access.conftest import Walk


def ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["code"] == 0
    return body.get("data")


@pytest.mark.parametrize(
    "walk", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_support_reads_devices_wallets_actions_and_requests(walk: Walk) -> None:
    alice, op, other = walk.ids["user_id"], walk.headers["operator"], walk.headers["other"]
    c = walk.client
    walk.app.state.api_request_log.delay_s = 0.0
    login = await c.post(
        "/v1/auth/login",
        json={
            "email": "alice@example.com",
            "password": "alice-demo-1",
            "device": {"id": "phone-123", "os": "android", "model": "Pixel", "app_version": "2.1"},
        },
    )
    token = ok(login)["token"]
    rider = {"Authorization": f"Bearer {token}"}
    assert (await c.get("/v1/trips", headers=rider)).status_code == 200
    assert (await c.get("/v1/trips")).status_code == 401  # anonymous: names nobody, not kept

    devices = ok(await c.get(f"/v1/dashboard/users/{alice}/devices", headers=op))
    assert [(d["device_id"], d["os"], d["model"]) for d in devices] == [
        ("phone-123", "android", "Pixel")
    ]

    before = Decimal(ok(await c.get(f"/v1/dashboard/users/{alice}/wallets", headers=op))["balance"])
    credit = {"amount": 12.5, "currency": "EUR", "reason": "goodwill: lock jammed"}
    wallet = ok(await c.post(f"/v1/dashboard/users/{alice}/wallets", json=credit, headers=op))
    assert wallet["amount"] == "12.5" and wallet["created_by"] == walk.ids["operator_id"]
    got = ok(await c.get(f"/v1/dashboard/users/{alice}/wallets", headers=op))
    assert Decimal(got["balance"]) == before + Decimal("12.5")
    assert [w["id"] for w in got["wallets"]] == [wallet["id"]]
    wrong = {**credit, "currency": "USD"}  # the network bills in EUR
    r = await c.post(f"/v1/dashboard/users/{alice}/wallets", json=wrong, headers=op)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "currency"

    actions = ok(await c.get(f"/v1/dashboard/users/{alice}/last-actions", headers=op))
    assert actions[0]["kind"] == "transaction" and actions[0]["amount"] == "12.5"
    assert len(actions) <= 10

    gone = await c.delete(
        f"/v1/dashboard/users/{alice}/wallets",
        params={"wallet": wallet["id"], "reason": "credited twice"},
        headers=op,
    )
    ok(gone)
    got = ok(await c.get(f"/v1/dashboard/users/{alice}/wallets", headers=op))
    assert Decimal(got["balance"]) == before and got["wallets"] == []
    emptied = ok(
        await c.get(
            f"/v1/dashboard/users/{alice}/wallets", params={"get_empty": "true"}, headers=op
        )
    )["wallets"]
    assert emptied[0]["delete_reason"] == "credited twice" and emptied[0]["amount"] == "0"
    again = await c.delete(
        f"/v1/dashboard/users/{alice}/wallets",
        params={"wallet": wallet["id"], "reason": "again"},
        headers=op,
    )
    assert again.status_code == 404

    await walk.app.state.api_request_log.flush()
    page = await c.get(f"/v1/dashboard/users/{alice}/api-requests", headers=op)
    assert page.status_code == 200, page.text
    paths = [(r["verb"], r["target_path"], r["http_code"]) for r in page.json()["data"]]
    assert paths == [("GET", "/v1/trips", 200)]  # login had no token; anonymous not kept

    report = ok(await c.get(f"/v1/dashboard/users/{alice}/report", headers=op))
    assert report["user_id"] == alice and report["devices"] == 1
    assert report["networks"] == [walk.network_a]
    assert ok(await c.get(f"/v1/dashboard/users/{alice}/passes", headers=op)) == []
    pushes = await c.get(f"/v1/dashboard/users/{alice}/push-notifications", headers=op)
    assert ok(pushes) == []

    found = ok(await c.get("/v1/dashboard/users/search", params={"email": "alice@"}, headers=op))
    assert [u["id"] for u in found] == [alice]
    # Network B's operator: Alice is not its user (not found, never her data).
    assert (
        ok(await c.get("/v1/dashboard/users/search", params={"email": "alice@"}, headers=other))
        == []
    )
    for path in ("devices", "wallets", "last-actions", "api-requests", "report", "mails"):
        r = await c.get(f"/v1/dashboard/users/{alice}/{path}", headers=other)
        assert r.status_code == 404, (path, r.text)
    r = await c.post(f"/v1/dashboard/users/{alice}/wallets", json=credit, headers=other)
    assert r.status_code in (403, 404), r.text


@pytest.mark.parametrize("walk", ["sqlite"], indirect=True)
async def test_global_user_count_counts_global_grants(walk: Walk) -> None:
    op, admin = walk.headers["operator"], walk.headers["admin"]
    before = ok(await walk.client.get("/v1/dashboard/users/global-count", headers=op))
    ro = walk.ids["ro_id"]
    grant = {
        "perm_key": "stations",
        "start_date": "2020-01-01T00:00:00Z",
        "end_date": None,
        "organizational_unit": None,
        "write": False,
    }
    ok(await walk.client.post(f"/v1/dashboard/users/{ro}/permissions", json=grant, headers=admin))
    after = ok(await walk.client.get("/v1/dashboard/users/global-count", headers=op))
    assert after == before + 1
