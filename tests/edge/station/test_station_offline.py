"""Offline operation: broker outage, link cut, badges against the local list, SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from kickstand.protocol.v1.enums import AuthListKind, LockCause, RejectReason, ResultStatus
from kickstand.protocol.v1.messages import (
    AuthListUpdate,
    BadgePresented,
    Locked,
    Status,
    Unlocked,
    VehicleDocked,
    VehicleRemoved,
)
from kickstand.simulators.station.cloudpeer import CloudPeer, eventually
from kickstand.simulators.station.sim import FAST, SimulatedStation, StationRig
from kickstand.testing import MosquittoService

BADGE_A = bytes.fromhex("04a1b2c3")
BADGE_B = bytes.fromhex("04112233445566")
BADGE_C = bytes.fromhex("0badbeef")
UNKNOWN = bytes.fromhex("04deadbeef0001")
DOCK_EVENTS = (VehicleDocked, VehicleRemoved, Locked, Unlocked)


async def test_broker_outage_nothing_lost_nothing_duplicated(
    mosquitto_private: MosquittoService, tmp_path: Path
) -> None:
    broker = mosquitto_private
    async with CloudPeer(broker.host, broker.port, username=broker.cloud_username,
                         password=broker.cloud_password) as cloud:
        async with StationRig("st-outage1", broker.host, broker.port, proxy=False,
                              command_keys=[cloud.public_key_hex], workdir=tmp_path,
                              spots=4) as rig:
            dev = rig.device_id
            await rig.accepted()
            rig.sim.dock(1, "OUT0001")
            await cloud.wait_for(dev, lambda r: r.body == VehicleDocked(1, "OUT0001"))
            broker.stop()
            assert rig.agent is not None
            await eventually(lambda: rig.agent is not None
                             and not rig.agent.link.connected.is_set())
            for spot in (2, 3, 4):
                rig.sim.dock(spot, f"OUT000{spot}")
                await eventually(lambda s=spot: rig.agent is not None
                                 and rig.agent.spots[s].present)
            await eventually(lambda: rig.agent is not None and rig.agent.queue.depth() >= 6)
            await asyncio.sleep(0.5)  # a while without a broker
            broker.start()
            await cloud.wait_until(lambda: len(cloud.bodies(dev, Locked)) == 4, within=15)
            await eventually(lambda: rig.agent is not None and rig.agent.queue.depth() == 0)
            await asyncio.sleep(0.3)  # PUBACK precedes delivery: let duplicates, if any, land
    docked = cloud.bodies(dev, DOCK_EVENTS)
    assert docked == [
        VehicleDocked(1, "OUT0001"), Locked(1, LockCause.DOCKING),
        VehicleDocked(2, "OUT0002"), Locked(2, LockCause.DOCKING),
        VehicleDocked(3, "OUT0003"), Locked(3, LockCause.DOCKING),
        VehicleDocked(4, "OUT0004"), Locked(4, LockCause.DOCKING),
    ]
    # every sequenced message once, and in seq order per boot
    seqs = [r.message.stamp.seq for r in cloud.view(dev).messages]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))


async def test_local_list_and_offline_badge_unlock(rig: StationRig, cloud: CloudPeer) -> None:
    dev = rig.device_id
    assert rig.agent is not None

    async def result(cmd: AuthListUpdate) -> tuple[ResultStatus, RejectReason | None]:
        cid = await cloud.send_command(dev, cmd)
        res = await cloud.wait_result(dev, cid)
        return res.status, res.reason

    assert await result(AuthListUpdate(AuthListKind.FULL, 1, add=(BADGE_A, BADGE_C))) == (
        ResultStatus.DONE, None)
    assert await result(AuthListUpdate(AuthListKind.DIFF, 2, base_version=1, add=(BADGE_B,),
                                       remove=(BADGE_C,))) == (ResultStatus.DONE, None)
    assert await result(AuthListUpdate(AuthListKind.DIFF, 3, base_version=7, add=(UNKNOWN,))) == (
        ResultStatus.REJECTED, RejectReason.VERSION_MISMATCH)
    assert rig.agent.authlist.version == 2
    assert BADGE_B in rig.agent.authlist and BADGE_C not in rig.agent.authlist

    # online: the badge goes to the cloud, which decides
    rig.sim.present_badge(BADGE_B, None)  # held until removed: no race with the poll cycle
    online = await cloud.wait_for(dev, lambda r: isinstance(r.body, BadgePresented), within=8)
    assert online.body == BadgePresented(BADGE_B, True, False, 0)
    assert rig.sim.badge is not None
    rig.sim.badge.remove()

    rig.sim.dock(2, "OFF0002")
    rig.sim.dock(3, "OFF0003")
    await cloud.wait_until(lambda: len(cloud.bodies(dev, VehicleDocked)) == 2)
    rig.cut_link()
    await eventually(lambda: rig.agent is not None and not rig.agent.link.accepted.is_set())
    rig.sim.present_badge(UNKNOWN, None)  # unknown offline: refused, nothing opens
    await eventually(lambda: rig.agent is not None
                     and rig.agent.counters["badges_refused"] == 1, within=8)
    rig.sim.present_badge(BADGE_A, None)
    await eventually(lambda: rig.sim.boards[2].lock.name == "OPEN", within=8)
    rig.sim.badge.remove()
    assert rig.sim.boards[3].lock.name == "LOCKED"
    rig.sim.take(2)
    await eventually(lambda: rig.agent is not None and not rig.agent.spots[2].present)
    rig.restore_link()
    await cloud.wait_for(dev, lambda r: isinstance(r.body, VehicleRemoved), within=10)
    offline = [b for b in cloud.bodies(dev, (BadgePresented, Unlocked, VehicleRemoved))
               if not (isinstance(b, BadgePresented) and not b.offline)]
    assert offline == [
        BadgePresented(UNKNOWN, False, True, 0),
        BadgePresented(BADGE_A, True, True, 2),
        Unlocked(2, LockCause.OFFLINE_BADGE, badge_uid=BADGE_A),
        VehicleRemoved(2, "OFF0002", badge_uid=BADGE_A),
    ]
    birth = cloud.view(dev).births[-1]
    assert birth.auth_list_version == 2


def _queued(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute("SELECT count(*) FROM queue").fetchone()[0])
    except sqlite3.Error:
        return -1


async def test_sigkill_mid_queue_restart_delivers_the_rest(
    mosquitto: MosquittoService, cloud: CloudPeer, tmp_path: Path
) -> None:
    from kickstand.simulators.station.proxy import LinkProxy

    dev = "st-kill0001"
    sim = SimulatedStation(dev, 6, workdir=tmp_path, nfc=False)
    await sim.start()
    proxy = LinkProxy(mosquitto.host, mosquitto.port)
    await proxy.start()
    config = sim.write_config(
        tmp_path / "station.toml", f"mqtt://127.0.0.1:{proxy.port}", [cloud.public_key_hex],
        **{**FAST, "queue_synchronous": "FULL"},
    )
    cmd = [sys.executable, "-m", "kickstand.edge.station", "--config", str(config)]
    env = {**os.environ, "KICKSTAND_LOG_LEVEL": "WARNING"}
    agent = subprocess.Popen(cmd, env=env)  # noqa: ASYNC220
    db = tmp_path / "state" / "queue.db"
    try:
        await cloud.wait_birth(dev, within=15)
        await cloud.wait_until(lambda: len(cloud.bodies(dev, Status)) >= 7)
        proxy.cut()
        for spot in range(1, 7):
            sim.dock(spot, f"KIL000{spot}")
        # 6 docks -> 6 VehicleDocked + 6 Locked + statuses, all on disk, none sent
        await eventually(lambda: _queued(db) >= 12, within=10)
        agent.send_signal(signal.SIGKILL)
        agent.wait(5)
        proxy.restore()
        agent = subprocess.Popen(cmd, env=env)  # noqa: ASYNC220
        await cloud.wait_until(lambda: len(cloud.bodies(dev, Locked)) >= 6, within=20)
        await eventually(lambda: _queued(db) == 0, within=10)
        await asyncio.sleep(0.3)  # PUBACK precedes delivery: let stragglers (duplicates) land
    finally:
        agent.kill()
        agent.wait(5)
        await proxy.stop()
        await sim.stop()
    docked = cloud.bodies(dev, VehicleDocked)
    trace = [(r.message.stamp.boot_id, r.message.stamp.seq, r.body)
             for r in cloud.view(dev).messages]
    # each docking exactly once (in the order the poller saw them), each before its lock
    assert sorted(docked, key=lambda d: d.spot) == [
        VehicleDocked(s, f"KIL000{s}") for s in range(1, 7)
    ], trace
    events = cloud.bodies(dev, (VehicleDocked, Locked))
    for spot in range(1, 7):
        mine = [type(e) for e in events if e.spot == spot]
        assert mine == [VehicleDocked, Locked], trace
    assert len(cloud.view(dev).births) == 2
