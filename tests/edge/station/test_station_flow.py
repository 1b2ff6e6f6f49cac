"""Station agent + simulator + real Mosquitto: the rider's flows, events once and in order."""

from __future__ import annotations

from kickstand.protocol.v1.enums import LockCause, ResultStatus, SpotState
from kickstand.protocol.v1.messages import (
    Birth,
    CommandResult,
    Locked,
    Status,
    Unlock,
    Unlocked,
    UnlockExpired,
    VehicleDocked,
    VehicleRemoved,
)
from kickstand.simulators.station.cloudpeer import CloudPeer, eventually
from kickstand.simulators.station.sim import StationRig

EVENTS = (VehicleDocked, VehicleRemoved, Locked, Unlocked, UnlockExpired)


def events(cloud: CloudPeer, device: str) -> list[object]:
    return cloud.bodies(device, EVENTS)


async def test_birth_has_inventory(rig: StationRig, cloud: CloudPeer) -> None:
    birth = await cloud.wait_birth(rig.device_id)
    assert isinstance(birth, Birth)
    assert [c.index for c in birth.inventory] == [1, 2, 3, 4]
    await cloud.wait_until(
        lambda: {s.spot for s in cloud.bodies(rig.device_id, Status)} >= {0, 1, 2, 3, 4}
    )


async def test_unlock_take_return_elsewhere(rig: StationRig, cloud: CloudPeer) -> None:
    dev = rig.device_id
    rig.sim.dock(1, "AB123456")
    await cloud.wait_for(dev, lambda r: isinstance(r.body, Locked))
    cid = await cloud.send_command(dev, Unlock(spot=1, window_s=30))
    result = await cloud.wait_result(dev, cid)
    assert result.status is ResultStatus.DONE
    rig.sim.take(1)
    await cloud.wait_for(dev, lambda r: isinstance(r.body, VehicleRemoved))
    rig.sim.dock(3, "AB123456")
    await cloud.wait_until(lambda: len(events(cloud, dev)) >= 6)
    assert events(cloud, dev) == [
        VehicleDocked(1, "AB123456"),
        Locked(1, LockCause.DOCKING),
        Unlocked(1, LockCause.COMMAND, cid),
        VehicleRemoved(1, "AB123456", command_id=cid),
        VehicleDocked(3, "AB123456"),
        Locked(3, LockCause.DOCKING),
    ]
    # the same command again is a replay: refused, nothing moves
    assert rig.agent is not None
    await cloud.send_envelope(
        cloud.envelope(dev, Unlock(spot=3), command_id=cid)
    )
    results = lambda: [b for b in cloud.bodies(dev, CommandResult) if b.command_id == cid]  # noqa: E731
    await cloud.wait_until(lambda: len(results()) == 2)
    assert results()[1].status is ResultStatus.REJECTED
    assert rig.agent.spots[3].state is SpotState.DOCKED_LOCKED
    assert cloud.view(dev).duplicates == 0


async def test_unlock_window_expires_relocks(rig: StationRig, cloud: CloudPeer) -> None:
    dev = rig.device_id
    rig.sim.dock(2, "XY998877")
    await cloud.wait_for(dev, lambda r: isinstance(r.body, Locked))
    cid = await cloud.send_command(dev, Unlock(spot=2, window_s=1))
    await cloud.wait_result(dev, cid)
    expired = await cloud.wait_for(dev, lambda r: isinstance(r.body, UnlockExpired), within=5)
    assert expired.body == UnlockExpired(2, cid)
    await eventually(lambda: rig.sim.boards[2].lock.name == "LOCKED")
    assert rig.agent is not None and rig.agent.spots[2].state is SpotState.DOCKED_LOCKED
    assert not cloud.bodies(dev, VehicleRemoved)


async def test_trigger_config_telemetry_reboot(rig: StationRig, cloud: CloudPeer) -> None:
    from kickstand.protocol.v1.enums import TriggerKind
    from kickstand.protocol.v1.messages import Config, Reboot, Telemetry, TriggerMessage

    dev = rig.device_id
    assert rig.agent is not None
    rig.sim.inputs.add_energy(1234)
    await eventually(lambda: rig.agent is not None
                     and rig.agent.last_inputs.energy_wh == 1234)
    cid = await cloud.send_command(dev, TriggerMessage(TriggerKind.TELEMETRY))
    assert (await cloud.wait_result(dev, cid)).status is ResultStatus.DONE
    tlm = (await cloud.wait_for(dev, lambda r: isinstance(r.body, Telemetry))).body
    assert tlm.energy_wh == 1234 and [s for s, _ in tlm.spot_temperatures_c] == [1, 2, 3, 4]
    cid = await cloud.send_command(dev, Config(5, {"unlock_window_s": 7}))
    assert (await cloud.wait_result(dev, cid)).status is ResultStatus.DONE
    assert rig.agent.settings.unlock_window_s == 7
    cid = await cloud.send_command(dev, TriggerMessage(TriggerKind.BIRTH))
    birth = await cloud.wait_birth(dev, count=2)
    assert birth.config_version == 5
    before = len([s for s in cloud.bodies(dev, Status) if s.spot == 2])
    await cloud.send_command(dev, TriggerMessage(TriggerKind.STATUS, spot=2))
    await cloud.wait_until(
        lambda: len([s for s in cloud.bodies(dev, Status) if s.spot == 2]) == before + 1
    )
    first = rig.agent
    cid = await cloud.send_command(dev, Reboot())
    assert (await cloud.wait_result(dev, cid)).status is ResultStatus.DONE
    await cloud.wait_until(lambda: cloud.view(dev).deaths == 1)  # said goodbye
    # The rig's supervisor starts it again, as the mainboard's does: a new agent, born again.
    await cloud.wait_birth(dev, count=3)
    assert rig.agent is not first
