"""Fleet alerts on the harness PostgreSQL: through the ingest path, under concurrent
raisers, and through the FleetAlerts API (current, history, resolve, silence, escalate);
the alert events reach a webhook receiver on loopback, signed and in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import ScalarResult, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kickstand.cloud.alerts.engine import AlertEngine
from kickstand.cloud.alerts.models import FleetAlert
from kickstand.cloud.alerts.types import AlertState, AlertType
from kickstand.cloud.api import create_app
from kickstand.cloud.config import Settings
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.ingest.apply import BatchApplier, Inbound, IngestStats
from kickstand.cloud.migrations import upgrade
from kickstand.cloud.models import Network, OutboxEvent, Station, User, UserRole, Vehicle
from kickstand.cloud.security import create_access_token
from kickstand.cloud.seed import DemoRefs, operator_permissions, seed_demo
from kickstand.cloud.webhooks import service as webhooks
from kickstand.cloud.webhooks.delivery import DeliveryPolicy, WebhookWorker
from kickstand.cloud.webhooks.receiver import Receiver
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import enums as pe
from kickstand.protocol.v1 import messages as m
from kickstand.protocol.v1.enums import BatteryKind, DeviceState, LockCause, MotionKind
from kickstand.testing import PostgresServer

SECRET = "a-test-secret-that-is-long-enough-for-hs256-0123456789"
_seq = count(1)


class Env:
    def __init__(
        self,
        engine: AsyncEngine,
        maker: async_sessionmaker[AsyncSession],
        demo: DemoRefs,
        settings: Settings,
    ) -> None:
        self.engine = engine
        self.maker = maker
        self.demo = demo
        self.settings = settings


async def _migrate_and_seed(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
        async with create_sessionmaker(engine)() as session, session.begin():
            await seed_demo(session)
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def alerts_template(pg_server: PostgresServer) -> Iterator[str]:
    """A migrated, seeded database copied for each test (CREATE DATABASE … TEMPLATE)."""
    database = pg_server.new_database(suffix="alerts_template")
    asyncio.run(_migrate_and_seed(database.url))
    yield database.name
    pg_server.drop_database(database.name)


@pytest.fixture
async def env(
    pg_server: PostgresServer, alerts_template: str, tmp_path: Path
) -> AsyncIterator[Env]:
    database = pg_server.new_database(template=alerts_template)
    engine = create_engine(database.url, pool_size=10)
    maker = create_sessionmaker(engine)
    async with maker() as session, session.begin():
        demo = await seed_demo(session)  # nothing created: the references only
    settings = Settings(DATABASE_URL=database.url, JWT_SECRET=SECRET, VAR_DIR=tmp_path)
    try:
        yield Env(engine, maker, demo, settings)
    finally:
        await engine.dispose()
        pg_server.drop_database(database.name)


@pytest.fixture
async def api(env: Env) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(env.settings, engine=env.engine)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test/v1") as client:
        yield client


async def token_for(env: Env, email: str) -> dict[str, str]:
    async with env.maker() as session:
        user = await session.scalar(select(User).where(User.email == email))
    assert user is not None
    token = create_access_token(env.settings, user.id, user.permissions, user.token_generation)
    return {"Authorization": f"Bearer {token}"}


def inbound(device_id: str, channel: Channel, body: m.UpBody, boot_id: int = 7) -> Inbound:
    stamp = m.Stamp(boot_id=boot_id, seq=next(_seq), ts_ms=int(time.time() * 1000))
    return Inbound(device_id, channel, m.UpMessage(stamp, body))


async def open_alerts(env: Env) -> list[FleetAlert]:
    async with env.maker() as session:
        rows: ScalarResult[FleetAlert] = await session.scalars(
            select(FleetAlert).order_by(FleetAlert.id)
        )
        return list(rows)


async def test_ingest_path_raises_counts_and_stops_and_webhooks_follow(env: Env) -> None:
    st = env.demo.station_device_ids[0]
    applier = BatchApplier(env.maker, IngestStats(), alerts=AlertEngine(), alert_sample_s=0)
    with Receiver() as receiver:
        async with env.maker() as session, session.begin():
            endpoint = await webhooks.create_endpoint(
                session, url=receiver.url, topics=["fleet_alert.*"]
            )
        receiver.secret = endpoint.secret
        # a flapping power sensor, fed batch by batch as the ingest workers do
        for _ in range(10):
            await applier.apply([inbound(st, Channel.EVENT, m.PowerCut())])
            await applier.apply([inbound(st, Channel.EVENT, m.PowerRestored())])
        await applier.apply([inbound(st, Channel.EVENT, m.PowerCut())])
        # a forced spot and its relock, in one batch
        await applier.apply(
            [
                inbound(st, Channel.EVENT, m.Unlocked(2, LockCause.MANUAL)),
                inbound(st, Channel.EVENT, m.Locked(2, LockCause.AUTO_RELOCK)),
            ]
        )
        alerts = await open_alerts(env)
        assert [(a.alert_type, a.state, a.occurrences) for a in alerts] == [
            (AlertType.STATION_POWER_CUT, AlertState.NEW, 11),
            (AlertType.UNEXPECTED_UNLOCK, AlertState.STOPPED, 1),
        ]
        async with env.maker() as session:
            n_events = await session.scalar(
                select(func.count())
                .select_from(OutboxEvent)
                .where(OutboxEvent.topic.like("fleet_alert.%"))
            )
        policy = DeliveryPolicy(poll_interval_s=0.02, allow_internal_targets=True)
        async with WebhookWorker(env.maker, policy) as worker:
            await worker.run_until_idle()
        got = receiver.accepted()
    assert len(got) == n_events and all(r.signature_ok for r in got)
    power = [r.envelope for r in got if r.envelope["data"]["alert_type"] == "station-power-cut"]
    # per resource (the alert), the events arrive in the order they happened
    assert [e["event"] for e in power[:3]] == [
        "fleet_alert.created",
        "fleet_alert.stopped",
        "fleet_alert.updated",
    ]
    assert [e["data"]["occurrences"] for e in power] == sorted(
        e["data"]["occurrences"] for e in power
    )


async def test_concurrent_raisers_make_one_alert(env: Env) -> None:
    st = env.demo.station_device_ids[1]
    engine = AlertEngine()
    now = datetime.now(UTC)

    async def raise_once() -> None:
        async with env.maker() as session, session.begin():
            await engine.on_device_message(
                session, st, m.UpMessage(m.Stamp(1, next(_seq), 0), m.AlarmTriggered("x")), now=now
            )

    await asyncio.gather(*(raise_once() for _ in range(8)))
    [alert] = await open_alerts(env)
    assert alert.alert_type == AlertType.STATION_ALARM_TRIGGERED and alert.occurrences == 8


async def _raise_some(env: Env) -> dict[str, int]:
    engine = AlertEngine()
    sts = env.demo.station_device_ids
    ids: dict[str, int] = {}
    async with env.maker() as session, session.begin():
        t0 = datetime.now(UTC) - timedelta(days=2)
        for i, (dev, body) in enumerate(
            [
                (sts[0], m.PowerCut()),
                (sts[1], m.SpotIdentifyFail(spot=3)),
                (sts[2], m.Temperature(spot=1, celsius=80.0, high=True)),
                (sts[3], m.AlarmTriggered("tamper")),
            ]
        ):
            [change] = await engine.on_device_message(
                session, dev, m.UpMessage(m.Stamp(1, i + 1, 0), body), now=t0 + timedelta(hours=i)
            )
            ids[change.alert.alert_type.value] = change.alert.id
    return ids


async def test_fleet_alerts_api(env: Env, api: httpx.AsyncClient) -> None:
    ids = await _raise_some(env)
    ops = await token_for(env, "operator@example.com")
    rider = await token_for(env, "alice@example.com")
    net = env.demo.network_id

    r = await api.get("/dashboard/fleet-alerts", params={"networks": str(net)}, headers=rider)
    assert r.status_code == 403 and r.json()["code"] != 0
    r = await api.get("/dashboard/fleet-alerts", params={"networks": "x"}, headers=ops)
    assert r.status_code == 422 and r.json()["code"] != 0

    r = await api.get("/dashboard/fleet-alerts", params={"networks": f"{net},999"}, headers=ops)
    assert r.status_code == 403 and r.json()["reason"] == "network-not-allowed"
    r = await api.get("/dashboard/fleet-alerts", params={"networks": str(net)}, headers=ops)
    body = r.json()
    assert r.status_code == 200 and body["code"] == 0
    assert {a["id"] for a in body["data"]} == set(ids.values())
    first = body["data"][0]
    assert first["alert_severity"] == "critical"  # most severe first
    assert {"alert_type", "state", "extra", "cluster_name", "creation_date"} <= set(first)

    # resolve several at once; silence one; escalate one
    r = await api.post(
        "/dashboard/fleet-alerts/resolve",
        json={"alert_ids": [ids["station-power-cut"], ids["spot-identify-fail"]]},
        headers=ops,
    )
    assert r.json() == {"code": 0}
    r = await api.post(
        "/dashboard/fleet-alerts/silence",
        json={"alert_ids": [ids["spot-high-temperature"]]},
        headers=ops,
    )
    assert r.json() == {"code": 0}
    r = await api.post(
        "/dashboard/fleet-alerts/escalate",
        json={"alert_ids": [ids["station-alarm-triggered"]], "note": "ticket OPS-12"},
        headers=ops,
    )
    assert r.json() == {"code": 0}
    r = await api.post(
        "/dashboard/fleet-alerts/silence",
        json={"alert_ids": [ids["station-power-cut"]]},
        headers=ops,
    )
    assert r.status_code == 409 and r.json()["reason"] == "alert-state"
    r = await api.post("/dashboard/fleet-alerts/resolve", json={"alert_ids": [999999]}, headers=ops)
    assert r.status_code == 404

    r = await api.get("/dashboard/fleet-alerts", params={"networks": str(net)}, headers=ops)
    [current] = r.json()["data"]  # silenced is hidden, resolved is gone
    assert current["id"] == ids["station-alarm-triggered"]
    assert current["state"] == "escalated" and current["note"] == "ticket OPS-12"

    # history: filters and keyset pages
    async def history(**params: Any) -> dict[str, Any]:
        res = await api.get(
            "/dashboard/fleet-alerts/history",
            params={"networks": str(net), **params},
            headers=ops,
        )
        assert res.status_code == 200, res.text
        out: dict[str, Any] = res.json()
        return out

    everything = await history()
    assert everything["total"] == 4
    assert [a["id"] for a in everything["data"]] == sorted(ids.values(), reverse=True)
    resolved = await history(resolved_at_min=datetime.now(UTC).date().isoformat())
    assert resolved["total"] == 2
    assert {a["id"] for a in resolved["data"]} == {
        ids["station-power-cut"],
        ids["spot-identify-fail"],
    }
    assert all(a["operator_email"] == "operator@example.com" for a in resolved["data"])
    by_email = await history(email="OPERATOR@", alert_severity="critical")
    assert {a["id"] for a in by_email["data"]} == {
        ids["station-power-cut"],
        ids["station-alarm-triggered"],
    }
    by_type = await history(alert_type="spot-high-temperature")
    assert [a["state"] for a in by_type["data"]] == ["silenced"]
    cluster = await history(cluster_name=first["cluster_name"][:4].lower())
    assert first["id"] in {a["id"] for a in cluster["data"]}

    # page_size >= 10 (seed 002); more alerts to page through
    more_engine = AlertEngine()
    async with env.maker() as session, session.begin():
        for spot in range(1, 15):
            await more_engine.on_device_message(
                session,
                env.demo.station_device_ids[0],
                m.UpMessage(m.Stamp(2, spot, 0), m.SpotIdentifyFail(spot=spot)),
            )
    seen: list[int] = []
    last: int | None = None
    while True:
        params: dict[str, Any] = {"page_size": 10, "primary_key_dir": "ASC"}
        if last is not None:
            params["last_primary_key"] = last
        page = await history(**params)
        seen += [a["id"] for a in page["data"]]
        last = page["next_primary_key"]
        if last is None:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 18
    # custom sort key with keyset pages: severity, then id
    sev: list[str] = []
    last = None
    while True:
        params = {"page_size": 10, "sort_by": "alert_severity", "sort_dir": "DESC"}
        if last is not None:
            params["last_primary_key"] = last
        page = await history(**params)
        sev += [a["alert_severity"] for a in page["data"]]
        last = page["next_primary_key"]
        if last is None:
            break
    rank = {"critical": 3, "high": 2, "low": 1}
    assert len(sev) == 18 and [rank[s] for s in sev] == sorted((rank[s] for s in sev), reverse=True)

    # every operator action is an outbox event (for webhooks)
    async with env.maker() as session:
        topics: list[str] = list(await session.scalars(select(OutboxEvent.topic)))
    assert topics.count("fleet_alert.resolved") == 2
    assert topics.count("fleet_alert.silenced") == 1
    assert topics.count("fleet_alert.escalated") == 1


async def test_ingest_path_vehicle_rules(env: Env) -> None:
    async with env.maker() as session:
        scooter = await session.scalar(select(Vehicle).where(Vehicle.serial_number == "LYF001"))
    assert scooter is not None and scooter.device_id is not None
    dev = scooter.device_id
    applier = BatchApplier(env.maker, IngestStats(), alerts=AlertEngine(), alert_sample_s=0)
    await applier.apply(
        [
            inbound(dev, Channel.EVENT, m.Motion(MotionKind.LIFTED)),
            inbound(dev, Channel.EVENT, m.BatteryLow(BatteryKind.INTERNAL, 12)),
            inbound(dev, Channel.TELEMETRY, m.Telemetry(lat=45.2, lon=4.2, battery_pct=12)),
        ]
    )
    raised = {a.alert_type: a for a in await open_alerts(env)}
    assert set(raised) >= {
        AlertType.VEHICLE_LIFTED,
        AlertType.LOCK_BATTERY_LOW,
        AlertType.VEHICLE_OUT_OF_NETWORK_AREA,
    }
    assert all(a.state == AlertState.NEW for a in raised.values())
    back = (scooter.latitude, scooter.longitude)
    await applier.apply(
        [
            inbound(dev, Channel.TELEMETRY, m.Telemetry(lat=back[0], lon=back[1], battery_pct=80)),
            inbound(dev, Channel.EVENT, m.Unlocked(0, LockCause.COMMAND, command_id=b"\x02" * 16)),
        ]
    )
    states = {a.alert_type: a.state for a in await open_alerts(env)}
    assert states[AlertType.VEHICLE_LIFTED] == AlertState.STOPPED
    assert states[AlertType.LOCK_BATTERY_LOW] == AlertState.STOPPED
    assert states[AlertType.VEHICLE_OUT_OF_NETWORK_AREA] == AlertState.STOPPED
    async with env.maker() as session:
        topics: list[str] = list(await session.scalars(select(OutboxEvent.topic)))
    assert "vehicule.battery.low" in topics


async def test_ingest_batch_looks_alerts_up_once_and_stays_right_through_its_events(
    env: Env,
) -> None:
    """A batch looks up the open alerts of its vehicles' statuses in one query; an event of
    the same batch then sees what the statuses changed (a stopped alert reopens)."""
    async with env.maker() as session:
        rows: ScalarResult[Vehicle] = await session.scalars(
            select(Vehicle).where(Vehicle.serial_number.in_(["LYF001", "LYF002"]))
        )
        devs = sorted(v.device_id for v in rows if v.device_id is not None)
    assert len(devs) == 2
    applier = BatchApplier(env.maker, IngestStats(), alerts=AlertEngine(), alert_sample_s=0)
    low = m.BatteryLow(BatteryKind.INTERNAL, 12)
    await applier.apply([inbound(devs[0], Channel.EVENT, low)])
    [first] = await open_alerts(env)
    full = m.Status(0, DeviceState.LOCKED, battery_pct=90)
    await applier.apply(
        [
            inbound(devs[0], Channel.STATUS, full),  # stops it
            inbound(devs[1], Channel.STATUS, full),  # nothing open
            inbound(devs[0], Channel.EVENT, low),  # within the flap window: reopens it
            inbound(devs[1], Channel.EVENT, low),  # a new one
        ]
    )
    alerts = {a.vehicle_id: a for a in await open_alerts(env)}
    assert len(alerts) == 2
    again = alerts[first.vehicle_id]
    assert again.id == first.id and again.state == AlertState.NEW and again.occurrences == 2
    assert all(a.state == AlertState.NEW for a in alerts.values())
    async with env.maker() as session:
        topics: list[str] = list(
            await session.scalars(
                select(OutboxEvent.topic)
                .where(OutboxEvent.resource_type == "fleet_alert")
                .order_by(OutboxEvent.id)
            )
        )
    assert topics == [
        "fleet_alert.created",
        "fleet_alert.stopped",
        "fleet_alert.updated",
        "fleet_alert.created",
    ]
    await applier.apply([inbound(dev, Channel.STATUS, full) for dev in devs])
    assert {a.state for a in await open_alerts(env)} == {AlertState.STOPPED}


# -- delivery alerts (issue 13) ----------------------------------------------------------

ALERTS_URL = "/dashboard/fleet-alerts"


def unstorable_status(seq: int) -> Inbound:
    body = m.Status(spot=1, state=pe.SpotState.EMPTY, fault="jam\x00")
    stamp = m.Stamp(3, seq, time.time_ns() // 1_000_000)
    return Inbound("st-0001", Channel.STATUS, m.UpMessage(stamp, body))


async def test_dead_letter_alert_is_its_networks_operators_to_see_and_resolve(
    env: Env, api: httpx.AsyncClient
) -> None:
    async with env.maker() as session, session.begin():
        other = Network(name="Elsewhere", currency="EUR", timezone="UTC")
        session.add(other)
        await session.flush()
        session.add(
            User(
                email="op2@example.com",
                password_hash="-",
                role=UserRole.OPERATOR,
                permissions=operator_permissions(other.id),
            )
        )
        other_id = other.id
        station_id = await session.scalar(select(Station.id).where(Station.device_id == "st-0001"))
    applier = BatchApplier(env.maker, IngestStats(), alerts=AlertEngine())
    await applier.apply([unstorable_status(1)])
    await applier.apply([unstorable_status(2)])

    net = env.demo.network_id
    ops = await token_for(env, "operator@example.com")
    r = await api.get(ALERTS_URL, params={"networks": str(net)}, headers=ops)
    assert r.status_code == 200, r.text
    [alert] = [a for a in r.json()["data"] if a["alert_type"] == "device-message-dead-lettered"]
    assert alert["station_id"] == station_id and alert["occurrences"] == 2
    assert alert["alert_severity"] == "high" and alert["state"] == "new"
    assert alert["extra"]["dead_letter_reason"] == "unstorable"

    theirs = await token_for(env, "op2@example.com")
    r = await api.get(ALERTS_URL, params={"networks": str(net)}, headers=theirs)
    assert r.status_code == 403 and r.json()["reason"] == "network-not-allowed"
    r = await api.get(ALERTS_URL, params={"networks": str(other_id)}, headers=theirs)
    assert r.status_code == 200 and r.json()["data"] == []

    # The operator resolves it (after replaying or discarding); a new letter opens a new one.
    r = await api.post(f"{ALERTS_URL}/resolve", json={"alert_ids": [alert["id"]]}, headers=ops)
    assert r.json() == {"code": 0}
    await applier.apply([unstorable_status(3)])
    r = await api.get(ALERTS_URL, params={"networks": str(net)}, headers=ops)
    [fresh] = [
        a for a in r.json()["data"] if a["alert_type"] == AlertType.DEVICE_MESSAGE_DEAD_LETTERED
    ]
    assert fresh["id"] != alert["id"] and fresh["occurrences"] == 1
