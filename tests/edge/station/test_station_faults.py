"""Hardware faults at the wire and hostile commands: each refused or reported, nothing crashes."""

from __future__ import annotations

import functools
import secrets
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from kickstand.protocol.signing import CommandSigner, generate_private_key
from kickstand.protocol.v1.enums import FirmwareState, RejectReason, ResultStatus, SpotState
from kickstand.protocol.v1.messages import (
    AlarmCleared,
    AlarmTriggered,
    BoardFault,
    BoardRecovered,
    CommandResult,
    Config,
    FirmwareStatus,
    Lock,
    PowerCut,
    PowerRestored,
    SetMaintenance,
    SetSpeedLimit,
    SpotIdentifyFail,
    Status,
    Temperature,
    Unlock,
    UnlockExpired,
    VehicleDocked,
)
from kickstand.simulators.firmware import signed_update
from kickstand.simulators.spotboard import firmware_image
from kickstand.simulators.station.cloudpeer import CloudPeer, eventually
from kickstand.simulators.station.sim import StationRig
from kickstand.testing import MosquittoService


async def test_board_stops_answering_others_keep_working(rig: StationRig,
                                                         cloud: CloudPeer) -> None:
    dev = rig.device_id
    assert rig.agent is not None
    rig.sim.silence(2)
    fault = await cloud.wait_for(dev, lambda r: isinstance(r.body, BoardFault))
    assert fault.body == BoardFault(2, "no answer")
    await cloud.wait_for(
        dev, lambda r: isinstance(r.body, Status) and r.body.spot == 2
        and r.body.state is SpotState.FAULT
    )
    # the rest of the station works meanwhile
    rig.sim.dock(3, "ZZ12345")
    await cloud.wait_for(dev, lambda r: r.body == VehicleDocked(3, "ZZ12345"))
    cid = await cloud.send_command(dev, Unlock(spot=2))
    res = await cloud.wait_result(dev, cid)
    assert (res.status, res.reason) == (ResultStatus.REJECTED, RejectReason.HARDWARE_FAULT)
    rig.sim.silence(2, False)
    await cloud.wait_for(dev, lambda r: r.body == BoardRecovered(2), within=5)
    assert len(cloud.bodies(dev, BoardFault)) == 1  # one fault, however many retries
    await eventually(lambda: rig.agent is not None
                     and rig.agent.spots[2].state is SpotState.EMPTY)


async def test_corrupt_frames_and_garbage_are_counted_and_survived(
    rig: StationRig, cloud: CloudPeer
) -> None:
    dev = rig.device_id
    assert rig.agent is not None
    rig.sim.corrupt(1, 2)  # fewer than the retries: no fault
    rig.sim.dock(1, "CRC0001")
    await cloud.wait_for(dev, lambda r: r.body == VehicleDocked(1, "CRC0001"))
    for _ in range(5):
        rig.sim.flood(700)
    rig.sim.dock(4, "FLOOD01")
    await cloud.wait_for(dev, lambda r: r.body == VehicleDocked(4, "FLOOD01"), within=5)
    rig.sim.boards[2].bad_payload = True  # well framed, meaningless: a fault, not a crash
    fault = await cloud.wait_for(dev, lambda r: isinstance(r.body, BoardFault))
    assert fault.body.spot == 2 and fault.body.reason.startswith("bad status")
    rig.sim.boards[2].bad_payload = False
    await cloud.wait_for(dev, lambda r: r.body == BoardRecovered(2), within=5)
    bus = rig.agent.bus.snapshot()
    assert bus["crc_errors"] >= 2
    assert bus["bytes_discarded"] > 0
    assert len(cloud.bodies(dev, BoardFault)) == 1


