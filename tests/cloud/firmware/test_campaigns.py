"""Campaigns through the real cloud: PostgreSQL, Mosquitto, the ingest worker, the MQTT
command gateway and the campaign runner. Sixteen vehicle controllers are played at the
wire (FakeDevice): each verifies the signed FirmwareUpdate and its manifest with the keys
it was provisioned with, downloads the image from the API, and reports every stage with
FirmwareStatus as a device does — or a fault (a rollback after a failed self-check, an
install cut by a power loss)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from sqlalchemy import select

from kickstand.cloud.alerts.engine import AlertEngine
from kickstand.cloud.alerts.models import FleetAlert
from kickstand.cloud.alerts.types import AlertType
from kickstand.cloud.commands import MqttCommandGateway, trusted_keys
from kickstand.cloud.firmware.runner import CampaignRunner
from kickstand.cloud.ingest.worker import IngestWorker
from kickstand.cloud.models import Device, Rent, RentKind, RentStatus, Spot, Station
from kickstand.cloud.outbox import OutboxEvent
from kickstand.protocol.firmware import verify_manifest
from kickstand.protocol.signing import CommandVerifier, MemoryReplayGuard
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import enums as pe
from kickstand.protocol.v1 import messages as m
from kickstand.testing import MosquittoService, PostgresServer
from tests.cloud.firmware.conftest import Fw, open_fw
from tests.cloud.ingest.fakes import FakeDevice, eventually, unique

pytestmark = [pytest.mark.mqtt, pytest.mark.postgres]
SERIALS = [f"LY{n:04d}" for n in range(1, 13)] + [f"LYF{n:03d}" for n in range(1, 5)]
STATIONS = ["st-0001", "st-0002", "st-0003", "st-0004"]
IMAGE = os.urandom(50_000)
STAGES = (
    pe.FirmwareState.DOWNLOADED,
    pe.FirmwareState.VERIFYING,
    pe.FirmwareState.VERIFIED,
    pe.FirmwareState.INSTALLING,
    pe.FirmwareState.INSTALLED,
    pe.FirmwareState.REBOOTING,
)


@dataclass
class Vehicle:
    """A vehicle controller at the wire, with the fault it is given (None: healthy)."""

    device: FakeDevice
    verifier: CommandVerifier
    fw: Fw
    fault: str | None = None
    updates: list[str] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def on_command(self, payload: bytes) -> None:
        envelope = self.verifier.verify(payload)
        command = envelope.command
        if not isinstance(command, m.FirmwareUpdate):  # a station's authorization list
            return
        if self.fault == "silent":  # took it, then nothing: no progress ever
            return
        if self.fault == "busy-once":
            self.fault = None
            busy = m.CommandResult(
                envelope.command_id, pe.ResultStatus.REJECTED, pe.RejectReason.BUSY, "syncing"
            )
            await self.device.send(busy)
            return
        if self.fault == "refuse":
            result = m.CommandResult(
                envelope.command_id,
                pe.ResultStatus.REJECTED,
                pe.RejectReason.UNKNOWN_KEY,
                "firmware key not trusted",
            )
            await self.device.send(result)
            return
        task = asyncio.create_task(self.install(command))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def install(self, command: m.FirmwareUpdate) -> None:
        spot = command.spot

        async def status(state: pe.FirmwareState, version: str, **more: Any) -> None:
            await self.device.send(m.FirmwareStatus(state, version, spot, **more))

        # Nothing is fetched before the manifest verifies with the provisioned key.
        manifest = verify_manifest(command.manifest, [self.fw.public_key])
        self.updates.append(
            manifest.version if not command.spot else f"{manifest.version}@{command.spot}"
        )
        image = await self.fw.client.get(manifest.url.removeprefix("http://kickstand.test"))
        assert hashlib.sha256(image.content).digest() == manifest.sha256
        await status(pe.FirmwareState.DOWNLOADING, manifest.version, bytes_done=len(image.content))
        # A spot board is staged over the bus: INSTALLED is its last stage (no trial boot).
        for stage in STAGES if spot == 0 else STAGES[:5]:
            if self.fault == "power-cut" and stage is pe.FirmwareState.INSTALLED:
                await status(
                    pe.FirmwareState.INSTALL_FAILED,
                    manifest.version,
                    reason="power cut mid-install",
                )
                return
            await status(stage, manifest.version)
        if spot:
            return
        if self.fault == "self-check":
            await status(
                pe.FirmwareState.ROLLED_BACK, manifest.version, reason="self-check failed: gps"
            )
            return
        await status(pe.FirmwareState.CONFIRMED, manifest.version)


@dataclass
class Env:
    fw: Fw
    runner: CampaignRunner
    vehicles: dict[str, Vehicle]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(
    mosquitto: MosquittoService,
    pg_server: PostgresServer,
    pg_template: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Env]:
    database = pg_server.new_database(template=pg_template)
    tmp = tmp_path_factory.mktemp("firmware")
    try:
        async for fw in open_fw(database.url, tmp, MQTT_URL=mosquitto.url):
            async with (
                MqttCommandGateway.from_settings(fw.settings, fw.sessionmaker) as gateway,
                IngestWorker(
                    mosquitto.url,
                    fw.sessionmaker,
                    client_id=unique("ingest-"),
                    group=unique("g"),
                    batch_max=50,
                    alerts=AlertEngine(),
                ),
            ):
                keys = trusted_keys(gateway.signer)
                vehicles: dict[str, Vehicle] = {}
                async with asyncio.TaskGroup() as tg:
                    for serial in SERIALS:
                        device = FakeDevice(mosquitto.host, mosquitto.port, f"vh-{serial}")
                        verifier = CommandVerifier(device.device_id, keys, MemoryReplayGuard())
                        vehicles[serial] = Vehicle(device, verifier, fw)
                        device.on_command = vehicles[serial].on_command
                        tg.create_task(device.__aenter__())
                    for station in STATIONS:
                        device = FakeDevice(mosquitto.host, mosquitto.port, station)
                        verifier = CommandVerifier(station, keys, MemoryReplayGuard())
                        vehicles[station] = Vehicle(device, verifier, fw)
                        device.on_command = vehicles[station].on_command
                        tg.create_task(device.__aenter__())
                for serial, v in vehicles.items():
                    birth = (
                        m.Birth(pe.DeviceKind.STATION, "1.0.0", "mb1")
                        if serial.startswith("st-")
                        else m.Birth(pe.DeviceKind.VEHICLE, "1.0.0", "vc1", serial_number=serial)
                    )
                    await v.device.send(birth)
                for v in vehicles.values():
                    reply = await v.device.expect(Channel.BOOT, 15)
                    assert reply.status is pe.BootStatus.ACCEPTED
                # Stepped by the tests (its own loop would race their checks).
                runner = CampaignRunner(fw.sessionmaker, gateway, alerts=AlertEngine())
                try:
                    yield Env(fw, runner, vehicles)
                finally:
                    for v in vehicles.values():
                        await v.device.__aexit__(None, None, None)
    finally:
        pg_server.drop_database(database.name)


async def _campaign(env: Env, campaign_id: int) -> dict[str, Any]:
    r = await env.fw.client.get(
        f"/v1/dashboard/firmware/campaigns/{campaign_id}", headers=env.fw.operator
    )
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


async def _settled(env: Env, campaign_id: int, wait_s: float = 20.0) -> dict[str, Any]:
    """The campaign once nothing it sent is under way any more."""

    async def done() -> bool:
        c = await _campaign(env, campaign_id)
        return c["in_progress"] == 0

    await eventually(done, wait_s)
    return await _campaign(env, campaign_id)


async def _create(
    env: Env,
    version: str,
    serials: list[str],
    target: str = "vehicle-controller:vc1",
    **more: Any,
) -> dict[str, Any]:
    image = await env.fw.upload(IMAGE + version.encode(), target=target, version=version)
    assert image.status_code == 200, image.text
    body = {
        "name": f"controllers {version}",
        "network_id": env.fw.demo.network_id,
        "image_id": image.json()["data"]["id"],
        "selection": {"device_ids": [s if s.startswith("st-") else f"vh-{s}" for s in serials]},
        **more,
    }
    r = await env.fw.client.post(
        "/v1/dashboard/firmware/campaigns", json=body, headers=env.fw.operator
    )
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


@pytest.mark.asyncio(loop_scope="module")
async def test_canary_succeeds_then_failures_stop_the_campaign(env: Env) -> None:
    serials = SERIALS[:10]
    env.vehicles["LY0005"].fault = "self-check"
    env.vehicles["LY0006"].fault = "power-cut"
    campaign = await _create(
        env, "2.0.0", serials, wave_sizes=[2, 8], error_threshold_pct=25, start=True
    )
    cid = campaign["id"]
    assert campaign["state"] == "running" and campaign["wave_sizes"] == [2, 8]

    assert await env.runner.step() == 2  # the canary wave only
    canary = await _settled(env, cid)
    assert (canary["confirmed"], canary["failed"], canary["pending"]) == (2, 0, 8)
    assert [env.vehicles[s].updates for s in serials[:2]] == [["2.0.0"], ["2.0.0"]]
    assert all(env.vehicles[s].updates == [] for s in serials[2:])

    assert await env.runner.step() == 8  # the canary passed: the next wave goes out
    second = await _settled(env, cid)
    assert (second["confirmed"], second["failed"]) == (8, 2)
    await env.runner.step()
    stopped = await _campaign(env, cid)
    assert stopped["state"] == "stopped", stopped
    assert stopped["reason"].startswith("wave 2: 2 of 8 devices failed or rolled back")

    devices = await env.fw.client.get(
        f"/v1/dashboard/firmware/campaigns/{cid}/devices",
        params={"page_size": 50},
        headers=env.fw.operator,
    )
    by_device = {d["device_id"]: d for d in devices.json()["data"]}
    assert by_device["vh-LY0005"]["state"] == "rolled-back"
    assert by_device["vh-LY0005"]["reason"] == "self-check failed: gps"
    assert by_device["vh-LY0006"]["state"] == "failed"
    assert by_device["vh-LY0006"]["stage"] == "install_failed"
    assert by_device["vh-LY0001"]["bytes_done"] == len(IMAGE) + 5
    async with env.fw.sessionmaker() as s:
        versions = {
            d: v for d, v in await s.execute(select(Device.device_id, Device.firmware_version))
        }
        alerts = {
            (a.alert_type, a.device_id)
            for a in (await s.scalars(select(FleetAlert))).all()
            if a.alert_type in (AlertType.FIRMWARE_ROLLED_BACK, AlertType.FIRMWARE_UPDATE_FAILED)
        }
        topics = [
            e.topic
            for e in (
                await s.scalars(
                    select(OutboxEvent)
                    .where(OutboxEvent.topic.like("firmware%"))
                    .order_by(OutboxEvent.id)
                )
            ).all()
        ]
    assert versions["vh-LY0001"] == "2.0.0" and versions["vh-LY0005"] == "1.0.0"
    assert alerts == {
        (AlertType.FIRMWARE_ROLLED_BACK, "vh-LY0005"),
        (AlertType.FIRMWARE_UPDATE_FAILED, "vh-LY0006"),
    }
    campaign_topics = [t for t in topics if t.startswith("firmware_campaign.")]
    assert campaign_topics == [
        "firmware_campaign.started",
        "firmware_campaign.wave_started",
        "firmware_campaign.wave_completed",
        "firmware_campaign.wave_started",
        "firmware_campaign.stopped",
    ]
    assert topics.count("firmware_update.confirmed") == 8
    assert topics.count("firmware_update.rolled_back") == 1
    assert topics.count("firmware_update.failed") == 1
    env.vehicles["LY0005"].fault = env.vehicles["LY0006"].fault = None


@pytest.mark.asyncio(loop_scope="module")
async def test_window_pause_resume_rent_and_cancel(env: Env) -> None:
    serials = ["LY0011", "LY0012", "LYF001", "LYF002"]
    campaign = await _create(env, "2.1.0", serials, wave_sizes=[1, 3], start=True)
    cid = campaign["id"]
    window = f"/v1/dashboard/firmware/networks/{env.fw.demo.network_id}/window"
    # Riding hours now: the window opens in two hours, local time.
    local = datetime.now(ZoneInfo("Europe/Paris"))
    later = {
        "start_local": (local + timedelta(hours=2)).strftime("%H:%M"),
        "end_local": (local + timedelta(hours=3)).strftime("%H:%M"),
    }
    r = await env.fw.client.put(window, json=later, headers=env.fw.operator)
    assert r.status_code == 200, r.text
    assert (await env.fw.client.put(window, json=later, headers=env.fw.other)).status_code == 403
    assert await env.runner.step() == 0
    assert env.runner.counters["held_window"] >= 1
    assert (await env.fw.client.delete(window, headers=env.fw.operator)).status_code == 200

    path = f"/v1/dashboard/firmware/campaigns/{cid}"
    paused = await env.fw.client.post(f"{path}/pause", headers=env.fw.operator)
    assert paused.json()["data"]["state"] == "paused"
    assert await env.runner.step() == 0
    again = await env.fw.client.post(f"{path}/pause", headers=env.fw.operator)
    assert again.status_code == 409 and again.json()["reason"] == "campaign-paused"
    resumed = await env.fw.client.post(f"{path}/resume", headers=env.fw.operator)
    assert resumed.json()["data"]["state"] == "running"
    assert await env.runner.step() == 1
    assert (await _settled(env, cid))["confirmed"] == 1

    # A rider is unlocking LY0012: its controller is not updated meanwhile.
    async with env.fw.sessionmaker() as s, s.begin():
        s.add(
            Rent(
                user_id=env.fw.demo.user_ids["alice@example.com"],
                vehicle_id=env.fw.demo.vehicle_ids["LY0012"],
                kind=RentKind.APP_VEHICLE,
                status=RentStatus.PENDING,
                created_at=datetime.now(UTC),
            )
        )
    assert await env.runner.step() == 2
    assert env.vehicles["LY0012"].updates == []
    cancelled = await env.fw.client.post(f"{path}/cancel", headers=env.fw.operator)
    assert cancelled.json()["data"]["state"] == "cancelled"
    assert await env.runner.step() == 0
    final = await _settled(env, cid)
    assert (final["confirmed"], final["cancelled"]) == (3, 1)
    assert env.vehicles["LY0012"].updates == []


@pytest.mark.asyncio(loop_scope="module")
async def test_stations_one_spot_board_at_a_time_and_never_while_unlocking(env: Env) -> None:
    campaign = await _create(
        env, "3.0.0", ["st-0002"], target="spot-board:sb1", wave_sizes=[6], start=True
    )
    assert campaign["devices"] == 6  # one per spot board
    for _ in range(6):
        # The station keeps serving riders: never two of its spots at once.
        assert await env.runner.step() == 1
        await _settled(env, campaign["id"])
    await env.runner.step()
    done = await _campaign(env, campaign["id"])
    assert (done["state"], done["confirmed"]) == ("completed", 6)
    assert env.vehicles["st-0002"].updates == [f"3.0.0@{n}" for n in range(1, 7)]

    # A rider unlocks spot 1 of st-0001: its mainboard is held, st-0003's goes.
    async with env.fw.sessionmaker() as s, s.begin():
        spot_id = await s.scalar(
            select(Spot.id)
            .join(Station, Station.id == Spot.station_id)
            .where(Station.device_id == "st-0001", Spot.displayed_number == 1)
        )
        s.add(
            Rent(
                user_id=env.fw.demo.user_ids["bob@example.com"],
                vehicle_id=env.fw.demo.vehicle_ids["LY0001"],
                spot_id=spot_id,
                kind=RentKind.APP_SPOT,
                status=RentStatus.UNLOCKED,
                created_at=datetime.now(UTC),
            )
        )
    mainboards = await _create(
        env,
        "3.1.0",
        ["st-0001", "st-0003"],
        target="station-mainboard",
        start=True,
        wave_sizes=[2],
    )
    assert await env.runner.step() == 1
    await _settled(env, mainboards["id"])
    assert env.vehicles["st-0001"].updates == [] and env.vehicles["st-0003"].updates == ["3.1.0"]
    async with env.fw.sessionmaker() as s:
        version = await s.scalar(
            select(Device.firmware_version).where(Device.device_id == "st-0003")
        )
    assert version == "3.1.0"


@pytest.mark.asyncio(loop_scope="module")
async def test_a_refused_update_and_a_silent_device_fail(env: Env) -> None:
    env.vehicles["LYF003"].fault = "silent"
    env.vehicles["LYF004"].fault = "refuse"
    campaign = await _create(
        env,
        "4.0.0",
        ["LYF003", "LYF004"],
        wave_sizes=[2],
        error_threshold_pct=100,
        device_timeout_s=60,
        start=True,
    )
    cid = campaign["id"]
    assert await env.runner.step() == 2

    async def refused() -> bool:
        await env.runner.step()
        return (await _campaign(env, cid))["failed"] == 1

    await eventually(refused, 10)
    assert (await _campaign(env, cid))["in_progress"] == 1  # the silent one, within its time
    # A minute later: no progress from the silent one, it has failed too.
    real = env.runner.clock
    env.runner.clock = lambda: real() + timedelta(seconds=61)
    try:
        await env.runner.step()
    finally:
        env.runner.clock = real
    final = await _campaign(env, cid)
    assert final["state"] == "stopped" and final["failed"] == 2
    assert final["reason"] == "wave 1: 2 of 2 devices failed or rolled back (error threshold 100%)"
    devices = await env.fw.client.get(
        f"/v1/dashboard/firmware/campaigns/{cid}/devices", headers=env.fw.operator
    )
    reasons = {d["device_id"]: d["reason"] for d in devices.json()["data"]}
    assert reasons["vh-LYF003"] == "no progress for 60 s"
    assert reasons["vh-LYF004"].startswith("command rejected")
    async with env.fw.sessionmaker() as s:
        alerted = set(
            (
                await s.scalars(
                    select(FleetAlert.device_id).where(
                        FleetAlert.alert_type == AlertType.FIRMWARE_UPDATE_FAILED
                    )
                )
            ).all()
        )
    assert {"vh-LYF003", "vh-LYF004"} <= alerted


@pytest.mark.asyncio(loop_scope="module")
async def test_a_busy_device_is_sent_the_update_again(env: Env) -> None:
    env.vehicles["LY0011"].fault = "busy-once"
    campaign = await _create(env, "5.0.0", ["LY0011"], start=True)
    assert await env.runner.step() == 1
    retried = env.runner.counters["retried"]

    async def sent_again() -> bool:
        return await env.runner.step() == 1

    await eventually(sent_again, 10)
    assert env.runner.counters["retried"] == retried + 1
    assert (await _settled(env, campaign["id"]))["confirmed"] == 1
    assert env.vehicles["LY0011"].updates[-1] == "5.0.0"
