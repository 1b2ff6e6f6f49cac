"""The firmware campaign journey, end to end (issue 18).

Real parts only: Mosquitto and PostgreSQL from the harness, ingest on the shared
subscription, the API under uvicorn serving the images (reached through a relay: the
manifest's URL is fixed at upload time, the API's port only when it starts), the campaign
runner beside ingest as the ingest process runs it, and the REAL agents on their simulators:
stations st-0001..3 in-process on the e2e City's rigs, st-0004 as an OS process (its
``__main__``, so a power cut is a SIGKILL and a restart is a new process), and three vehicle
controllers. Nothing is faked at the wire.

The journey: an operator uploads a mainboard image over HTTP and starts a campaign over the
four stations in two waves — the canary confirms (the registry says the new version), the
second wave meets a new image failing its self-check on st-0003 (the image says so, SPEC
§13.6) and a power cut mid-install on st-0004: both end on the old version, online, the
failure and the rollback reported (alerts, webhook events), and the campaign stops itself
past its error threshold; a rider rents at a station meanwhile. Then the vehicle controllers
take theirs in two waves; a tampered image and a tampered manifest are refused before
anything is written to a slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gzip
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any

import cbor2
import pytest
from sqlalchemy import select

from kickstand.cloud.alerts.engine import AlertEngine
from kickstand.cloud.alerts.models import FleetAlert
from kickstand.cloud.alerts.types import AlertType
from kickstand.cloud.commands import load_signer
from kickstand.cloud.firmware.keys import create_key
from kickstand.cloud.firmware.models import FirmwareImage
from kickstand.cloud.firmware.runner import CampaignRunner
from kickstand.cloud.models import Cluster, Device, Station, User, UserRole
from kickstand.cloud.outbox import OutboxEvent
from kickstand.cloud.security import create_access_token
from kickstand.edge.core.firmware.image import build_image
from kickstand.edge.core.firmware.slots import Slots
from kickstand.protocol.firmware import decode_manifest, encode_manifest
from kickstand.protocol.signing import public_key_bytes
from kickstand.protocol.v1.enums import RejectReason, ResultStatus
from kickstand.protocol.v1.messages import FirmwareUpdate
from kickstand.simulators.firmware import CuttingRelay
from kickstand.simulators.station.sim import FAST, SimulatedStation
from kickstand.simulators.vehicle import VehicleFleet
from kickstand.testing import MosquittoService, PostgresServer
from tests.e2e.city import City, eventually, seeded_city

pytestmark = [pytest.mark.slow, pytest.mark.mqtt, pytest.mark.postgres]
log = logging.getLogger("tests.e2e.firmware")

OPERATOR = ("operator@example.com", "operator-demo-1")
ALICE = ("alice@example.com", "alice-demo-1")
STATIONS = ["st-0001", "st-0002", "st-0003", "st-0004"]
VEHICLES = ["LY0010", "LY0011", "LY0012"]  # docked at st-0004, spots 1-3
MAINBOARD = "station-mainboard"
CONTROLLER = "vehicle-controller:KS-VC2"  # the simulated controllers' hardware
OLD_STATION, NEW_STATION = "st-1.0.0", "st-2.0.0"
OLD_VEHICLE, NEW_VEHICLE = "vh-1.0.0", "vh-2.0.0"
TRIAL_S = 20.0
# The agents' timings for a test (fast links), polling a little slower than the rigs' FAST:
# seven agents share this process's loop with the cloud.
AGENT: dict[str, Any] = {"poll_interval_s": 0.3, "firmware_trial_s": TRIAL_S}


# ---------------------------------------------------------------- st-0004: an OS process


@dataclasses.dataclass
class ProcessStation:
    """A simulated station whose agent runs as ``python -m kickstand.edge.station``, under
    a supervisor that starts it again when it dies (as the mainboard's does)."""

    sim: SimulatedStation
    config: Path
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0
    _task: asyncio.Task[None] | None = None
    _stopping: bool = False

    @property
    def state_dir(self) -> Path:
        return self.sim.workdir / "state"

    async def _supervise(self, out: IO[bytes]) -> None:
        with out:
            while not self._stopping:
                self.starts += 1
                self.proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "kickstand.edge.station", "--config", str(self.config),
                    stdout=out, stderr=out,
                )
                code = await self.proc.wait()
                log.info("station_process_ended code=%s starts=%d", code, self.starts)

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(open(self.log_path, "ab")))

    async def stop(self) -> None:
        self._stopping = True
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=10)