async def test_power_alarm_temperature_identify(rig: StationRig, cloud: CloudPeer) -> None:
    dev = rig.device_id
    rig.sim.cut_power()
    await cloud.wait_for(dev, lambda r: isinstance(r.body, PowerCut))
    await cloud.wait_for(dev, lambda r: isinstance(r.body, Status) and r.body.spot == 0
                         and r.body.fault == "power cut")
    rig.sim.restore_power()
    await cloud.wait_for(dev, lambda r: isinstance(r.body, PowerRestored))
    rig.sim.trigger_alarm("door forced")
    alarm = await cloud.wait_for(dev, lambda r: isinstance(r.body, AlarmTriggered))
    assert alarm.body.reason == "door forced"
    rig.sim.clear_alarm()
    await cloud.wait_for(dev, lambda r: isinstance(r.body, AlarmCleared))
    rig.sim.overheat(3, 72.5)
    hot = await cloud.wait_for(dev, lambda r: isinstance(r.body, Temperature))
    assert hot.body == Temperature(3, 72.5, True)
    rig.sim.cool(3)
    await cloud.wait_for(dev, lambda r: isinstance(r.body, Temperature) and not r.body.high)
    rig.sim.overheat(4, -3000.0)  # a sensor gone mad: clamped, never a crash
    await eventually(lambda: rig.agent is not None and rig.agent.spots[4].temperature_c == -100)
    rig.sim.overheat(4, 3276.7)
    mad = await cloud.wait_for(dev, lambda r: isinstance(r.body, Temperature) and r.body.spot == 4)
    assert mad.body == Temperature(4, 250.0, True)
    rig.sim.unreadable_serial(2)
    rig.sim.dock(2, "HIDDEN1")
    await cloud.wait_for(dev, lambda r: r.body == SpotIdentifyFail(2))
    rig.sim.inputs.garbage()  # a broken meter file: logged, nothing else
    assert rig.agent is not None
    await eventually(lambda: rig.agent is not None and rig.agent.inputs.errors > 0)


async def test_lock_that_wont_close(rig: StationRig, cloud: CloudPeer) -> None:
    dev = rig.device_id
    rig.sim.dock(1, "JAM0001")
    await cloud.wait_for(dev, lambda r: r.body == VehicleDocked(1, "JAM0001"))
    rig.sim.jam_lock(1)
    cid = await cloud.send_command(dev, Unlock(spot=1, window_s=1))
    await cloud.wait_result(dev, cid)
    await cloud.wait_for(dev, lambda r: r.body == UnlockExpired(1, cid), within=5)
    await cloud.wait_for(dev, lambda r: r.body == BoardFault(1, "lock did not close"))
    cid = await cloud.send_command(dev, Unlock(spot=1))
    res = await cloud.wait_result(dev, cid)
    assert res.reason is RejectReason.HARDWARE_FAULT
    rig.sim.jam_lock(1, False)
    cid = await cloud.send_command(dev, Lock(spot=1))
    assert (await cloud.wait_result(dev, cid)).status is ResultStatus.DONE
    assert rig.agent is not None
    await eventually(lambda: rig.agent is not None
                     and rig.agent.spots[1].state is SpotState.DOCKED_LOCKED)


async def test_hostile_commands_each_refused_with_reason(rig: StationRig,
                                                         cloud: CloudPeer) -> None:
    dev = rig.device_id
    rig.sim.dock(1, "HOST001")
    await cloud.wait_for(dev, lambda r: r.body == VehicleDocked(1, "HOST001"))

    async def reason_of(payload: bytes, cid: bytes) -> RejectReason | None:
        await cloud.send_raw(dev, payload)
        res = await cloud.wait_result(dev, cid)
        assert res.status is ResultStatus.REJECTED
        return res.reason

    stranger = CommandSigner(generate_private_key())
    env = cloud.envelope(dev, Unlock(spot=1))
    assert await reason_of(stranger.sign(env), env.command_id) is RejectReason.UNKNOWN_KEY
    env = cloud.envelope(dev, Unlock(spot=1), issued_at_ms=1_000_000, ttl_ms=1000)
    assert await reason_of(cloud.signer.sign(env), env.command_id) is RejectReason.EXPIRED
    env = cloud.envelope("st-other1", Unlock(spot=1))
    assert await reason_of(cloud.signer.sign(env), env.command_id) is RejectReason.WRONG_DEVICE
    signed = bytearray(cloud.signer.sign(cloud.envelope(dev, Unlock(spot=1))))
    signed[-5] ^= 0xFF  # break the signature
    env_cid = bytes(16)
    reason = await reason_of(bytes(signed), env_cid) if False else None
    await cloud.send_raw(dev, bytes(signed))
    await cloud.send_raw(dev, b"")
    await cloud.send_raw(dev, secrets.token_bytes(300))
    await cloud.wait_until(
        lambda: sum(1 for b in cloud.bodies(dev, CommandResult)
                    if b.reason in (RejectReason.BAD_SIGNATURE, RejectReason.MALFORMED)) >= 3
    )
    assert reason is None
    cid = await cloud.send_command(dev, SetSpeedLimit(20))
    assert (await cloud.wait_result(dev, cid)).reason is RejectReason.NOT_SUPPORTED
    cid = await cloud.send_command(dev, Unlock(spot=9))
    assert (await cloud.wait_result(dev, cid)).reason is RejectReason.INVALID_STATE
    cid = await cloud.send_command(dev, Unlock(spot=2))  # empty spot
    assert (await cloud.wait_result(dev, cid)).reason is RejectReason.INVALID_STATE
    cid = await cloud.send_command(dev, Config(2, {"no_such_key": 1}))
    assert (await cloud.wait_result(dev, cid)).reason is RejectReason.NOT_SUPPORTED
    cid = await cloud.send_command(dev, SetMaintenance(1, True, "cleaning"))
    assert (await cloud.wait_result(dev, cid)).status is ResultStatus.DONE
    cid = await cloud.send_command(dev, Unlock(spot=1))
    assert (await cloud.wait_result(dev, cid)).reason is RejectReason.MAINTENANCE
    # still alive and obeying
    await cloud.send_command(dev, SetMaintenance(1, False))
    cid = await cloud.send_command(dev, Unlock(spot=1))
    assert (await cloud.wait_result(dev, cid)).status is ResultStatus.DONE
    assert rig.agent is not None
    assert rig.agent.link.counters.commands_rejected >= 9


