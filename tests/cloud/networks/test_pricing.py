"""Seed 002 Pricing for operators, through HTTP on PostgreSQL: rules validated, versioned,
and a change applies to trips that start after it (a running trip keeps its prices)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from kickstand.cloud.models import PricingRule, Trip, TripStatus
from tests.cloud.networks.conftest import Net

pytestmark = pytest.mark.postgres

URL = "/v1/dashboard/pricing"


def rule(network_id: int, **over: Any) -> dict[str, Any]:
    """All week (equal start and end) unless told otherwise."""
    return {
        "start_dow": 0,
        "start_hod": "00:00:00",
        "end_dow": 0,
        "end_hod": "00:00:00",
        "unlock_price": 1,
        "unlock_included_time": 0,
        "freefloat_lock_price": 0.5,
        "use_per_minute_price": 0.1,
        "on_hold_price": 0.05,
        "network_id": network_id,
        **over,
    }


async def clear(net: Net) -> None:
    """Delete the demo's rules (a weekend rule would make the prices depend on the day)."""
    current = await net.call("operator", "GET", URL, params={"networks": net.network_a})
    for r in current.json()["data"]:
        deleted = await net.call("operator", "DELETE", f"{URL}/{r['pricing_id']}")
        assert deleted.status_code == 200, deleted.text


async def test_add_update_delete_read_back(net: Net) -> None:
    current = await net.call("read-only", "GET", URL, params={"networks": net.network_a})
    assert current.status_code == 200 and len(current.json()["data"]) == 2  # the demo's
    await clear(net)
    assert (await net.call("operator", "GET", URL, params={"networks": net.network_a})).json()[
        "data"
    ] == []
    added = await net.call("operator", "POST", URL, json=rule(net.network_a))
    assert added.status_code == 200, added.text
    first = added.json()["data"]
    assert first["unlock_price"] == "1.00" and first["currency"] == "EUR"
    assert first["valid_from"] is not None and first["replaces_id"] is None
    updated = await net.call(
        "operator", "PUT", f"{URL}/{first['pricing_id']}", json=rule(net.network_a, unlock_price=2)
    )
    assert updated.status_code == 200, updated.text
    second = updated.json()["data"]
    assert second["replaces_id"] == first["pricing_id"] and second["unlock_price"] == "2.00"
    listed = await net.call("operator", "GET", URL, params={"networks": net.network_a})
    assert [r["pricing_id"] for r in listed.json()["data"]] == [second["pricing_id"]]
    riders = await net.client.get(f"/v1/networks/{net.network_a}/pricing")
    assert [r["pricing_id"] for r in riders.json()["data"]] == [second["pricing_id"]]
    # The old version is closed: editing it again is a conflict, not a silent fork.
    again = await net.call("operator", "PUT", f"{URL}/{first['pricing_id']}", json=rule(1))
    assert again.status_code == 409 and again.json()["reason"] == "pricing-rule-closed"
    gone = await net.call("operator", "DELETE", f"{URL}/{second['pricing_id']}")
    assert gone.status_code == 200
    twice = await net.call("operator", "DELETE", f"{URL}/{second['pricing_id']}")
    assert twice.status_code == 409
    assert (await net.call("operator", "DELETE", f"{URL}/999999")).status_code == 404


