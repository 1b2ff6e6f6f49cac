"""Badge routes: a rider unlinks their badge (``DELETE /v1/badges/{id}``), an operator
lists a rider's badges and blocks one (``/v1/dashboard/...``); each change bumps the
network's list version and publishes a DIFF to every station after the commit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from kickstand.cloud.authlist import service as authlist
from kickstand.cloud.commands.issuer import CommandIssuer
from kickstand.cloud.models import Badge
from kickstand.cloud.rent_gateway import IssuedCommand
from kickstand.cloud.seed import ALICE_BADGE_UID
from kickstand.protocol.signing import CommandSigner, generate_private_key
from kickstand.protocol.v1 import messages as m
from kickstand.protocol.v1.enums import AuthListKind
from tests.cloud.api.support import Api

OPERATOR = "operator@example.com"


def publishing(api: Api) -> list[IssuedCommand]:
    """Give the fake gateway what the MQTT gateway has for list updates; returns what it
    publishes."""
    published: list[IssuedCommand] = []

    async def publish(issued: IssuedCommand) -> bool:
        published.append(issued)
        return True

    gateway: Any = api.gateway
    gateway.issuer = CommandIssuer(CommandSigner(generate_private_key()), sent_by="api-test")
    gateway.publish = publish
    return published


async def alice_badge(api: Api) -> Badge:
    async with api.sessionmaker() as s:
        return (await s.scalars(select(Badge).where(Badge.uid == ALICE_BADGE_UID))).one()


async def stations(api: Api) -> list[str]:
    async with api.sessionmaker() as s:
        return await authlist.station_ids(s, api.demo.network_id)


async def test_rider_unlinks_their_badge_and_every_station_is_told(api: Api) -> None:
    published = publishing(api)
    badge = await alice_badge(api)
    bob = await api.login("bob@example.com")
    r = await api.client.delete(f"/v1/badges/{badge.id}", headers=bob)
    assert r.status_code == 404 and published == []  # not bob's

    alice = await api.login()
    r = await api.client.delete(f"/v1/badges/{badge.id}", headers=alice)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["linked"] is False
    assert sorted(c.device_id for c in published) == await stations(api)
    body = published[0].command
    assert isinstance(body, m.AuthListUpdate) and body.kind is AuthListKind.DIFF
    assert body.remove == (bytes.fromhex(ALICE_BADGE_UID),) and body.add == ()
    listed = (await api.client.get("/v1/badges", headers=alice)).json()["data"]
    assert listed == []


async def test_operator_lists_and_blocks_a_riders_badge(api: Api) -> None:
    published = publishing(api)
    badge = await alice_badge(api)
    alice_id = api.demo.user_ids["alice@example.com"]
    rider = await api.login()
    r = await api.client.put(
        f"/v1/dashboard/badges/{badge.id}/blocked", json={"blocked": True}, headers=rider
    )
    assert r.status_code == 403  # riders do not reach the dashboard

    operator = await api.login(OPERATOR)
    r = await api.client.get(f"/v1/dashboard/users/{alice_id}/badges", headers=operator)
    assert r.status_code == 200, r.text
    [listed] = r.json()["data"]
    assert (listed["uid"], listed["blocked"]) == (ALICE_BADGE_UID, False)

    r = await api.client.put(
        f"/v1/dashboard/badges/{badge.id}/blocked", json={"blocked": True}, headers=operator
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["blocked"] is True
    assert len(published) == len(await stations(api))
    # Blocking again changes nothing and tells nobody.
    r = await api.client.put(
        f"/v1/dashboard/badges/{badge.id}/blocked", json={"blocked": True}, headers=operator
    )
    assert r.status_code == 200 and len(published) == len(await stations(api))
    r = await api.client.put(
        f"/v1/dashboard/badges/{badge.id}/blocked", json={"blocked": False}, headers=operator
    )
    assert r.json()["data"]["blocked"] is False
    unblock = published[-1].command
    assert isinstance(unblock, m.AuthListUpdate)
    assert unblock.add == (bytes.fromhex(ALICE_BADGE_UID),)
