"""The edge-agent framework: one Config rule, one store (and its migration), one Reboot,
unknown commands NOT_SUPPORTED — checked on both real agents where it is wire-visible."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from pycose.algorithms import EdDSA
from pycose.headers import KID, Algorithm
from pycose.keys.curves import Ed25519
from pycose.keys.okp import OKPKey
from pycose.messages import Sign1Message

from kickstand.edge.core.errors import CommandRefused
from kickstand.edge.core.queue import DiskQueue
from kickstand.edge.core.state import AgentState, migrate
from kickstand.edge.station import StationSettings
from kickstand.edge.vehicle import VehicleAgent, VehicleSettings
from kickstand.protocol.signing import (
    CommandSigner,
    generate_private_key,
    private_key_bytes,
    public_key_bytes,
)
from kickstand.protocol.v1 import codec
from kickstand.protocol.v1.enums import DeviceState, RejectReason, ResultStatus
from kickstand.protocol.v1.messages import Config, Lock, Reboot, SetMaintenance, Status
from kickstand.simulators.station.cloudpeer import CloudPeer, eventually
from kickstand.simulators.station.sim import StationRig
from kickstand.testing import MosquittoService


def station_settings(**values: Any) -> StationSettings:
    return StationSettings(device_id="st-cfg0001", **values)


# ---------------------------------------------------------------- Config: one rule


def test_config_is_validated_as_a_whole_all_or_nothing() -> None:
    base = station_settings()
    changed = base.with_values({"unlock_window_s": 7, "temperature_high_c": 65})
    assert (changed.unlock_window_s, changed.temperature_high_c) == (7, 65.0)
    assert base.unlock_window_s is None  # a new object; the old one is untouched
    with pytest.raises(CommandRefused) as unknown:
        base.with_values({"unlock_window_s": 7, "spot_bus": "/dev/x", "nope": 1})
    assert unknown.value.reject_reason is RejectReason.NOT_SUPPORTED
    assert unknown.value.detail == "unknown keys: nope,spot_bus"
    for wrong in ({"unlock_window_s": True}, {"unlock_window_s": 7.5},
                  {"offline_allow_unknown": 1}, {"poll_interval_s": "1"}):
        with pytest.raises(CommandRefused) as malformed:
            base.with_values(wrong)
        assert malformed.value.reject_reason is RejectReason.MALFORMED, wrong


def test_config_values_the_models_validators_refuse_are_malformed() -> None:
    vehicle = VehicleSettings(device_id="vh-CFG00001", serial_number="CFG00001")
    with pytest.raises(CommandRefused) as refused:
        vehicle.with_values({"battery_low_pct": 0})  # the model says 1..99
    assert refused.value.reject_reason is RejectReason.MALFORMED
    with pytest.raises(CommandRefused):
        vehicle.with_values({"riding_interval_s": -1})
    assert vehicle.with_values({"pin_code": "1234"}).pin_code == "1234"


# ---------------------------------------------------------------- the store and its migration


def test_the_station_config_of_an_earlier_agent_is_migrated(tmp_path: Path) -> None:
    queue = DiskQueue(tmp_path / "queue.db")
    try:
        queue.save_state({"config_values": json.dumps({"unlock_window_s": 9}),
                          "config_version": "4"})
        state = AgentState(queue)
        migrate(state, tmp_path)
        assert state.config() == (4, {"unlock_window_s": 9})
        state.put(state.config_entry(5, {"unlock_window_s": 11}))
        migrate(state, tmp_path)  # once: a later start does not take the old keys again
        assert state.config() == (5, {"unlock_window_s": 11})
    finally:
        queue.close()


def test_the_vehicle_store_of_an_earlier_agent_is_migrated(tmp_path: Path) -> None:
    (tmp_path / "vehicle.json").write_text(json.dumps({
        "config_version": 3, "config_values": {"riding_interval_s": 2.0},
        "speed_limit_kmh": 20, "maintenance": True, "maintenance_reason": "brakes",
        "firmware": "vh-1.1.0",
    }))
    queue = DiskQueue(tmp_path / "queue.db")
    try:
        state = AgentState(queue)
        migrate(state, tmp_path)
        assert state.config() == (3, {"riding_interval_s": 2.0})
        assert state.get("firmware") == "vh-1.1.0"
        assert state.get("vehicle.speed_limit_kmh") == 20
        assert state.get("vehicle.maintenance") == {"on": True, "reason": "brakes"}
        assert not (tmp_path / "vehicle.json").exists()
        assert (tmp_path / "vehicle.json.migrated").exists()
    finally:
        queue.close()
    (tmp_path / "vehicle.json").write_text("{torn")  # unreadable: defaults, never fatal
    queue = DiskQueue(tmp_path / "queue2.db")
    try:
        migrate(AgentState(queue), tmp_path)
        assert not (tmp_path / "vehicle.json").exists()
    finally:
        queue.close()


@pytest.fixture
async def cloud(mosquitto: MosquittoService) -> Any:
    async with CloudPeer(mosquitto.host, mosquitto.port, username=mosquitto.cloud_username,
                         password=mosquitto.cloud_password) as peer:
        yield peer


async def test_a_vehicle_upgraded_in_place_keeps_what_it_remembered(
    mosquitto: MosquittoService, cloud: CloudPeer, tmp_path: Path
) -> None:
    """An agent of the former version left vehicle.json: the first start of this one births
    with its config version and firmware, in maintenance, with its config applied."""
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "vehicle.json").write_text(json.dumps({
        "config_version": 3, "config_values": {"riding_interval_s": 2.0},
        "maintenance": True, "maintenance_reason": "brakes", "firmware": "vh-1.1.0",
    }))
    settings = VehicleSettings(
        device_id="vh-MIG00001", serial_number="MIG00001", mqtt_url=mosquitto.device_url,
        state_dir=state_dir, command_keys=[cloud.public_key_hex], boot_timeout_s=2.0,
        reconnect_min_s=0.1, reconnect_max_s=0.5, queue_synchronous="NORMAL",
    )
    async with VehicleAgent(settings) as agent:
        birth = await cloud.wait_birth("vh-MIG00001")
        assert (birth.config_version, birth.firmware) == (3, "vh-1.1.0")
        assert agent.settings.riding_interval_s == 2.0 and agent.maintenance
        cid = await cloud.send_command("vh-MIG00001", SetMaintenance(0, False))
        assert (await cloud.wait_result("vh-MIG00001", cid)).status is ResultStatus.DONE
        status = await cloud.wait_for("vh-MIG00001", lambda r: isinstance(r.body, Status))
        assert status.body.state is not DeviceState.MAINTENANCE

        # One Reboot for every agent: the result, a goodbye, then a new boot.
        cid = await cloud.send_command("vh-MIG00001", Reboot())
        assert (await cloud.wait_result("vh-MIG00001", cid)).status is ResultStatus.DONE
        await cloud.wait_until(lambda: cloud.view("vh-MIG00001").deaths == 1)
        await cloud.wait_birth("vh-MIG00001", count=2)
        assert agent.boots == 2 and not agent.maintenance  # remembered across the boot


# ---------------------------------------------------------------- the station on the wire


async def test_station_config_persists_reboot_and_unknown_command_types(
    mosquitto: MosquittoService, tmp_path: Path
) -> None:
    private = generate_private_key()
    signer = CommandSigner(private)
    async with CloudPeer(mosquitto.host, mosquitto.port, username=mosquitto.cloud_username,
                         password=mosquitto.cloud_password, signer=signer) as cloud, \
            StationRig("st-frame01", mosquitto.host, mosquitto.port, spots=1, nfc=False,
                       command_keys=[cloud.public_key_hex], workdir=tmp_path) as rig:
        dev = rig.device_id
        await rig.accepted()

        # An unknown command type: NOT_SUPPORTED (SPEC §8), not MALFORMED.
        envelope = cloud.envelope(dev, Lock(spot=1))
        payload = cbor2.loads(codec.encode_command_payload(envelope))
        payload[2] = 200
        msg = Sign1Message(phdr={Algorithm: EdDSA, KID: signer.kid}, payload=cbor2.dumps(payload))
        msg.key = OKPKey(crv=Ed25519, d=private_key_bytes(private), x=public_key_bytes(private))
        await cloud.send_raw(dev, msg.encode(tag=True))
        result = await cloud.wait_result(dev, envelope.command_id)
        assert (result.status, result.reason) == (ResultStatus.REJECTED,
                                                  RejectReason.NOT_SUPPORTED)

        # Config: all or nothing, persisted, reported in the birth after a restart.
        cid = await cloud.send_command(dev, Config(6, {"unlock_window_s": 9, "nope": 1}))
        assert (await cloud.wait_result(dev, cid)).reason is RejectReason.NOT_SUPPORTED
        assert rig.agent is not None and rig.agent.settings.unlock_window_s is None
        cid = await cloud.send_command(dev, Config(7, {"unlock_window_s": 9}))
        assert (await cloud.wait_result(dev, cid)).status is ResultStatus.DONE
        await rig.restart_agent()
        birth = await cloud.wait_birth(dev, count=2)
        assert birth.config_version == 7
        await eventually(lambda: rig.agent is not None and rig.agent.started.is_set())
        assert rig.agent is not None and rig.agent.settings.unlock_window_s == 9


async def test_a_stop_before_the_boot_began_still_ends_it(tmp_path: Path) -> None:
    """A signal at start-up (stop() before run() got going) is not lost."""
    settings = VehicleSettings(
        device_id="vh-STOP0001", serial_number="STOP0001", mqtt_url="mqtt://127.0.0.1:9",
        state_dir=tmp_path, queue_synchronous="NORMAL",
    )
    agent = VehicleAgent(settings)
    agent.stop()
    async with asyncio.timeout(5):
        assert await agent.run() == "stopped"
    assert agent.boots == 1 and not agent.started.is_set()
