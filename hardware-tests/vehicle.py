"""Vehicle controller suite: the production vehicle agent, driven as the cloud drives it.

Order: boot and birth → lock box firmware → GPS fix and NMEA sanity → lock cycle →
chain sensor → BLE battery peer → NFC pass → PIN pad → motion sensor → speed limit.
With ``simulated=True`` the peripherals are a
:class:`~kickstand.simulators.vehicle.SimulatedVehicle` (GPS, lock box, PIN pad and
motion sensor on ptys, the BMS as a BLE transport peer, an NFC pass over nfcpy's udp
driver) and the simulator plays the technician.

NMEA counters come from the agent's own status endpoint (``health_port``): the same
figures a technician reads with ``kickstand-vehicle status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kickstand.protocol.v1.enums import LockState, MotionKind, ResultStatus, TriggerKind
from kickstand.protocol.v1.messages import (
    BadgePresented,
    ChainInserted,
    ChainRemoved,
    Lock,
    Motion,
    PinEntered,
    PinIncorrect,
    SetSpeedLimit,
    Status,
    Telemetry,
    TriggerMessage,
    Unlock,
)
from kickstand.rigs.bench import Bench
from kickstand.rigs.config import VehicleRig
from kickstand.rigs.provisioning import ProvisioningSteps
from kickstand.rigs.runner import StepContext, SuiteRunner
from kickstand.rigs.session import BENCH_TIMINGS, DeviceSession, describe_result
from kickstand.simulators.vehicle import SimulatedVehicle

AGENT_MODULE = "kickstand.edge.vehicle"
VEHICLE_TIMINGS: dict[str, Any] = {
    **BENCH_TIMINGS,
    "lock_poll_s": 0.1,
    "bms_poll_s": 1.0,
    "riding_interval_s": 60.0,  # telemetry on request only, the rig asks
    "parked_interval_s": 600.0,
}
SIM_TIMINGS: dict[str, Any] = {"lockbox_timeout_s": 0.3}  # a pty in a busy process


@dataclass(slots=True)
class VehicleFaults:
    """Faults injected in the simulated vehicle (``--fault`` on the command line)."""

    gps_bad_checksums: bool = False  # a noisy GPS line: many sentences fail their checksum
    jammed_lock: bool = False
    ble_dead: bool = False  # the battery peer out of reach
    pinpad_dead: bool = False  # keys pressed, nothing sent


class VehicleSuite(DeviceSession):
    def __init__(
        self, rig: VehicleRig, bench: Bench, runner: SuiteRunner, workdir: Path,
        sim: SimulatedVehicle | None = None, faults: VehicleFaults | None = None,
    ) -> None:
        super().__init__(bench, rig.device_id, workdir, AGENT_MODULE)
        self.rig = rig
        self.runner = runner
        self.sim = sim
        self.faults = faults or VehicleFaults()
        self.inventory: dict[str, str] = {}

    def configure_agent(self) -> None:
        values: dict[str, Any] = {
            "device_id": self.rig.device_id,
            "serial_number": self.rig.serial_number,
            "mqtt_url": self.bench.device_mqtt_url,
            "command_keys": [self.bench.command_key],
            "state_dir": str(self.workdir / "state"),
            "pin_code": self.rig.test.pin_code,
            **VEHICLE_TIMINGS,
        }
        if self.sim is not None:
            ports = self.sim.ports
            values.update(gps_port=ports.gps, lockbox_port=ports.lockbox,
                          pinpad_port=ports.pinpad, motion_port=ports.motion,
                          bms_address=ports.bms, nfc_path=ports.nfc, **SIM_TIMINGS)
            self.write_agent_config(values)
            return
        p = self.rig.agent
        values.update(gps_port=p.gps_port, gps_baudrate=p.gps_baudrate,
                      lockbox_port=p.lockbox_port, pinpad_port=p.pinpad_port,
                      motion_port=p.motion_port, bms_address=p.bms_address, nfc_path=p.nfc_path,
                      **p.extra)
        self.write_agent_config(values, p.config)

    async def run(self) -> None:
        r, lim = self.runner, self.rig.limits
        r.planned = 10
        await r.step("boot", "Controller boots and sends its birth", self.step_boot,
                     timeout_s=lim.boot_timeout_s + 10,
                     hint="Check the agent log, the controller's firmware and serial number.")
        await r.step("lockbox.firmware", "Lock box answers with its firmware", self.step_lockbox,
                     timeout_s=5, requires=["boot"])
        await r.step("gps", "GPS fix and NMEA sanity", self.step_gps,
                     timeout_s=lim.gps_fix_timeout_s + lim.gps_sample_s + 10, requires=["boot"])
        await r.step("lock_cycle", "Lock cycle within its time budget", self.step_lock_cycle,
                     timeout_s=lim.lock_cycle_s * 2 + 10, requires=["boot"])
        await r.step("chain", "Chain sensor: chain out, chain in", self.step_chain,
                     timeout_s=20, requires=["lock_cycle"])
        await r.step("battery", "BLE battery peer read, levels in range", self.step_battery,
                     timeout_s=15, requires=["boot"])
        await r.step("nfc", "NFC reader reads the test pass", self.step_nfc,
                     timeout_s=5, requires=["boot"])
        await r.step("pinpad", "PIN pad sends the test code", self.step_pinpad,
                     timeout_s=5, requires=["boot"])
        await r.step("motion", "Motion sensor senses a lift", self.step_motion,
                     timeout_s=5, requires=["boot"])
        await r.step("speed_limit", "Speed-limit command acknowledged", self.step_speed_limit,
                     timeout_s=10, requires=["boot"])
        # End of line: the controller gets its identity (issue 17).
        await ProvisioningSteps(self.device_id, "vehicle", self.rig.provisioning,
                                self.workdir).run(r)

    # ---------------------------------------------------------------- steps

    async def step_boot(self, s: StepContext) -> None:
        if self.sim is None:
            p = self.rig.agent
            self.check_serial_ports(s, {
                "gps_port": (p.gps_port, "the GPS"),
                "lockbox_port": (p.lockbox_port, "the lock box"),
                "pinpad_port": (p.pinpad_port, "the PIN pad"),
                "motion_port": (p.motion_port, "the motion sensor"),
            })
        started = time.monotonic()
        await self.agent.start()
        birth = await self.wait_birth(1, self.rig.limits.boot_timeout_s)
        s.measure("birth after", round(time.monotonic() - started, 2), "s")
        s.check("kind", birth.kind.name, equals="VEHICLE")
        s.check("serial number", birth.serial_number, equals=self.rig.serial_number)
        s.check("firmware", birth.firmware, equals=self.rig.expect.firmware)
        s.check("hardware", birth.hardware, equals=self.rig.expect.hardware)
        # the first look at the lock box comes with a status; its firmware is read before
        with contextlib.suppress(TimeoutError):
            await self.wait_body(Status, 5.0)
        fresh = await self.fresh_birth()
        self.inventory = {c.kind: c.firmware for c in fresh.inventory}

    async def step_lockbox(self, s: StepContext) -> None:
        firmware = self.inventory.get("lockbox")
        if not firmware:
            s.measure("firmware", None)
            s.fail(f"the lock box did not answer GET_INFO: check its cable to the controller "
                   f"({self.rig.agent.lockbox_port if self.sim is None else 'simulated'})")
        s.check("firmware", firmware, equals=self.rig.expect.lockbox_firmware)
        s.hint = f"Flash the lock box with {self.rig.expect.lockbox_firmware}."

    async def _gps_stats(self) -> dict[str, int]:
        stats: dict[str, int] = (await self.health())["vehicle"]["gps"]
        return stats

    async def step_gps(self, s: StepContext) -> None:
        lim = self.rig.limits
        started = time.monotonic()
        try:
            async with asyncio.timeout(lim.gps_fix_timeout_s):
                while (await self._gps_stats())["fixes_accepted"] == 0:  # noqa: ASYNC110
                    await asyncio.sleep(0.2)  # the agent's counters announce nothing
        except TimeoutError:
            stats = await self._gps_stats()
            s.measure("sentences", stats["sentences"])
            s.measure("checksum errors", stats["checksum_errors"])
            s.fail(f"no usable GPS fix within {lim.gps_fix_timeout_s:.0f} s "
                   f"({stats['rejected_quality']} rejected for quality): put the antenna "
                   f"under open sky, check its cable")
        s.measure("time to fix", round(time.monotonic() - started, 1), "s")
        before = await self._gps_stats()
        await asyncio.sleep(lim.gps_sample_s)
        after = await self._gps_stats()
        delta = {k: after[k] - before[k] for k in after}
        total = delta["sentences"] + delta["checksum_errors"]
        rate = delta["checksum_errors"] / total if total else 1.0
        s.check("sentences", round(delta["sentences"] / lim.gps_sample_s, 1),
                low=lim.min_sentences_per_s, unit="/s")
        s.check("checksum error rate", round(rate * 100, 1),
                high=lim.max_checksum_error_rate * 100, unit="%")
        s.check("fixes accepted", delta["fixes_accepted"], low=1)
        s.measure("rejected for quality", delta["rejected_quality"])
        mark = self.mark()
        await self.trigger(TriggerKind.TELEMETRY)
        tlm: Telemetry = await self.wait_body(Telemetry, 5.0, mark)
        s.check("fix reported", tlm.lat is not None and tlm.lon is not None, equals=True)
        s.measure("position", f"{tlm.lat}, {tlm.lon}" if tlm.lat is not None else None)
        s.check("HDOP", tlm.hdop, high=lim.max_hdop)
        s.hint = ("Check the GPS serial line (wiring, baud rate "
                  f"{self.rig.agent.gps_baudrate}, ground), the antenna and its cable.")

    async def _lock(self, s: StepContext, body: Unlock | Lock, want: LockState) -> float:
        """Send ``body``; seconds until the agent reports ``want`` as read from the box."""
        started = time.monotonic()
        result = await self.bench.command(self.device_id, body, 10)
        what = "unlock" if isinstance(body, Unlock) else "lock"
        if result.status is not ResultStatus.DONE:
            s.measure(what, describe_result(result))
            s.fail(f"the lock box did not {what} ({describe_result(result)}): check the bolt "
                   f"for obstruction, the motor and its supply")
        deadline = started + self.rig.limits.lock_cycle_s + 2.0
        while True:
            await asyncio.sleep(0.15)  # a lock-box poll reads the state back
            mark = self.mark()
            await self.trigger(TriggerKind.STATUS)
            status: Status = await self.wait_body(Status, 5.0, mark)
            if status.lock is want:
                return time.monotonic() - started
            if time.monotonic() > deadline:
                got = status.lock.name if status.lock is not None else "unknown"
                s.fail(f"the lock box still reports {got} after {what} (expected "
                       f"{want.name}); check the bolt sensor")

    async def step_lock_cycle(self, s: StepContext) -> None:
        budget = self.rig.limits.lock_cycle_s
        status = self.latest_status(0)
        if status is not None and status.lock is LockState.JAMMED:
            s.measure("lock", "JAMMED")
            s.fail(f"the lock box reports its lock jammed ({status.fault}): free the bolt, "
                   f"check the motor")
        if status is None or status.lock is not LockState.LOCKED:
            await self._lock(s, Lock(), LockState.LOCKED)
        opened = await self._lock(s, Unlock(window_s=120), LockState.OPEN)
        s.check("open sensed after", round(opened, 2), high=budget, unit="s")
        closed = await self._lock(s, Lock(), LockState.LOCKED)
        s.check("closed sensed after", round(closed, 2), high=budget, unit="s")
        s.hint = "The lock is slow: check the bolt for friction and the motor supply."

    async def step_chain(self, s: StepContext) -> None:
        await self._lock(s, Unlock(window_s=120), LockState.OPEN)
        mark = self.mark()
        sim = self.sim
        await s.person(
            "Pull the chain out of the lock box",
            until=lambda: self.wait_body(ChainRemoved, 1e6, mark),
            simulate=sim.take_chain_out if sim else None,
            missing="the chain sensor did not see the chain leave: check the sensor and its "
                    "cable",
        )
        s.measure("chain removed", "seen")
        mark = self.mark()
        body: ChainInserted = await s.person(
            "Push the chain back into the lock box",
            until=lambda: self.wait_body(ChainInserted, 1e6, mark),
            simulate=sim.insert_chain if sim else None,
            missing="the chain sensor did not see the chain come back: check the sensor",
        )
        s.measure("chain inserted", body.chain_type.name)
        await self._lock(s, Lock(), LockState.LOCKED)

    async def step_battery(self, s: StepContext) -> None:
        lim = self.rig.limits
        tlm: Telemetry | None = None
        deadline = time.monotonic() + 8.0
        while time.monotonic() < deadline:
            mark = self.mark()
            result = await self.bench.command(
                self.device_id, TriggerMessage(TriggerKind.TELEMETRY), 10)
            if result.status is ResultStatus.DONE:
                tlm = await self.wait_body(Telemetry, 5.0, mark)
                if tlm.battery_pct is not None and tlm.vae_pct is not None:
                    break
            await asyncio.sleep(0.5)
        if tlm is None or (tlm.battery_pct is None and tlm.vae_pct is None):
            where = self.rig.agent.bms_address if self.sim is None else "simulated"
            s.fail(f"no battery value from the BLE battery peer ({where}): check that the "
                   f"BMS is powered, in range and paired")
        s.check("internal battery", tlm.battery_pct, low=lim.battery_pct[0],
                high=lim.battery_pct[1], unit="%")
        s.check("e-assist battery", tlm.vae_pct, low=lim.vae_pct[0], high=lim.vae_pct[1],
                unit="%")
        s.check("e-assist voltage", tlm.vae_mv, low=lim.vae_mv[0], high=lim.vae_mv[1],
                unit="mV")
        s.hint = "Charge the battery or check the BMS and its cells."

    async def step_nfc(self, s: StepContext) -> None:
        uid = bytes.fromhex(self.rig.test.pass_uid)
        mark = self.mark()
        sim = self.sim
        body: BadgePresented = await s.person(
            f"Hold the test pass {uid.hex()} on the vehicle's NFC reader",
            until=lambda: self.wait_body(BadgePresented, 1e6, mark),
            simulate=(lambda: sim.present_pass(uid, 3.0)) if sim else None,
            missing="no pass read: check the NFC reader, its cable and antenna",
        )
        s.check("pass uid", body.badge_uid.hex(), equals=uid.hex())
        s.hint = "Another card was read: use the test pass from the rig description."

    async def step_pinpad(self, s: StepContext) -> None:
        code = self.rig.test.pin_code
        mark = self.mark()
        sim = self.sim

        def simulate() -> None:
            assert sim is not None
            if not self.faults.pinpad_dead:
                sim.enter_pin(code)

        body = await s.person(
            f"Type {code} on the PIN pad and press OK",
            until=lambda: self.wait_body((PinEntered, PinIncorrect), 1e6, mark),
            simulate=simulate if sim else None,
            missing="nothing came from the PIN pad: check its ribbon cable and connector",
        )
        if isinstance(body, PinIncorrect):
            s.fail(f"the pad sent another code than {code} ({body.attempts} wrong): check for "
                   f"a stuck or swapped key")
        s.measure("code", "accepted")

    async def step_motion(self, s: StepContext) -> None:
        mark = self.mark()
        sim = self.sim
        body: Motion = await s.person(
            "Lift the vehicle off the ground",
            until=lambda: self.wait_body(Motion, 1e6, mark),
            simulate=sim.lift if sim else None,
            missing="the motion sensor reported nothing: check its mounting and cable",
        )
        s.check("motion", body.kind.name, equals=MotionKind.LIFTED.name)

    async def step_speed_limit(self, s: StepContext) -> None:
        limit = self.rig.test.speed_limit_kmh
        started = time.monotonic()
        result = await self.bench.command(self.device_id, SetSpeedLimit(limit), 10)
        s.measure("acknowledged after", round(time.monotonic() - started, 2), "s")
        s.check("result", result.status.name, equals=ResultStatus.DONE.name)
        kept = (await self.health())["vehicle"]["speed_limit_kmh"]
        s.check("limit held by the controller", kept, equals=limit, unit="km/h")
        s.hint = f"The controller refused the limit: {describe_result(result)}"


@dataclass(slots=True)
class SimulatedBench:
    """The simulated vehicle and the fault tasks running beside it."""

    sim: SimulatedVehicle
    tasks: list[asyncio.Task[None]]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.sim.stop()


async def start_simulated_vehicle(
    rig: VehicleRig, workdir: Path, faults: VehicleFaults | None
) -> SimulatedBench:
    sim = SimulatedVehicle(rig.serial_number, base_dir=workdir / "sim", gps_interval_s=0.2,
                           nfc=True, seed=7)
    sim.lockbox.state.firmware = rig.expect.lockbox_firmware
    await sim.start()
    tasks: list[asyncio.Task[None]] = []
    if faults is not None:
        if faults.jammed_lock:
            sim.jam_lock(True)
        if faults.ble_dead:
            sim.ble_available(False)
        if faults.gps_bad_checksums:
            tasks.append(asyncio.create_task(_noisy_gps(sim), name="rig-gps-noise"))
    return SimulatedBench(sim, tasks)


async def _noisy_gps(sim: SimulatedVehicle) -> None:
    """Bad sentences with every GPS burst: a noisy line or a wrong baud rate."""
    while True:
        sim.send_bad_nmea(3)
        await asyncio.sleep(sim.gps_interval_s)