async def test_firmware_update_of_a_spot_board(rig: StationRig, cloud: CloudPeer,
                                               tmp_path: Path) -> None:
    dev = rig.device_id
    image = firmware_image("sb-1.5.0", 1500)
    path = tmp_path / "sb-1.5.0.bin"
    path.write_bytes(image)

    def statuses(cid: bytes) -> list[ResultStatus]:
        return [b.status for b in cloud.bodies(dev, CommandResult) if b.command_id == cid]

    cid = await cloud.send_command(
        dev, signed_update(image, "sb-1.5.0", f"file://{path}", "spot-board:sb", spot=2)
    )
    await cloud.wait_until(lambda: statuses(cid) == [ResultStatus.ACCEPTED, ResultStatus.DONE])
    states = [b.state for b in cloud.bodies(dev, FirmwareStatus)]
    assert states[0] is FirmwareState.DOWNLOADING and states[-1] is FirmwareState.INSTALLED
    assert rig.sim.boards[2].firmware == "sb-1.5.0"
    # a corrupted image is refused before anything reaches the board
    cid = await cloud.send_command(
        dev, signed_update(image, "sb-1.5.0", f"file://{path}", "spot-board:sb", spot=3,
                           sha256=bytes(32))
    )
    await cloud.wait_until(lambda: statuses(cid) == [ResultStatus.ACCEPTED, ResultStatus.FAILED])
    assert FirmwareState.VERIFY_FAILED in [b.state for b in cloud.bodies(dev, FirmwareStatus)]
    assert rig.sim.boards[3].firmware == "sb-1.4.2"
    # over http://, from a plain web server
    image2 = firmware_image("sb-1.6.0", 900)
    (tmp_path / "sb-1.6.0.bin").write_bytes(image2)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/sb-1.6.0.bin"
        cid = await cloud.send_command(
            dev, signed_update(image2, "sb-1.6.0", url, "spot-board:sb", spot=4))
        await cloud.wait_until(
            lambda: statuses(cid) == [ResultStatus.ACCEPTED, ResultStatus.DONE])
    finally:
        server.shutdown()
        server.server_close()
    assert rig.sim.boards[4].firmware == "sb-1.6.0"


async def test_wrong_board_firmware_is_reported_once(
    mosquitto: MosquittoService, cloud: CloudPeer, tmp_path: Path
) -> None:
    async with StationRig("st-fwbad01", mosquitto.host, mosquitto.port,
                          command_keys=[cloud.public_key_hex], workdir=tmp_path, spots=2,
                          nfc=False, expected_board_firmware="sb-1.4.2") as rig:
        rig.sim.set_board_firmware(2, "sb-0.9.1")
        rig.sim.silence(2)  # board reboots with its (old) firmware
        await cloud.wait_for(rig.device_id, lambda r: r.body == BoardFault(2, "no answer"))
        rig.sim.silence(2, False)
        fault = await cloud.wait_for(
            rig.device_id,
            lambda r: isinstance(r.body, BoardFault) and "firmware" in r.body.reason,
        )
        assert fault.body == BoardFault(2, "firmware sb-0.9.1, expected sb-1.4.2")
        birth = cloud.view(rig.device_id).births[-1]
        assert birth.inventory[0].firmware == "sb-1.4.2"
        assert rig.agent is not None
        await eventually(lambda: rig.agent is not None
                         and rig.agent.spots[2].firmware == "sb-0.9.1")
