"""Operators' device commands through the API's gateway (the fake of the API tests): each
outcome answered with its error, the audit row (``device_commands``) carrying the answer and
the operator, the history paged, and SetMaintenance through the one maintenance path."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from kickstand.cloud.commands.issuer import CommandIssuer
from kickstand.cloud.models import Device, MaintenanceSource, Spot, SpotState, Station
from kickstand.cloud.rent_gateway import IssuedCommand, UnlockOutcome
from kickstand.protocol.signing import CommandSigner, generate_private_key
from kickstand.protocol.v1 import messages as m
from kickstand.protocol.v1.enums import AuthListKind, TriggerKind
from tests.cloud.api.support import BOTH_DATABASES, Api

OPERATOR = "operator@example.com"


async def device_pk(api: Api, device_id: str) -> int:
    async with api.sessionmaker() as s:
        pk: int = (await s.scalars(select(Device.id).where(Device.device_id == device_id))).one()
        return pk


async def history(api: Api, pk: int, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    r = await api.client.get(f"/v1/dashboard/devices/{pk}/commands", params=params, headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@BOTH_DATABASES
async def test_each_outcome_is_answered_and_kept(api: Api) -> None:
    operator = await api.login(OPERATOR)
    pk = await device_pk(api, "st-0001")
    url = f"/v1/dashboard/devices/{pk}/commands"

    r = await api.client.post(f"{url}/reboot", json={"hard": False}, headers=operator)
    assert r.status_code == 200, r.text
    done = r.json()["data"]
    assert done["outcome"] == "done" and done["command_type"] == "reboot"
    assert api.gateway.sent[-1].command == m.Reboot(hard=False)

    api.gateway.outcome = UnlockOutcome.refused("busy")
    r = await api.client.post(
        f"{url}/trigger-message", json={"which": "status", "spot": 2}, headers=operator
    )
    assert r.status_code == 409 and r.json()["reason"] == "device-refused", r.text
    assert r.json()["data"]["outcome"] == "rejected" and r.json()["data"]["reason"] == "busy"
    assert api.gateway.sent[-1].command == m.TriggerMessage(TriggerKind.STATUS, 2)

    api.gateway.outcome = UnlockOutcome.refused("hardware-failed: hardware-fault")
    r = await api.client.post(f"{url}/reboot", json={}, headers=operator)
    assert r.status_code == 409 and r.json()["data"]["outcome"] == "failed", r.text

    api.gateway.outcome = UnlockOutcome.offline("st-0001: device is offline")
    r = await api.client.post(f"{url}/reboot", json={}, headers=operator)
    assert r.status_code == 503 and r.json()["reason"] == "device-offline", r.text

    api.gateway.outcome = UnlockOutcome.timeout()
    r = await api.client.post(
        f"{url}/config", json={"values": {"poll_interval_s": 0.5}}, headers=operator
    )
    assert r.status_code == 504 and r.json()["data"]["outcome"] == "timeout", r.text
    assert api.gateway.sent[-1].command == m.Config(version=1, values={"poll_interval_s": 0.5})

    items = (await history(api, pk, operator))["data"]
    assert [(c["command_type"], c["status"]) for c in items] == [
        ("config", "pending"),  # the device may still execute it: ingest records its result
        ("reboot", "not-sent"),
        ("reboot", "failed"),
        ("triggermessage", "rejected"),
        ("reboot", "done"),
    ]
    assert items[3]["reason"] == "busy" and items[2]["reason"] == "hardware-fault"
    assert items[4]["command_id"] == done["command_id"]
    operator_id = api.demo.user_ids[OPERATOR]
    assert {c["operator_id"] for c in items} == {operator_id}


async def test_history_pages_and_kinds(api: Api) -> None:
    operator = await api.login(OPERATOR)
    pk = await device_pk(api, "st-0002")
    for _ in range(12):
        r = await api.client.post(
            f"/v1/dashboard/devices/{pk}/commands/reboot", json={}, headers=operator
        )
        assert r.status_code == 200, r.text
    first = await history(api, pk, operator, page_size=10)
    assert len(first["data"]) == 10 and first["next_primary_key"] is not None
    second = await history(
        api, pk, operator, page_size=10, last_primary_key=first["next_primary_key"]
    )
    assert len(second["data"]) == 2 and second["next_primary_key"] is None
    ids = [c["command_id"] for c in first["data"] + second["data"]]
    assert sorted(ids) == sorted(c.command_id.hex() for c in api.gateway.sent)
    keys = [c["key"] for c in first["data"] + second["data"]]
    assert keys == sorted(keys, reverse=True)

    # SetSpeedLimit is a vehicle's; a station refuses nothing: the cloud does.
    r = await api.client.post(
        f"/v1/dashboard/devices/{pk}/commands/set-speed-limit",
        json={"max_kmh": 20},
        headers=operator,
    )
    assert r.status_code == 409 and r.json()["reason"] == "wrong-device-kind"
    vehicle = await device_pk(api, "vh-LY0001")
    r = await api.client.post(
        f"/v1/dashboard/devices/{vehicle}/commands/set-speed-limit",
        json={"max_kmh": 20},
        headers=operator,
    )
    assert r.status_code == 200, r.text
    assert api.gateway.sent[-1].command == m.SetSpeedLimit(max_kmh=20)
    assert api.gateway.sent[-1].device_id == "vh-LY0001"
    # Bounds of the wire: a control character in a Config key, a speed over 100.
    r = await api.client.post(
        f"/v1/dashboard/devices/{pk}/commands/config",
        json={"values": {"bad\u0001key": 1}},
        headers=operator,
    )
    assert r.status_code == 422, r.text
    r = await api.client.post(
        f"/v1/dashboard/devices/{vehicle}/commands/set-speed-limit",
        json={"max_kmh": 101},
        headers=operator,
    )
    assert r.status_code == 422


async def test_set_maintenance_goes_through_the_maintenance_path(api: Api) -> None:
    operator = await api.login(OPERATOR)
    pk = await device_pk(api, "st-0001")
    r = await api.client.post(
        f"/v1/dashboard/devices/{pk}/commands/set-maintenance",
        json={"spot": 2, "on": True, "reason": "latch"},
        headers=operator,
    )
    assert r.status_code == 200, r.text
    assert api.gateway.sent[-1].command == m.SetMaintenance(spot=2, on=True, reason="latch")
    async with api.sessionmaker() as s:
        spot: Spot = (
            await s.scalars(
                select(Spot)
                .join(Station)
                .where(Station.device_id == "st-0001", Spot.displayed_number == 2)
            )
        ).one()
        assert spot.state == SpotState.MAINTENANCE
        assert spot.maintenance_source == MaintenanceSource.OPERATOR
    r = await api.client.post(
        f"/v1/dashboard/devices/{pk}/commands/set-maintenance",
        json={"spot": 99, "on": True},
        headers=operator,
    )
    assert r.status_code == 422, r.text


async def test_auth_list_full(api: Api) -> None:
    operator = await api.login(OPERATOR)
    pk = await device_pk(api, "st-0001")
    url = f"/v1/dashboard/devices/{pk}/commands/auth-list-update"
    r = await api.client.post(url, json={"kind": "FULL"}, headers=operator)
    assert r.status_code == 503, r.text  # no issuer on this gateway: nothing signed
    gateway: Any = api.gateway
    gateway.issuer = CommandIssuer(CommandSigner(generate_private_key()), sent_by="api-test")
    r = await api.client.post(url, json={"kind": "FULL"}, headers=operator)
    assert r.status_code == 200, r.text
    sent: IssuedCommand = api.gateway.sent[-1]
    assert isinstance(sent.command, m.AuthListUpdate)
    assert sent.command.kind == AuthListKind.FULL and sent.command.add
    items = (await history(api, pk, operator, command_type="authlistupdate"))["data"]
    assert [c["status"] for c in items] == ["done"]
