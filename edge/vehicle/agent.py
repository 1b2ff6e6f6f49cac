"""The vehicle agent: the vehicle's part on the edge framework (:mod:`kickstand.edge.core.agent`).

    settings = VehicleSettings.load("vehicle.toml")
    async with VehicleAgent(settings) as agent:      # boots until the block ends
        await agent.link.accepted.wait()

What is the vehicle's own: GPS, the lock box and chain sensor (its state machine is
:mod:`kickstand.edge.vehicle.lock`), the batteries (BLE), NFC, the PIN pad and the motion
sensor; the speed limit and maintenance. Config, Reboot, TriggerMessage, AuthListUpdate,
the FirmwareUpdate seam, the store and the lifecycle are the framework's.

Everything the cloud must hear of goes through ``link.emit`` (the edge core's
DiskQueue, on disk before it is sent, stamped with the device time of the
moment it happened): a vehicle locked out of coverage reports its Locked event
with the lock time when coverage returns.

Reporting adapts to the state: a Telemetry (position, speed, batteries) every
``riding_interval_s`` while unlocked, every ``parked_interval_s`` while locked,
one at once on every lock and unlock; events are sent as they happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from kickstand.edge.core.agent import EdgeAgent, Job
from kickstand.edge.core.errors import (
    CommandFailed,
    CommandRefused,
    QueueError,
    TransportError,
)
from kickstand.edge.core.firmware.manifest import DevicePart
from kickstand.edge.core.link import CommandRouter, Outcome
from kickstand.edge.transports import SerialPort, open_badge_reader, open_serial
from kickstand.edge.transports.ble import (
    BatteryMonitor,
    BatteryReading,
    open_battery_peer,
)
from kickstand.edge.transports.gps import Fix, GpsReceiver
from kickstand.edge.transports.motion import MotionSensor, Sensed
from kickstand.edge.transports.pinpad import PinChecker, PinEntry, PinPad
from kickstand.edge.vehicle.config import VehicleSettings
from kickstand.edge.vehicle.errors import LockBoxError
from kickstand.edge.vehicle.lock import (
    CHAIN_KEY,
    LOCK_KEY,
    LockMachine,
    Step,
    device_state,
    offline_unlock_allowed,
    relock_when_window_ends,
)
from kickstand.edge.vehicle.lockbox import LockBox
from kickstand.protocol.errors import ProtocolError
from kickstand.protocol.spotbus import BusLock
from kickstand.protocol.v1.enums import (
    BatteryKind,
    DeviceKind,
    DeviceState,
    LockCause,
    MotionKind,
    RejectReason,
)
from kickstand.protocol.v1.fields import fit_text
from kickstand.protocol.v1.messages import (
    BadgePresented,
    BatteryLow,
    CommandEnvelope,
    Component,
    Lock,
    Motion,
    PinEntered,
    PinIncorrect,
    SetMaintenance,
    SetSpeedLimit,
    Status,
    Telemetry,
    Unlock,
    UnlockExpired,
    UpBody,
)

log = logging.getLogger("kickstand.edge.vehicle.agent")

SPEED_LIMIT_KEY = "vehicle.speed_limit_kmh"
MAINTENANCE_KEY = "vehicle.maintenance"  # {"on": bool, "reason": str}


class VehicleAgent(EdgeAgent[VehicleSettings]):
    """One vehicle controller. ``async with`` serves boots one after the other (a Reboot
    ends one and the next starts in the same object: new boot id, peripherals reopened)."""

    kind: ClassVar[DeviceKind] = DeviceKind.VEHICLE
    max_firmware_bytes: ClassVar[int] = 32 * 1024 * 1024

    def __init__(self, settings: VehicleSettings) -> None:
        super().__init__(settings)
        self.gps = GpsReceiver()
        self.pin = PinChecker()
        self.motion = MotionSensor()
        self.pinpad = PinPad()
        self.motion.on_motion = self._on_motion
        self.pinpad.on_entry = self._on_pin
        self.battery_monitor: BatteryMonitor | None = None
        self.lockbox: LockBox | None = None
        self.lockbox_firmware = ""
        self.machine = LockMachine()
        self.batteries: dict[BatteryKind, BatteryReading] = {}
        self.counters: dict[str, int] = {}
        self.maintenance = False
        self.maintenance_reason = ""
        self.speed_limit_kmh: int | None = None
        self._probed = asyncio.Event()  # the lock box was asked for its version (or is absent)
        self._reporter_wake = asyncio.Event()
        self._bus = asyncio.Lock()
        self._last_illegal_move = -1e9
        self._tracking_until = -1e9
        self._unlock_window: asyncio.Task[None] | None = None
        self._sent_battery: dict[BatteryKind, tuple[int | None, int | None]] = {}
        self._battery_low: dict[BatteryKind, bool | None] = {}

    # ---------------------------------------------------------------- the framework's hooks

    @property
    def lock_state(self) -> BusLock | None:
        return self.machine.lock_state

    @property
    def parked(self) -> bool:
        return self.machine.parked

    @property
    def serial_number(self) -> str | None:
        return self.settings.serial_number

    async def open(self) -> None:
        self.machine = LockMachine()
        self._probed.clear()
        if self.settings.lockbox_port in ("", "none"):
            self._probed.set()
        self._battery_low.clear()
        self._unlock_window = None
        limit = self.state.get(SPEED_LIMIT_KEY)
        self.speed_limit_kmh = limit if isinstance(limit, int) else None
        maintenance = self.state.get(MAINTENANCE_KEY, {})
        if not isinstance(maintenance, dict):
            maintenance = {}
        self.maintenance = bool(maintenance.get("on", False))
        self.maintenance_reason = str(maintenance.get("reason") or "")

    def jobs(self) -> list[Job]:
        s = self.settings
        return [
            ("gps", self._gps_loop()),
            ("lockbox", self._lockbox_loop()),
            ("reporter", self._reporter_loop()),
            ("pinpad", self._line_loop(s.pinpad_port, self.pinpad.feed, "pinpad")),
            ("motion", self._line_loop(s.motion_port, self.motion.feed, "motion")),
            ("bms", self._bms_loop()),
            ("nfc", self._nfc_loop()),
        ]

    async def ready_for_birth(self) -> None:
        """The birth carries the inventory: give the lock box a moment to answer first."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await self._probed.wait()

    def inventory(self) -> Sequence[Component]:
        inventory = [Component("lockbox", 0, fit_text(self.lockbox_firmware, 32))]
        s = self.settings
        for kind, path in (("gps", s.gps_port), ("bms", s.bms_address), ("nfc", s.nfc_path),
                           ("pinpad", s.pinpad_port), ("motion", s.motion_port)):
            if path not in ("", "none"):
                inventory.append(Component(kind, 0, ""))
        return inventory

    async def accepted(self) -> None:
        link = self.link
        link.heartbeat_s = max(link.heartbeat_s, self.settings.min_heartbeat_s)

    def configured(self) -> None:
        s = self.settings
        self.gps.filter.max_hdop = s.max_hdop
        self.gps.filter.min_satellites = s.min_satellites
        self.gps.filter.max_speed_kmh = s.max_jump_speed_kmh
        self.pin.set_code(s.pin_code)
        self._reporter_wake.set()

    def record(self, bodies: Sequence[UpBody]) -> None:
        self.emit(*bodies)

    def send_status(self, spot: int) -> None:
        self.emit_status()  # a vehicle sends its one status whatever ``spot`` says

    def send_telemetry(self) -> None:
        body = self.telemetry(with_batteries=True)
        if body is None:
            raise CommandFailed(RejectReason.HARDWARE_FAULT, "no position nor battery value")
        self.emit(body)

    def register(self, router: CommandRouter) -> None:
        router.add(Unlock, self._cmd_unlock)
        router.add(Lock, self._cmd_lock)
        router.add(SetSpeedLimit, self._cmd_speed_limit)
        router.add(SetMaintenance, self._cmd_maintenance)

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def emit(self, *bodies: UpBody | None, state: dict[str, str] | None = None) -> None:
        """Store ``bodies`` and device ``state`` in one transaction, send when possible.

        A disk error is logged and counted, never raised: the vehicle keeps working.
        """
        items = [b for b in bodies if b is not None]
        if self._link is None or not self.started.is_set() or not (items or state):
            return  # between boots: a power cut, nothing is stored
        try:
            self._link.emit_batch(items, state)
        except (QueueError, ProtocolError) as exc:
            self._count("emit_failed")
            log.error("vehicle_emit_failed device=%s bodies=%s error=%s", self.device_id,
                      [type(b).__name__ for b in items], exc)

    def _emit_step(self, step: Step) -> None:
        self.emit(*step.events, self._status() if step.status else None, state=step.state)

    # ---------------------------------------------------------------- status, telemetry

    @property
    def device_state(self) -> DeviceState:
        fix = self._fresh_fix()
        return device_state(
            self.machine,
            maintenance=self.maintenance,
            moving=self.motion.moving,
            speed_kmh=fix.speed_kmh if fix is not None else None,
        )

    def _status(self) -> Status:
        level = None
        for kind in (BatteryKind.VAE, BatteryKind.INTERNAL):
            reading = self.batteries.get(kind)
            if reading is not None and reading.level_pct is not None:
                level = reading.level_pct
                break
        return Status(
            spot=0,
            state=self.device_state,
            lock=self.machine.wire_lock(),
            serial_number=self.settings.serial_number,
            fault=self.machine.fault_text(),
            battery_pct=level,
        )

    def emit_status(self) -> None:
        self.emit(self._status())

    def _fresh_fix(self) -> Fix | None:
        fix = self.gps.latest
        if fix is None or time.monotonic() - fix.monotonic_s > self.settings.fix_max_age_s:
            return None
        return fix

    def telemetry(self, *, with_batteries: bool = False) -> Telemetry | None:
        """The current position (if fresh) and battery values (if changed or asked for)."""
        fix = self._fresh_fix()
        fields: dict[str, Any] = {}
        if fix is not None:
            fields.update(lat=round(fix.lat, 6), lon=round(fix.lon, 6))
            if fix.speed_kmh is not None:
                fields["speed_kmh"] = round(min(fix.speed_kmh, 500.0), 1)
            if fix.heading_deg is not None:
                fields["heading_deg"] = round(fix.heading_deg) % 360
            if fix.hdop is not None:
                fields["hdop"] = round(min(fix.hdop, 100.0), 1)
        for kind, reading in self.batteries.items():
            value = (reading.level_pct, reading.voltage_mv)
            if not with_batteries and self._sent_battery.get(kind, (None, None))[0] == value[0]:
                continue
            self._sent_battery[kind] = value
            if kind is BatteryKind.INTERNAL:
                fields["battery_pct"] = reading.level_pct
            else:
                fields["vae_pct"] = reading.level_pct
                fields["vae_mv"] = reading.voltage_mv
        if not fields:
            return None
        return Telemetry(**fields)

    def report_now(self, *, with_batteries: bool = False) -> None:
        body = self.telemetry(with_batteries=with_batteries)
        if body is not None:
            self.emit(body)
        self._reporter_wake.set()

    async def _reporter_loop(self) -> None:
        while True:
            parked = self.parked
            s = self.settings
            tracking = time.monotonic() < self._tracking_until
            interval = s.riding_interval_s if tracking or not parked else s.parked_interval_s
            self._reporter_wake.clear()
            try:
                async with asyncio.timeout(interval):
                    await self._reporter_wake.wait()
                continue  # state changed: start a new interval
            except TimeoutError:
                pass
            body = self.telemetry(with_batteries=parked)
            if body is not None:
                self.emit(body)
                self._count("telemetry")

    # ---------------------------------------------------------------- serial lines

    async def _open(self, path: str, baudrate: int, what: str) -> SerialPort:
        delay = 0.5
        while True:
            port = open_serial(path, baudrate)
            try:
                await port.open()
                return port
            except TransportError as exc:
                log.warning("vehicle_port_unavailable what=%s path=%s reason=%s", what, path,
                            exc.reason)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _gps_loop(self) -> None:
        path = self.settings.gps_port
        if path in ("", "none"):
            return
        port = await self._open(path, self.settings.gps_baudrate, "gps")
        try:
            while True:
                data = await port.read(1.0)
                if data:
                    self.gps.feed(data)
        finally:
            await port.close()

    async def _line_loop(self, path: str, feed: Callable[[bytes], object], what: str) -> None:
        if path in ("", "none"):
            return
        port = await self._open(path, 9600, what)
        try:
            while True:
                data = await port.read(1.0)
                if data:
                    feed(data)
        finally:
            await port.close()

    # ---------------------------------------------------------------- lock box

    async def _lockbox_loop(self) -> None:
        path = self.settings.lockbox_port
        if path in ("", "none"):
            return
        port = await self._open(path, 115200, "lockbox")
        self.lockbox = LockBox(port, timeout_s=self.settings.lockbox_timeout_s)
        next_info = 0.0
        try:
            while True:
                if not self.lockbox_firmware and time.monotonic() >= next_info:
                    await self._read_lockbox_info()
                    next_info = time.monotonic() + 10.0
                self._probed.set()
                await self.poll_lockbox()
                await asyncio.sleep(self.settings.lock_poll_s)
        finally:
            self.lockbox = None
            await port.close()

    async def _read_lockbox_info(self) -> None:
        """The lock box's firmware for the birth's inventory (a new birth if it came late)."""
        if self.lockbox is None:
            return
        try:
            info = await self.lockbox.info()
        except (LockBoxError, TransportError) as exc:
            log.warning("lockbox_info_unavailable device=%s reason=%s", self.device_id, exc)
            return
        self.lockbox_firmware = info.firmware
        if self._link is not None and self._link.counters.births:
            self._link.trigger_birth()

    async def poll_lockbox(self) -> None:
        if self.lockbox is None:
            return
        async with self._bus:
            try:
                report = await self.lockbox.status()
                chain = await self.lockbox.chain()
            except (LockBoxError, TransportError) as exc:
                step = self.machine.poll_failed(str(exc))
                if step.events:
                    log.error("lockbox_fault device=%s reason=%s", self.device_id, exc)
                self._emit_step(step)
                return
            self._emit_step(self.machine.poll_answered())
            first = self.machine.lock_state is None
            step = self.machine.observe_lock(
                report.lock, self.state.text(LOCK_KEY) if first else None
            )
            if self.machine.jammed and step.events:
                log.error("vehicle_lock_jammed device=%s", self.device_id)
            self._emit_step(step)
            if step.moved is not None:
                self._set_lock(step.moved, LockCause.MANUAL)
            first_chain = self.machine.chain is None
            chain_step = self.machine.observe_chain(
                chain.inserted, chain.chain_type,
                self.state.text(CHAIN_KEY) if first_chain else None,
            )
            if self.machine.chain_types_unknown:
                self.counters["chain_type_unknown"] = self.machine.chain_types_unknown
            self._emit_step(chain_step)

    def _set_lock(
        self, lock: BusLock, cause: LockCause, command_id: bytes | None = None,
        badge_uid: bytes | None = None, *, silent: bool = False, extra: tuple[UpBody, ...] = (),
    ) -> None:
        """The lock is now ``lock``: event, status and the position, with the new state,
        in one transaction (``extra`` bodies go first, e.g. UnlockExpired)."""
        changed, event = self.machine.set(lock, cause, command_id, badge_uid, silent=silent)
        if not changed:
            return
        if lock is not BusLock.OPEN and self._unlock_window is not None:
            if self._unlock_window is not asyncio.current_task():
                self._unlock_window.cancel()
            self._unlock_window = None
        # the position of the lock / unlock goes with it: where a free-floating trip ends
        self.emit(*extra, event, self._status(), self.telemetry(with_batteries=True),
                  state={LOCK_KEY: lock.name})
        self._reporter_wake.set()
        log.info("vehicle_lock device=%s lock=%s cause=%s", self.device_id, lock.name, cause.name)

    async def _drive_lock(
        self, target: BusLock, cause: LockCause, command_id: bytes | None,
        badge_uid: bytes | None = None,
    ) -> bool:
        """Open or close the lock; False if it already was. CommandFailed if the box fails."""
        if self.lockbox is None:
            raise CommandFailed(RejectReason.HARDWARE_FAULT, "lock box not connected")
        async with self._bus:
            if self.machine.lock_state is target:
                return False
            try:
                if target is BusLock.OPEN:
                    await self.lockbox.unlock()
                else:
                    await self.lockbox.lock()
            except (LockBoxError, TransportError) as exc:
                raise CommandFailed(RejectReason.HARDWARE_FAULT, str(exc)[:100]) from None
            self._set_lock(target, cause, command_id, badge_uid)
            return True

    def _start_unlock_window(self, window_s: float, command_id: bytes | None,
                             badge_uid: bytes | None) -> None:
        if self._unlock_window is not None:
            self._unlock_window.cancel()
        self._unlock_window = asyncio.create_task(
            self._unlock_window_watch(window_s, command_id, badge_uid)
        )
        self._background.add(self._unlock_window)
        self._unlock_window.add_done_callback(self._background.discard)

    async def _unlock_window_watch(self, window_s: float, command_id: bytes | None,
                                   badge_uid: bytes | None) -> None:
        """Nobody took the vehicle (chain still in, not moved): close the lock again."""
        moved = self.motion.events
        await asyncio.sleep(window_s)

        def due() -> bool:
            return self.lockbox is not None and relock_when_window_ends(
                self.machine,
                moved=self.motion.events != moved,
                riding=self.device_state is DeviceState.RIDING,
            )

        if not due():
            return
        async with self._bus:
            if self.lockbox is None or self.machine.lock_state is not BusLock.OPEN:
                return  # closed by hand while we waited for the bus
            try:
                await self.lockbox.lock()
            except (LockBoxError, TransportError) as exc:
                log.error("vehicle_relock_failed device=%s reason=%s", self.device_id, exc)
                return
            self._set_lock(BusLock.LOCKED, LockCause.AUTO_RELOCK, command_id, silent=True,
                           extra=(UnlockExpired(0, command_id, badge_uid),))

    # ---------------------------------------------------------------- inputs

    def _on_pin(self, entry: PinEntry) -> None:
        if self.pin.check(entry):
            self.emit(PinEntered())
        else:
            self.emit(PinIncorrect(min(self.pin.attempts, 255)))

    def _on_motion(self, sensed: Sensed) -> None:
        kind = {
            Sensed.LIFTED: MotionKind.LIFTED,
            Sensed.FALLEN: MotionKind.FALLEN,
            Sensed.DISMANTLING: MotionKind.DISMANTLING,
        }.get(sensed)
        locked = self.machine.lock_state is BusLock.LOCKED
        if kind is None and sensed is Sensed.MOVING and locked:
            now = time.monotonic()
            if now - self._last_illegal_move >= self.settings.illegal_move_every_s:
                self._last_illegal_move = now
                kind = MotionKind.ILLEGAL_MOVING
        if kind is not None:
            self.emit(Motion(kind))
            if kind is not MotionKind.FALLEN and locked:
                # A locked vehicle lifted, moved or taken apart: maybe a theft. Report its
                # position at the riding cadence for a while.
                self._tracking_until = time.monotonic() + self.settings.theft_tracking_s
                self._reporter_wake.set()

    def _on_battery(self, reading: BatteryReading) -> None:
        self.batteries[reading.kind] = reading
        level = reading.level_pct
        if level is None:
            return
        # "Once per crossing", across reboots too: whether it was sent is device state,
        # stored with the event.
        key = f"vehicle.battery_low.{reading.kind.name.lower()}"
        if self._battery_low.get(reading.kind) is None:
            self._battery_low[reading.kind] = self.state.text(key) == "sent"
        threshold = self.settings.battery_low_pct
        if level < threshold and not self._battery_low[reading.kind]:
            self._battery_low[reading.kind] = True
            self.emit(BatteryLow(reading.kind, level), state={key: "sent"})
        elif level >= threshold + self.settings.battery_rearm_pct and \
                self._battery_low[reading.kind]:
            self._battery_low[reading.kind] = False
            self.emit(state={key: "armed"})

    async def _bms_loop(self) -> None:
        address = self.settings.bms_address
        if address in ("", "none"):
            return
        self.battery_monitor = BatteryMonitor(
            open_battery_peer(address), self._on_battery, poll_s=self.settings.bms_poll_s
        )
        await self.battery_monitor.run()

    async def _nfc_loop(self) -> None:
        path = self.settings.nfc_path
        if path in ("", "none"):
            return
        delay = 1.0
        while True:
            try:
                reader = open_badge_reader(path)
                await reader.start()
            except (TransportError, ImportError) as exc:
                log.warning("vehicle_nfc_unavailable path=%s error=%s", path, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
                continue
            try:
                async for uid in reader.badges():
                    await self.badge_presented(uid)
            except TransportError as exc:
                log.warning("vehicle_nfc_lost path=%s error=%s", path, exc)
            finally:
                await reader.close()
            await asyncio.sleep(delay)

    async def badge_presented(self, uid: bytes) -> None:
        """A pass on the reader. Online the cloud decides; offline the local list does."""
        if not 4 <= len(uid) <= 10:
            self._count("badge_invalid")
            return
        self._count("badges")
        offline = self._link is None or not self._link.accepted.is_set()
        authorized = uid in self.authlist
        self.emit(BadgePresented(uid, authorized, offline))
        if offline and offline_unlock_allowed(
            self.machine, authorized=authorized, maintenance=self.maintenance
        ):
            try:
                opened = await self._drive_lock(BusLock.OPEN, LockCause.OFFLINE_BADGE, None, uid)
            except CommandFailed as exc:
                log.error("vehicle_offline_unlock_failed reason=%s", exc.detail)
                return
            if opened:
                self._start_unlock_window(self._window(30), None, uid)

    # ---------------------------------------------------------------- commands

    def _window(self, requested: int) -> float:
        # SPEC §7.4: the configured window wins; a command's 0 means "not given", as on
        # a station (0 s would lock again before the rider can reach the vehicle).
        return float(self.settings.unlock_window_s or requested or 30)

    async def _cmd_unlock(self, envelope: CommandEnvelope, cmd: Unlock) -> Outcome:
        if cmd.spot != 0:
            raise CommandRefused(RejectReason.MALFORMED, "a vehicle has spot 0 only")
        if self.maintenance:
            raise CommandRefused(RejectReason.MAINTENANCE, self.maintenance_reason)
        if self.machine.jammed:
            raise CommandRefused(RejectReason.HARDWARE_FAULT, "lock jammed")
        opened = await self._drive_lock(BusLock.OPEN, LockCause.COMMAND, envelope.command_id)
        if not opened:
            return Outcome(detail="already unlocked")
        self._start_unlock_window(self._window(cmd.window_s), envelope.command_id, None)
        return Outcome()

    async def _cmd_lock(self, envelope: CommandEnvelope, cmd: Lock) -> Outcome:
        if cmd.spot != 0:
            raise CommandRefused(RejectReason.MALFORMED, "a vehicle has spot 0 only")
        closed = await self._drive_lock(BusLock.LOCKED, LockCause.COMMAND, envelope.command_id)
        return Outcome(detail=None if closed else "already locked")

    async def _cmd_speed_limit(self, envelope: CommandEnvelope, cmd: SetSpeedLimit) -> Outcome:
        if not 0 <= cmd.max_kmh <= 100:
            raise CommandRefused(RejectReason.MALFORMED, f"max {cmd.max_kmh} km/h")
        # The motor controller enforces it; the agent keeps it across reboots.
        self._save({SPEED_LIMIT_KEY: cmd.max_kmh})
        self.speed_limit_kmh = cmd.max_kmh
        log.info("vehicle_speed_limit device=%s max_kmh=%d", self.device_id, cmd.max_kmh)
        return Outcome(detail=f"max {cmd.max_kmh} km/h")

    async def _cmd_maintenance(self, envelope: CommandEnvelope, cmd: SetMaintenance) -> Outcome:
        if cmd.spot != 0:
            raise CommandRefused(RejectReason.MALFORMED, "a vehicle has spot 0 only")
        reason = cmd.reason if cmd.on else ""
        self._save({MAINTENANCE_KEY: {"on": cmd.on, "reason": reason}})
        self.maintenance, self.maintenance_reason = cmd.on, reason
        self.emit_status()
        return Outcome()

    def _save(self, values: dict[str, Any]) -> None:
        try:
            self.state.put(values)
        except QueueError as exc:
            raise CommandFailed(RejectReason.HARDWARE_FAULT, f"storage: {exc}"[:100]) from None

    # ---------------------------------------------------------------- controller firmware

    def slot_part(self) -> DevicePart:
        hardware = self.settings.hardware
        return DevicePart(f"vehicle-controller:{hardware}", hardware, self.settings.bootloader)

    def firmware_part(self, spot: int) -> DevicePart:
        # Spot 0 is the controller's slots (the framework's); nothing else is updatable.
        raise CommandRefused(RejectReason.NOT_SUPPORTED, "lock box firmware is not updatable")

    # ---------------------------------------------------------------- health

    def snapshot(self) -> dict[str, Any]:
        out = super().snapshot()
        stats = dataclasses.asdict(self.gps.stats)
        out["vehicle"] = {
            "serial_number": self.settings.serial_number,
            "state": self.device_state.name,
            "lock": self.lock_state.name if self.lock_state is not None else None,
            "chain": self.machine.chain,
            "maintenance": self.maintenance,
            "speed_limit_kmh": self.speed_limit_kmh,
            "config_version": self.config_version,
            "firmware": self.firmware_version,
            "batteries": {k.name: dataclasses.asdict(v) for k, v in self.batteries.items()},
            "gps": stats,
            "lockbox": dataclasses.asdict(self.lockbox.counters) if self.lockbox else None,
            "counters": dict(self.counters),
            "boots": self.boots,
        }
        return out
