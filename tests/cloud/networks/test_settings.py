"""Seed 002 network settings beyond rents, through HTTP on PostgreSQL: sponsorship and
freefloat to station rewards, access rules, vehicle speed settings, notification settings."""

from __future__ import annotations

import pytest

from kickstand.cloud.access.models import Organization
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


async def test_access_rules_crud(net: Net) -> None:
    url = f"{BASE}/{net.network_a}/access-rules"
    async with net.maker() as session:
        org = Organization(third_party_id=1, name="Acme", network_id=net.network_a)
        session.add(org)
        await session.commit()
        org_id = org.id
    created = await net.call("operator", "POST", url, json={"email_pattern": "%@acme.example"})
    assert created.status_code == 200, created.text
    rid = created.json()["data"]
    second = await net.call("operator", "POST", url, json={"organization": org_id})
    assert second.status_code == 200, second.text
    rules = (await net.call("read-only", "GET", url)).json()["data"]
    assert [(r["rule_id"], r["email_pattern"], r["organization"]) for r in rules] == [
        (rid, "%@acme.example", None),
        (second.json()["data"], None, org_id),
    ]
    change = {"email_pattern": None, "organization": org_id, "app_label": 3}
    assert (await net.call("operator", "PUT", f"{url}/{rid}", json=change)).status_code == 200
    rules = (await net.call("operator", "GET", url)).json()["data"]
    assert rules[0] == {
        "rule_id": rid,
        "network_id": net.network_a,
        "email_pattern": None,
        "organization": org_id,
        "app_label": 3,
    }
    for body, field in (
        ({}, "email_pattern"),
        ({"email_pattern": "a b"}, "email_pattern"),
        ({"organization": 999999}, "organization"),
    ):
        bad = await net.call("operator", "POST", url, json=body)
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"].endswith(field), body
    none = {"email_pattern": None, "organization": None, "app_label": None}
    assert (await net.call("operator", "PUT", f"{url}/{rid}", json=none)).status_code == 422
    # Another network's rule is not found through this network.
    b_rules = f"{BASE}/{net.network_b}/access-rules"
    b_rule = (await net.call("other", "POST", b_rules, json={"app_label": 1})).json()["data"]
    assert (await net.call("operator", "DELETE", f"{url}/{b_rule}")).status_code == 404
    assert (await net.call("other", "DELETE", f"{url}/{rid}")).status_code == 403
    assert (await net.call("read-only", "DELETE", f"{url}/{rid}")).status_code == 403
    assert (await net.call("operator", "DELETE", f"{url}/{rid}")).status_code == 200
    assert len((await net.call("operator", "GET", url)).json()["data"]) == 1


SPEEDS = {
    "default_low_speed": "10",
    "default_medium_speed": "18",
    "default_high_speed": "25",
    "min_battery_to_slow_down": "15",
    "battery_slow_down_speed": "12",
}


async def test_vehicle_speed_settings_per_vehicle_type(net: Net) -> None:
    url = f"{BASE}/{net.network_a}/vehicle-speed-settings"
    assert (await net.call("operator", "GET", url)).json()["data"] == {
        "network_id": net.network_a,
        "vehicle_types": [],
    }
    r = await net.call("operator", "PUT", url, data=SPEEDS)  # multipart/form as the seed
    assert r.status_code == 200, r.text
    ebike = {**SPEEDS, "vehicle_type": "e-bike", "default_high_speed": "20"}
    assert (await net.call("operator", "PUT", url, data=ebike)).status_code == 200
    again = {**SPEEDS, "default_high_speed": "22"}  # kick scooters again: replaced
    assert (await net.call("operator", "PUT", url, data=again)).status_code == 200
    data = (await net.call("read-only", "GET", url)).json()["data"]["vehicle_types"]
    assert {d["vehicle_type"]: d["default_high_speed"] for d in data} == {
        "e-bike": 20,
        "kick-scooter": 22,
    }
    for over in (
        {"default_low_speed": "30"},  # above medium
        {"battery_slow_down_speed": ""},  # half the slow-down pair
        {"battery_slow_down_speed": "40"},  # above high
        {"default_high_speed": "101"},
        {"vehicle_type": "car"},
    ):
        bad = await net.call("operator", "PUT", url, data={**SPEEDS, **over})
        assert bad.status_code == 422, (over, bad.text)
    assert (await net.call("other", "GET", url)).status_code == 403
    assert (await net.call("read-only", "PUT", url, data=SPEEDS)).status_code == 403


NOTIFY = {
    "notification_type": "fleet-alert",
    "alert_types": ["vehicle-fallen", "vehicle-lifted"],
    "alert_severities": ["high", "critical"],
    "check_interval": 300,
    "check_delay": 60,
}


