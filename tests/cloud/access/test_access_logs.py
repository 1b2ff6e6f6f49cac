"""Seed 002 AccessLogs: every operator request is logged after its answer, with the seed's
filters; a failing log store never fails the request."""

from __future__ import annotations

import pytest

from kickstand.cloud.access.log import AccessLogWriter
from tests.cloud.access.conftest import Walk


async def _logs(walk: Walk, **params: object) -> list[dict[str, object]]:
    await walk.app.state.access_log.flush()
    r = await walk.client.get(
        "/v1/dashboard/access-logs", params=params, headers=walk.headers["admin"]
    )
    assert r.status_code == 200, r.text
    data: list[dict[str, object]] = r.json()["data"]
    return data


async def test_every_operator_request_is_logged(walk: Walk) -> None:
    a = walk.network_a
    ok = await walk.client.get(
        "/v1/dashboard/geofencing/border",
        params={"network_id": a},
        headers={**walk.headers["operator"], "User-Agent": "walk-test/1"},
    )
    assert ok.status_code == 200
    refused = await walk.client.get(
        "/v1/dashboard/geofencing/border", params={"network_id": a}, headers=walk.headers["rider"]
    )
    assert refused.status_code == 403
    anonymous = await walk.client.get("/v1/dashboard/dead-letters")
    assert anonymous.status_code == 401
    rider_route = await walk.client.get("/v1/networks", headers=walk.headers["rider"])
    assert rider_route.status_code == 200

    logs = await _logs(walk, primary_key_dir="ASC")
    assert [(e["verb"], e["target_path"], e["http_code"]) for e in logs] == [
        ("GET", f"/v1/dashboard/geofencing/border?network_id={a}", 200),
        ("GET", f"/v1/dashboard/geofencing/border?network_id={a}", 403),
        ("GET", "/v1/dashboard/dead-letters", 401),
    ]  # the rider route is not a dashboard request
    first, second, third = logs
    assert first["user_id"] == walk.ids["operator_id"]
    assert first["network_ids"] == [a]
    assert first["user_agent"] == "walk-test/1"
    assert first["knot_code"] == 0
    assert first["ip"]
    assert second["user_id"] == walk.ids["rider_id"]  # the rider, refused
    assert second["knot_code"] == 6  # forbidden
    assert third["user_id"] is None

    assert [e["http_code"] for e in await _logs(walk, http_code_min=400)][:2] != [200]
    only_403 = await _logs(walk, http_code_min=403, http_code_max=403)
    assert {e["http_code"] for e in only_403} == {403}
    mine = await _logs(walk, user_id=walk.ids["operator_id"], verb="get")
    assert mine and {e["user_id"] for e in mine} == {walk.ids["operator_id"]}
    by_path = await _logs(walk, target_path="/v1/dashboard/dead")
    assert [e["http_code"] for e in by_path] == [401]
    assert await _logs(walk, user_agent="walk-test") == [first]
    assert await _logs(walk, date_min="2999-01-01T00:00:00Z") == []


async def test_an_operator_of_a_network_sees_its_own_requests_only(walk: Walk) -> None:
    await walk.client.get("/v1/dashboard/dead-letters", headers=walk.headers["other"])
    await walk.app.state.access_log.flush()
    r = await walk.client.get("/v1/dashboard/access-logs", headers=walk.headers["other"])
    assert r.status_code == 200
    users = {e["user_id"] for e in r.json()["data"]}
    assert users == {walk.ids["other_id"]}
    assert await _logs(walk, user_id=walk.ids["other_id"])  # another scope: not its business


async def test_a_failing_log_store_never_fails_the_request(
    walk: Walk, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def __call__(self) -> object:
            raise RuntimeError("database gone")

    writer: AccessLogWriter = walk.app.state.access_log
    writer._maker = Broken()  # type: ignore[assignment]
    r = await walk.client.get("/v1/dashboard/dead-letters", headers=walk.headers["operator"])
    assert r.status_code == 200
    await writer.flush()
    assert writer.dropped == 1
    assert "event=access_log_write_failed" in caplog.text
