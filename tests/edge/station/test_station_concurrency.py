"""Unlocks at many spots at once: the real agent against simulated latches that take time.

The simulated boards acknowledge UNLOCK at once and release their latch later (or when the
test says so); their latch logs give the order of events, so nothing here measures time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from kickstand.protocol.spotbus import BusLock
from kickstand.protocol.v1.enums import (
    LockCause,
    RejectReason,
    ResultStatus,
    SpotState,
    TriggerKind,
)
from kickstand.protocol.v1.messages import (
    BoardFault,
    BoardRecovered,
    CommandResult,
    Lock,
    Status,
    TriggerMessage,
    Unlock,
    Unlocked,
    VehicleDocked,
)
from kickstand.simulators.spotboard import LATCH_OPENED, UNLOCK_RECEIVED
from kickstand.simulators.station.cloudpeer import CloudPeer, eventually
from kickstand.simulators.station.sim import StationRig
from kickstand.testing import MosquittoService


@asynccontextmanager
async def station(
    mosquitto: MosquittoService,
    cloud: CloudPeer,
    workdir: Path,
    device_id: str,
    spots: int,
    **overrides: Any,
) -> AsyncIterator[StationRig]:
    """A rig whose spots all hold a docked vehicle, birth accepted."""
    async with StationRig(device_id, mosquitto.host, mosquitto.port,
                          command_keys=[cloud.public_key_hex], workdir=workdir, spots=spots,
                          nfc=False, **overrides) as rig:
        await rig.accepted()
        for n in range(1, spots + 1):
            rig.sim.dock(n, f"CC{n:04d}")
        await cloud.wait_until(
            lambda: len(cloud.bodies(device_id, VehicleDocked)) == spots, within=10
        )
        yield rig


def received_unlock(rig: StationRig, spot: int) -> Callable[[], bool]:
    return lambda: any(e == UNLOCK_RECEIVED for _, e in rig.sim.boards[spot].latch_log)


def link_counters(rig: StationRig) -> dict[str, Any]:
    assert rig.agent is not None
    counters: dict[str, Any] = rig.agent.link.snapshot()["link"]
    return counters


async def test_unlocks_at_every_spot_run_side_by_side(
    mosquitto: MosquittoService, cloud: CloudPeer, tmp_path: Path, device_id: str
) -> None:
    spots = range(1, 7)
    async with station(mosquitto, cloud, tmp_path, device_id, len(spots),
                       actuation_s=1.5, actuation_timeout_s=30.0) as rig:
        cids = await asyncio.gather(
            *(cloud.send_command(device_id, Unlock(spot=n, window_s=60)) for n in spots)
        )
        for n, cid in zip(spots, cids, strict=True):
            res = await cloud.wait_result(device_id, cid, within=30)
            assert (res.status, res.reason) == (ResultStatus.DONE, None)
            # DONE means the lock sensor said OPEN, not that the UNLOCK was acknowledged
            assert LATCH_OPENED in [e for _, e in rig.sim.boards[n].latch_log]
        events = rig.sim.latch_events()
        received = [t for t, _, e in events if e == UNLOCK_RECEIVED]
        opened = [t for t, _, e in events if e == LATCH_OPENED]
        assert len(received) == len(opened) == len(spots)
        # every UNLOCK reached its board before the first latch had finished releasing
        assert max(received) < min(opened)
        # each spot's Unlocked, its status and the DONE: one transaction, nothing between
        by_seq = {r.message.stamp.seq: r.body for r in cloud.view(device_id).messages}
        for n, cid in zip(spots, cids, strict=True):
            (unlocked,) = [s for s, b in by_seq.items()
                           if b == Unlocked(n, LockCause.COMMAND, cid)]
            (done,) = [s for s, b in by_seq.items()
                       if isinstance(b, CommandResult) and b.command_id == cid]
            between = [by_seq[s] for s in range(unlocked + 1, done)]
            assert between and all(isinstance(b, Status) for b in between)
            assert any(b.spot == n and b.state is SpotState.UNLOCKED_AWAITING_REMOVAL
                       for b in between)
        assert link_counters(rig)["commands_in_flight"] == 0


async def test_second_action_on_a_busy_spot_is_refused_and_others_go_on(
    mosquitto: MosquittoService, cloud: CloudPeer, tmp_path: Path, device_id: str
) -> None:
    async with station(mosquitto, cloud, tmp_path, device_id, 3,
                       actuation_timeout_s=60.0) as rig:
        rig.sim.stick_lock(1)  # holds until the test frees it
        first = await cloud.send_command(device_id, Unlock(spot=1))
        await eventually(received_unlock(rig, 1), within=10)
        for command in (Unlock(spot=1), Lock(spot=1)):
            cid = await cloud.send_command(device_id, command)
            res = await cloud.wait_result(device_id, cid)
            assert (res.status, res.reason) == (ResultStatus.REJECTED, RejectReason.BUSY)
        # another spot is served while spot 1's latch is still moving
        other = await cloud.send_command(device_id, Unlock(spot=2))
        assert (await cloud.wait_result(device_id, other)).status is ResultStatus.DONE
        # a station-wide command waits for the commands before it
        assert rig.agent is not None
        admitted = rig.agent.link.counters.commands
        trigger = await cloud.send_command(device_id, TriggerMessage(TriggerKind.STATUS, 3))
        await eventually(lambda: rig.agent is not None
                         and rig.agent.link.counters.commands > admitted, within=10)
        rig.sim.boards[1].open_latch()
        res = await cloud.wait_result(device_id, first)
        assert res.status is ResultStatus.DONE
        await cloud.wait_result(device_id, trigger)
        seqs = {r.body.command_id: r.message.stamp.seq
                for r in cloud.view(device_id).messages if isinstance(r.body, CommandResult)}
        assert seqs[first] < seqs[trigger]


async def test_in_flight_bound_refuses_busy_and_counts(
    mosquitto: MosquittoService, cloud: CloudPeer, tmp_path: Path, device_id: str
) -> None:
    async with station(mosquitto, cloud, tmp_path, device_id, 3,
                       max_commands_in_flight=2, actuation_timeout_s=60.0) as rig:
        rig.sim.stick_lock(1)
        rig.sim.stick_lock(2)
        held = [await cloud.send_command(device_id, Unlock(spot=n)) for n in (1, 2)]
        await eventually(lambda: received_unlock(rig, 1)() and received_unlock(rig, 2)(),
                         within=10)
        cid = await cloud.send_command(device_id, Unlock(spot=3))
        res = await cloud.wait_result(device_id, cid)
        assert (res.status, res.reason) == (ResultStatus.REJECTED, RejectReason.BUSY)
        assert res.detail == "too many commands in flight"
        counters = link_counters(rig)
        assert counters["commands_over_limit"] == 1 and counters["commands_in_flight"] == 2
        assert UNLOCK_RECEIVED not in [e for _, e in rig.sim.boards[3].latch_log]
        for n in (1, 2):
            rig.sim.boards[n].open_latch()
        for cid in held:
            assert (await cloud.wait_result(device_id, cid)).status is ResultStatus.DONE
        await eventually(lambda: link_counters(rig)["commands_in_flight"] == 0)
        cid = await cloud.send_command(device_id, Unlock(spot=3))
        assert (await cloud.wait_result(device_id, cid)).status is ResultStatus.DONE
        assert link_counters(rig)["commands_over_limit"] == 1


async def test_a_lock_that_never_opens_fails_and_the_spot_recovers(
    mosquitto: MosquittoService, cloud: CloudPeer, tmp_path: Path, device_id: str
) -> None:
    async with station(mosquitto, cloud, tmp_path, device_id, 2,
                       actuation_s=0.02, actuation_timeout_s=0.3) as rig:
        assert rig.agent is not None
        rig.sim.stick_lock(1)
        cid = await cloud.send_command(device_id, Unlock(spot=1))
        res = await cloud.wait_result(device_id, cid)
        assert (res.status, res.reason, res.detail) == (
            ResultStatus.FAILED, RejectReason.HARDWARE_FAULT, "lock did not open")
        await cloud.wait_for(device_id, lambda r: r.body == BoardFault(1, "lock did not open"))
        await cloud.wait_for(device_id, lambda r: isinstance(r.body, Status) and r.body.spot == 1
                             and r.body.state is SpotState.FAULT)
        assert rig.sim.boards[1].lock is BusLock.LOCKED
        assert rig.agent.bus.counters.latch_timeouts == 1
        # A lock reading closed is no recovery here: polls come and go, the spot stays FAULT.
        polled = rig.sim.boards[1].requests
        await eventually(lambda: rig.sim.boards[1].requests >= polled + 3)
        assert rig.agent.spots[1].state is SpotState.FAULT
        cid = await cloud.send_command(device_id, Unlock(spot=1))
        res = await cloud.wait_result(device_id, cid)
        assert (res.status, res.reason) == (ResultStatus.REJECTED, RejectReason.HARDWARE_FAULT)
        # the other spot is not affected
        cid = await cloud.send_command(device_id, Unlock(spot=2))
        assert (await cloud.wait_result(device_id, cid)).status is ResultStatus.DONE
        # repaired; a Lock closes it and the spot is back in service
        rig.sim.stick_lock(1, False)
        cid = await cloud.send_command(device_id, Lock(spot=1))
        assert (await cloud.wait_result(device_id, cid)).status is ResultStatus.DONE
        await cloud.wait_for(device_id, lambda r: r.body == BoardRecovered(1))
        cid = await cloud.send_command(device_id, Unlock(spot=1))
        assert (await cloud.wait_result(device_id, cid)).status is ResultStatus.DONE
        assert rig.sim.boards[1].lock is BusLock.OPEN


async def test_boards_that_answer_unlock_after_actuating_still_unlock(
    mosquitto: MosquittoService, cloud: CloudPeer, tmp_path: Path, device_id: str
) -> None:
    async with station(mosquitto, cloud, tmp_path, device_id, 3, actuation_s=0.05) as rig:
        assert rig.agent is not None
        for board in rig.sim.boards.values():
            board.acks_after_actuation = True
        cids = await asyncio.gather(
            *(cloud.send_command(device_id, Unlock(spot=n)) for n in (1, 2, 3))
        )
        for cid in cids:
            assert (await cloud.wait_result(device_id, cid)).status is ResultStatus.DONE
        assert rig.agent.bus.counters.unlock_polls == 3  # each first reading said OPEN
        assert rig.agent.bus.counters.latch_timeouts == 0


async def test_stopping_mid_unlock_leaves_no_command_task_behind(
    mosquitto: MosquittoService, cloud: CloudPeer, tmp_path: Path, device_id: str
) -> None:
    async with station(mosquitto, cloud, tmp_path, device_id, 2,
                       actuation_timeout_s=60.0) as rig:
        assert rig.agent is not None
        link = rig.agent.link
        rig.sim.stick_lock(1)
        await cloud.send_command(device_id, Unlock(spot=1))
        await eventually(received_unlock(rig, 1), within=10)
        assert link.snapshot()["link"]["commands_in_flight"] == 1
        await rig.stop_agent()
        assert link.snapshot()["link"]["commands_in_flight"] == 0
        assert [t for t in asyncio.all_tasks() if t.get_name().startswith("command-")] == []