async def test_notification_settings_and_targets(net: Net) -> None:
    url = f"{BASE}/{net.network_a}/notifications"
    created = await net.call("operator", "POST", url, json=NOTIFY)
    assert created.status_code == 200, created.text
    nid = created.json()["data"]["notification_id"]
    targets = f"{url}/{nid}/targets"
    me = net.users["operator"]
    assert (await net.call("operator", "POST", targets, json={"user_id": me})).status_code == 200
    mail = {"email": "night-shift@example.com"}
    assert (await net.call("operator", "POST", targets, json=mail)).status_code == 200
    dup = await net.call("operator", "POST", targets, json={"user_id": me})
    assert dup.status_code == 409 and dup.json()["reason"] == "target-exists"
    # A rider, or another network's operator, does not receive this network's alerts.
    for uid in (net.users["rider"], net.users["other"]):
        r = await net.call("operator", "POST", targets, json={"user_id": uid})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "user_id", r.text
    both = await net.call("operator", "POST", targets, json={"user_id": me, **mail})
    assert both.status_code == 422
    changed = {**NOTIFY, "alert_types": ["station-power-cut"], "check_delay": 0}
    assert (await net.call("operator", "PUT", f"{url}/{nid}", json=changed)).status_code == 200
    listed = (await net.call("read-only", "GET", url)).json()["data"]
    assert listed == [
        {
            **changed,
            "alert_severities": ["critical", "high"],
            "notification_id": nid,
            "network_id": net.network_a,
            "target_user_ids": [me],
            "target_emails": ["night-shift@example.com"],
        }
    ]
    bad = await net.call("operator", "POST", url, json={**NOTIFY, "alert_types": []})
    assert bad.status_code == 422
    gone = await net.call("operator", "DELETE", targets, params={"email": mail["email"]})
    assert gone.status_code == 200
    again = await net.call("operator", "DELETE", targets, params={"email": mail["email"]})
    assert again.status_code == 404
    assert (await net.call("other", "DELETE", f"{url}/{nid}")).status_code == 403
    b_url = f"{BASE}/{net.network_b}/notifications"
    assert (await net.call("other", "DELETE", f"{b_url}/{nid}")).status_code == 404
    assert (await net.call("operator", "DELETE", f"{url}/{nid}")).status_code == 200
    assert (await net.call("operator", "GET", url)).json()["data"] == []


async def test_out_of_order_periods(net: Net) -> None:
    url = f"{BASE}/{net.network_a}/out-of-order"
    winter = {
        "type": "winter",
        "reason": "Snow",
        "start_date": "2030-12-01T00:00:00Z",
        "end_date": "2031-03-01T00:00:00Z",
    }
    r = await net.call("operator", "POST", url, json=winter)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["type"] == "winter" and r.json()["data"]["reason"] == "Snow"
    overlap = {"type": "other", "start_date": "2031-02-01T00:00:00Z"}  # open-ended, meets winter
    clash = await net.call("operator", "POST", url, json=overlap)
    assert clash.status_code == 409 and clash.json()["reason"] == "out-of-order-overlap"
    later = {"type": "other", "start_date": "2031-03-01T00:00:00Z"}  # starts when winter ends
    assert (await net.call("operator", "POST", url, json=later)).status_code == 200
    detail = (await net.call("read-only", "GET", f"{BASE}/{net.network_a}")).json()["data"]
    assert [(p["type"], p["end_date"]) for p in detail["out_of_orders"]] == [
        ("winter", "2031-03-01T00:00:00Z"),
        ("other", None),
    ]
    for bad in (
        {**winter, "end_date": "2030-11-01T00:00:00Z"},  # ends before it starts
        {**winter, "start_date": "2030-12-01T00:00:00"},  # no time zone
        {**winter, "start_date": "9999-12-01T00:00:00Z"},
        {**winter, "type": "summer"},
    ):
        assert (await net.call("operator", "POST", url, json=bad)).status_code == 422, bad
    assert (await net.call("other", "POST", url, json=winter)).status_code == 403
    assert (await net.call("read-only", "POST", url, json=winter)).status_code == 403