async def test_windows_nested_allowed_overlap_refused(net: Net) -> None:
    await clear(net)
    week = await net.call("operator", "POST", URL, json=rule(net.network_a))
    assert week.status_code == 200, week.text
    # The weekend inside the week: the documented override.
    weekend = rule(net.network_a, start_dow=6, end_dow=1, use_per_minute_price=0.15)
    ok = await net.call("operator", "POST", URL, json=weekend)
    assert ok.status_code == 200, ok.text
    # A second all-week rule, or one straddling the weekend's edge, is ambiguous.
    for body in (
        rule(net.network_a),
        rule(net.network_a, start_dow=5, start_hod="12:00:00", end_dow=6, end_hod="12:00:00"),
    ):
        r = await net.call("operator", "POST", URL, json=body)
        assert r.status_code == 409 and r.json()["reason"] == "pricing-overlap", r.text
    # Sunday night within the weekend: nested twice, allowed.
    night = rule(net.network_a, start_hod="00:00:00", end_hod="06:00:00")
    assert (await net.call("operator", "POST", URL, json=night)).status_code == 200
    # Updating a rule is checked against the others, not against itself.
    moved = await net.call(
        "operator",
        "PUT",
        f"{URL}/{ok.json()['data']['pricing_id']}",
        json={**weekend, "use_per_minute_price": 0.2},
    )
    assert moved.status_code == 200, moved.text


async def test_invalid_rules_refused(net: Net) -> None:
    for over, field in (
        ({"start_dow": 7}, "start_dow"),
        ({"start_hod": "25:00:00"}, "start_hod"),
        ({"end_hod": "12:00"}, "end_hod"),
        ({"unlock_price": -1}, "unlock_price"),
        ({"use_per_minute_price": -0.1}, "use_per_minute_price"),
        ({"on_hold_price": 0.00001}, "on_hold_price"),
        ({"unlock_price": 1.005}, "unlock_price"),  # EUR has cents
        ({"unlock_included_time": -1}, "unlock_included_time"),
    ):
        r = await net.call("operator", "POST", URL, json=rule(net.network_a, **over))
        assert r.status_code == 422, (over, r.text)
        assert r.json()["errors"][0]["field"].endswith(field), (over, r.text)


async def test_pricing_access(net: Net) -> None:
    other = await net.call("other", "POST", URL, json=rule(net.network_a))
    assert other.status_code == 403 and other.json()["reason"] == "network-not-allowed"
    listing = await net.call("other", "GET", URL, params={"networks": net.network_a})
    assert listing.status_code == 403
    ro = await net.call("read-only", "POST", URL, json=rule(net.network_a))
    assert ro.status_code == 403 and ro.json()["reason"] == "read-only"
    demo_rule = (await net.call("operator", "GET", URL, params={"networks": net.network_a})).json()[
        "data"
    ][0]["pricing_id"]
    for method in ("PUT", "DELETE"):
        kw = {"json": rule(net.network_b)} if method == "PUT" else {}
        r = await net.call("other", method, f"{URL}/{demo_rule}", **kw)
        assert r.status_code == 403 and r.json()["reason"] == "network-not-allowed", r.text
    moved = await net.call("operator", "PUT", f"{URL}/{demo_rule}", json=rule(net.network_b))
    assert moved.status_code == 403  # network B is not the operator's either
    # A rule never moves to another network (the admin may reach both).
    moved = await net.call("admin", "PUT", f"{URL}/{demo_rule}", json=rule(net.network_b))
    assert moved.status_code == 422 and moved.json()["errors"][0]["field"] == "network_id"


async def _running_trip(net: Net, started_at: datetime, vehicle_index: int) -> int:
    async with net.maker() as session:
        trip = Trip(
            user_id=net.users["rider"],
            vehicle_id=list(net.demo.vehicle_ids.values())[vehicle_index],
            network_id=net.network_a,
            status=TripStatus.RUNNING,
            started_at=started_at,
            currency="EUR",
        )
        session.add(trip)
        await session.commit()
        return trip.id


