"""The vehicle edge agent: GPS, lock box + chain, BMS, NFC, PIN pad, motion → CloudLink.

    settings = VehicleSettings.load("vehicle.toml")
    async with VehicleAgent(settings) as agent:      # runs until the block ends
        await agent.link.accepted.wait()

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
import sqlite3
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kickstand.edge.core.authlist import LocalAuthList
from kickstand.edge.core.clock import DeviceClock
from kickstand.edge.core.errors import (
    CommandFailed,
    CommandRefused,
    EdgeError,
    QueueError,
    TransportError,
)
from kickstand.edge.core.firmware.keys import firmware_keys
from kickstand.edge.core.firmware.manifest import DevicePart, check_manifest
from kickstand.edge.core.health import HealthServer
from kickstand.edge.core.identity import DeviceIdentity
from kickstand.edge.core.link import CloudLink, CommandRouter, Outcome
from kickstand.edge.core.queue import DiskQueue
from kickstand.edge.core.replay import SqliteReplayGuard
from kickstand.edge.transports import SerialPort, open_badge_reader, open_serial
from kickstand.edge.transports.ble import (
    BatteryMonitor,
    BatteryReading,
    open_battery_peer,
)
from kickstand.edge.transports.gps import Fix, GpsReceiver
from kickstand.edge.transports.motion import MotionSensor, Sensed
from kickstand.edge.transports.pinpad import PinChecker, PinEntry, PinPad
from kickstand.edge.vehicle.config import CONFIGURABLE, VehicleSettings
from kickstand.edge.vehicle.errors import FirmwareError, LockBoxError
from kickstand.edge.vehicle.firmware import MAX_FIRMWARE_BYTES, SCHEMES, stage_firmware
from kickstand.edge.vehicle.lockbox import LockBox
from kickstand.edge.vehicle.store import VehicleStore
from kickstand.protocol.errors import ProtocolError
from kickstand.protocol.firmware import Manifest
from kickstand.protocol.spotbus import BusLock
from kickstand.protocol.v1.enums import (
    BatteryKind,
    ChainType,
    DeviceKind,
    DeviceState,
    FirmwareState,
    LockCause,
    LockState,
    MotionKind,
    RejectReason,
    ResultStatus,
    TriggerKind,
)
from kickstand.protocol.v1.fields import fit_text
from kickstand.protocol.v1.messages import (
    AuthListUpdate,
    BadgePresented,
    BatteryLow,
    Birth,
    BoardFault,
    BoardRecovered,
    CertIssued,
    ChainInserted,
    ChainRemoved,
    ChainTypeChanged,
    CommandEnvelope,
    CommandResult,
    Component,
    Config,
    FirmwareStatus,
    FirmwareUpdate,
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
    UpBody,
)

log = logging.getLogger("kickstand.edge.vehicle.agent")

LOCK_STATE_KEY = "vehicle.lock"  # device state in the DiskQueue, written with its event
CHAIN_STATE_KEY = "vehicle.chain"  # "<inserted 0|1>:<ChainType>"
LOCKBOX_FAULT_AFTER = 3  # consecutive unanswered polls before a BoardFault
_LOCK_STATE = {BusLock.LOCKED: LockState.LOCKED, BusLock.OPEN: LockState.OPEN,
               BusLock.JAMMED: LockState.JAMMED}


class _RebootRequested(Exception):
    pass


class VehicleAgent:
    """One vehicle controller. ``run()`` serves until cancelled; a Reboot command restarts
    the whole agent in-process (new boot id, peripherals reopened)."""

    def __init__(self, settings: VehicleSettings) -> None:
        self.base_settings = settings
        self.settings = settings
        self.device_id = settings.device_id
        self.state_dir = Path(settings.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.clock = DeviceClock()
        self.store = VehicleStore(self.state_dir / "vehicle.json")
        self.authlist = LocalAuthList(self.state_dir / "authlist.json")
        self.boots = 0
        self.started = asyncio.Event()  # the current boot's link exists
        self.gps = GpsReceiver()
        self.pin = PinChecker()
        self.motion = MotionSensor()
        self.pinpad = PinPad()
        self.battery_monitor: BatteryMonitor | None = None
        self.lockbox: LockBox | None = None
        self.lockbox_firmware = ""
        self.lock_state: BusLock | None = None  # LOCKED or OPEN: the last definite state
        self.jammed = False  # the box reports its lock jammed (a fault, not a lock state)
        self.chain: tuple[bool, int] | None = None
        self.batteries: dict[BatteryKind, BatteryReading] = {}
        self.counters: dict[str, int] = {}
        self._queue: DiskQueue | None = None
        self._link: CloudLink | None = None
        self._reboot = asyncio.Event()
        self._probed = asyncio.Event()  # the lock box was asked for its version (or is absent)
        self._reporter_wake = asyncio.Event()
        self._bus = asyncio.Lock()
        self._lockbox_failures = 0
        self._lockbox_fault = False
        self._last_illegal_move = -1e9
        self._tracking_until = -1e9
        self._unlock_window: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._sent_battery: dict[BatteryKind, tuple[int | None, int | None]] = {}
        self._battery_low: dict[BatteryKind, bool | None] = {}
        self._runner: asyncio.Task[None] | None = None
        self._apply_config(self.store.memory.config_values)

    # ---------------------------------------------------------------- lifecycle

    @property
    def queue_depth(self) -> int:
        """Messages stored and not yet acknowledged by the broker (0 when not running)."""
        return self._queue.depth() if self._queue is not None else 0

    @property
    def link(self) -> CloudLink:
        if self._link is None:
            raise EdgeError("the agent is not running")
        return self._link

    async def __aenter__(self) -> VehicleAgent:
        self._runner = asyncio.create_task(self.run(), name=f"vehicle-agent {self.device_id}")
        started = asyncio.ensure_future(self.started.wait())
        await asyncio.wait({started, self._runner}, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if self._runner.done():
            self._runner.result()  # raises what stopped it
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner

    async def run(self) -> None:
        """Serve until cancelled; a Reboot command starts a new boot in the same process."""
        while True:
            self._reboot.clear()
            try:
                await self._run_boot()
            except _RebootRequested:
                log.warning("vehicle_rebooting device=%s", self.device_id)
                continue

    async def _run_boot(self) -> None:
        s = self.settings
        self.boots += 1
        queue = DiskQueue(
            self.state_dir / "queue.db",
            clock=self.clock.now_ms,
            max_telemetry=s.queue_max_telemetry,
            synchronous=s.queue_synchronous,
        )
        guard = SqliteReplayGuard(self.state_dir / "replay.db", clock=self.clock.now_ms)
        router = CommandRouter()
        self._register(router)
        # Its TLS identity, renewed before expiry (issue 17; None: no client certificate).
        identity = DeviceIdentity.of(s, self.clock)
        if identity is not None:
            router.add(CertIssued, identity.on_cert_issued)
        link = CloudLink(
            s.link_config(),
            queue=queue,
            birth=self._birth,
            verifier=s.verifier(self.clock, guard),
            router=router,
            clock=self.clock,
            on_accepted=self._on_accepted,
        )
        self._queue, self._link = queue, link
        self.lock_state, self.chain, self.jammed = None, None, False
        self._probed.clear()
        if s.lockbox_port in ("", "none"):
            self._probed.set()
        self._battery_low.clear()
        health: HealthServer | None = None
        tasks: list[asyncio.Task[Any]] = []
        try:
            if s.health_port is not None:
                health = HealthServer(self.snapshot, host=s.health_host, port=s.health_port)
                await health.start()
            jobs: list[tuple[str, Coroutine[Any, Any, None]]] = [
                ("link", self._run_link(link)),
                *([("identity", identity.run(link))] if identity is not None else []),
                ("gps", self._gps_loop()),
                ("lockbox", self._lockbox_loop()),
                ("reporter", self._reporter_loop()),
                ("pinpad", self._line_loop(s.pinpad_port, self.pinpad.feed, "pinpad")),
                ("motion", self._line_loop(s.motion_port, self.motion.feed, "motion")),
                ("bms", self._bms_loop()),
                ("nfc", self._nfc_loop()),
            ]
            tasks = [asyncio.create_task(coro, name=f"{self.device_id}-{name}")
                     for name, coro in jobs]
            self.started.set()
            reboot = asyncio.create_task(self._reboot.wait())
            running: set[asyncio.Task[Any]] = set(tasks)
            try:
                while True:
                    done, _ = await asyncio.wait(
                        {reboot, *running}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if reboot in done:
                        raise _RebootRequested()
                    for task in done:
                        running.discard(task)  # a peripheral that is "none" ends at once
                        error = None if task.cancelled() else task.exception()
                        if error is not None:
                            log.error("vehicle_task_died task=%s error=%r", task.get_name(),
                                      error)
                            if task is tasks[0]:
                                raise _RebootRequested()  # no link: start over
            finally:
                reboot.cancel()
        finally:
            self.started.clear()
            for task in [*tasks, *self._background]:
                task.cancel()
            await asyncio.gather(*tasks, *self._background, return_exceptions=True)
            self._background.clear()
            if health is not None:
                await health.stop()
            queue.close()
            guard_close = getattr(guard, "close", None)
            if callable(guard_close):
                guard_close()
            self._link = None

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def emit(self, *bodies: UpBody | None, state: dict[str, str] | None = None) -> None:
        """Store ``bodies`` and device ``state`` in one transaction, send when possible.

        A disk error is logged and counted, never raised: the vehicle keeps working.
        """
        items = [b for b in bodies if b is not None]
        if self._link is None or not (items or state):
            return
        try:
            self._link.emit_batch(items, state)
        except (QueueError, ProtocolError) as exc:
            self._count("emit_failed")
            log.error("vehicle_emit_failed device=%s bodies=%s error=%s", self.device_id,
                      [type(b).__name__ for b in items], exc)

    def _load_state(self, key: str) -> str | None:
        if self._queue is None:
            return None
        try:
            return self._queue.load_state(key)
        except (QueueError, sqlite3.Error) as exc:
            log.error("vehicle_state_unreadable key=%s error=%s", key, exc)
            return None

    # ---------------------------------------------------------------- birth, status

    def _birth(self) -> Birth:
        mem = self.store.memory
        inventory = [Component("lockbox", 0, fit_text(self.lockbox_firmware, 32))]
        s = self.settings
        for kind, path in (("gps", s.gps_port), ("bms", s.bms_address), ("nfc", s.nfc_path),
                           ("pinpad", s.pinpad_port), ("motion", s.motion_port)):
            if path not in ("", "none"):
                inventory.append(Component(kind, 0, ""))
        return Birth(
            kind=DeviceKind.VEHICLE,
            firmware=fit_text(mem.firmware or s.firmware, 32),
            hardware=fit_text(s.hardware, 32),
            config_version=mem.config_version,
            auth_list_version=self.authlist.version,
            inventory=tuple(inventory),
            serial_number=s.serial_number,
        )

    def _on_accepted(self) -> None:
        link = self.link
        link.heartbeat_s = max(link.heartbeat_s, self.settings.min_heartbeat_s)

    @property
    def device_state(self) -> DeviceState:
        if self.store.memory.maintenance:
            return DeviceState.MAINTENANCE
        if self.jammed or self._lockbox_fault:
            return DeviceState.FAULT
        if self.lock_state is BusLock.LOCKED:
            return DeviceState.LOCKED
        fix = self._fresh_fix()
        if self.motion.moving or (fix is not None and (fix.speed_kmh or 0) > 3):
            return DeviceState.RIDING
        return DeviceState.UNLOCKED

    @property
    def parked(self) -> bool:
        return self.lock_state is BusLock.LOCKED or self.lock_state is None

    def _status(self) -> Status:
        fault = None
        if self.jammed:
            fault = "lock jammed"
        elif self._lockbox_fault:
            fault = "lock box not answering"
        level = None
        for kind in (BatteryKind.VAE, BatteryKind.INTERNAL):
            reading = self.batteries.get(kind)
            if reading is not None and reading.level_pct is not None:
                level = reading.level_pct
                break
        return Status(
            spot=0,
            state=self.device_state,
            lock=LockState.JAMMED if self.jammed else (
                _LOCK_STATE.get(self.lock_state) if self.lock_state is not None else None
            ),
            serial_number=self.settings.serial_number,
            fault=fault,
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

    async def _run_link(self, link: CloudLink) -> None:
        """The birth carries the inventory: give the peripherals a moment to answer first."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await self._probed.wait()
        await link.run()

    async def poll_lockbox(self) -> None:
        if self.lockbox is None:
            return
        async with self._bus:
            try:
                report = await self.lockbox.status()
                chain = await self.lockbox.chain()
            except (LockBoxError, TransportError) as exc:
                self._lockbox_failures += 1
                if self._lockbox_failures >= LOCKBOX_FAULT_AFTER and not self._lockbox_fault:
                    self._lockbox_fault = True
                    log.error("lockbox_fault device=%s reason=%s", self.device_id, exc)
                    self.emit(BoardFault(0, fit_text(f"lock box: {exc}", 64)), self._status())
                return
            self._lockbox_failures = 0
            if self._lockbox_fault:
                self._lockbox_fault = False
                self.emit(BoardRecovered(0), self._status())
            self._observe_lock(report.lock)
            self._observe_chain(chain.inserted, chain.chain_type)

    def _observe_lock(self, lock: BusLock) -> None:
        if lock is BusLock.JAMMED:
            if not self.jammed:
                self.jammed = True
                log.error("vehicle_lock_jammed device=%s", self.device_id)
                self.emit(BoardFault(0, "lock jammed"), self._status())
            return
        if self.jammed:
            self.jammed = False
            self.emit(BoardRecovered(0), self._status())
        if self.lock_state is None:
            # First look after a (re)boot: report a change that happened while we were down.
            last = self._load_state(LOCK_STATE_KEY)
            if last is None or last not in BusLock.__members__:
                self.lock_state = lock
                self.emit(self._status(), state={LOCK_STATE_KEY: lock.name})
                return
            self.lock_state = BusLock[last]
        if lock is not self.lock_state:
            self._set_lock(lock, LockCause.MANUAL)

    def _set_lock(
        self, lock: BusLock, cause: LockCause, command_id: bytes | None = None,
        badge_uid: bytes | None = None, *, silent: bool = False, extra: tuple[UpBody, ...] = (),
    ) -> None:
        """The lock is now ``lock``: event, status and the position, with the new state,
        in one transaction (``extra`` bodies go first, e.g. UnlockExpired)."""
        previous = self.lock_state
        self.lock_state = lock
        if lock is previous:
            return
        event: UpBody | None = None
        if not silent and lock is BusLock.LOCKED:
            event = Locked(0, cause, command_id)
        elif not silent and lock is BusLock.OPEN:
            event = Unlocked(0, cause, command_id, badge_uid)
        if lock is not BusLock.OPEN and self._unlock_window is not None:
            if self._unlock_window is not asyncio.current_task():
                self._unlock_window.cancel()
            self._unlock_window = None
        # the position of the lock / unlock goes with it: where a free-floating trip ends
        self.emit(*extra, event, self._status(), self.telemetry(with_batteries=True),
                  state={LOCK_STATE_KEY: lock.name})
        self._reporter_wake.set()
        log.info("vehicle_lock device=%s lock=%s cause=%s", self.device_id, lock.name, cause.name)

    def _observe_chain(self, inserted: bool, code: int) -> None:
        try:
            chain_type = ChainType(code)
        except ValueError:
            self._count("chain_type_unknown")
            chain_type = ChainType.STANDARD
        previous = self.chain
        self.chain = (inserted, int(chain_type))
        state = {CHAIN_STATE_KEY: f"{int(inserted)}:{int(chain_type)}"}
        if previous is None:
            # First look after a (re)boot: what changed while the controller was off?
            stored = self._load_state(CHAIN_STATE_KEY)
            try:
                was, _, kind = (stored or "").partition(":")
                previous = (bool(int(was)), int(kind))
            except ValueError:
                self.emit(state=state)
                return
        if previous == self.chain:
            return
        was_in, old_type = previous
        event: UpBody | None = None
        if was_in and not inserted:
            event = ChainRemoved()
        elif inserted and not was_in:
            event = ChainInserted(chain_type)
        elif inserted and old_type != int(chain_type):
            event = ChainTypeChanged(chain_type)
        self.emit(event, state=state)

    async def _drive_lock(
        self, target: BusLock, cause: LockCause, command_id: bytes | None,
        badge_uid: bytes | None = None,
    ) -> bool:
        """Open or close the lock; False if it already was. CommandFailed if the box fails."""
        if self.lockbox is None:
            raise CommandFailed(RejectReason.HARDWARE_FAULT, "lock box not connected")
        async with self._bus:
            if self.lock_state is target:
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
        if self.lock_state is not BusLock.OPEN or self.lockbox is None:
            return
        chain_in = self.chain is not None and self.chain[0]
        if not chain_in or self.motion.events != moved or self.device_state is DeviceState.RIDING:
            return
        async with self._bus:
            if self.lock_state is not BusLock.OPEN or self.lockbox is None:
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
        if kind is None and sensed is Sensed.MOVING and self.lock_state is BusLock.LOCKED:
            now = time.monotonic()
            if now - self._last_illegal_move >= self.settings.illegal_move_every_s:
                self._last_illegal_move = now
                kind = MotionKind.ILLEGAL_MOVING
        if kind is not None:
            self.emit(Motion(kind))
            if kind is not MotionKind.FALLEN and self.lock_state is BusLock.LOCKED:
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
            self._battery_low[reading.kind] = self._load_state(key) == "sent"
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
        if offline and authorized and not self.store.memory.maintenance and \
                self.lock_state is BusLock.LOCKED:
            try:
                opened = await self._drive_lock(BusLock.OPEN, LockCause.OFFLINE_BADGE, None, uid)
            except CommandFailed as exc:
                log.error("vehicle_offline_unlock_failed reason=%s", exc.detail)
                return
            if opened:
                self._start_unlock_window(self._window(30), None, uid)

    # ---------------------------------------------------------------- commands

    def _register(self, router: CommandRouter) -> None:
        handlers: dict[type, Callable[[CommandEnvelope, Any], Awaitable[Outcome | None]]] = {
            Unlock: self._cmd_unlock,
            Lock: self._cmd_lock,
            SetSpeedLimit: self._cmd_speed_limit,
            SetMaintenance: self._cmd_maintenance,
            Config: self._cmd_config,
            Reboot: self._cmd_reboot,
            TriggerMessage: self._cmd_trigger,
            FirmwareUpdate: self._cmd_firmware,
            AuthListUpdate: self._cmd_auth_list,
        }
        for command_type, handler in handlers.items():
            router.add(command_type, handler)

    def _window(self, requested: int) -> float:
        # SPEC §7.4: the configured window wins; a command's 0 means "not given", as on
        # a station (0 s would lock again before the rider can reach the vehicle).
        return float(self.settings.unlock_window_s or requested or 30)

    async def _cmd_unlock(self, envelope: CommandEnvelope, cmd: Unlock) -> Outcome:
        if cmd.spot != 0:
            raise CommandRefused(RejectReason.MALFORMED, "a vehicle has spot 0 only")
        if self.store.memory.maintenance:
            raise CommandRefused(RejectReason.MAINTENANCE, self.store.memory.maintenance_reason)
        if self.jammed:
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
        self.store.memory.speed_limit_kmh = cmd.max_kmh
        self._save()
        log.info("vehicle_speed_limit device=%s max_kmh=%d", self.device_id, cmd.max_kmh)
        return Outcome(detail=f"max {cmd.max_kmh} km/h")

    async def _cmd_maintenance(self, envelope: CommandEnvelope, cmd: SetMaintenance) -> Outcome:
        if cmd.spot != 0:
            raise CommandRefused(RejectReason.MALFORMED, "a vehicle has spot 0 only")
        mem = self.store.memory
        mem.maintenance, mem.maintenance_reason = cmd.on, cmd.reason if cmd.on else ""
        self._save()
        self.emit_status()
        return Outcome()

    async def _cmd_config(self, envelope: CommandEnvelope, cmd: Config) -> Outcome:
        values: dict[str, Any] = {}
        for key, value in cmd.values.items():
            kind = CONFIGURABLE.get(key)
            if kind is None:
                raise CommandRefused(RejectReason.NOT_SUPPORTED, f"unknown key {key}"[:100])
            if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
                values[key] = float(value)
            elif kind is int and isinstance(value, int) and not isinstance(value, bool):
                values[key] = value
            elif kind is str and isinstance(value, str):
                values[key] = value
            else:
                raise CommandRefused(RejectReason.MALFORMED, f"{key}: {value!r}"[:100])
        merged = {**self.store.memory.config_values, **values}
        try:
            self._apply_config(merged)
        except ValueError as exc:
            raise CommandRefused(RejectReason.MALFORMED, str(exc)[:100]) from None
        self.store.memory.config_values = merged
        self.store.memory.config_version = cmd.version
        self._save()
        self._reporter_wake.set()
        return Outcome(detail=f"config {cmd.version}")

    def _apply_config(self, values: dict[str, Any]) -> None:
        try:
            settings = self.base_settings.model_validate(
                {**self.base_settings.model_dump(), **values}
            )
        except Exception as exc:
            raise ValueError(f"invalid config: {exc}") from None
        self.settings = settings
        self.gps.filter.max_hdop = settings.max_hdop
        self.gps.filter.min_satellites = settings.min_satellites
        self.gps.filter.max_speed_kmh = settings.max_jump_speed_kmh
        self.pin.set_code(settings.pin_code)
        self.motion.on_motion = self._on_motion
        self.pinpad.on_entry = self._on_pin

    async def _cmd_reboot(self, envelope: CommandEnvelope, cmd: Reboot) -> Outcome:
        # The result is stored right after this returns; the reboot follows it.
        asyncio.get_running_loop().call_later(0.2, self._reboot.set)
        return Outcome()

    async def _cmd_trigger(self, envelope: CommandEnvelope, cmd: TriggerMessage) -> Outcome:
        if cmd.which is TriggerKind.BIRTH:
            self.link.trigger_birth()
        elif cmd.which is TriggerKind.STATUS:
            self.emit_status()
        elif cmd.which is TriggerKind.TELEMETRY:
            body = self.telemetry(with_batteries=True)
            if body is None:
                raise CommandFailed(RejectReason.HARDWARE_FAULT, "no position nor battery value")
            self.emit(body)
        else:
            self.link.trigger_heartbeat()
        return Outcome()

    async def _cmd_auth_list(self, envelope: CommandEnvelope, cmd: AuthListUpdate) -> Outcome:
        try:
            self.authlist.apply(cmd)  # CommandRefused on VERSION_MISMATCH / MALFORMED
        except OSError as exc:
            raise CommandFailed(RejectReason.HARDWARE_FAULT, f"storage: {exc}"[:100]) from None
        return Outcome(detail=f"auth list {cmd.version}")

    async def _cmd_firmware(self, envelope: CommandEnvelope, update: FirmwareUpdate) -> Outcome:
        if update.spot != 0:
            raise CommandRefused(RejectReason.NOT_SUPPORTED, "lock box firmware is not updatable")
        cmd = check_manifest(
            update.manifest,
            firmware_keys(self.settings.firmware_public_keys),
            DevicePart(f"vehicle-controller:{self.settings.hardware}", self.settings.hardware),
        )
        if not 0 < cmd.size <= MAX_FIRMWARE_BYTES or len(cmd.sha256) != 32:
            raise CommandRefused(RejectReason.MALFORMED, "size or sha256 out of range")
        if urlsplit(cmd.url).scheme not in SCHEMES:
            raise CommandRefused(RejectReason.MALFORMED, f"url scheme of {cmd.url[:60]}")
        self._spawn(self._firmware(envelope.command_id, cmd), "firmware")
        return Outcome(status=ResultStatus.ACCEPTED)

    async def _firmware(self, command_id: bytes, cmd: Manifest) -> None:
        version = fit_text(cmd.version, 32)
        try:
            await stage_firmware(
                cmd, self.state_dir, lambda state: self.emit(FirmwareStatus(state, version))
            )
            self.store.memory.firmware = version
            self.store.save()
        except FirmwareError as exc:
            log.error("vehicle_firmware_failed version=%s reason=%s", version, exc.reason)
            self.emit(FirmwareStatus(exc.state, version),
                      CommandResult(command_id, ResultStatus.FAILED, exc.reject_reason,
                                    fit_text(exc.reason, 120)))
            return
        except QueueError as exc:  # the staged image stays; the version did not get recorded
            self.emit(FirmwareStatus(FirmwareState.INSTALL_FAILED, version),
                      CommandResult(command_id, ResultStatus.FAILED,
                                    RejectReason.HARDWARE_FAULT, fit_text(str(exc), 120)))
            return
        self.emit(FirmwareStatus(FirmwareState.INSTALLED, version),
                  CommandResult(command_id, ResultStatus.DONE, None, f"firmware {version}"))
        # The new image runs after a restart; the birth then carries its version.
        asyncio.get_running_loop().call_later(0.5, self._reboot.set)

    def _save(self) -> None:
        try:
            self.store.save()
        except QueueError as exc:
            raise CommandFailed(RejectReason.HARDWARE_FAULT, f"storage: {exc}"[:100]) from None

    # ---------------------------------------------------------------- health

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = self._link.snapshot() if self._link is not None else {}
        stats = dataclasses.asdict(self.gps.stats)
        mem = self.store.memory
        out["vehicle"] = {
            "serial_number": self.settings.serial_number,
            "state": self.device_state.name,
            "lock": self.lock_state.name if self.lock_state is not None else None,
            "chain": self.chain,
            "maintenance": mem.maintenance,
            "speed_limit_kmh": mem.speed_limit_kmh,
            "config_version": mem.config_version,
            "firmware": mem.firmware or self.settings.firmware,
            "batteries": {k.name: dataclasses.asdict(v) for k, v in self.batteries.items()},
            "gps": stats,
            "lockbox": dataclasses.asdict(self.lockbox.counters) if self.lockbox else None,
            "counters": dict(self.counters),
            "boots": self.boots,
        }
        return out

