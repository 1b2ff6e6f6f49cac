"""Seed 002 network settings beyond rents, through HTTP on PostgreSQL: sponsorship rewards,
freefloat to station rewards."""

from __future__ import annotations

import pytest

from tests.cloud.networks.conftest import Net

pytestmark = pytest.mark.postgres

BASE = "/v1/dashboard/networks"


async def test_sponsorship_read_back_in_detail(net: Net) -> None:
    url = f"{BASE}/{net.network_a}"
    body = {"sponsoring_reward": 5, "sponsored_reward": 2.5}
    r = await net.call("operator", "PUT", f"{url}/sponsorship", json=body)
    assert r.status_code == 200, r.text
    detail = (await net.call("read-only", "GET", url)).json()["data"]
    assert (detail["sponsoring_reward"], detail["sponsored_reward"]) == ("5.00", "2.50")
    bad = await net.call(
        "operator", "PUT", f"{url}/sponsorship", json={**body, "sponsored_reward": -1}
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"].endswith("sponsored_reward")
    ro = await net.call("read-only", "PUT", f"{url}/sponsorship", json=body)
    assert ro.status_code == 403 and ro.json()["reason"] == "read-only"
    other = await net.call("other", "PUT", f"{url}/sponsorship", json=body)
    assert other.status_code == 403 and other.json()["reason"] == "network-not-allowed"


async def test_freefloat_reward_partial_update(net: Net) -> None:
    url = f"{BASE}/{net.network_a}/freefloat-to-station-reward"
    empty = (await net.call("operator", "GET", url)).json()["data"]
    assert empty == {
        "network_id": net.network_a,
        "freefloat_to_station_discount_per_km": None,
        "freefloat_to_station_free_credits": None,
        "freefloat_to_receiver_station_free_credits": None,
        "freefloat_to_station_min_battery": None,
    }
    full = {
        "freefloat_to_station_discount_per_km": 0.3,
        "freefloat_to_station_free_credits": 1,
        "freefloat_to_receiver_station_free_credits": 2,
        "freefloat_to_station_min_battery": 40,
    }
    assert (await net.call("operator", "PUT", url, json=full)).status_code == 200
    # A field left out keeps its value; null clears it.
    partial = {"freefloat_to_station_free_credits": None, "freefloat_to_station_min_battery": 30}
    assert (await net.call("operator", "PUT", url, json=partial)).status_code == 200
    data = (await net.call("read-only", "GET", url)).json()["data"]
    assert data["freefloat_to_station_discount_per_km"] == "0.30"
    assert data["freefloat_to_station_free_credits"] is None
    assert data["freefloat_to_receiver_station_free_credits"] == "2.00"
    assert data["freefloat_to_station_min_battery"] == 30
    bad = await net.call("operator", "PUT", url, json={"freefloat_to_station_min_battery": 101})
    assert bad.status_code == 422
    other = await net.call("other", "GET", url)
    assert other.status_code == 403
