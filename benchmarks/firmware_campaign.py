"""Firmware campaign: one image to a fleet through the cloud, as it runs in production.

Real Mosquitto and PostgreSQL (kickstand.testing); the API (`python -m kickstand.cloud api`,
uvicorn) serves the image over HTTP; the ingest process (`python -m kickstand.cloud
ingest`) applies the devices' FirmwareStatus and runs the campaign runner, which sends the
signed FirmwareUpdate of each wave. The devices are ``--devices`` vehicle controllers, each a
:class:`~kickstand.simulators.firmware_device.SlotDevice` (the real device-side library:
manifest checks, Range-resume download into the inactive slot, install, restart, trial boot
confirmed once the cloud accepted the new boot) connected over MQTT as a device, in
``--procs`` child processes. Their downloads go through a relay with the simulator's cut
fault (:class:`~kickstand.simulators.firmware.CuttingRelay`, a bad mobile link): the first
``--cuts`` connections are closed after ``--cut-kb`` KiB (a resumed download may be cut
again; one that needs less is not), so the resume path is part of the figure.

Measured from the campaign's start (``POST …/campaigns`` with ``start``) until it is
completed: wall time; bytes the API served per device (read by the relay from the API, HTTP
headers included), against the image's size and against what the same cuts would have cost
without resume (every cut download from byte 0 again); the API process's RSS (psutil every
50 ms while it serves, and its kernel high-water mark VmHWM).

    .venv/bin/python benchmarks/firmware_campaign.py [--devices 200] [--image-kb 1024]
        [--procs 4] [--cuts 50] [--cut-kb 400] [--canary 10] [--growth 4]

Last line: ``firmware campaign s: X (devices: N, bytes/device: B)``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from unlock_latency import Children, wait_http, wait_line  # the same child-process habits

from kickstand.edge.core.firmware.errors import FirmwareError
from kickstand.edge.core.firmware.image import build_image
from kickstand.protocol import topics
from kickstand.protocol.errors import ProtocolError
from kickstand.protocol.signing import CommandVerifier, MemoryReplayGuard
from kickstand.protocol.topics import Channel
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1 import enums as pe
from kickstand.protocol.v1 import messages as m
from kickstand.simulators.firmware import CuttingRelay, Faults
from kickstand.simulators.firmware_device import Restart, SlotDevice

MODEL = "vc1"
TARGET = f"vehicle-controller:{MODEL}"
FACTORY = "1.0.0"
NEW = "2.0.0"
JWT = "firmware-campaign-bench-" + "x" * 40
#: Every vehicle reports now and then, so a device of a late wave is still online for the
#: runner (liveness counts the silence since its last message).
HEARTBEAT_S = 20.0
FINAL = ("completed", "stopped", "cancelled")


# ── the fleet (child processes) ───────────────────────────────────────────────────────


class FleetDevice:
    """One vehicle controller: a SlotDevice whose statuses go out over MQTT; each start
    (after REBOOTING) a new SlotDevice on the same state directory and a new boot."""

    def __init__(self, spec: dict[str, Any], serial: str, booted: Callable[[], None]) -> None:
        self.spec = spec
        self.serial = serial
        self.device_id = f"vh-{serial}"
        self.state_dir = Path(spec["workdir"]) / serial
        self.booted = booted
        keys = {bytes.fromhex(spec["command_kid"]): bytes.fromhex(spec["command_key"])}
        self.verifier = CommandVerifier(self.device_id, keys, MemoryReplayGuard())
        self.boot_id = 0
        self.seq = 0

    async def run(self) -> None:
        while True:
            with contextlib.suppress(Restart):
                await self._start()

    async def _start(self) -> None:
        self.boot_id += 1
        self.seq = 0
        outbox: asyncio.Queue[m.FirmwareStatus] = asyncio.Queue()
        device = SlotDevice(
            self.state_dir,
            target=TARGET,
            factory_version=FACTORY,
            trial_s=300.0,
            keys=[bytes.fromhex(self.spec["firmware_key"])],
            backoff_s=0.2,
            on_status=outbox.put_nowait,
        )
        client = aiomqtt.Client(
            self.spec["host"], self.spec["port"], identifier=self.device_id, clean_session=True
        )
        async with client:
            await client.subscribe(topics.device_subscriptions(self.device_id), qos=1)
            await self._send(client, m.Birth(pe.DeviceKind.VEHICLE, device.version, MODEL,
                                             serial_number=self.serial))
            restarted = asyncio.Event()
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._statuses(client, outbox))
                    tg.create_task(self._heartbeats(client))
                    tg.create_task(self._trial(device, restarted))
                    tg.create_task(self._commands(client, device, tg, restarted))
                    await restarted.wait()
                    # What the old image reported (REBOOTING, ROLLED_BACK) leaves first.
                    await outbox.join()
                    raise Restart
            except* Restart:
                pass
        raise Restart

    async def _send(self, client: aiomqtt.Client, body: Any) -> None:
        channel = codec.channel_of(body)
        seq = 0
        if channel in codec.SEQUENCED_CHANNELS:
            self.seq += 1
            seq = self.seq
        payload = codec.encode_up(m.Stamp(self.boot_id, seq, time.time_ns() // 1_000_000), body)
        await client.publish(topics.up(self.device_id, channel), payload, qos=1)

    async def _statuses(self, client: aiomqtt.Client, outbox: asyncio.Queue[m.FirmwareStatus],
                        ) -> None:
        while True:
            status = await outbox.get()
            await self._send(client, status)
            outbox.task_done()

    async def _heartbeats(self, client: aiomqtt.Client) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            await self._send(client, m.Heartbeat())

    async def _trial(self, device: SlotDevice, restarted: asyncio.Event) -> None:
        try:
            await device.trial()  # returns at once unless this start is a trial boot
        except Restart:
            restarted.set()

    async def _commands(self, client: aiomqtt.Client, device: SlotDevice,
                        tg: asyncio.TaskGroup, restarted: asyncio.Event) -> None:
        async for message in client.messages:
            channel = topics.parse(str(message.topic)).channel
            payload = bytes(message.payload)
            if channel is Channel.BOOT:
                reply = codec.decode_down(channel, payload)
                if isinstance(reply, m.BootReply) and reply.status is pe.BootStatus.ACCEPTED \
                        and reply.boot_id == self.boot_id:
                    device.reached_cloud.set()
                    self.booted()
            elif channel is Channel.COMMAND:
                try:
                    envelope = self.verifier.verify(payload)
                except ProtocolError:
                    continue
                if isinstance(envelope.command, m.FirmwareUpdate):
                    tg.create_task(self._update(device, envelope, restarted))

    async def _update(self, device: SlotDevice, envelope: m.CommandEnvelope,
                      restarted: asyncio.Event) -> None:
        assert isinstance(envelope.command, m.FirmwareUpdate)
        try:
            await device.update(envelope.command.manifest, envelope.command_id)
        except Restart:
            restarted.set()
        except FirmwareError:
            pass  # reported as its *_FAILED stage; the campaign counts it


async def fleet_child(spec: dict[str, Any]) -> None:
    serials: list[str] = spec["serials"]
    first_boots: set[str] = set()
    ready = asyncio.Event()

    def booted(serial: str) -> Callable[[], None]:
        def mark() -> None:
            first_boots.add(serial)
            if len(first_boots) == len(serials):
                ready.set()
        return mark

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(FleetDevice(spec, s, booted(s)).run()) for s in serials]
        await ready.wait()
        print("devices ready", flush=True)
        await stop.wait()
        for task in tasks:
            task.cancel()


# ── the cloud and the figure (this process) ───────────────────────────────────────────


async def prepare_database(db_url: str, serials: list[str]) -> tuple[int, int, int]:
    """The demo city plus ``serials`` vehicles with their controllers (firmware
    ``FACTORY``), and a global operator; (network id, operator id, admin id)."""
    from sqlalchemy import select

    from kickstand.cloud.db import create_engine, create_sessionmaker
    from kickstand.cloud.models import (
        Device,
        DeviceKind,
        Network,
        User,
        UserRole,
        Vehicle,
        VehicleType,
    )
    from kickstand.cloud.seed import run_seed

    await run_seed(db_url, environment="development")
    engine = create_engine(db_url)
    async with create_sessionmaker(engine)() as s, s.begin():
        network = (await s.scalars(select(Network).order_by(Network.id))).first()
        operator = await s.scalar(select(User).where(User.email == "operator@example.com"))
        assert network is not None and operator is not None
        for serial in serials:
            s.add(Device(device_id=f"vh-{serial}", kind=DeviceKind.VEHICLE,
                         firmware_version=FACTORY))
            s.add(Vehicle(serial_number=serial, vehicle_type=VehicleType.BIKE, model=MODEL,
                          network_id=network.id, device_id=f"vh-{serial}", battery_level=90))
        admin = User(email="fw-bench-admin@example.com", password_hash="x", role=UserRole.ADMIN)
        s.add(admin)
        await s.flush()
        ids = (network.id, operator.id, admin.id)
    await engine.dispose()
    return ids


class RssMeter:
    """The API process's RSS every 50 ms while running (psutil)."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            await asyncio.sleep(0.05)

    def start(self) -> None:
        self._task = asyncio.create_task(self._sample())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def high_water(self) -> int:
        """VmHWM: the kernel's peak RSS over the process's life (KiB in /proc)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


async def run(args: argparse.Namespace) -> None:
    from kickstand.cloud.broker import free_port
    from kickstand.cloud.commands import load_signer
    from kickstand.cloud.config import Settings
    from kickstand.cloud.firmware.keys import create_key
    from kickstand.cloud.security import create_access_token
    from kickstand.protocol.signing import public_key_bytes
    from kickstand.testing import MosquittoService, open_postgres

    serials = [f"FW{n:05d}" for n in range(1, args.devices + 1)]
    image = build_image(TARGET, NEW, {"agent/VERSION": NEW.encode()}, pad_to=args.image_kb * 1024)
    with tempfile.TemporaryDirectory() as tmpdir, MosquittoService() as broker, \
            open_postgres() as pg:
        tmp = Path(tmpdir)
        db = pg.new_database()
        network_id, operator_id, admin_id = await prepare_database(db.url, serials)
        var = tmp / "var"
        settings = Settings(VAR_DIR=var, COMMAND_SIGNING_KEY_FILE=var / "command.key",
                            JWT_SECRET=JWT)
        signer = load_signer(settings)
        firmware_key = public_key_bytes(create_key(tmp / "firmware.key"))
        api_port = free_port()
        relay = CuttingRelay(("127.0.0.1", api_port),
                             Faults(cut_after=args.cut_kb * 1024, cuts=args.cuts))
        children = Children(tmp)
        async with relay:
            env = {
                **os.environ,
                "DATABASE_URL": db.url,
                "MQTT_URL": broker.url,
                "VAR_DIR": str(var),
                "JWT_SECRET": JWT,
                "COMMAND_SIGNING_KEY_FILE": str(var / "command.key"),
                "FIRMWARE_SIGNING_KEY_FILE": str(tmp / "firmware.key"),
                "FIRMWARE_STORE_DIR": str(tmp / "images"),
                "FIRMWARE_BASE_URL": relay.base_url,
                "FIRMWARE_CAMPAIGN_EVERY_S": str(args.runner_every_s),
            }
            try:
                await children.start(
                    "ingest", sys.executable, "-m", "kickstand.cloud", "ingest", "--workers",
                    "1", "--client-id-prefix", f"bench-{uuid.uuid4().hex[:6]}", env=env)
                api = await children.start("api", sys.executable, "-m", "kickstand.cloud",
                                           "api", "--port", str(api_port), env=env)
                await wait_http("127.0.0.1", api_port, "/health")
                share = (len(serials) + args.procs - 1) // args.procs
                fleets = []
                for n in range(args.procs):
                    spec = {
                        "host": broker.host, "port": broker.port,
                        "workdir": str(tmp / "devices"),
                        "serials": serials[n * share:(n + 1) * share],
                        "command_kid": signer.kid.hex(),
                        "command_key": signer.public_key.hex(),
                        "firmware_key": firmware_key.hex(),
                    }
                    if spec["serials"]:
                        fleets.append(await children.start(
                            f"devices-{n}", sys.executable, __file__, "--fleet-child",
                            json.dumps(spec), stdout_pipe=True))
                for fleet in fleets:
                    await wait_line(fleet, "devices ready", wait_s=120)
                print(f"{len(serials)} devices online in {len(fleets)} processes", flush=True)
                admin = {"Authorization": "Bearer " + create_access_token(
                    settings, admin_id, [], 0)}
                operator = {"Authorization": "Bearer " + create_access_token(
                    settings, operator_id, [], 0)}
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}",
                                             timeout=30) as http:
                    r = await http.post(
                        "/v1/dashboard/firmware/images", params={"target": TARGET,
                                                                 "version": NEW},
                        content=image, headers={**admin,
                                                "Content-Type": "application/octet-stream"})
                    assert r.status_code == 200, r.text
                    image_id = r.json()["data"]["id"]
                    meter = RssMeter(api.pid)
                    rss_before = meter.proc.memory_info().rss
                    served_before = relay.bytes_from_server
                    delivered_before = relay.bytes_to_clients
                    meter.start()
                    started = time.monotonic()
                    body = {"name": "bench", "network_id": network_id, "image_id": image_id,
                            "selection": {"device_ids": [f"vh-{s}" for s in serials]},
                            "canary": args.canary, "growth_factor": args.growth,
                            "success_threshold_pct": 95, "error_threshold_pct": 10,
                            "device_timeout_s": 300, "start": True}
                    r = await http.post("/v1/dashboard/firmware/campaigns", json=body,
                                        headers=operator)
                    assert r.status_code == 200, r.text
                    campaign = r.json()["data"]
                    path = f"/v1/dashboard/firmware/campaigns/{campaign['id']}"
                    deadline = started + args.timeout_s
                    wave_started = [0.0]  # seconds from the start, per wave (as polled)
                    while campaign["state"] not in FINAL and time.monotonic() < deadline:
                        await asyncio.sleep(0.2)
                        campaign = (await http.get(path, headers=operator)).json()["data"]
                        if campaign["current_wave"] > len(wave_started):
                            wave_started.append(time.monotonic() - started)
                    wall = time.monotonic() - started
                    await meter.stop()
                    high_water = meter.high_water()
            except Exception:
                children.print_log_tails()
                raise
            finally:
                await children.terminate()
    served = relay.bytes_from_server - served_before
    delivered = relay.bytes_to_clients - delivered_before
    devices = campaign["devices"]
    per_device = served / max(devices, 1)
    cut_bytes = relay.cut * args.cut_kb * 1024
    without_resume = (len(image) * devices + cut_bytes) / max(devices, 1)
    print(f"campaign {campaign['state']}: {campaign['confirmed']} confirmed, "
          f"{campaign['failed']} failed of {devices}; waves {campaign['wave_sizes']}; "
          f"runner every {args.runner_every_s:g} s")
    ends = [*wave_started[1:], wall]
    print("wave s: " + ", ".join(f"{size} devices {end - start:.1f}" for size, start, end
                                  in zip(campaign["wave_sizes"], wave_started, ends,
                                         strict=False)))
    print(f"image {len(image)} B; downloads: {relay.connections} connections, {relay.cut} cut "
          f"after {args.cut_kb} KiB and resumed")
    print(f"served by the API: {served} B = {per_device:.0f} B/device "
          f"({per_device / len(image):.3f} x the image; without resume "
          f"{without_resume:.0f} B/device, {without_resume / len(image):.3f} x); "
          f"{delivered / max(devices, 1):.0f} B/device reached the devices (the rest of a "
          f"cut response was read from the API and dropped with the link)")
    print(f"API RSS: {mib(rss_before)} before, peak {mib(meter.peak)} while serving "
          f"(+{mib(meter.peak - rss_before)}); VmHWM {mib(high_water)}")
    if campaign["state"] != "completed":
        print(f"campaign did not complete: {campaign}", file=sys.stderr)
    print(f"firmware campaign s: {wall:.1f} (devices: {devices}, "
          f"bytes/device: {per_device:.0f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--image-kb", type=int, default=1024)
    parser.add_argument("--procs", type=int, default=4, help="device processes")
    parser.add_argument("--cuts", type=int, default=50, help="download connections cut")
    parser.add_argument("--cut-kb", type=int, default=400)
    parser.add_argument("--canary", type=int, default=10)
    parser.add_argument("--growth", type=float, default=4.0)
    parser.add_argument("--runner-every-s", type=float, default=0.5)
    parser.add_argument("--timeout-s", type=float, default=600)
    parser.add_argument("--fleet-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fleet_child:
        asyncio.run(fleet_child(json.loads(args.fleet_child)))
        return
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