class PowerCut:
    """Cuts the power (SIGKILL) of a station process once, the moment its update reaches
    INSTALLING: the note the library writes (fsynced) before it unpacks the image into the
    inactive slot. A thread, so the cut does not wait for the test's busy event loop."""

    def __init__(self, station: ProcessStation) -> None:
        self.station = station
        self.note = station.state_dir / "slots" / "update.json"
        self.cut_at: float | None = None
        self.delay_s: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                installing = json.loads(self.note.read_text()).get("stage") == "INSTALLING"
            except (OSError, ValueError):
                installing = False
            proc = self.station.proc
            if installing and proc is not None:
                os.kill(proc.pid, signal.SIGKILL)
                self.cut_at = time.monotonic()
                # How long after the note the cut came (the unpack takes ~200 ms).
                with contextlib.suppress(OSError):
                    self.delay_s = time.time() - self.note.stat().st_mtime
                return
            time.sleep(0.001)

    @contextlib.contextmanager
    def armed(self) -> Iterator[PowerCut]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(5)


# ---------------------------------------------------------------- helpers


@dataclasses.dataclass
class Journey:
    city: City
    operator: dict[str, str]
    admin: dict[str, str]
    network_id: int
    store: Path

    async def upload(self, image: bytes, target: str, version: str) -> dict[str, Any]:
        r = await self.city.client().post(
            "/v1/dashboard/firmware/images",
            params={"target": target, "version": version},
            content=image,
            headers={**self.admin, "Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()["data"]
        return data

    async def campaign(self, image_id: int, devices: list[str], **more: Any) -> int:
        body = {
            "name": f"journey {uuid.uuid4().hex[:6]}",
            "network_id": self.network_id,
            "image_id": image_id,
            "selection": {"device_ids": devices},
            "device_timeout_s": 60,
            "start": True,
            **more,
        }
        r = await self.city.client().post(
            "/v1/dashboard/firmware/campaigns", json=body, headers=self.operator
        )
        assert r.status_code == 200, r.text
        campaign_id: int = r.json()["data"]["id"]
        return campaign_id

    async def state_of(self, campaign_id: int) -> dict[str, Any]:
        r = await self.city.client().get(
            f"/v1/dashboard/firmware/campaigns/{campaign_id}", headers=self.operator
        )
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()["data"]
        return data

    async def devices_of(self, campaign_id: int) -> dict[str, dict[str, Any]]:
        r = await self.city.client().get(
            f"/v1/dashboard/firmware/campaigns/{campaign_id}/devices",
            params={"page_size": 50},
            headers=self.operator,
        )
        assert r.status_code == 200, r.text
        return {d["device_id"]: d for d in r.json()["data"]}

    async def until(self, campaign_id: int, state: str, wait_s: float) -> dict[str, Any]:
        async def reached() -> bool:
            return (await self.state_of(campaign_id))["state"] == state

        try:
            await eventually(reached, wait_s)
        except AssertionError:
            raise AssertionError(
                f"campaign {campaign_id} not {state}: {await self.state_of(campaign_id)} "
                f"{await self.devices_of(campaign_id)}"
            ) from None
        return await self.state_of(campaign_id)

    async def registry(self) -> dict[str, tuple[str | None, bool]]:
        assert self.city.sessionmaker is not None
        async with self.city.sessionmaker() as s:
            rows = await s.execute(select(Device.device_id, Device.firmware_version,
                                          Device.online))
            return {
                str(d): (None if v is None else str(v), bool(online))
                for d, v, online in rows.all()
            }


def _station_image(version: str) -> bytes:
    """A mainboard image (SPEC §13.6) whose new slot fails its self-check on st-0003 only;
    gzip-compressed, 32 KiB on the wire and 32 MiB unpacked, so the install (the unpack into
    the inactive slot) lasts long enough for a power cut to land in it."""
    tar = build_image(MAINBOARD, version, {"agent/VERSION": version.encode()},
                      self_check_fails=("st-0003",), pad_to=32 << 20)
    return gzip.compress(tar, 6)


def _tamper_manifest(signed: bytes) -> bytes:
    """The cloud's signed manifest with its URL pointed elsewhere, the signature kept."""
    body, signature, kid = cbor2.loads(signed)
    manifest = dataclasses.replace(decode_manifest(body), url="http://evil.example/image")
    return cbor2.dumps([encode_manifest(manifest), signature, kid])


# ---------------------------------------------------------------- the journey


@pytest.fixture
async def journey(
    mosquitto: MosquittoService, pg_server: PostgresServer, pg_template: str, tmp_path: Path
) -> AsyncIterator[tuple[Journey, ProcessStation, VehicleFleet]]:
    key = create_key(tmp_path / "firmware-signing.key")
    firmware_keys = [public_key_bytes(key).hex()]
    store = tmp_path / "images"
    async with contextlib.AsyncExitStack() as stack:
        relay = await stack.enter_async_context(CuttingRelay(("127.0.0.1", 9)))
        city = await stack.enter_async_context(seeded_city(
            mosquitto, pg_server, pg_template, tmp_path / "city",
            stations={
                "st-0001": {1: "LY0001", 2: "LY0002", 3: "LY0003"},
                "st-0002": {1: "LY0004", 2: "LY0005", 3: "LY0006"},
                "st-0003": {1: "LY0007", 2: "LY0008", 3: "LY0009"},
            },
            settings={
                "FIRMWARE_SIGNING_KEY_FILE": tmp_path / "firmware-signing.key",
                "FIRMWARE_STORE_DIR": store,
                "FIRMWARE_BASE_URL": relay.base_url,
            },
            rig_overrides={
                **AGENT, "firmware": OLD_STATION, "firmware_public_keys": firmware_keys,
            },
        ))
        relay.upstream = ("127.0.0.1", int(str(city.client().base_url).rsplit(":", 1)[1]))
        command_keys = [load_signer(city.settings).public_key.hex()]

        # st-0004: the real agent as an OS process on a simulated station.
        sim = SimulatedStation("st-0004", 6, workdir=tmp_path / "st-0004", nfc=False)
        for spot, serial in enumerate(VEHICLES, start=1):
            sim.dock(spot, serial)
        await sim.start()
        stack.push_async_callback(sim.stop)
        (tmp_path / "st-0004").mkdir(exist_ok=True)
        config = sim.write_config(
            tmp_path / "st-0004" / "station.toml", city.settings.MQTT_URL or "", command_keys,
            **{**FAST, **AGENT, "firmware": OLD_STATION, "firmware_public_keys": firmware_keys},
        )
        station = ProcessStation(sim, config, tmp_path / "st-0004" / "agent.log")
        station.start()
        stack.push_async_callback(station.stop)

        fleet = await stack.enter_async_context(VehicleFleet(
            tmp_path / "vehicles", mqtt_host=mosquitto.host, mqtt_port=mosquitto.port,
            command_keys=command_keys, gps_interval_s=1.0,
            agent_overrides={**FAST, "firmware": OLD_VEHICLE, "firmware_trial_s": TRIAL_S,
                             "firmware_public_keys": firmware_keys},
        ))
        for serial in VEHICLES:
            await fleet.add(serial)

        assert city.sessionmaker is not None
        async with city.sessionmaker() as s, s.begin():
            admin = User(email="fw-admin@example.com", password_hash="-", role=UserRole.ADMIN)
            s.add(admin)
            await s.flush()
            admin_token = create_access_token(city.settings, admin.id, [], 0)
            network_id = await s.scalar(
                select(Cluster.network_id)
                .join(Station, Station.cluster_id == Cluster.id)
                .where(Station.device_id == "st-0001")
            )
        assert network_id is not None
        journey = Journey(city, await city.login(*OPERATOR),
                          {"Authorization": f"Bearer {admin_token}"}, network_id, store)
        await fleet.wait_online(20)

        async def all_online() -> bool:
            registry = await journey.registry()
            return all(registry[d][1] for d in [*STATIONS, *(f"vh-{v}" for v in VEHICLES)])

        await eventually(all_online, 30)
        # The runner beside ingest, as the ingest process runs it (every 0.5 s here).
        await stack.enter_async_context(
            CampaignRunner(city.sessionmaker, city.gateway, alerts=AlertEngine(), every_s=0.5)
        )
        try:
            yield journey, station, fleet
        finally:
            if station.log_path.exists():
                log.info("st-0004 agent log tail:\n%s",
                         station.log_path.read_text()[-3000:])


async def test_firmware_campaign_journey(
    journey: tuple[Journey, ProcessStation, VehicleFleet],
) -> None:
    j, st4, fleet = journey
    city = j.city
    started = time.monotonic()

    # ---- the mainboards: canary, then a wave with a self-check failure and a power cut
    image = await j.upload(_station_image(NEW_STATION), MAINBOARD, NEW_STATION)
    with PowerCut(st4).armed() as cut:
        cid = await j.campaign(image["id"], STATIONS, wave_sizes=[1, 3], error_threshold_pct=50)

        async def canary_confirmed() -> bool:
            return (await j.state_of(cid))["confirmed"] >= 1

        await eventually(canary_confirmed, 30)
        devices = await j.devices_of(cid)
        assert devices["st-0001"]["state"] == "confirmed", devices
        assert (await j.registry())["st-0001"][0] == NEW_STATION
        assert city.rigs["st-0001"].agent is not None
        assert city.rigs["st-0001"].agent.firmware_version == NEW_STATION

        # A rider rents at a station while the campaign updates the others.
        async def second_wave() -> bool:
            return (await j.state_of(cid))["current_wave"] == 2

        await eventually(second_wave, 10)
        rider = await city.login(*ALICE)
        r = await city.client().post(
            "/v1/rents", json={"spot_id": await city.spot_id("st-0001", 1)},
            headers={**rider, "Idempotency-Key": f"fw-{uuid.uuid4()}"},
        )
        assert r.status_code == 201, r.text
        assert city.rigs["st-0001"].sim.boards[1].lock.name == "OPEN"

        stopped = await j.until(cid, "stopped", 40)
    assert cut.cut_at is not None, "the power cut never found st-0004 installing"
    log.info("power cut %.3f s after the INSTALLING note", cut.delay_s or -1)
    assert stopped["reason"].startswith("wave 2:"), stopped
    devices = await j.devices_of(cid)
    assert devices["st-0003"]["state"] == "rolled-back", devices["st-0003"]
    assert "self-check" in devices["st-0003"]["reason"]
    assert devices["st-0004"]["state"] == "failed", devices["st-0004"]
    assert "interrupted by a restart while installing" in devices["st-0004"]["reason"]

    # Both on the old version and online again; st-0004 in a new process.
    async def back_online() -> bool:
        registry = await j.registry()
        return all(registry[d][1] for d in ("st-0003", "st-0004"))

    await eventually(back_online, 20)
    registry = await j.registry()
    assert registry["st-0003"][0] != NEW_STATION and registry["st-0004"][0] != NEW_STATION
    rig3 = city.rigs["st-0003"]
    assert rig3.agent is not None and rig3.agent.firmware_version == OLD_STATION
    assert rig3.agent.link.accepted.is_set()
    assert st4.starts == 2  # killed once, started again by its supervisor
    for rig_dir in (city.workdir / "st-0003" / "state", st4.state_dir):
        record = Slots(rig_dir).record()
        assert (record.active, record.pending, record.reports) == ("a", None, []), rig_dir

    # The failure and the rollback are reported: fleet alerts, webhook events.
    assert city.sessionmaker is not None
    async with city.sessionmaker() as s:
        alerts = set((await s.execute(select(FleetAlert.alert_type, FleetAlert.device_id)))
                     .all())
        events = set((await s.execute(
            select(OutboxEvent.topic, OutboxEvent.resource_id)
            .where(OutboxEvent.topic.like("firmware%"))
        )).all())
    assert (AlertType.FIRMWARE_ROLLED_BACK, "st-0003") in alerts
    assert (AlertType.FIRMWARE_UPDATE_FAILED, "st-0004") in alerts
    assert ("firmware_update.rolled_back", "st-0003") in events
    assert ("firmware_update.failed", "st-0004") in events
    assert ("firmware_update.confirmed", "st-0001") in events
    assert ("firmware_campaign.stopped", str(cid)) in events

    # ---- the vehicle controllers: canary then the rest, all confirmed
    image = await j.upload(build_image(CONTROLLER, NEW_VEHICLE, {"agent/VERSION": b"2"}),
                           CONTROLLER, NEW_VEHICLE)
    controllers = [f"vh-{v}" for v in VEHICLES]
    cid = await j.campaign(image["id"], controllers, wave_sizes=[1, 2])
    done = await j.until(cid, "completed", 40)
    assert done["confirmed"] == 3, done
    registry = await j.registry()
    assert all(registry[d] == (NEW_VEHICLE, True) for d in controllers), registry
    for member in fleet:
        assert member.agent is not None and member.agent.firmware_version == NEW_VEHICLE

    # ---- a tampered image: the stored bytes changed after the manifest was signed
    vehicle = fleet["vh-LY0010"]
    assert vehicle.agent is not None
    slots = Slots(vehicle.agent.state_dir)
    before = slots.record()
    tampered = await j.upload(build_image(CONTROLLER, "vh-3.0.0"), CONTROLLER, "vh-3.0.0")
    blob = j.store / tampered["sha256"][:2] / tampered["sha256"]
    data = bytearray(blob.read_bytes())
    data[600] ^= 0xFF
    blob.write_bytes(bytes(data))
    cid = await j.campaign(tampered["id"], ["vh-LY0010"])
    await j.until(cid, "stopped", 20)
    device = (await j.devices_of(cid))["vh-LY0010"]
    assert (device["state"], device["stage"]) == ("failed", "verify_failed"), device
    assert slots.record() == before  # nothing switched
    inactive = slots.path(slots.inactive())
    assert not (inactive / "image.part").exists() and not (inactive / "root").exists()
    assert vehicle.agent.firmware_version == NEW_VEHICLE

    # ---- a tampered manifest: refused before anything is downloaded or written
    async with city.sessionmaker() as s:
        signed = await s.scalar(
            select(FirmwareImage.manifest).where(FirmwareImage.id == image["id"])
        )
    assert signed is not None
    other = fleet["vh-LY0011"]
    assert other.agent is not None
    other_slots = Slots(other.agent.state_dir)
    before = other_slots.record()
    assert city.gateway is not None
    reply = await city.gateway.send("vh-LY0011", FirmwareUpdate(_tamper_manifest(signed), 0))
    assert (reply.status, reply.reason) == (ResultStatus.REJECTED, RejectReason.BAD_SIGNATURE)
    assert other_slots.record() == before
    assert not (other_slots.base / "update.json").exists()
    assert not (other_slots.path(other_slots.inactive(before)) / "image.part").exists()

    log.info("firmware journey took %.1f s", time.monotonic() - started)
