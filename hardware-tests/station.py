"""Station end-of-line suite: the production station agent, driven as the cloud drives it.

Order: boot and birth → each spot board's firmware → per spot: docked vehicle's serial,
lock cycle, release → badge reader → temperature → power → offline queue across a power
cut → firmware staging to a spot board. With ``simulated=True`` the station's hardware is
:class:`~kickstand.simulators.station.sim.SimulatedStation` (spot boards on a pty, a badge
over nfcpy's udp driver, the power inputs) and the simulator plays the technician.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from kickstand.protocol.firmware import Manifest, sign_manifest
from kickstand.protocol.v1.enums import (
    FirmwareState,
    LockState,
    ResultStatus,
    SpotState,
    TriggerKind,
)
from kickstand.protocol.v1.messages import (
    BadgePresented,
    Birth,
    FirmwareStatus,
    FirmwareUpdate,
    Lock,
    PowerCut,
    PowerRestored,
    SpotIdentifyFail,
    Status,
    Telemetry,
    Unlock,
    UnlockExpired,
    VehicleDocked,
    VehicleRemoved,
)
from kickstand.rigs.bench import Bench
from kickstand.rigs.config import StationRig
from kickstand.rigs.errors import StepFailed
from kickstand.rigs.provisioning import ProvisioningSteps
from kickstand.rigs.runner import StepContext, SuiteRunner
from kickstand.rigs.session import (
    BENCH_TIMINGS,
    DeviceSession,
    describe_result,
    expect_done,
    logged,
)
from kickstand.simulators.spotboard import firmware_image
from kickstand.simulators.station.sim import SimulatedStation

AGENT_MODULE = "kickstand.edge.station"
# What the station agent logs about its badge reader (edge/station/agent.py,
# edge/transports/nfc.py): the badge hint quotes these, and only these, beside the reader's
# liveness in the agent's health snapshot (``badge_reader``: polls, reads, errors, ages).
READER_UNAVAILABLE = "badge_reader_unavailable"
READER_ERROR = "nfc_error"
STATION_TIMINGS: dict[str, Any] = {
    **BENCH_TIMINGS,
    "poll_interval_s": 0.25,
    "active_poll_interval_s": 0.05,
    "inputs_interval_s": 0.1,
    "board_retry_min_s": 0.2,
    "board_retry_max_s": 1.0,
}
SIM_TIMINGS: dict[str, Any] = {"response_timeout_s": 0.2}  # a pty in a busy process
SIM_ACTUATION_S = 0.03  # the simulated latches take a real latch's time to release


@dataclass(slots=True)
class StationFaults:
    """Faults injected in the simulated station (``--fault`` on the command line)."""

    jammed_locks: set[int] = field(default_factory=set)  # the latch does not close
    stuck_locks: set[int] = field(default_factory=set)  # the latch does not open
    board_firmware: dict[int, str] = field(default_factory=dict)  # spot -> wrong version
    dead_badge_reader: bool = False  # nothing answers the reader's polling
    silent_boards: set[int] = field(default_factory=set)  # board does not answer at all
    hot_spots: dict[int, float] = field(default_factory=dict)  # spot -> °C
    mains_off: bool = False  # the station runs on its backup supply from the start

    def apply(self, sim: SimulatedStation) -> None:
        if self.mains_off:
            sim.cut_power()
        for spot in self.jammed_locks:
            sim.jam_lock(spot)
        for spot in self.stuck_locks:
            sim.stick_lock(spot)
        for spot, version in self.board_firmware.items():
            sim.set_board_firmware(spot, version)
        for spot in self.silent_boards:
            sim.silence(spot)
        for spot, celsius in self.hot_spots.items():
            sim.overheat(spot, celsius)


class StationSuite(DeviceSession):
    def __init__(
        self, rig: StationRig, bench: Bench, runner: SuiteRunner, workdir: Path,
        sim: SimulatedStation | None = None,
    ) -> None:
        super().__init__(bench, rig.device_id, workdir, AGENT_MODULE)
        self.rig = rig
        self.runner = runner
        self.sim = sim
        self.inventory: dict[int, str] = {}
        self.docked_spot: int | None = None  # where the test vehicle is, if anywhere
        # Spot boards found not answering: their one fix item is their firmware step; the
        # steps that need the board say so instead of blaming the parts behind it.
        self.dead_boards: set[int] = set()

    # ---------------------------------------------------------------- setup

    def configure_agent(self) -> None:
        common = {
            **STATION_TIMINGS,
            "state_dir": str(self.workdir / "state"),
            "expected_board_firmware": self.rig.expect.spot_firmware,
            "firmware_public_keys": [self.bench.firmware_public_key],
            "log_level": "INFO",
        }
        if self.sim is not None:
            values = self.sim.agent_config(self.bench.device_mqtt_url, [self.bench.command_key],
                                           **common, **SIM_TIMINGS)
            self.write_agent_config(values)
            return
        ports = self.rig.agent
        values = {
            "device_id": self.rig.device_id,
            "mqtt_url": self.bench.device_mqtt_url,
            "command_keys": [self.bench.command_key],
            "spots": self.rig.expect.spots,
            "spot_bus": ports.spot_bus,
            "badge_reader": ports.badge_reader,
            "inputs": ports.inputs,
            **common,
            **ports.extra,
        }
        self.write_agent_config(values, ports.config)

    # ---------------------------------------------------------------- the suite

    async def run(self) -> None:
        r, lim = self.runner, self.rig.limits
        spots = range(1, self.rig.expect.spots + 1)
        r.planned = 1 + 4 * len(spots) - 1 + 5
        await r.step("boot", "Mainboard boots and sends its birth", self.step_boot,
                     timeout_s=lim.boot_timeout_s + 10,
                     hint="Check the agent log, the mainboard's firmware and hardware ids.")
        for n in spots:
            await r.step(f"spot{n}.firmware", f"Spot {n}: board answers with its firmware",
                         partial(self.step_board, n=n), timeout_s=5, requires=["boot"])
        for n in spots:
            await r.step(f"spot{n}.vehicle_serial", f"Spot {n}: reads the docked vehicle's serial",
                         partial(self.step_serial, n=n), timeout_s=10, requires=["boot"])
            await r.step(f"spot{n}.lock_cycle", f"Spot {n}: lock cycle within its time budget",
                         partial(self.step_lock_cycle, n=n), timeout_s=lim.lock_cycle_s + 10,
                         requires=[f"spot{n}.vehicle_serial"])
            if n != spots[-1]:
                await r.step(f"spot{n}.release", f"Spot {n}: test vehicle released and removed",
                             partial(self.step_release, n=n), timeout_s=15,
                             requires=[f"spot{n}.vehicle_serial"])
        await r.step("badge", "Badge reader reads the test badge", self.step_badge,
                     timeout_s=5, requires=["boot"])
        await r.step("temperature", "Temperatures in range", self.step_temperature,
                     timeout_s=10, requires=["boot"])
        await r.step("power", "Power readings in range", self.step_power,
                     timeout_s=10, requires=["boot"])
        await r.step("offline_queue", "Offline queue survives a power cut", self.step_offline,
                     timeout_s=lim.boot_timeout_s * 2 + 20, requires=["boot"])
        await r.step("firmware_staging",
                     f"Firmware staged to spot {self.rig.firmware.spot} and verified",
                     self.step_firmware, timeout_s=lim.firmware_timeout_s + 10,
                     requires=["boot"])
        # End of line: the mainboard gets its identity (issue 17).
        await ProvisioningSteps(self.device_id, "station", self.rig.provisioning,
                                self.workdir).run(r)

    # ---------------------------------------------------------------- steps

    async def step_boot(self, s: StepContext) -> None:
        if self.sim is None:
            self.check_serial_ports(s, {"spot_bus": (self.rig.agent.spot_bus,
                                                     "the spot bus (RS-485 adapter)")})
        started = time.monotonic()
        await self.agent.start()
        birth = await self.wait_birth(1, self.rig.limits.boot_timeout_s)
        s.measure("birth after", round(time.monotonic() - started, 2), "s")
        # The agent reports every spot once its first bus round is done.
        spots = self.rig.expect.spots
        try:
            await self.bench.peer.wait_until(
                lambda: all(self.latest_status(n) is not None for n in range(spots + 1)), 10.0)
        except TimeoutError:
            s.fail(f"birth received but no status for all {spots} spots: is the spot bus "
                   f"({self.rig.agent.spot_bus}) connected?")
        s.check("kind", birth.kind.name, equals="STATION")
        s.check("mainboard firmware", birth.firmware, equals=self.rig.expect.mainboard_firmware)
        s.check("hardware", birth.hardware, equals=self.rig.expect.hardware)
        s.hint = "Flash the expected mainboard firmware or fix the rig description."
        fresh = await self.fresh_birth()
        self.inventory = {c.index: c.firmware for c in fresh.inventory if c.kind == "spot"}

    async def step_board(self, s: StepContext, n: int) -> None:
        expected = self.rig.expect.spot_firmware
        firmware = self.inventory.get(n)
        if not firmware:
            self.dead_boards.add(n)
            s.measure("firmware", None)
            status = self.latest_status(n)
            agent = f" (agent: {status.fault})" if status is not None and status.fault else ""
            s.fail(f"spot {n}: the board did not answer GET_INFO{agent}. Check spot board "
                   f"{n}'s bus cable, its address setting ({n}) and its power.")
        s.check("firmware", firmware, equals=expected)
        s.hint = (f"Spot {n}'s board runs another firmware: flash {expected} "
                  f"(or stage it from the rig).")

    def _skip_if_dead(self, s: StepContext, n: int) -> None:
        if n in self.dead_boards:
            s.skip(f"not run: spot board {n} does not answer (see Spot {n}: board answers "
                   f"with its firmware)")

    async def step_serial(self, s: StepContext, n: int) -> None:
        self._skip_if_dead(s, n)
        serial = self.rig.test.vehicle_serial
        sim = self.sim
        status = self.latest_status(n)
        if status is not None and status.state is SpotState.DOCKED_LOCKED and \
                status.serial_number:
            s.measure("already docked", status.serial_number)
            got = status.serial_number
        else:
            mark = self.mark()

            async def docked() -> Any:
                return await self.wait_body(
                    (VehicleDocked, SpotIdentifyFail), 1e6, mark, lambda b: b.spot == n)

            body = await s.person(
                f"Dock the test vehicle {serial} in spot {n}",
                until=docked,
                simulate=(lambda: sim.dock(n, serial)) if sim else None,
                missing=(f"spot {n} saw no vehicle: check the presence sensor and that the "
                         f"vehicle is pushed fully in"),
            )
            if isinstance(body, SpotIdentifyFail):
                s.fail(f"spot {n} senses a vehicle but cannot read its serial: check the "
                       f"spot's tag reader coil and the vehicle's tag")
            got = body.serial_number
        self.docked_spot = n
        s.check("serial number", got, equals=serial)
        s.hint = f"Is {serial} the vehicle in spot {n}? Check the rig description's test vehicle."

    async def step_lock_cycle(self, s: StepContext, n: int) -> None:
        budget = self.rig.limits.lock_cycle_s
        started = time.monotonic()
        result = await self.bench.command(self.device_id, Unlock(spot=n, window_s=120), 10)
        if result.status is not ResultStatus.DONE:
            s.measure("unlock", describe_result(result))
            detail = result.detail or ""
            if "did not close" in detail:
                s.fail(f"spot {n}: the lock did not close on the docked vehicle (agent: "
                       f"{detail}); check the latch mechanism and its position sensor")
            if "did not open" in detail:
                s.fail(f"spot {n}: the board took the UNLOCK but its lock sensor never read "
                       f"open (agent: {detail}); check the latch solenoid or motor, its "
                       f"supply, and the position sensor. The test vehicle stays locked in: "
                       f"free it by hand")
            s.fail(f"spot {n}: unlock {describe_result(result)}; check the lock board")
        opened = await self._sensed(s, n, LockState.OPEN, started, budget)
        s.check("open sensed after", round(opened, 2), high=budget, unit="s")
        relock_started = time.monotonic()
        result = await self.bench.command(self.device_id, Lock(spot=n), 10)
        if result.status is not ResultStatus.DONE:
            s.measure("re-lock", describe_result(result))
            s.fail(f"spot {n}: the lock did not close ({describe_result(result)}); check the "
                   f"latch for obstruction and the motor")
        closed = await self._sensed(s, n, LockState.LOCKED, relock_started, budget)
        s.check("closed sensed after", round(closed, 2), high=budget, unit="s")
        s.check("cycle", round(time.monotonic() - started, 2), high=budget, unit="s")
        s.hint = f"Spot {n}'s lock is slow: check the latch for friction and the motor supply."

    async def _sensed(
        self, s: StepContext, n: int, lock: LockState, since: float, budget: float
    ) -> float:
        """Seconds until the agent reports ``lock`` as read back from the board."""
        # The agent polls the board; a triggered status carries what it last read.
        deadline = since + budget + 2.0
        while True:
            await asyncio.sleep(0.1)
            mark = self.mark()
            await self.trigger(TriggerKind.STATUS, n)
            status: Status = await self.wait_body(Status, 5.0, mark, lambda b: b.spot == n)
            if status.lock is lock:
                return time.monotonic() - since
            if time.monotonic() > deadline:
                got = status.lock.name if status.lock is not None else "unknown"
                s.fail(f"spot {n}: the board still reports the lock {got} {budget:.1f} s after "
                       f"the command (expected {lock.name}); check the latch and its sensor")

    async def step_release(self, s: StepContext, n: int) -> None:
        sim = self.sim
        s.needs_person(f"take the test vehicle out of spot {n}; it stays there")
        result = await self.bench.command(self.device_id, Unlock(spot=n, window_s=120), 10)
        detail = result.detail or ""
        cycle_failed = self.runner.failed(f"spot{n}.lock_cycle")
        if result.status is ResultStatus.DONE:
            s.measure("unlock", "DONE")
        elif "did not open" in detail:
            if cycle_failed:  # that step's fix item already says it, with what to do
                s.skip(f"the test vehicle stays locked in spot {n}: its latch does not open "
                       f"(see Spot {n}: lock cycle); free it by hand")
            s.fail(f"spot {n}: the latch does not open, the test vehicle stays in the spot "
                   f"(agent: {detail}); free it by hand, then repair the latch")
        elif "did not close" in detail:
            # The latch never closed on the vehicle: it comes out without an unlock.
            s.measure("latch", "already open (it did not close)")
        else:
            s.measure("unlock", describe_result(result))
            s.fail(f"spot {n}: the station refused to release the test vehicle "
                   f"({describe_result(result)}); free it by hand and check spot board {n}")
        mark = self.mark()
        present = self.latest_status(n)
        if present is not None and present.state is SpotState.EMPTY:
            self.docked_spot = None
            return
        await s.person(
            f"Take the test vehicle out of spot {n}",
            until=lambda: self.wait_body(VehicleRemoved, 1e6, mark, lambda b: b.spot == n),
            simulate=(lambda: sim.take(n)) if sim else None,
            missing=f"spot {n} did not sense the vehicle leaving: check the presence sensor",
        )
        self.docked_spot = None  # the latch stays open: an empty spot waits for a vehicle

    async def step_badge(self, s: StepContext) -> None:
        uid = bytes.fromhex(self.rig.test.badge_uid)
        reader = "simulated" if self.sim else self.rig.agent.badge_reader
        mark = self.mark()

        def simulate() -> None:
            assert self.sim is not None
            self.sim.present_badge(uid, 3.0)

        if reader in ("", "none"):
            s.skip("no badge reader configured ([agent] badge_reader in the rig description)")
        try:
            body: BadgePresented = await s.person(
                f"Place the test badge {uid.hex()} on the station's reader",
                until=lambda: self.wait_body(BadgePresented, 1e6, mark),
                simulate=simulate if self.sim else None,
            )
        except StepFailed:
            s.fail(self.badge_missing_hint(reader, await self.reader_liveness()))
        s.check("badge uid", body.badge_uid.hex(), equals=uid.hex())
        s.hint = "Another card was read: use the test badge from the rig description."

    async def reader_liveness(self) -> dict[str, Any] | None:
        """The badge reader's liveness from the agent's health snapshot (polls, reads,
        errors, their ages), or None when the agent does not answer."""
        try:
            seen = (await self.health()).get("badge_reader")
        except (OSError, ValueError, TimeoutError):
            return None
        return seen if isinstance(seen, dict) else None

    def badge_missing_hint(self, reader: str, liveness: dict[str, Any] | None = None) -> str:
        """Where to look when no badge came: only what the agent's log and its health
        snapshot (``liveness``, None: not read) really show."""
        log_path = self.agent.log_path
        unavailable = self.agent.log_lines(READER_UNAVAILABLE)
        if unavailable:
            return (f"no badge read: the agent could not open the badge reader ({reader}); "
                    f"check that it is plugged in and its path ([agent] badge_reader). "
                    f"Agent log ({log_path}): {logged(unavailable[-1])}")
        live = liveness or {}
        errors = self.agent.log_lines(READER_ERROR)
        if errors or live.get("errors"):
            # The agent logs a failing reader once a minute: its own count is the truth.
            count = live.get("errors") or len(errors)
            last = (f"Agent log ({log_path}): {logged(errors[-1])}" if errors
                    else f"last error: {live.get('last_error')} ({log_path})")
            return (f"no badge read: the badge reader ({reader}) fails while polling "
                    f"({count} errors); check its cable and supply. {last}")
        if live.get("state") in ("stalled", "stopped"):
            return (f"no badge read: the badge reader ({reader}) stopped polling (its last "
                    f"round {live.get('last_poll_age_s')} s ago, {live.get('state')}): unplug "
                    f"and plug it back, check its cable and supply. Agent log ({log_path}).")
        if live.get("state") == "polling":
            last_read = live.get("last_read_age_s")
            reads = (f"{live.get('reads')} badge reads since the agent started"
                     + (f", the last {last_read} s ago" if last_read is not None else ""))
            return (f"no badge read: the badge reader ({reader}) polls ({live.get('polls')} "
                    f"rounds, the last {live.get('last_poll_age_s')} s ago) and no card "
                    f"answered ({reads}): check its antenna and RF field, its cable, and the "
                    f"test badge. The agent opened the reader and logged no reader error "
                    f"({log_path}).")
        return (f"no badge read: check the badge reader ({reader}), its antenna and its "
                f"cable, and the test badge. The agent opened the reader and logged no "
                f"reader error ({log_path}).")

    async def _telemetry(self) -> Telemetry:
        mark = self.mark()
        await self.trigger(TriggerKind.TELEMETRY)
        body: Telemetry = await self.wait_body(Telemetry, 5.0, mark)
        return body

    async def step_temperature(self, s: StepContext) -> None:
        lim = self.rig.limits
        tlm = await self._telemetry()
        if tlm.temperature_c is not None:
            s.check("mainboard", tlm.temperature_c, low=lim.temperature_c[0],
                    high=lim.temperature_c[1], unit="°C")
        else:
            s.measure("mainboard", None, "°C", "no sensor configured (inputs)")
        temps = dict(tlm.spot_temperatures_c)
        for n in range(1, self.rig.expect.spots + 1):
            if n in self.dead_boards and n not in temps:  # the board's own fix item says why
                s.measure(f"spot {n}", None, "°C", f"spot board {n} does not answer")
                continue
            s.check(f"spot {n}", temps.get(n), low=lim.spot_temperature_c[0],
                    high=lim.spot_temperature_c[1], unit="°C")
        s.hint = ("A temperature out of range: check the sensor (a missing value means the "
                  "board did not report one) and the cabinet's ventilation.")

    async def step_power(self, s: StepContext) -> None:
        if self.sim is None and self.rig.agent.inputs == "none":
            s.skip("no power inputs configured ([agent] inputs in the rig description)")
        lim = self.rig.limits
        tlm = await self._telemetry()
        station = self.latest_status(0)
        s.check("power", tlm.power_w, low=lim.power_w[0], high=lim.power_w[1], unit="W")
        s.measure("energy meter", tlm.energy_wh, "Wh")
        if station is not None:
            s.check("mains present", station.fault != "power cut", equals=True)
        s.hint = "Check the power supply and the energy meter's wiring."

    async def step_offline(self, s: StepContext) -> None:
        lim = self.rig.limits
        view = self.bench.peer.view(self.device_id)
        spot = await self._docked_working_spot(s)
        mark = self.mark()
        dup_before = view.duplicates
        births_before = len(self.births)
        expected: list[tuple[type, int | None]] = []
        if spot is not None:
            result = await self.bench.command(
                self.device_id, Unlock(spot=spot, window_s=lim.offline_window_s), 10)
            expect_done(result, f"unlock spot {spot}")
            expected.append((UnlockExpired, spot))
        elif self.sim is None:
            s.skip("no spot with a docked vehicle and a working lock to make events with")
        # ---- the link goes down; events happen while offline
        self.bench.cut_link()
        # Read after the cut: an acknowledgement arriving between the read and the cut
        # made the target depth unreachable (the wait below then ran to its timeout).
        depth_before = (await self.health())["queue"]["depth"]
        station = self.latest_status(0)
        if self.sim is not None and station is not None and station.fault == "power cut":
            # Mains already off: no cut to make here (the power step's fix item says so).
            s.measure("power cut", "not tried: the mains were already off")
        elif self.sim is not None:
            self.sim.cut_power()
            expected.append((PowerCut, None))
            await asyncio.sleep(0.5)
            self.sim.restore_power()
            expected.append((PowerRestored, None))
        queued = depth_before
        try:
            async with asyncio.timeout(lim.offline_window_s + 5.0):
                while queued < depth_before + len(expected):
                    await asyncio.sleep(0.1)
                    queued = (await self.health())["queue"]["depth"]
        except TimeoutError:
            pass
        await asyncio.sleep(0.3)  # the statuses going with the last event
        queued = (await self.health())["queue"]["depth"]
        s.measure("queued offline", queued, "messages")
        # ---- power cut: the agent dies without shutting down, then boots again
        await self.agent.power_cut()
        await self.agent.start()
        await asyncio.sleep(1.0)  # booting while still offline
        self.bench.restore_link()
        await self.wait_birth(births_before + 1, lim.boot_timeout_s)
        s.measure("boots", len(self.births) - births_before)

        def arrived() -> bool:
            return all(self._matches(kind, spot_, mark) for kind, spot_ in expected)

        try:
            await self.bench.peer.wait_until(arrived, 10.0)
        except TimeoutError:
            pass
        generated = len(expected)
        delivered = 0
        for kind, spot_ in expected:
            count = len(self._matches(kind, spot_, mark))
            name = kind.__name__ + (f" spot {spot_}" if spot_ else "")
            s.check(name, count, equals=1)
            delivered += min(count, 1)
        s.measure("events", f"{delivered}/{generated}")
        # in order: what the device queued is delivered in its queue order
        after = self.messages(mark)
        by_boot: dict[int, list[int]] = {}
        for r in after:
            by_boot.setdefault(r.message.stamp.boot_id, []).append(r.message.stamp.seq)
        in_order = all(seqs == sorted(seqs) for seqs in by_boot.values())
        s.check("in queue order", in_order, equals=True)
        gaps = sum(max(seqs) - min(seqs) + 1 - len(set(seqs)) for seqs in by_boot.values())
        s.check("lost (seq gaps)", gaps, equals=0)
        s.measure("duplicates dropped", view.duplicates - dup_before)
        s.hint = (f"The agent's offline queue lost, repeated or reordered events: check the "
                  f"state directory's disk and the agent log ({self.agent.log_path}).")

    def _matches(self, kind: type, spot: int | None, start: int) -> list[Any]:
        return [b for b in self.bodies(kind, start) if spot is None or b.spot == spot]

    async def _docked_working_spot(self, s: StepContext) -> int | None:
        working = [n for n in range(1, self.rig.expect.spots + 1)
                   if self.runner.passed(f"spot{n}.lock_cycle")]
        if not working:
            return None
        if self.docked_spot in working:
            status = self.latest_status(self.docked_spot)
            if status is not None and status.state is SpotState.DOCKED_LOCKED:
                return self.docked_spot
        n = working[0]
        serial = self.rig.test.vehicle_serial
        sim = self.sim
        mark = self.mark()
        await s.person(
            f"Dock the test vehicle {serial} in spot {n} (for the power-cut test)",
            until=lambda: self.wait_body(VehicleDocked, 1e6, mark, lambda b: b.spot == n),
            simulate=(lambda: sim.dock(n, serial)) if sim else None,
        )
        self.docked_spot = n
        return n

    async def step_firmware(self, s: StepContext) -> None:
        fw = self.rig.firmware
        self._skip_if_dead(s, fw.spot)
        if self.sim is not None:
            image = firmware_image(fw.version or "sb-1.4.3")
            path = self.workdir / f"{fw.version}.bin"
            path.write_bytes(image)
        elif fw.image is None:
            s.skip("no firmware image in the rig description ([firmware] image, version)")
        else:
            path = fw.image.resolve()
            try:
                image = path.read_bytes()
            except OSError as exc:
                s.fail(f"cannot read the firmware image {path}: {exc.strerror}")
        n = fw.spot
        mark = self.mark()
        started = time.monotonic()
        # Signed as the cloud signs it (SPEC §13): the station checks it as in the field.
        manifest = Manifest(target="spot-board:rig", version=fw.version, size=len(image),
                            sha256=hashlib.sha256(image).digest(), url=path.as_uri(),
                            issued_at=int(time.time()))
        command = FirmwareUpdate(sign_manifest(self.bench.firmware_key, manifest), spot=n)
        result = await self.bench.command(self.device_id, command,
                                          self.rig.limits.firmware_timeout_s)
        s.measure("image", f"{len(image)} bytes")
        s.measure("staging time", round(time.monotonic() - started, 2), "s")
        states = [b.state for b in self.bodies(FirmwareStatus, mark) if b.spot == n]
        s.measure("states", " → ".join(st.name for st in states) or "none")
        if result.status is not ResultStatus.DONE:
            s.fail(f"spot {n}: staging {describe_result(result)}; check the board's "
                   f"bus connection and retry")
        s.check("FirmwareStatus", states[-1].name if states else None,
                equals=FirmwareState.INSTALLED.name)
        birth: Birth = await self.fresh_birth()
        reported = {c.index: c.firmware for c in birth.inventory if c.kind == "spot"}.get(n)
        s.check("GET_INFO reports", reported, equals=fw.version)
        if self.sim is not None:
            s.check("board runs (simulator)", self.sim.boards[n].firmware, equals=fw.version)
        s.hint = f"Spot {n}'s board did not take the image: re-stage it or replace the board."


# ---------------------------------------------------------------- simulated hardware


async def start_simulated_station(
    rig: StationRig, workdir: Path, faults: StationFaults | None
) -> SimulatedStation:
    sim = SimulatedStation(rig.device_id, rig.expect.spots, workdir=workdir / "sim",
                           board_firmware=rig.expect.spot_firmware,
                           actuation_s=SIM_ACTUATION_S)
    await sim.start()
    if faults is not None:
        faults.apply(sim)
        if faults.dead_badge_reader and sim.badge is not None:
            await sim.badge.stop()  # its polling goes unanswered
    return sim
