"""Seed 002 people operations: grants open and close access at once, nobody hands out more
than it holds, blocking ends a user's sessions, roles, units, malformed grants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from kickstand.cloud.access.models import Organization
from kickstand.cloud.db import create_sessionmaker
from kickstand.cloud.models import User
from tests.cloud.access.conftest import Walk

START = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()


def ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    return r.json().get("data")


def refused(r: httpx.Response, status: int, reason: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["reason"] == reason, r.text


def not_found(r: httpx.Response) -> None:
    assert r.status_code == 404, r.text


async def _maintenance(walk: Walk, caller: str) -> httpx.Response:
    return await walk.client.put(
        f"/v1/dashboard/spots/{walk.ids['spot_id']}/maintenance",
        json={"in_maintenance": False},
        headers=walk.headers[caller],
    )


def _grant(perm: str, ou: int | None, write: bool = True) -> dict[str, Any]:
    return {
        "perm_key": perm,
        "write": write,
        "organizational_unit": ou,
        "start_date": START,
        "end_date": None,
    }


async def test_a_grant_opens_access_at_once_and_its_removal_closes_it(walk: Walk) -> None:
    ro, ou, op = walk.ids["ro_id"], walk.ids["organizational_unit"], walk.headers["operator"]
    refused(await _maintenance(walk, "read-only"), 403, "read-only")
    ok(
        await walk.client.post(
            f"/v1/dashboard/users/{ro}/permissions", json=_grant("maintenances", ou), headers=op
        )
    )
    assert (await _maintenance(walk, "read-only")).status_code == 200  # same token
    listed = ok(await walk.client.get(f"/v1/dashboard/users/{ro}/permissions", headers=op))
    assert {"perm_key": "maintenances", "write": True} in [
        {"perm_key": e["perm_key"], "write": e["write"]} for e in listed
    ]
    ok(
        await walk.client.delete(
            f"/v1/dashboard/users/{ro}/permissions",
            params={"perm_key": "maintenances", "organizational_unit": ou},
            headers=op,
        )
    )
    assert (await _maintenance(walk, "read-only")).status_code == 403


async def test_nobody_hands_out_more_than_it_holds(walk: Walk) -> None:
    ro, op, admin = walk.ids["ro_id"], walk.headers["operator"], walk.headers["admin"]
    unit_b = ok(
        await walk.client.post(
            "/v1/dashboard/organizational-units",
            json={
                "name": "Elsewhere",
                "networks": [walk.ids["network_b"]],
                "clusters": [],
                "app_labels": [],
                "organizations": [],
            },
            headers=admin,
        )
    )["id"]
    # Network A's operator cannot grant on B's unit, nor globally, nor see B's unit.
    refused(
        await walk.client.post(
            f"/v1/dashboard/users/{ro}/permissions", json=_grant("stations", unit_b), headers=op
        ),
        403,
        "network-not-allowed",
    )
    refused(
        await walk.client.post(
            f"/v1/dashboard/users/{ro}/permissions", json=_grant("stations", None), headers=op
        ),
        403,
        "not-global",
    )
    units = ok(await walk.client.get("/v1/dashboard/organizational-units", headers=op))
    assert unit_b not in [u["id"] for u in units]
    refused(
        await walk.client.post(
            "/v1/dashboard/organizational-units",
            json={
                "name": "Grab",
                "networks": [walk.ids["network_b"]],
                "clusters": [],
                "app_labels": [],
                "organizations": [],
            },
            headers=op,
        ),
        403,
        "network-not-allowed",
    )
    # A permission the granter does not hold (seed enum, not in the operator role).
    refused(
        await walk.client.post(
            f"/v1/dashboard/users/{ro}/permissions",
            json=_grant("transactions", walk.ids["organizational_unit"]),
            headers=op,
        ),
        403,
        "cannot-grant",
    )
    # Another network's people are not found.
    other = walk.ids["other_id"]
    assert (await walk.client.get(f"/v1/dashboard/users/{other}", headers=op)).status_code == 404


@pytest.mark.parametrize(
    "walk", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_blocking_ends_the_users_sessions_until_unblocked(walk: Walk) -> None:
    alice, op = walk.ids["user_id"], walk.headers["operator"]
    assert (await walk.client.get("/v1/trips", headers=walk.headers["alice"])).status_code == 200
    r = await walk.client.post(
        f"/v1/dashboard/users/{alice}/block", json={"reason": "unpaid trips"}, headers=op
    )
    ok(r)
    assert (await walk.client.get("/v1/trips", headers=walk.headers["alice"])).status_code == 401
    info = ok(await walk.client.get(f"/v1/dashboard/users/{alice}/blocked", headers=op))
    assert info["blocked"] and info["reason"] == "unpaid trips"
    assert info["blocked_by"] == walk.ids["operator_id"]
    page = await walk.client.get(
        "/v1/dashboard/users", params={"networks": walk.network_a, "blocked": "true"}, headers=op
    )
    assert [u["id"] for u in ok(page)] == [alice]
    ok(await walk.client.post(f"/v1/dashboard/users/{alice}/unblock", headers=op))
    assert not ok(await walk.client.get(f"/v1/dashboard/users/{alice}/blocked", headers=op))[
        "blocked"
    ]
    refused(
        await walk.client.post(f"/v1/dashboard/users/{alice}/unblock", headers=op),
        409,
        "not-blocked",
    )


async def test_roles_are_granted_and_revoked_as_a_whole(walk: Walk) -> None:
    ro, ou, op = walk.ids["ro_id"], walk.ids["organizational_unit"], walk.headers["operator"]
    ok(
        await walk.client.post(
            "/v1/dashboard/roles", json={"key": "night-shift", "perms": ["stations"]}, headers=op
        )
    )
    refused(
        await walk.client.post(
            "/v1/dashboard/roles", json={"key": "night-shift", "perms": []}, headers=op
        ),
        409,
        "role-exists",
    )
    ok(
        await walk.client.put(
            "/v1/dashboard/roles",
            json={
                "key": "night-shift",
                "perms_to_add": ["maintenances"],
                "perms_to_remove": ["stations"],
            },
            headers=op,
        )
    )
    roles = ok(await walk.client.get("/v1/dashboard/roles", params={"lang": "en"}, headers=op))
    assert {"key": "night-shift", "perms": ["maintenances"]} in roles
    grant = {**_grant("x", ou), "role_key": "night-shift"}
    del grant["perm_key"]
    ok(await walk.client.post(f"/v1/dashboard/users/{ro}/roles", json=grant, headers=op))
    assert (await _maintenance(walk, "read-only")).status_code == 200
    ok(
        await walk.client.delete(
            f"/v1/dashboard/users/{ro}/roles",
            params={"role_key": "night-shift", "organizational_unit": ou},
            headers=op,
        )
    )
    assert (await _maintenance(walk, "read-only")).status_code == 403
    perms = ok(
        await walk.client.get("/v1/dashboard/permissions", params={"lang": "en"}, headers=op)
    )
    assert len(perms) == 37  # seed 002's 36, and Kickstand's firmware (issue 18)


@pytest.mark.parametrize(
    "walk", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_editing_a_unit_moves_its_grants_and_a_unit_in_use_stays(walk: Walk) -> None:
    ro, admin = walk.ids["ro_id"], walk.headers["admin"]
    body = {
        "name": "Depot",
        "networks": [walk.network_a],
        "clusters": [],
        "app_labels": [],
        "organizations": [],
    }
    unit = ok(
        await walk.client.post("/v1/dashboard/organizational-units", json=body, headers=admin)
    )["id"]
    ok(
        await walk.client.post(
            f"/v1/dashboard/users/{ro}/permissions", json=_grant("trips", unit), headers=admin
        )
    )
    b = walk.ids["network_b"]
    ok(
        await walk.client.put(
            "/v1/dashboard/organizational-units",
            json={**body, "networks": [b], "ou_id": unit},
            headers=admin,
        )
    )
    perms = ok(await walk.client.get(f"/v1/dashboard/users/{ro}/permissions", headers=admin))
    assert [e["ou"]["networks"] for e in perms if e["ou"] and e["ou"]["id"] == unit] == [[b]]
    users = ok(
        await walk.client.get(f"/v1/dashboard/organizational-units/{unit}/users", headers=admin)
    )
    assert [u["user_id"] for u in users] == [ro]
    refused(
        await walk.client.delete(f"/v1/dashboard/organizational-units/{unit}", headers=admin),
        409,
        "unit-in-use",
    )


async def test_organizations_are_linked_and_unlinked(walk: Walk) -> None:
    alice, op = walk.ids["user_id"], walk.headers["operator"]
    org = ok(
        await walk.client.post(
            "/v1/dashboard/organizations",
            json={
                "third_party_id": 7,
                "name": "Hospital",
                "administrator_id": walk.ids["operator_id"],
                "is_guarantor": False,
                "allow_outside_rules": False,
                "paid_outside_rules_ratio": 0.5,
                "only_show_matching_clusters": False,
                "pays_rule_overrun": False,
                "email_pattern": "%@hospital.example",
            },
            headers=op,
        )
    )["id"]
    ok(
        await walk.client.put(
            f"/v1/dashboard/organizations/{org}",
            json={"name": "Hospital Nord", "only_show_matching_clusters": True},
            headers=op,
        )
    )
    detail = ok(await walk.client.get(f"/v1/dashboard/organizations/{org}", headers=op))
    assert (detail["name"], detail["only_show_matching_clusters"]) == ("Hospital Nord", True)
    ok(await walk.client.put(f"/v1/dashboard/users/{alice}/organizations/{org}", headers=op))
    assert ok(await walk.client.get(f"/v1/dashboard/users/{alice}", headers=op))[
        "organizations"
    ] == [org]
    ok(await walk.client.delete(f"/v1/dashboard/users/{alice}/organizations/{org}", headers=op))
    assert (
        ok(await walk.client.get(f"/v1/dashboard/users/{alice}", headers=op))["organizations"] == []
    )
    assert (
        await walk.client.delete(f"/v1/dashboard/users/{alice}/organizations/{org}", headers=op)
    ).status_code == 404


ORGANIZATION = {
    "third_party_id": 7,
    "name": "Hospital",
    "is_guarantor": False,
    "allow_outside_rules": False,
    "paid_outside_rules_ratio": 0.5,
    "only_show_matching_clusters": False,
    "pays_rule_overrun": False,
}


async def test_organizations_are_scoped_to_networks(walk: Walk) -> None:
    """An operator reaches the organizations of its networks: created for one, or named by
    one's access rule; another network's operator finds none of them; global admins all."""
    op, other, admin = (walk.headers[c] for c in ("operator", "other", "admin"))
    a, b = walk.network_a, walk.ids["network_b"]
    body = {**ORGANIZATION, "administrator_id": walk.ids["operator_id"]}
    # No network named: the operator's only one.
    created = ok(await walk.client.post("/v1/dashboard/organizations", json=body, headers=op))
    org = created["id"]
    assert (created["network_id"], created["created_by"]) == (a, walk.ids["operator_id"])
    listed = ok(await walk.client.get("/v1/dashboard/organizations", headers=op))
    assert org in [o["id"] for o in listed]
    # Network B's operator: not in its pages, not found, cannot edit, link or create for A.
    assert ok(await walk.client.get("/v1/dashboard/organizations", headers=other)) == []
    url = f"/v1/dashboard/organizations/{org}"
    not_found(await walk.client.get(url, headers=other))
    update = {"name": "Taken", "only_show_matching_clusters": True}
    not_found(await walk.client.put(url, json=update, headers=other))
    own = f"/v1/dashboard/users/{walk.ids['other_id']}/organizations/{org}"
    not_found(await walk.client.put(own, headers=other))
    refused(
        await walk.client.post(
            "/v1/dashboard/organizations", json={**body, "network_id": a}, headers=other
        ),
        403,
        "network-not-allowed",
    )
    assert ok(await walk.client.get(url, headers=op))["name"] == "Hospital"
    # B's operator cannot open it to itself with an access rule of its own network.
    rules = f"/v1/dashboard/networks/{b}/access-rules"
    sneaked = await walk.client.post(rules, json={"organization": org}, headers=other)
    assert sneaked.status_code == 422, sneaked.text
    assert sneaked.json()["errors"][0]["field"] == "organization"
    ok(await walk.client.post(rules, json={"email_pattern": "%@b.example"}, headers=other))
    assert ok(await walk.client.get("/v1/dashboard/organizations", headers=other)) == []
    # An access rule of network B naming it opens it to B's operator.
    ok(
        await walk.client.post(
            f"/v1/dashboard/networks/{b}/access-rules",
            json={"organization": org},
            headers=admin,
        )
    )
    assert [
        o["id"] for o in ok(await walk.client.get("/v1/dashboard/organizations", headers=other))
    ] == [org]
    ok(await walk.client.put(url, json=update, headers=other))
    ok(await walk.client.put(own, headers=other))
    # A global admin's organization of no network: global grants only.
    mine = ok(await walk.client.post("/v1/dashboard/organizations", json=body, headers=admin))
    assert mine["network_id"] is None
    not_found(await walk.client.get(f"/v1/dashboard/organizations/{mine['id']}", headers=op))
    every = ok(await walk.client.get("/v1/dashboard/organizations", headers=admin))
    assert {org, mine["id"]} <= {o["id"] for o in every}


async def test_an_organization_whose_administrator_is_gone_is_still_served(walk: Walk) -> None:
    op = walk.headers["operator"]
    body = {**ORGANIZATION, "administrator_id": walk.ids["ro_id"]}
    org = ok(await walk.client.post("/v1/dashboard/organizations", json=body, headers=op))["id"]
    maker = create_sessionmaker(walk.app.state.engine)
    async with maker() as session:
        # What the foreign key's ON DELETE SET NULL leaves (SQLite here enforces none).
        await session.execute(
            update(Organization).where(Organization.id == org).values(administrator_id=None)
        )
        await session.commit()
    detail = ok(await walk.client.get(f"/v1/dashboard/organizations/{org}", headers=op))
    assert detail["administrator_id"] is None


async def test_organizations_page_by_key(walk: Walk) -> None:
    op = walk.headers["operator"]
    body = {**ORGANIZATION, "administrator_id": walk.ids["operator_id"]}
    made = [
        ok(
            await walk.client.post(
                "/v1/dashboard/organizations", json={**body, "name": f"org {i}"}, headers=op
            )
        )["id"]
        for i in range(12)
    ]
    params: dict[str, Any] = {"page_size": 10, "primary_key_dir": "ASC"}
    first = (await walk.client.get("/v1/dashboard/organizations", params=params, headers=op)).json()
    assert [o["id"] for o in first["data"]] == made[:10]
    assert first["next_primary_key"] == made[9]
    params["last_primary_key"] = first["next_primary_key"]
    second = (
        await walk.client.get("/v1/dashboard/organizations", params=params, headers=op)
    ).json()
    assert ([o["id"] for o in second["data"]], second["next_primary_key"]) == (made[10:], None)


@pytest.mark.parametrize(
    "entries",
    [
        [{"perm_key": "networks.manage", "write": True, "ou": {"id": 1, "networks": ["1"]}}],
        [{"perm_key": "networks.manage", "ou": {"id": 1, "networks": [1]}}],
        [{"perm_key": "networks.manage", "write": True, "ou": {"networks": [1]}}],
        "networks.manage",
    ],
)
async def test_a_malformed_grant_is_refused_never_a_500(
    walk: Walk, entries: Any, caplog: pytest.LogCaptureFixture
) -> None:
    maker = create_sessionmaker(walk.app.state.engine)
    async with maker() as session:
        await session.execute(
            update(User).where(User.id == walk.ids["ro_id"]).values(permissions=entries)
        )
        await session.commit()
    r = await walk.client.get(
        "/v1/dashboard/geofencing/border",
        params={"network_id": walk.network_a},
        headers=walk.headers["read-only"],
    )
    refused(r, 403, "permission-missing")
    assert "event=permission_malformed" in caplog.text


async def test_users_of_the_network_are_listed_and_searched(walk: Walk) -> None:
    op, a = walk.headers["operator"], walk.network_a

    async def ids(**params: object) -> list[int]:
        r = await walk.client.get(
            "/v1/dashboard/users", params={"networks": a, **params}, headers=op
        )
        return [u["id"] for u in ok(r)]

    everyone = await ids(primary_key_dir="ASC")
    alice, bob = walk.ids["user_id"], walk.ids["rider_id"]
    assert {alice, bob, walk.ids["operator_id"], walk.ids["ro_id"]} <= set(everyone)
    assert walk.ids["other_id"] not in everyone  # network B's operator
    assert everyone == sorted(everyone)
    assert await ids(email="alice@") == [alice]
    assert await ids(lastname="durand") == [bob]  # "Bob Durand"
    assert await ids(user_id_min=bob, user_id_max=bob) == [bob]
    assert await ids(register_at_min="2999-01-01T00:00:00Z") == []
    assert await ids(blocked="true") == []
    first = await walk.client.get(
        "/v1/dashboard/users", params={"networks": a, "page_size": 10}, headers=op
    )
    assert first.json()["next_primary_key"] is None or len(ok(first)) == 10
    refused(
        await walk.client.get(
            "/v1/dashboard/users", params={"networks": walk.ids["network_b"]}, headers=op
        ),
        403,
        "network-not-allowed",
    )


async def test_login_and_check_show_the_valid_grants_only_never_a_500(walk: Walk) -> None:
    good_global = {"perm_key": "stations", "write": False, "ou": None}
    bad = {"perm_key": "stations", "write": True, "ou": {"id": 1, "networks": ["1"]}}
    maker = create_sessionmaker(walk.app.state.engine)
    async with maker() as session:
        await session.execute(
            update(User).where(User.id == walk.ids["ro_id"]).values(permissions=[bad, good_global])
        )
        await session.commit()
    r = await walk.client.post(
        "/v1/auth/login", json={"email": "ro-op@example.com", "password": "not-used-here-1"}
    )
    login = ok(r)
    assert login["permissions"] == [good_global]
    token = {"Authorization": f"Bearer {login['token']}"}
    assert ok(await walk.client.get("/v1/auth/check", headers=token))["permissions"] == [
        good_global
    ]
    # The global read grant opens every network's stations, read only.
    energy = await walk.client.get(
        f"/v1/dashboard/stations/{walk.ids['station_id']}/energy-consumption",
        params={"start_date": "2026-01-01", "end_date": "2026-01-02", "timezone": "Europe/Paris"},
        headers=token,
    )
    assert energy.status_code == 200, energy.text
