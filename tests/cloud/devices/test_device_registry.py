"""Operators' device registry: listing (kind, online by the liveness rule, firmware,
network), detail with boots and attachment, who sees which device, and seed 002 "Get users
using given device" (riders' phones)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from kickstand.cloud.ingest.tables import DeviceBoot
from kickstand.cloud.models import Cluster, Device, DeviceKind, Network, Station, User, UserRole
from kickstand.cloud.security import hash_password
from tests.cloud.api.support import BOTH_DATABASES, Api

OPERATOR = "operator@example.com"
ADMIN = "root@example.com"


async def device_pk(api: Api, device_id: str) -> int:
    async with api.sessionmaker() as s:
        pk: int = (await s.scalars(select(Device.id).where(Device.device_id == device_id))).one()
        return pk


async def set_seen(api: Api, device_id: str, ago_s: float, firmware: str | None = None) -> None:
    values: dict[str, Any] = {
        "online": True,
        "last_seen_at": datetime.now(UTC) - timedelta(seconds=ago_s),
        "heartbeat_s": 30,
        "boot_id": "77",
    }
    if firmware is not None:
        values["firmware_version"] = firmware
    async with api.sessionmaker() as s:
        await s.execute(update(Device).where(Device.device_id == device_id).values(**values))
        await s.commit()


async def add_admin(api: Api) -> dict[str, str]:
    async with api.sessionmaker() as s:
        s.add(
            User(
                email=ADMIN,
                password_hash=hash_password("admin-demo-1", demo=True),
                role=UserRole.ADMIN,
                permissions=[],
                email_confirmed_at=datetime.now(UTC),
            )
        )
        await s.commit()
    api.demo.passwords.setdefault(ADMIN, "admin-demo-1")
    return await api.login(ADMIN)


async def listed(api: Api, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    last: int | None = None
    while True:
        query = {**params, "page_size": 10, **({"last_primary_key": last} if last else {})}
        r = await api.client.get("/v1/dashboard/devices", params=query, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["data"]
        last = body["next_primary_key"]
        if last is None:
            return items


@BOTH_DATABASES
async def test_listing_filters_and_liveness(api: Api) -> None:
    operator = await api.login(OPERATOR)
    everything = await listed(api, operator)
    kinds = {d["kind"] for d in everything}
    assert kinds == {"station", "vehicle"}
    ids = [d["id"] for d in everything]
    assert ids == sorted(ids, reverse=True) and len(ids) == len(set(ids))  # keyset, DESC
    assert all(d["attached"]["network_id"] == api.demo.network_id for d in everything)

    stations = await listed(api, operator, kind="station")
    assert {d["device_id"] for d in stations} == set(api.demo.station_device_ids)

    # st-0001 heard 5 s ago; st-0002 "online" on record but silent for 10 min: offline by
    # the one liveness rule (3 heartbeats of 30 s), in the filter as in the answer.
    await set_seen(api, "st-0001", 5, firmware="2.1.0")
    await set_seen(api, "st-0002", 600, firmware="2.1.0")
    online = await listed(api, operator, online="true")
    assert [d["device_id"] for d in online] == ["st-0001"]
    assert online[0]["online"] is True and online[0]["offline_reason"] is None
    offline = await listed(api, operator, online="false")
    assert "st-0002" in {d["device_id"] for d in offline}
    assert "st-0001" not in {d["device_id"] for d in offline}
    silent = next(d for d in offline if d["device_id"] == "st-0002")
    assert silent["online"] is False and "silent" in silent["offline_reason"]
    assert len(online) + len(offline) == len(everything)

    firmware = await listed(api, operator, firmware_version="2.1.0")
    assert {d["device_id"] for d in firmware} == {"st-0001", "st-0002"}
    by_network = await listed(api, operator, network_id=api.demo.network_id, kind="vehicle")
    assert by_network and {d["kind"] for d in by_network} == {"vehicle"}
    assert all(d["attached"]["vehicle_serial_number"] for d in by_network)


@BOTH_DATABASES
async def test_detail_with_boots_and_attachment(api: Api) -> None:
    await set_seen(api, "st-0001", 1)
    async with api.sessionmaker() as s:
        s.add_all(
            [
                DeviceBoot(
                    device_id="st-0001",
                    boot_id=76,
                    birth_ts_ms=1,
                    firmware="2.0.0",
                    received_at=datetime.now(UTC) - timedelta(hours=1),
                    died_at=datetime.now(UTC) - timedelta(minutes=5),
                    death_reason="reboot",
                    inventory=[],
                ),
                DeviceBoot(
                    device_id="st-0001",
                    boot_id=77,
                    birth_ts_ms=2,
                    firmware="2.1.0",
                    config_version=3,
                    inventory=[{"kind": "spot", "index": 1, "firmware": "1.0.0"}],
                ),
            ]
        )
        await s.commit()
        station: Station = (
            await s.scalars(select(Station).where(Station.device_id == "st-0001"))
        ).one()
    pk = await device_pk(api, "st-0001")
    r = await api.client.get(f"/v1/dashboard/devices/{pk}", headers=await api.login(OPERATOR))
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["device_id"] == "st-0001" and data["kind"] == "station"
    assert data["online"] is True and data["boot_id"] == "77"
    assert data["attached"]["station_id"] == station.id
    assert data["attached"]["network_id"] == api.demo.network_id
    assert [b["boot_id"] for b in data["boots"]] == [77, 76]
    assert data["boots"][1]["death_reason"] == "reboot"
    assert data["boots"][0]["inventory"][0]["firmware"] == "1.0.0"


async def test_who_sees_which_device(api: Api) -> None:
    async with api.sessionmaker() as s:
        other = Network(name="Elsewhere", currency="EUR", timezone="Europe/Paris")
        s.add(other)
        await s.flush()
        cluster = Cluster(network_id=other.id, name="Far", latitude=1.0, longitude=1.0)
        s.add(cluster)
        await s.flush()
        s.add(Station(cluster_id=cluster.id, device_id="st-9001", name="Far 1"))
        s.add(Device(device_id="st-9001", kind=DeviceKind.STATION))
        s.add(Device(device_id="st-spare", kind=DeviceKind.STATION))  # attached to nothing
        await s.commit()
    far, spare = await device_pk(api, "st-9001"), await device_pk(api, "st-spare")
    operator = await api.login(OPERATOR)
    seen = {d["device_id"] for d in await listed(api, operator)}
    assert "st-0001" in seen and "st-9001" not in seen and "st-spare" not in seen
    for pk in (far, spare):
        r = await api.client.get(f"/v1/dashboard/devices/{pk}", headers=operator)
        assert r.status_code == 404, r.text
        r = await api.client.post(
            f"/v1/dashboard/devices/{pk}/commands/reboot", json={}, headers=operator
        )
        assert r.status_code == 404, r.text
    assert api.gateway.sent == []
    r = await api.client.get("/v1/dashboard/devices", params={"network_id": 999}, headers=operator)
    assert r.status_code == 403 and r.json()["reason"] == "network-not-allowed"

    admin = await add_admin(api)
    by_id = {d["device_id"]: d for d in await listed(api, admin)}
    assert {"st-0001", "st-9001", "st-spare"} <= set(by_id)
    assert by_id["st-spare"]["attached"] == {
        "network_id": None,
        "station_id": None,
        "station_name": None,
        "cluster_id": None,
        "vehicle_id": None,
        "vehicle_serial_number": None,
    }
    r = await api.client.get(f"/v1/dashboard/devices/{spare}", headers=admin)
    assert r.status_code == 200 and r.json()["data"]["online"] is False

    rider = await api.login()
    r = await api.client.get("/v1/dashboard/devices", headers=rider)
    assert r.status_code == 403 and r.json()["reason"] == "not-an-operator"
    r = await api.client.get(f"/v1/dashboard/devices/{far}", headers=rider)
    assert r.status_code == 403 and r.json()["reason"] == "not-an-operator"


async def test_users_of_a_login_device(api: Api) -> None:
    for email in ("alice@example.com", "bob@example.com"):
        r = await api.client.post(
            "/v1/auth/login",
            json={
                "email": email,
                "password": api.demo.passwords[email],
                "device": {"id": "phone-42", "os": "android"},
            },
        )
        assert r.status_code == 200, r.text
    await api.login("alice@example.com")  # another login, no device
    operator = await api.login(OPERATOR)
    r = await api.client.get("/v1/dashboard/app-devices/phone-42/users", headers=operator)
    assert r.status_code == 200, r.text
    users = r.json()["data"]
    assert sorted(u["email"] for u in users) == ["alice@example.com", "bob@example.com"]
    assert all(u["last_login_at"] for u in users)
    r = await api.client.get("/v1/dashboard/app-devices/phone-7/users", headers=operator)
    assert r.status_code == 200 and r.json()["data"] == []
    r = await api.client.get("/v1/dashboard/app-devices/phone-42/users", headers=await api.login())
    assert r.status_code == 403