async def test_a_change_applies_to_trips_started_after_it(net: Net) -> None:
    await clear(net)
    old = (await net.call("operator", "POST", URL, json=rule(net.network_a))).json()["data"]
    # Started under the rule just added (before it, the demo's rules applied).
    before = await _running_trip(net, datetime.now(UTC), 0)
    r = await net.call(
        "operator",
        "PUT",
        f"{URL}/{old['pricing_id']}",
        json=rule(net.network_a, unlock_price=2, use_per_minute_price=0.3),
    )
    assert r.status_code == 200, r.text
    new = r.json()["data"]
    after = await _running_trip(net, datetime.now(UTC), 1)
    rider = net.headers["rider"]
    detail = (await net.client.get(f"/v1/trips/{before}", headers=rider)).json()["data"]
    cost = detail["cost_detail"]
    assert cost["unlock_rule_id"] == old["pricing_id"]
    assert Decimal(cost["unlock_price"]) == Decimal("1")
    assert {Decimal(line["unit_price"]) for line in cost["lines"]} == {Decimal("0.1")}
    assert cost["riding_minutes"] >= 1
    detail = (await net.client.get(f"/v1/trips/{after}", headers=rider)).json()["data"]
    cost = detail["cost_detail"]
    assert cost["unlock_rule_id"] == new["pricing_id"]
    assert Decimal(cost["unlock_price"]) == Decimal("2")
    # Billing at the end of the older trip still finds its version (closed, not deleted).
    async with net.maker() as session:
        versions: Sequence[PricingRule] = (
            await session.scalars(
                select(PricingRule).where(PricingRule.network_id == net.network_a)
            )
        ).all()
        closed = next(v for v in versions if v.id == old["pricing_id"])
        assert closed.valid_until is not None


async def test_estimate_prices_the_fastest_trips_with_the_current_rules(net: Net) -> None:
    await clear(net)
    body = rule(net.network_a, unlock_price=1, use_per_minute_price=0.1)
    assert (await net.call("operator", "POST", URL, json=body)).status_code == 200
    donor, receiver = list(net.demo.cluster_ids.values())[:2]
    url = f"/v1/dashboard/networks/{net.network_a}/estimate"
    params = {"donor_cluster_id": donor, "receiver_cluster_id": receiver}
    empty = await net.call("operator", "GET", url, params={**params, "fastest_trip_percentage": 50})
    assert empty.status_code == 200, empty.text
    assert empty.json()["data"]["average_duration"] is None
    start = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    async with net.maker() as session:
        for n, minutes in enumerate((10, 20, 30, 40)):
            session.add(
                Trip(
                    user_id=net.users["rider"],
                    vehicle_id=next(iter(net.demo.vehicle_ids.values())),
                    network_id=net.network_a,
                    status=TripStatus.FINISHED,
                    started_at=start + timedelta(hours=n),
                    ended_at=start + timedelta(hours=n, minutes=minutes),
                    start_cluster_id=donor,
                    end_cluster_id=receiver,
                    currency="EUR",
                )
            )
        await session.commit()
    r = await net.call("read-only", "GET", url, params={**params, "fastest_trip_percentage": 50})
    data = r.json()["data"]
    # The fastest half: 10 and 20 minutes, 15 on average; 1.00 + 15 minutes at 0.10.
    assert (data["trips_count"], data["sample_size"], data["average_duration"]) == (4, 2, 900)
    assert data["estimated_price"] == "2.50" and data["currency"] == "EUR"
    one = await net.call("operator", "GET", url, params={**params, "fastest_trip_percentage": 1})
    assert one.json()["data"]["average_duration"] == 600
    reverse = {"donor_cluster_id": receiver, "receiver_cluster_id": donor}
    none = await net.call("operator", "GET", url, params={**reverse, "fastest_trip_percentage": 5})
    assert none.json()["data"]["trips_count"] == 0
    bad = await net.call("operator", "GET", url, params={**params, "fastest_trip_percentage": 51})
    assert bad.status_code == 422
    other = await net.call("other", "GET", url, params={**params, "fastest_trip_percentage": 50})
    assert other.status_code == 403
    b_url = f"/v1/dashboard/networks/{net.network_b}/estimate"
    foreign = await net.call(
        "other", "GET", b_url, params={**params, "fastest_trip_percentage": 50}
    )
    assert foreign.status_code == 404  # network A's clusters are not network B's
