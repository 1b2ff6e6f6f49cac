"""The real vehicle agent against the vehicle simulator and the harness's Mosquitto.

The test plays the cloud (CloudPeer: answers births and heartbeats, signs commands,
dedupes by (boot, seq) as ingest does). Intervals are short so the suite stays fast.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from kickstand.edge.core.firmware.image import build_image
from kickstand.edge.vehicle import VehicleAgent
from kickstand.protocol.signing import CommandSigner, generate_private_key
from kickstand.protocol.v1.enums import (
    AuthListKind,
    BatteryKind,
    ChainType,
    DeviceKind,
    DeviceState,
    FirmwareState,
    LockCause,
    MotionKind,
    RejectReason,
    ResultStatus,
    TriggerKind,
)
from kickstand.protocol.v1.messages import (
    AuthListUpdate,
    BadgePresented,
    BatteryLow,
    Birth,
    BoardFault,
    BoardRecovered,
    ChainInserted,
    ChainRemoved,
    ChainTypeChanged,
    CommandEnvelope,
    CommandResult,
    Config,
    FirmwareStatus,
    Lock,
    Locked,
    Motion,
    PinEntered,
    PinIncorrect,
    Reboot,
    SetMaintenance,
    SetSpeedLimit,
    Status,
    Telemetry,
    TriggerMessage,
    Unlock,
    Unlocked,
    UnlockExpired,
)
from kickstand.simulators.firmware import public_hex as firmware_public_hex
from kickstand.simulators.firmware import signed_update
from kickstand.simulators.station.cloudpeer import CloudPeer
from kickstand.simulators.vehicle import Route, VehicleFleet
from kickstand.simulators.vehicle.fleet import FleetMember
from kickstand.testing import MosquittoService

pytestmark = pytest.mark.mqtt

Eventually = Callable[..., Awaitable[None]]

# 300 m east along a Lyon street (lon, lat), starting where the simulator parks.
STREET = Route.of([(4.835659, 45.764043), (4.839500, 45.764043)])

FAST = {
    "riding_interval_s": 0.3,
    "parked_interval_s": 60.0,
    "lock_poll_s": 0.05,
    "bms_poll_s": 0.5,
    "boot_timeout_s": 2.0,
    "reconnect_min_s": 0.1,
    "reconnect_max_s": 0.4,
    "keepalive_s": 5,
}


@pytest.fixture
async def cloud(mosquitto: MosquittoService) -> AsyncIterator[CloudPeer]:
    async with CloudPeer(
        mosquitto.host,
        mosquitto.port,
        username=mosquitto.cloud_username,
        password=mosquitto.cloud_password,
    ) as peer:
        yield peer


@pytest.fixture
async def fleet(
    tmp_path: Path, mosquitto: MosquittoService, cloud: CloudPeer
) -> AsyncIterator[VehicleFleet]:
    async with VehicleFleet(
        tmp_path,
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        command_keys=[cloud.public_key_hex],
        gps_interval_s=0.2,
        agent_overrides={**FAST, "firmware_public_keys": [firmware_public_hex()]},
    ) as f:
        yield f


def serial() -> str:
    return "BK" + secrets.token_hex(3).upper()


async def online(fleet: VehicleFleet, cloud: CloudPeer, **overrides: Any) -> FleetMember:
    member = await fleet.add(serial(), **overrides)
    await fleet.wait_online(10)
    await cloud.wait_birth(member.device_id)
    return member


def of(cloud: CloudPeer, m: FleetMember, kind: type) -> list[Any]:
    return cloud.bodies(m.device_id, kind)


async def command_ok(cloud: CloudPeer, m: FleetMember, command: Any) -> CommandResult:
    cid = await cloud.send_command(m.device_id, command)
    result = await cloud.wait_result(m.device_id, cid)
    assert result.status is ResultStatus.DONE, result
    return result


async def test_birth_ride_positions_and_lock(
    fleet: VehicleFleet, cloud: CloudPeer, eventually: Eventually
) -> None:
    m = await online(fleet, cloud)
    birth: Birth = cloud.view(m.device_id).births[-1]
    assert birth.kind is DeviceKind.VEHICLE
    assert birth.serial_number == m.sim.serial_number
    assert {c.kind for c in birth.inventory} >= {"lockbox", "gps", "bms", "pinpad", "motion"}
    assert next(c for c in birth.inventory if c.kind == "lockbox").firmware == "lb-2.4.1"
    await cloud.wait_for(m.device_id, lambda r: isinstance(r.body, Status))

    cid = await cloud.send_command(m.device_id, Unlock(window_s=30))
    assert (await cloud.wait_result(m.device_id, cid)).status is ResultStatus.DONE
    unlocked = await cloud.wait_for(m.device_id, lambda r: isinstance(r.body, Unlocked))
    assert unlocked.body == Unlocked(0, LockCause.COMMAND, cid, None)
    m.sim.take_chain_out()
    await cloud.wait_for(m.device_id, lambda r: isinstance(r.body, ChainRemoved))

    start = len(cloud.view(m.device_id).messages)
    m.sim.ride(STREET, speed_kmh=20)
    await eventually(
        lambda: len([r for r in cloud.view(m.device_id).messages[start:]
                     if isinstance(r.body, Telemetry) and r.body.lat is not None]) >= 6,
        within_s=6,
    )
    positions = [r for r in cloud.view(m.device_id).messages[start:]
                 if isinstance(r.body, Telemetry) and r.body.lat is not None]
    gaps = [(b.message.stamp.ts_ms - a.message.stamp.ts_ms) / 1000
            for a, b in itertools.pairwise(positions)]
    assert all(0.15 <= g <= 0.8 for g in gaps[1:]), gaps  # every riding_interval_s
    assert positions[-1].body.lon > positions[0].body.lon  # riding east
    assert any((p.body.speed_kmh or 0) > 15 for p in positions)

    m.sim.rider_lock(ChainType.LONG)
    locked = await cloud.wait_for(m.device_id, lambda r: isinstance(r.body, Locked))
    assert locked.body.cause is LockCause.MANUAL
    inserted = await cloud.wait_for(m.device_id, lambda r: isinstance(r.body, ChainInserted))
    assert inserted.body.chain_type is ChainType.LONG
    status = await cloud.wait_for(
        m.device_id,
        lambda r: isinstance(r.body, Status) and r.body.state is DeviceState.LOCKED,
        start=start,
    )
    assert status.body.serial_number == m.sim.serial_number
    # parked: the position at the lock, then nothing for parked_interval_s
    n = len(cloud.bodies(m.device_id, Telemetry))
    await eventually(lambda: m.agent is not None and m.agent.parked)
    await asyncio.sleep(1.0)
    assert len(cloud.bodies(m.device_id, Telemetry)) <= n + 1


async def test_coverage_lost_mid_ride_lock_arrives_with_lock_time(
    fleet: VehicleFleet, cloud: CloudPeer, eventually: Eventually
) -> None:
    m = await online(fleet, cloud)
    assert m.proxy is not None and m.agent is not None
    await command_ok(cloud, m, Unlock())
    m.sim.take_chain_out()
    m.sim.ride(STREET, speed_kmh=20)
    await eventually(lambda: len(of(cloud, m, Telemetry)) >= 3)

    cut_ms = time.time_ns() // 1_000_000
    m.proxy.cut()  # into a tunnel
    await eventually(lambda: not m.agent.link.connected.is_set())
    await asyncio.sleep(0.8)  # still riding, telemetry piles up on disk
    before = len(cloud.view(m.device_id).messages)
    lock_ms = time.time_ns() // 1_000_000
    m.sim.rider_lock()
    await eventually(lambda: m.agent is not None and m.agent.parked and
                     m.agent.lock_state is not None and m.agent.lock_state.name == "LOCKED")
    await asyncio.sleep(1.0)
    assert len(cloud.view(m.device_id).messages) == before  # nothing got through
    assert m.agent.link.queue.depth() >= 3

    await m.proxy.restore()
    locked = await cloud.wait_for(m.device_id, lambda r: isinstance(r.body, Locked), 15)
    assert abs(locked.message.stamp.ts_ms - lock_ms) < 400  # the lock time, not arrival
    await eventually(lambda: m.agent.link.queue.depth() == 0, within_s=10)
    # the position where it was locked follows the Locked event
    where = await cloud.wait_for(
        m.device_id, lambda r: isinstance(r.body, Telemetry) and r.body.lon is not None,
        5, cloud.view(m.device_id).messages.index(locked),
    )
    assert where.body.lon > 4.8357
    assert abs(where.message.stamp.ts_ms - lock_ms) < 400
    msgs = cloud.view(m.device_id).messages
    boot = m.agent.link.queue.boot_id
    seqs = [r.message.stamp.seq for r in msgs if r.message.stamp.boot_id == boot]
    assert len(seqs) == len(set(seqs))  # deduplicated…
    assert seqs == list(range(1, len(seqs) + 1))  # …and nothing lost
    assert len(of(cloud, m, Locked)) == 1
    offline = [r for r in msgs if isinstance(r.body, Telemetry)
               and cut_ms < r.message.stamp.ts_ms < lock_ms]
    assert len(offline) >= 2  # the ride went on being recorded in the tunnel


async def test_hostile_gps_is_filtered(
    fleet: VehicleFleet, cloud: CloudPeer, eventually: Eventually
) -> None:
    m = await online(fleet, cloud)
    assert m.agent is not None
    await command_ok(cloud, m, Unlock())
    m.sim.take_chain_out()
    m.sim.ride(STREET, speed_kmh=15)
    m.sim.send_bad_nmea(5)
    m.sim.teleport(48.8566, 2.3522)  # Paris, for one fix
    await eventually(lambda: m.agent.gps.stats.rejected_jump >= 1 and
                     m.agent.gps.stats.checksum_errors >= 5)
    m.sim.set_gps_quality(hdop=12.0)
    await eventually(lambda: m.agent.gps.stats.rejected_quality >= 2)
    m.sim.set_gps_quality(hdop=0.9)
    start = len(of(cloud, m, Telemetry))
    await eventually(lambda: len([t for t in of(cloud, m, Telemetry)[start:] if t.lat]) >= 3)
    stats = m.agent.gps.stats
    assert stats.overlong >= 1 and stats.malformed >= 1
    for t in of(cloud, m, Telemetry):
        if t.lat is not None:
            assert abs(t.lat - 45.764) < 0.01 and abs(t.lon - 4.837) < 0.01, t


async def test_battery_low_once_per_crossing_and_ble_reconnect(
    fleet: VehicleFleet, cloud: CloudPeer, eventually: Eventually
) -> None:
    m = await online(fleet, cloud)
    agent = m.agent
    assert agent is not None and agent.battery_monitor is not None
    await eventually(lambda: BatteryKind.VAE in agent.batteries)

    m.sim.drain_battery(BatteryKind.VAE, 19)
    await cloud.wait_for(m.device_id, lambda r: isinstance(r.body, BatteryLow))
    m.sim.set_battery(BatteryKind.VAE, 17)
    m.sim.set_battery(BatteryKind.VAE, 21)  # not enough above 20 to re-arm
    m.sim.set_battery(BatteryKind.VAE, 15)
    await eventually(lambda: agent.batteries[BatteryKind.VAE].level_pct == 15)

    # out of BLE range: the link drops, the agent retries with back-off, then it is back
    m.sim.ble_available(False)
    await eventually(lambda: agent.battery_monitor is not None and
                     agent.battery_monitor.disconnects >= 1)
    m.sim.set_battery(BatteryKind.VAE, 60)  # charged meanwhile (swapped pack)
    await asyncio.sleep(0.5)
    m.sim.ble_available(True)
    await eventually(lambda: agent.batteries[BatteryKind.VAE].level_pct == 60, within_s=10)
    m.sim.set_battery(BatteryKind.VAE, 12)
    m.sim.set_battery(BatteryKind.INTERNAL, 10)
    await eventually(lambda: len(of(cloud, m, BatteryLow)) >= 3)
    await asyncio.sleep(0.3)
    lows = of(cloud, m, BatteryLow)
    assert [(b.battery, b.level_pct) for b in lows if b.battery is BatteryKind.VAE] == [
        (BatteryKind.VAE, 19), (BatteryKind.VAE, 12)
    ]
    assert [(b.battery, b.level_pct) for b in lows if b.battery is BatteryKind.INTERNAL] == [
        (BatteryKind.INTERNAL, 10)
    ]


async def test_commands_verified_refused_and_applied(
    fleet: VehicleFleet, cloud: CloudPeer
) -> None:
    m = await online(fleet, cloud)
    dev = m.device_id

    async def rejected(payload: bytes, reason: RejectReason, cid: bytes | None = None) -> None:
        await cloud.send_raw(dev, payload)
        r = await cloud.wait_for(
            dev,
            lambda r: isinstance(r.body, CommandResult) and r.body.reason is reason
            and (cid is None or r.body.command_id == cid),
        )
        assert r.body.status is ResultStatus.REJECTED

    await rejected(b"\x00\xffnot cose", RejectReason.MALFORMED)
    stranger = CommandSigner(generate_private_key())
    env = cloud.envelope(dev, Unlock())
    await rejected(stranger.sign(env), RejectReason.UNKNOWN_KEY, env.command_id)
    old = now_ms() - 120_000
    env = CommandEnvelope(secrets.token_bytes(16), dev, old, old + 60_000, Unlock())
    await rejected(cloud.signer.sign(env), RejectReason.EXPIRED, env.command_id)
    env = cloud.envelope("vh-OTHER999", Unlock())
    await rejected(cloud.signer.sign(env), RejectReason.WRONG_DEVICE, env.command_id)
    assert m.sim.lock.name == "LOCKED"  # nothing moved

    result = await command_ok(cloud, m, SetSpeedLimit(max_kmh=20))
    assert result.detail == "max 20 km/h"
    assert m.agent is not None and m.agent.speed_limit_kmh == 20
    env = cloud.envelope(dev, SetSpeedLimit(max_kmh=25))
    await cloud.send_envelope(env)
    await cloud.wait_result(dev, env.command_id)
    await rejected(cloud.signer.sign(env), RejectReason.REPLAYED, env.command_id)

    cid = await cloud.send_command(dev, Config(version=7, values={"warp_drive": True}))
    assert (await cloud.wait_result(dev, cid)).reason is RejectReason.NOT_SUPPORTED
    await command_ok(cloud, m, Config(version=8, values={"pin_code": "4321"}))
    m.sim.enter_pin("1111")
    m.sim.enter_pin("1112")
    m.sim.enter_pin("4321")
    await cloud.wait_for(dev, lambda r: isinstance(r.body, PinEntered))
    assert [p.attempts for p in of(cloud, m, PinIncorrect)] == [1, 2]

    await command_ok(cloud, m, SetMaintenance(spot=0, on=True, reason="brakes"))
    cid = await cloud.send_command(dev, Unlock())
    assert (await cloud.wait_result(dev, cid)).reason is RejectReason.MAINTENANCE
    await command_ok(cloud, m, SetMaintenance(spot=0, on=False))
    await command_ok(cloud, m, TriggerMessage(TriggerKind.STATUS))

    # motion: fallen, and a locked vehicle being moved
    m.sim.fall_over()
    m.sim.shake()
    m.sim.send_motion_garbage()
    m.sim.shake()  # rate-limited: one ILLEGAL_MOVING per period
    await cloud.wait_for(dev, lambda r: isinstance(r.body, Motion) and
                         r.body.kind is MotionKind.ILLEGAL_MOVING)
    await asyncio.sleep(0.3)
    kinds = [b.kind for b in of(cloud, m, Motion)]
    assert kinds == [MotionKind.FALLEN, MotionKind.ILLEGAL_MOVING]

    # the lock box fails: FAILED with HARDWARE_FAULT, not a hang
    # (REJECTED when the poll saw the jam first, FAILED when the UNLOCK hit it)
    m.sim.jam_lock(True)
    cid = await cloud.send_command(dev, Unlock())
    result = await cloud.wait_result(dev, cid)
    assert result.status in (ResultStatus.REJECTED, ResultStatus.FAILED)
    assert result.reason is RejectReason.HARDWARE_FAULT
    await cloud.wait_for(dev, lambda r: isinstance(r.body, BoardFault))
    m.sim.jam_lock(False)
    await cloud.wait_for(dev, lambda r: isinstance(r.body, BoardRecovered))
    await asyncio.sleep(0.2)
    assert not of(cloud, m, Locked)  # a cleared jam is not a new lock


async def test_unlock_window_relocks_and_lock_command(
    fleet: VehicleFleet, cloud: CloudPeer
) -> None:
    m = await online(fleet, cloud)
    cid = (await cloud.send_command(m.device_id, Unlock(window_s=1)))
    await cloud.wait_result(m.device_id, cid)
    expired = await cloud.wait_for(m.device_id, lambda r: isinstance(r.body, UnlockExpired))
    assert expired.body.command_id == cid
    assert m.sim.lock.name == "LOCKED"
    await command_ok(cloud, m, Unlock(window_s=30))
    await command_ok(cloud, m, Lock())
    locks = of(cloud, m, Locked)
    assert len(locks) == 1 and locks[0].cause is LockCause.COMMAND
    result = await command_ok(cloud, m, Lock())
    assert result.detail == "already locked"


async def test_an_unlock_window_of_0_means_the_default(
    fleet: VehicleFleet, cloud: CloudPeer
) -> None:
    """SPEC §7.4: window_s 0 is "not given" (30 s), not "lock again at once"."""
    m = await online(fleet, cloud)
    await command_ok(cloud, m, Unlock(window_s=0))
    await asyncio.sleep(0.5)
    assert not of(cloud, m, UnlockExpired)
    assert m.sim.lock.name != "LOCKED"
    await command_ok(cloud, m, Lock())


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def test_offline_pass_opens_from_the_local_list(
    fleet: VehicleFleet, cloud: CloudPeer, eventually: Eventually
) -> None:
    m = await online(fleet, cloud, nfc=True)
    assert m.proxy is not None and m.agent is not None
    rider, stranger = bytes.fromhex("04a1b2c3d4e5f6"), bytes.fromhex("deadbeef")
    await command_ok(cloud, m, AuthListUpdate(AuthListKind.FULL, 1, add=(rider,)))
    cid = await cloud.send_command(
        m.device_id, AuthListUpdate(AuthListKind.DIFF, 3, base_version=2, add=(stranger,))
    )
    assert (await cloud.wait_result(m.device_id, cid)).reason is RejectReason.VERSION_MISMATCH

    m.proxy.cut()
    await eventually(lambda: not m.agent.link.accepted.is_set())
    m.sim.present_pass(stranger)
    await eventually(lambda: m.agent.counters.get("badges", 0) >= 1, within_s=8)
    assert m.sim.lock.name == "LOCKED"
    m.sim.present_pass(rider)
    await eventually(lambda: m.sim.lock.name == "OPEN", within_s=8)

    await m.proxy.restore()
    unlocked = await cloud.wait_for(m.device_id, lambda r: isinstance(r.body, Unlocked), 15)
    assert unlocked.body.cause is LockCause.OFFLINE_BADGE and unlocked.body.badge_uid == rider
    badges = of(cloud, m, BadgePresented)
    assert (badges[0].badge_uid, badges[0].authorized, badges[0].offline) == (stranger, False, True)
    assert (badges[1].badge_uid, badges[1].authorized, badges[1].offline) == (rider, True, True)


async def test_firmware_update_checked_installed_and_rebooted(
    fleet: VehicleFleet, cloud: CloudPeer, tmp_path: Path
) -> None:
    m = await online(fleet, cloud)
    assert m.agent is not None
    target = "vehicle-controller:KS-VC2"
    # The controller's image (SPEC §13.6): an archive its slot unpacks.
    image = build_image(target, "vh-1.1.0", {"random.bin": secrets.token_bytes(3000)})
    path = tmp_path / "vh-1.1.0.tar"
    path.write_bytes(image)
    url = path.as_uri()

    bad = await cloud.send_command(
        m.device_id,
        signed_update(image, "vh-1.1.0", url, target, sha256=hashlib.sha256(b"other").digest()),
    )
    failed = await cloud.wait_for(
        m.device_id, lambda r: isinstance(r.body, CommandResult) and r.body.command_id == bad
        and r.body.status is ResultStatus.FAILED,
    )
    assert failed.body.detail == "sha256 mismatch"
    states = [f.state for f in of(cloud, m, FirmwareStatus)]
    assert states[-1] is FirmwareState.VERIFY_FAILED
    assert m.agent.firmware_version == "vh-1.0.0"  # nothing installed

    boot = m.agent.link.queue.boot_id
    good = await cloud.send_command(m.device_id, signed_update(image, "vh-1.1.0", url, target))
    await cloud.wait_for(
        m.device_id, lambda r: isinstance(r.body, CommandResult) and r.body.command_id == good
        and r.body.status is ResultStatus.DONE,
    )
    birth = await cloud.wait_birth(m.device_id, 2)
    assert birth.firmware == "vh-1.1.0"
    assert m.agent.link.queue.boot_id != boot and m.agent.boots == 2
    states = [f.state for f in of(cloud, m, FirmwareStatus)]
    # Installed into the inactive slot, restarted into it, confirmed by the new boot.
    assert states[-3:] == [FirmwareState.INSTALLED, FirmwareState.REBOOTING,
                           FirmwareState.CONFIRMED]

    cid = await cloud.send_command(m.device_id, Reboot())
    assert (await cloud.wait_result(m.device_id, cid)).status is ResultStatus.DONE
    await cloud.wait_birth(m.device_id, 3)
    # the lock state survived the reboots: no phantom Locked / Unlocked
    assert not of(cloud, m, Locked) and not of(cloud, m, Unlocked)


async def test_lockbox_silent_is_a_fault_then_recovers(
    fleet: VehicleFleet, cloud: CloudPeer
) -> None:
    m = await online(fleet, cloud)
    m.sim.mute_lockbox(True)
    fault = await cloud.wait_for(m.device_id, lambda r: isinstance(r.body, BoardFault))
    assert fault.body.spot == 0 and "lock box" in fault.body.reason
    status = await cloud.wait_for(
        m.device_id, lambda r: isinstance(r.body, Status) and r.body.state is DeviceState.FAULT
    )
    assert status.body.fault == "lock box not answering"
    cid = await cloud.send_command(m.device_id, Unlock())
    result = await cloud.wait_result(m.device_id, cid)
    assert (result.status, result.reason) == (ResultStatus.FAILED, RejectReason.HARDWARE_FAULT)
    m.sim.mute_lockbox(False)
    await cloud.wait_for(m.device_id, lambda r: isinstance(r.body, BoardRecovered))
    assert m.sim.lock.name == "LOCKED" and not of(cloud, m, Unlocked)


async def test_power_cut_offline_keeps_the_lock_for_the_next_boot(
    fleet: VehicleFleet, cloud: CloudPeer, eventually: Eventually
) -> None:
    """Locked in a tunnel, then the controller loses power: the next boot delivers it."""
    m = await online(fleet, cloud)
    agent = m.agent
    assert agent is not None and m.proxy is not None
    await command_ok(cloud, m, Unlock())
    m.sim.take_chain_out()
    m.sim.drain_battery(BatteryKind.VAE, 12)
    await cloud.wait_for(m.device_id, lambda r: isinstance(r.body, BatteryLow))
    m.proxy.cut()
    await eventually(lambda: not agent.link.connected.is_set())
    lock_ms = time.time_ns() // 1_000_000
    m.sim.rider_lock()
    await eventually(lambda: agent.lock_state is not None and agent.lock_state.name == "LOCKED")
    first_boot = agent.link.queue.boot_id
    await agent.__aexit__(None, None, None)  # power cut: the process is gone

    m.sim.insert_chain(ChainType.CABLE)  # changed while the controller was off
    await m.proxy.restore()
    reborn = VehicleAgent(agent.base_settings)
    m.agent = reborn
    async with reborn:
        locked = await cloud.wait_for(m.device_id, lambda r: isinstance(r.body, Locked), 15)
        assert locked.message.stamp.boot_id == first_boot  # stamped in the boot it happened
        assert abs(locked.message.stamp.ts_ms - lock_ms) < 400
        changed = await cloud.wait_for(
            m.device_id, lambda r: isinstance(r.body, ChainTypeChanged)
        )
        assert changed.body.chain_type is ChainType.CABLE
        await eventually(lambda: BatteryKind.VAE in reborn.batteries)
        await asyncio.sleep(0.5)
        assert len(of(cloud, m, Locked)) == 1 and len(of(cloud, m, BatteryLow)) == 1
        assert reborn.link.queue.boot_id != first_boot


async def test_locked_vehicle_moved_is_tracked(
    fleet: VehicleFleet, cloud: CloudPeer, eventually: Eventually
) -> None:
    m = await online(fleet, cloud, theft_tracking_s=1.5)
    assert m.agent is not None
    await eventually(lambda: m.agent is not None and m.agent.lock_state is not None)
    await asyncio.sleep(0.7)
    before = len(of(cloud, m, Telemetry))  # parked: nothing more for parked_interval_s
    m.sim.shake()
    await cloud.wait_for(m.device_id, lambda r: isinstance(r.body, Motion)
                         and r.body.kind is MotionKind.ILLEGAL_MOVING)
    await eventually(lambda: len(of(cloud, m, Telemetry)) >= before + 3)
    await asyncio.sleep(1.5)  # the tracking period is over: back to the parked cadence
    settled = len(of(cloud, m, Telemetry))
    await asyncio.sleep(0.9)
    assert len(of(cloud, m, Telemetry)) == settled