async def test_cluster_balancing_and_discounts(net: Net) -> None:
    url = f"{BASE}/{net.network_a}/clusters-balancing"
    donor, receiver = list(net.demo.cluster_ids.values())[:2]
    for cluster, kind, target in ((donor, "donor", 2), (receiver, "receiver", 8)):
        body = {"cluster_id": cluster, "target_count": target, "balancing_type": kind}
        r = await net.call("operator", "POST", url, json=body)
        assert r.status_code == 200, r.text
    dup = await net.call(
        "operator",
        "POST",
        url,
        json={"cluster_id": donor, "target_count": 1, "balancing_type": "receiver"},
    )
    assert dup.status_code == 409 and dup.json()["reason"] == "balancing-exists"
    upd = await net.call("operator", "PUT", url, json={"cluster_id": donor, "target_count": 3})
    assert upd.status_code == 200
    listed = (await net.call("read-only", "GET", url)).json()["data"]
    assert {(b["cluster_id"], b["balancing_type"], b["target_count"]) for b in listed} == {
        (donor, "donor", 3),
        (receiver, "receiver", 8),
    }
    route = {"donor_cluster_id": donor, "receiver_cluster_id": receiver, "discount_amount": 0.5}
    assert (await net.call("operator", "PUT", f"{url}/discounts", json=route)).status_code == 200
    again = {**route, "discount_amount": 0.75}
    assert (await net.call("operator", "PUT", f"{url}/discounts", json=again)).status_code == 200
    discounts = (await net.call("operator", "GET", f"{url}/discounts")).json()["data"]
    assert discounts == [{"network_id": net.network_a, **route, "discount_amount": "0.75"}]
    backwards = {**route, "donor_cluster_id": receiver, "receiver_cluster_id": donor}
    bad = await net.call("operator", "PUT", f"{url}/discounts", json=backwards)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "donor_cluster_id"
    cents = await net.call(
        "operator", "PUT", f"{url}/discounts", json={**route, "discount_amount": 0.001}
    )
    assert cents.status_code == 422
    # Another network's cluster cannot be balanced here; another operator cannot touch it.
    b_url = f"{BASE}/{net.network_b}/clusters-balancing"
    foreign = {"cluster_id": donor, "target_count": 1, "balancing_type": "donor"}
    assert (await net.call("other", "POST", b_url, json=foreign)).status_code == 404
    assert (await net.call("other", "GET", url)).status_code == 403
    gone = await net.call("operator", "DELETE", url, params={"cluster_id": donor})
    assert gone.status_code == 200
    assert (await net.call("operator", "GET", f"{url}/discounts")).json()["data"] == []
    missing = await net.call("operator", "DELETE", url, params={"cluster_id": donor})
    assert missing.status_code == 404


async def test_vehicle_model_settings_and_guarantees(net: Net) -> None:
    url = f"{BASE}/{net.network_a}/vehicle-models"
    r = await net.call(
        "operator", "PUT", f"{url}/7/settings", data={"auto_light": "true", "speed_mode": "1"}
    )
    assert r.status_code == 200, r.text
    money = {"guarantee": "300", "pre_auth": "50.5"}
    assert (await net.call("operator", "PUT", f"{url}/7/guarantees", data=money)).status_code == 200
    money8 = {"guarantee": "100", "pre_auth": "0"}
    assert (
        await net.call("operator", "PUT", f"{url}/8/guarantees", data=money8)
    ).status_code == 200
    settings = (await net.call("read-only", "GET", f"{url}/settings")).json()["data"]
    assert settings == [{"model_id": 7, "auto_light": True, "speed_mode": 1}]  # 8 has none
    guarantees = (await net.call("read-only", "GET", f"{url}/guarantees")).json()["data"]
    assert guarantees == [
        {"model_id": 7, "guarantee": "300.00", "pre_auth": "50.50"},
        {"model_id": 8, "guarantee": "100.00", "pre_auth": "0.00"},
    ]
    # The settings keep the guarantees, and a speed mode left out is the rider's choice.
    assert (
        await net.call("operator", "PUT", f"{url}/7/settings", data={"auto_light": "false"})
    ).status_code == 200
    settings = (await net.call("operator", "GET", f"{url}/settings")).json()["data"]
    assert settings == [{"model_id": 7, "auto_light": False, "speed_mode": None}]
    assert len((await net.call("operator", "GET", f"{url}/guarantees")).json()["data"]) == 2
    for path, form in (
        ("settings", {"auto_light": "true", "speed_mode": "4"}),
        ("guarantees", {"guarantee": "-1", "pre_auth": "0"}),
        ("guarantees", {"guarantee": "1.001", "pre_auth": "0"}),
    ):
        assert (await net.call("operator", "PUT", f"{url}/7/{path}", data=form)).status_code == 422
    assert (await net.call("other", "GET", f"{url}/settings")).status_code == 403
    assert (
        await net.call("read-only", "PUT", f"{url}/7/guarantees", data=money)
    ).status_code == 403
