"""Many simulated vehicles in one process, each with (optionally) its real agent.

    async with VehicleFleet(tmp, mqtt_host=h, mqtt_port=p, command_keys=[pub_hex]) as fleet:
        m = await fleet.add("BK000001")       # simulator + coverage proxy + agent
        m.sim.ride(LYON_RIDE); m.proxy.cut(); m.sim.rider_lock(); m.proxy.restore()

The agent is the unmodified :class:`kickstand.edge.vehicle.VehicleAgent`, configured
with the simulator's ports (``agent_settings``); it reaches the broker through the
member's :class:`CoverageProxy`, so coverage can be dropped per vehicle.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kickstand.edge.vehicle import VehicleAgent, VehicleSettings
from kickstand.simulators.vehicle.coverage import CoverageProxy
from kickstand.simulators.vehicle.errors import ScenarioError
from kickstand.simulators.vehicle.vehicle import DEFAULT_POSITION, SimulatedVehicle

log = logging.getLogger("kickstand.simulators.vehicle.fleet")


def agent_settings(
    sim: SimulatedVehicle,
    *,
    mqtt_url: str,
    state_dir: Path,
    command_keys: Iterable[str] = (),
    **overrides: Any,
) -> VehicleSettings:
    """Settings for the real agent wired to ``sim``'s ports (overrides win)."""
    ports = sim.ports
    values: dict[str, Any] = {
        "device_id": sim.device_id,
        "serial_number": sim.serial_number,
        "mqtt_url": mqtt_url,
        "state_dir": state_dir,
        "command_keys": list(command_keys),
        "gps_port": ports.gps,
        "lockbox_port": ports.lockbox,
        "pinpad_port": ports.pinpad,
        "motion_port": ports.motion,
        "bms_address": ports.bms,
        "nfc_path": ports.nfc,
        "lockbox_timeout_s": 0.3,  # a pty in a busy test process, not a 50 ms UART
    }
    values.update(overrides)
    return VehicleSettings.load(None, **values)


@dataclass(slots=True)
class FleetMember:
    sim: SimulatedVehicle
    proxy: CoverageProxy | None = None
    agent: VehicleAgent | None = None

    @property
    def device_id(self) -> str:
        return self.sim.device_id


class VehicleFleet:
    def __init__(
        self,
        base_dir: Path,
        *,
        mqtt_host: str = "127.0.0.1",
        mqtt_port: int = 1883,
        command_keys: Iterable[str] = (),
        with_agents: bool = True,
        gps_interval_s: float = 1.0,
        agent_overrides: dict[str, Any] | None = None,
    ) -> None:
        self.base_dir = base_dir
        self.mqtt_host = mqtt_host
        self.mqtt_port = mqtt_port
        self.command_keys = list(command_keys)
        self.with_agents = with_agents
        self.gps_interval_s = gps_interval_s
        self.agent_overrides = dict(agent_overrides or {})
        self.members: dict[str, FleetMember] = {}

    async def __aenter__(self) -> VehicleFleet:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def __getitem__(self, device_id: str) -> FleetMember:
        try:
            return self.members[device_id]
        except KeyError:
            raise ScenarioError(f"no vehicle {device_id} in the fleet") from None

    def __iter__(self) -> Iterator[FleetMember]:
        return iter(list(self.members.values()))

    def __len__(self) -> int:
        return len(self.members)

    async def add(
        self,
        serial_number: str,
        *,
        position: tuple[float, float] = DEFAULT_POSITION,
        nfc: bool = False,
        **agent_overrides: Any,
    ) -> FleetMember:
        """A simulated vehicle (with an NFC peer if ``nfc``), its proxy and its agent."""
        sim = SimulatedVehicle(
            serial_number,
            base_dir=self.base_dir / serial_number,
            position=position,
            gps_interval_s=self.gps_interval_s,
            nfc=nfc,
        )
        if sim.device_id in self.members:
            raise ScenarioError(f"{sim.device_id} is already in the fleet")
        await sim.start()
        member = FleetMember(sim)
        self.members[sim.device_id] = member
        if self.with_agents:
            member.proxy = await CoverageProxy(self.mqtt_host, self.mqtt_port).start()
            overrides = {**self.agent_overrides, **agent_overrides}
            # An mqtt_url of the caller's wins (a TLS broker dialled directly: its
            # certificate names the broker, not this proxy; coverage is then not simulated).
            mqtt_url = overrides.pop("mqtt_url", f"mqtt://{member.proxy.host}:{member.proxy.port}")
            settings = agent_settings(
                sim,
                mqtt_url=mqtt_url,
                state_dir=self.base_dir / serial_number / "agent",
                command_keys=self.command_keys,
                **overrides,
            )
            member.agent = VehicleAgent(settings)
            await member.agent.__aenter__()
        return member

    async def add_many(
        self, count: int, *, prefix: str = "BK", start: int = 1, parallel: int = 16
    ) -> list[FleetMember]:
        """``count`` vehicles ``<prefix><number:06d>``, parked a few metres apart."""
        gate = asyncio.Semaphore(parallel)

        async def one(i: int) -> FleetMember:
            lon, lat = DEFAULT_POSITION
            # spread them a little around the centre, as a parked fleet is
            position = (lon + (i % 20) * 0.0007, lat + (i // 20 % 20) * 0.0005)
            async with gate:
                return await self.add(f"{prefix}{i:06d}", position=position)

        return list(await asyncio.gather(*(one(i) for i in range(start, start + count))))

    async def remove(self, device_id: str) -> None:
        member = self.members.pop(device_id, None)
        if member is None:
            return
        if member.agent is not None:
            await member.agent.__aexit__(None, None, None)
        if member.proxy is not None:
            await member.proxy.stop()
        await member.sim.stop()

    async def stop(self) -> None:
        results = await asyncio.gather(
            *(self.remove(device_id) for device_id in list(self.members)),
            return_exceptions=True,
        )
        for error in results:
            if isinstance(error, Exception):
                log.warning("fleet_stop_error error=%r", error)

    async def wait_online(self, timeout_s: float = 20.0) -> None:
        """Until every agent's boot was accepted by the cloud."""
        async with asyncio.timeout(timeout_s):
            for member in list(self.members.values()):
                if member.agent is not None:
                    await member.agent.started.wait()
                    await member.agent.link.accepted.wait()
