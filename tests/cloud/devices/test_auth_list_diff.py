"""An operator's AuthListUpdate DIFF (issue 16): one DIFF from the version a station
confirmed holding to its network's, built from the changes on record (a badge linked, a
badge blocked); a station whose version has no changes on record gets 409
``diff-unavailable`` (send a FULL). The DIFF is applied by the station's own list code."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from kickstand.cloud.authlist import service as authlist
from kickstand.cloud.commands.issuer import CommandIssuer
from kickstand.cloud.models import Badge
from kickstand.cloud.rent_gateway import IssuedCommand
from kickstand.cloud.seed import ALICE_BADGE_UID
from kickstand.edge.core.authlist import LocalAuthList
from kickstand.protocol.signing import CommandSigner, generate_private_key
from kickstand.protocol.v1 import messages as m
from kickstand.protocol.v1.enums import AuthListKind
from tests.cloud.api.support import BOTH_DATABASES, Api
from tests.cloud.devices.test_device_commands import OPERATOR, device_pk

NEW_UID = "04C0FFEE000099"


@BOTH_DATABASES
async def test_operator_diff_from_the_stations_version(api: Api, tmp_path: Path) -> None:
    gateway: Any = api.gateway
    gateway.issuer = CommandIssuer(CommandSigner(generate_private_key()), sent_by="api-test")
    network_id = api.demo.network_id
    async with api.sessionmaker() as s, s.begin():
        base = await authlist.network_version(s, network_id)
        held = sorted(await authlist.network_uids(s, network_id))
        # st-0001 said at its birth it holds the list as it is; st-0002 holds nothing.
        await authlist.at_birth(s, None, "st-0001", network_id, base)
        await authlist.at_birth(s, None, "st-0002", network_id, 0)
        alice = (await s.scalars(select(Badge).where(Badge.uid == ALICE_BADGE_UID))).one()
        s.add(Badge(uid=NEW_UID, name="new", user_id=alice.user_id, network_id=network_id))
        await authlist.changed(s, None, network_id, add=[NEW_UID])
        alice.blocked_at = datetime.now(UTC)
        await authlist.changed(s, None, network_id, remove=[ALICE_BADGE_UID])

    operator = await api.login(OPERATOR)
    url = f"/v1/dashboard/devices/{await device_pk(api, 'st-0001')}/commands/auth-list-update"
    r = await api.client.post(url, json={"kind": "DIFF"}, headers=operator)
    assert r.status_code == 200, r.text
    sent: IssuedCommand = api.gateway.sent[-1]
    assert sent.command == m.AuthListUpdate(
        AuthListKind.DIFF,
        base + 2,
        base,
        (bytes.fromhex(NEW_UID),),
        (bytes.fromhex(ALICE_BADGE_UID),),
    )
    # The station's own list code takes it on top of what it holds.
    station = LocalAuthList(tmp_path / "list.json")
    station.apply(m.AuthListUpdate(AuthListKind.FULL, base, None, tuple(held)))
    station.apply(sent.command)
    assert station.version == base + 2
    assert bytes.fromhex(NEW_UID) in station
    assert bytes.fromhex(ALICE_BADGE_UID) not in station

    url = f"/v1/dashboard/devices/{await device_pk(api, 'st-0002')}/commands/auth-list-update"
    r = await api.client.post(url, json={"kind": "DIFF"}, headers=operator)
    assert r.status_code == 409 and r.json()["reason"] == "diff-unavailable", r.text
    r = await api.client.post(url, json={"kind": "FULL"}, headers=operator)
    assert r.status_code == 200, r.text
