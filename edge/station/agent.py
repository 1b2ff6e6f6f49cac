"""The station agent: spot-bus master, spot state machines, badges, inputs, cloud link.

Per spot (board at bus address = spot number) the state is derived from what the
board reports and what the agent did:

    MAINTENANCE               set by SetMaintenance; unlocks refused
    FAULT                     board not answering, or the lock would not close / open
    UNLOCKING                 UNLOCK sent; the latch is releasing (the lock sensor is read
                              every ``unlock_poll_s`` until it says OPEN)
    EMPTY                     no vehicle
    UNLOCKED_AWAITING_REMOVAL lock open for the unlock window; re-locked when it ends
                              (UnlockExpired: no phantom ride)
    DOCKED_LOCKED             a vehicle, locked

Each change of a spot is written to the on-disk queue in the same transaction as
the events and the status announcing it (``append_batch`` with device state), so
a restart neither repeats nor loses an event. A command's own events go in its
result's transaction (the link stores what the handler's Outcome carries).

Commands: Unlock and Lock act on one spot and run concurrently (the link runs them
as tasks): ten riders at ten spots wait one latch actuation, not ten. One action
per spot at a time: a spot unlocking, locking or taking a firmware image refuses
another with BUSY. Every other command (Config, Reboot, FirmwareUpdate,
AuthListUpdate, SetMaintenance, TriggerMessage) changes station-wide state and runs
alone, after the commands before it have ended (see ``kickstand.edge.core.link``);
a FirmwareUpdate only starts its staging there and goes on in the background.

A latch that does not read OPEN within ``actuation_timeout_s`` fails the command
(FAILED, HARDWARE_FAULT "lock did not open"): the agent sends LOCK so a late
release cannot free a vehicle without a trip, and the spot is FAULT until a Lock
command closes it (as after a lock that would not close).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from kickstand.edge.core import DeviceClock, DiskQueue, SqliteReplayGuard
from kickstand.edge.core.authlist import LocalAuthList
from kickstand.edge.core.errors import CommandFailed, CommandRefused, EdgeError
from kickstand.edge.core.firmware.keys import firmware_keys
from kickstand.edge.core.firmware.manifest import DevicePart, check_manifest
from kickstand.edge.core.health import HealthServer
from kickstand.edge.core.identity import DeviceIdentity
from kickstand.edge.core.link import CloudLink, CommandRouter, Outcome
from kickstand.edge.station.config import StationSettings
from kickstand.edge.transports import (
    BadgeIndication,
    BadgeReader,
    InputsReading,
    SerialPort,
    StationInputs,
    open_badge_reader,
    open_serial,
    open_station_inputs,
)
from kickstand.edge.transports.spotbus import (
    BoardBusError,
    BoardNoAnswer,
    LatchDidNotOpen,
    SpotBusMaster,
)
from kickstand.protocol.errors import FrameError, ProtocolError
from kickstand.protocol.firmware import Manifest
from kickstand.protocol.spotbus import (
    FW_CHUNK_DATA,
    BoardInfo,
    BusLock,
    Cmd,
    SpotReport,
    fw_begin_payload,
    fw_chunk_payload,
)
from kickstand.protocol.v1.enums import (
    DeviceKind,
    DeviceState,
    FirmwareState,
    LockCause,
    LockState,
    RejectReason,
    ResultStatus,
    SpotState,
    TriggerKind,
)
from kickstand.protocol.v1.fields import fit_text
from kickstand.protocol.v1.messages import (
    AlarmCleared,
    AlarmTriggered,
    AuthListUpdate,
    BadgePresented,
    BadgeReply,
    Birth,
    BoardFault,
    BoardRecovered,
    CertIssued,
    CommandEnvelope,
    CommandResult,
    Component,
    Config,
    FirmwareStatus,
    FirmwareUpdate,
    Lock,
    Locked,
    PowerCut,
    PowerRestored,
    Reboot,
    SetMaintenance,
    SpotIdentifyFail,
    Status,
    Telemetry,
    Temperature,
    TriggerMessage,
    Unlock,
    Unlocked,
    UnlockExpired,
    UpBody,
    VehicleDocked,
    VehicleRemoved,
)

log = logging.getLogger("kickstand.edge.station.agent")

UNKNOWN_SERIAL = "unknown"  # a removed vehicle whose serial was never readable
LOCK_DID_NOT_CLOSE = "lock did not close"
LOCK_DID_NOT_OPEN = "lock did not open"
MAX_FIRMWARE_BYTES = 1 << 20
TEMP_MIN_C, TEMP_MAX_C = -100.0, 250.0
_LOCK_STATE = {BusLock.LOCKED: LockState.LOCKED, BusLock.OPEN: LockState.OPEN,
               BusLock.JAMMED: LockState.JAMMED}

# Config keys the cloud may change at run time, with their types.
CONFIG_KEYS: dict[str, type] = {
    "unlock_window_s": int,
    "offline_window_s": int,
    "offline_allow_unknown": bool,
    "temperature_high_c": float,
    "temperature_clear_c": float,
    "telemetry_interval_s": float,
    "poll_interval_s": float,
    "active_poll_interval_s": float,
}


@dataclass(slots=True)
class UnlockContext:
    deadline_ms: int
    command_id: str | None = None  # hex
    badge_uid: str | None = None  # hex

    @property
    def cid(self) -> bytes | None:
        return bytes.fromhex(self.command_id) if self.command_id else None

    @property
    def badge(self) -> bytes | None:
        return bytes.fromhex(self.badge_uid) if self.badge_uid else None


@dataclass(slots=True)
class SpotRecord:
    """What the agent knows of one spot; the persisted part survives restarts."""

    spot: int
    present: bool = False
    serial: str | None = None
    maintenance: bool = False
    board_fault: str | None = None
    lock_fault: str | None = None
    temp_high: bool = False
    firmware: str = ""
    firmware_flagged: bool = False
    unlock: UnlockContext | None = None
    last_status: list[Any] | None = None
    # runtime only
    lock: BusLock | None = field(default=None, metadata={"runtime": True})
    temperature_c: float | None = field(default=None, metadata={"runtime": True})
    unlocking: bool = field(default=False, metadata={"runtime": True})
    locking: bool = field(default=False, metadata={"runtime": True})
    updating: bool = field(default=False, metadata={"runtime": True})
    failures: int = field(default=0, metadata={"runtime": True})
    next_poll: float = field(default=0.0, metadata={"runtime": True})
    info_read: bool = field(default=False, metadata={"runtime": True})

    @property
    def state(self) -> SpotState:
        if self.maintenance:
            return SpotState.MAINTENANCE
        if self.board_fault or self.lock_fault:
            return SpotState.FAULT
        if self.unlocking:
            return SpotState.UNLOCKING
        if not self.present:
            return SpotState.EMPTY
        if self.unlock is not None:
            return SpotState.UNLOCKED_AWAITING_REMOVAL
        return SpotState.DOCKED_LOCKED

    def status(self) -> Status:
        return Status(
            self.spot,
            self.state,
            _LOCK_STATE.get(self.lock) if self.lock is not None else None,
            self.serial if self.present else None,
            self.board_fault or self.lock_fault,
        )

    def persisted(self) -> str:
        # Written at every change of the spot: no deep copy (asdict) on that path.
        data = {name: getattr(self, name) for name in _PERSISTED}
        if self.unlock is not None:
            data["unlock"] = asdict(self.unlock)
        return json.dumps(data)

    @classmethod
    def restore(cls, spot: int, text: str | None) -> SpotRecord:
        record = cls(spot)
        if not text:
            return record
        try:
            data = json.loads(text)
            unlock = data.pop("unlock", None)
            for key, value in data.items():
                if key in cls.__dataclass_fields__ and key != "spot":
                    setattr(record, key, value)
            if unlock:
                record.unlock = UnlockContext(**unlock)
        except (ValueError, TypeError) as exc:
            log.warning("spot_state_unreadable spot=%d error=%s", spot, exc)
            return cls(spot)
        return record


_PERSISTED = tuple(
    f.name for f in fields(SpotRecord) if not f.metadata.get("runtime")
)


class StationAgent:
    """``await StationAgent(settings).run()`` — returns "reboot" or "stopped"."""

    def __init__(
        self,
        settings: StationSettings,
        *,
        serial_port: SerialPort | None = None,
        badge_reader: BadgeReader | None = None,
        inputs: StationInputs | None = None,
    ) -> None:
        self.settings = settings
        self.device_id = settings.device_id
        state_dir = settings.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.clock = DeviceClock()
        self.queue = DiskQueue(
            state_dir / "queue.db",
            clock=self.clock.now_ms,
            max_telemetry=settings.queue_max_telemetry,
            synchronous=settings.queue_synchronous,
        )
        self.replay_guard = SqliteReplayGuard(state_dir / "replay.db", clock=self.clock.now_ms)
        self.authlist = LocalAuthList(state_dir / "authlist.json")
        self.port = serial_port or open_serial(settings.spot_bus)
        self.bus = SpotBusMaster(
            self.port,
            response_timeout_s=settings.response_timeout_s,
            retries=settings.bus_retries,
        )
        self.badge_reader = badge_reader or open_badge_reader(settings.badge_reader)
        self.inputs = inputs or open_station_inputs(settings.inputs)
        self.router = CommandRouter()
        self._register_handlers()
        # Its TLS identity, renewed before expiry (issue 17; None: no client certificate).
        self.identity = DeviceIdentity.of(settings, self.clock)
        if self.identity is not None:
            self.router.add(CertIssued, self.identity.on_cert_issued)
        self.link = CloudLink(
            settings.link_config(),
            queue=self.queue,
            birth=self._birth,
            verifier=settings.verifier(self.clock, self.replay_guard),
            router=self.router,
            clock=self.clock,
            on_accepted=self._on_accepted,
            on_badge_reply=self._on_badge_reply,
        )
        self.spots = {
            n: SpotRecord.restore(n, self.queue.load_state(f"spot:{n}"))
            for n in range(1, settings.spots + 1)
        }
        self.config_version = int(self.queue.load_state("config_version") or 0)
        self._apply_config(json.loads(self.queue.load_state("config_values") or "{}"))
        station = json.loads(self.queue.load_state("station") or "{}")
        self.power_present: bool = station.get("power_present", True)
        self.alarm: bool = station.get("alarm", False)
        self.station_maintenance: bool = station.get("maintenance", False)
        self.last_station_status: list[Any] | None = station.get("last_status")
        self.last_inputs = InputsReading()
        self.ready = asyncio.Event()  # first poll round done
        self.counters: dict[str, int] = {
            "badges": 0, "offline_unlocks": 0, "badges_refused": 0, "badge_replies": 0,
            "unlocks": 0,
            "unlock_expired": 0, "inputs_errors": 0, "poll_errors": 0,
        }
        self._poke = asyncio.Event()
        self._stop = asyncio.Event()
        self._result = "stopped"
        self._tasks: set[asyncio.Task[Any]] = set()
        self._first_accept = True
        self._status_sent: set[int] = set()  # spots (0 = station) whose status this boot sent
        self.health: HealthServer | None = None

    # ---------------------------------------------------------------- lifecycle

    async def run(self) -> str:
        await self.port.open()
        if self.settings.health_port is not None:
            self.health = HealthServer(
                self.snapshot, host=self.settings.health_host, port=self.settings.health_port
            )
            await self.health.start()
        try:
            await self.badge_reader.start()
        except EdgeError as exc:
            log.error("badge_reader_unavailable error=%s", exc)
        loop = asyncio.get_running_loop()
        n = len(self.spots)
        for i, spot in enumerate(self.spots.values()):
            spot.next_poll = loop.time() + self.settings.poll_interval_s * i / max(1, n)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._first_round_then_poll(), name="station-poll")
                tg.create_task(self._link_after_first_round(), name="station-link")
                tg.create_task(self._badges(), name="station-badges")
                tg.create_task(self._inputs_loop(), name="station-inputs")
                tg.create_task(self._telemetry_loop(), name="station-telemetry")
                tg.create_task(self._stopper(), name="station-stopper")
                if self.identity is not None:
                    tg.create_task(self.identity.run(self.link), name="station-identity")
        except* _Stop:
            pass
        finally:
            for task in list(self._tasks):
                task.cancel()
            await self.badge_reader.close()
            await self.port.close()
            if self.health is not None:
                await self.health.stop()
            self.queue.close()
            self.replay_guard.close()
        return self._result

    async def _link_after_first_round(self) -> None:
        # The birth's inventory carries every board's firmware: read them first.
        await self.ready.wait()
        await self.link.run()

    async def _stopper(self) -> None:
        await self._stop.wait()
        await self.link.publish_death(self._result)
        raise _Stop

    def stop(self, result: str = "stopped") -> None:
        self._result = result
        self._stop.set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _birth(self) -> Birth:
        inventory = tuple(
            Component("spot", s.spot, s.firmware) for s in self.spots.values()
        )
        return Birth(
            DeviceKind.STATION,
            self.settings.firmware,
            self.settings.hardware,
            config_version=self.config_version,
            auth_list_version=self.authlist.version,
            inventory=inventory,
        )

    async def _on_accepted(self) -> None:
        if self._first_accept:
            self._first_accept = False
            self._spawn(self._statuses_after_boot())

    async def _statuses_after_boot(self) -> None:
        """As OCPP's StatusNotification after boot: the cloud learns every spot's state.

        Spots whose status this process already queued are skipped.
        """
        await self.ready.wait()
        stale = [s for s in self.spots.values() if s.spot not in self._status_sent]
        self._commit([], stale, force=True, force_station=0 not in self._status_sent)

    # ---------------------------------------------------------------- commit

    def _station_status(self) -> Status:
        faulty = [s.spot for s in self.spots.values() if s.state is SpotState.FAULT]
        if self.station_maintenance:
            state, fault = DeviceState.MAINTENANCE, None
        elif not self.power_present:
            state, fault = DeviceState.DEGRADED, "power cut"
        elif faulty:
            state, fault = DeviceState.DEGRADED, "spots " + ",".join(map(str, faulty))
        else:
            state, fault = DeviceState.OPERATIVE, None
        return Status(0, state, fault=fault)

    def _commit(
        self,
        events: Sequence[UpBody],
        spots: Sequence[SpotRecord],
        *,
        force: bool = False,
        force_station: bool | None = None,
    ) -> None:
        """Events, then the status of each changed spot, with their state: one transaction."""
        staged = self._staged(events, spots, force=force, force_station=force_station)
        if staged is not None:
            self.link.emit_batch(*staged)

    def _done(self, events: Sequence[UpBody], spots: Sequence[SpotRecord]) -> Outcome:
        """DONE, carrying what :meth:`_commit` would write, for the result's transaction."""
        staged = self._staged(events, spots)
        if staged is None:
            return Outcome(ResultStatus.DONE)
        bodies, state = staged
        return Outcome(ResultStatus.DONE, bodies=tuple(bodies), state=state)

    def _staged(
        self,
        events: Sequence[UpBody],
        spots: Sequence[SpotRecord],
        *,
        force: bool = False,
        force_station: bool | None = None,
    ) -> tuple[list[UpBody], dict[str, str]] | None:
        """What :meth:`_commit` writes (None: nothing); the statuses count as sent.

        The caller stores it before its next ``await``, so nothing can come between.
        """
        bodies: list[UpBody] = list(events)
        changed: list[SpotRecord] = []
        for spot in spots:
            status = spot.status()
            key = [int(status.state), status.lock, status.serial_number, status.fault]
            if force or key != spot.last_status:
                spot.last_status = key
                bodies.append(status)
                self._status_sent.add(spot.spot)
            changed.append(spot)
        station = self._station_status()
        skey = [int(station.state), station.fault]
        if (force if force_station is None else force_station) or (
            skey != self.last_station_status
        ):
            self.last_station_status = skey
            bodies.append(station)
            self._status_sent.add(0)
        if not bodies:
            return None  # an idle poll: nothing to say, nothing to write
        state = {f"spot:{s.spot}": s.persisted() for s in changed}
        state["station"] = json.dumps({
            "power_present": self.power_present, "alarm": self.alarm,
            "maintenance": self.station_maintenance, "last_status": self.last_station_status,
        })
        for body in events:
            log.info("event device=%s %s", self.device_id, body)
        return bodies, state

    # ---------------------------------------------------------------- polling

    async def _first_round_then_poll(self) -> None:
        for spot in self.spots.values():
            await self._poll_spot(spot)
        self.ready.set()
        await self._poll_loop()

    async def _poll_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            for spot in self.spots.values():
                if now >= spot.next_poll:
                    await self._poll_spot(spot)
            now = loop.time()
            wait = min(s.next_poll for s in self.spots.values()) - now
            if wait > 0:
                self._poke.clear()
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._poke.wait()

    def _schedule(self, spot: SpotRecord) -> None:
        now = asyncio.get_running_loop().time()
        if spot.board_fault:
            delay = min(
                self.settings.board_retry_max_s,
                self.settings.board_retry_min_s * 2 ** max(0, spot.failures - 1),
            )
        elif spot.unlock is not None or spot.unlocking:
            delay = self.settings.active_poll_interval_s
        else:
            delay = self.settings.poll_interval_s
        spot.next_poll = now + delay

    def _poke_spot(self, spot: SpotRecord) -> None:
        spot.next_poll = asyncio.get_running_loop().time() + self.settings.active_poll_interval_s
        self._poke.set()

    async def _poll_spot(self, spot: SpotRecord) -> None:
        try:
            await self._poll_spot_inner(spot)
        except (EdgeError, ProtocolError) as exc:
            self.counters["poll_errors"] += 1
            log.error("poll_failed spot=%d error=%s", spot.spot, exc)
        except Exception:
            # Whatever a board says, the other spots keep being served.
            self.counters["poll_errors"] += 1
            log.exception("poll_crashed spot=%d", spot.spot)
        finally:
            self._schedule(spot)

    def _board_failed(self, spot: SpotRecord, reason: str) -> None:
        spot.failures += 1
        if spot.board_fault is None:
            spot.board_fault = reason
            log.warning(
                "board_fault device=%s spot=%d reason=%s", self.device_id, spot.spot, reason
            )
            self._commit([BoardFault(spot.spot, reason)], [spot])

    async def _poll_spot_inner(self, spot: SpotRecord) -> None:
        try:
            frame = await self.bus.transact(spot.spot, Cmd.GET_STATUS)
            report = SpotReport.from_payload(frame.payload)
        except BoardNoAnswer:
            self._board_failed(spot, "no answer")
            return
        except (BoardBusError, FrameError) as exc:
            self._board_failed(spot, fit_text(f"bad status: {exc}", 60))
            return
        events: list[UpBody] = []
        spot.failures = 0
        if spot.board_fault is not None:
            spot.board_fault = None
            spot.info_read = False
            events.append(BoardRecovered(spot.spot))
        if not spot.info_read:
            events.extend(await self._read_info(spot))
        n = spot.spot
        previous_lock = spot.lock
        spot.lock = report.lock
        # A broken sensor may say anything an int16 holds; keep it inside what the wire carries.
        spot.temperature_c = min(TEMP_MAX_C, max(TEMP_MIN_C, report.temperature_c))
        # presence
        if report.vehicle_present and not spot.present:
            spot.present = True
            spot.unlock = None
            spot.serial = report.serial_number
            if spot.serial:
                events.append(VehicleDocked(n, spot.serial))
            else:
                events.append(SpotIdentifyFail(n))
            if report.lock is BusLock.LOCKED:
                events.append(Locked(n, LockCause.DOCKING))
            else:
                spot.lock_fault = LOCK_DID_NOT_CLOSE
                events.append(BoardFault(n, spot.lock_fault))
        elif report.vehicle_present and spot.serial is None and report.serial_number:
            spot.serial = report.serial_number
            events.append(VehicleDocked(n, spot.serial))
        elif not report.vehicle_present and spot.present:
            ctx = spot.unlock
            forced = ctx is None and (previous_lock is BusLock.LOCKED or report.tamper)
            events.append(
                VehicleRemoved(
                    n,
                    spot.serial or UNKNOWN_SERIAL,
                    badge_uid=ctx.badge if ctx else None,
                    command_id=ctx.cid if ctx else None,
                )
            )
            if forced:
                events.append(AlarmTriggered(f"spot {n}: vehicle removed while locked"))
            spot.present = False
            spot.serial = None
            spot.unlock = None
        # A lock that would not close recovers when the board reports it closed. One that
        # would not open reads closed all along: that proves nothing (a Lock clears it).
        if spot.lock_fault == LOCK_DID_NOT_CLOSE and report.lock is BusLock.LOCKED \
                and not report.lock_fault:
            spot.lock_fault = None
            events.append(BoardRecovered(n))
        # temperature with hysteresis
        t = spot.temperature_c
        if not spot.temp_high and t >= self.settings.temperature_high_c:
            spot.temp_high = True
            events.append(Temperature(n, t, True))
        elif spot.temp_high and t <= self.settings.temperature_clear_c:
            spot.temp_high = False
            events.append(Temperature(n, t, False))
        # the unlock window: re-lock, no phantom ride
        if spot.unlock is not None and not spot.present:
            spot.unlock = None
        if spot.unlock is not None and self.clock.now_ms() >= spot.unlock.deadline_ms:
            events.extend(await self._relock_expired(spot))
        self._commit(events, [spot])

    async def _read_info(self, spot: SpotRecord) -> list[UpBody]:
        try:
            frame = await self.bus.transact(spot.spot, Cmd.GET_INFO)
            info = BoardInfo.from_payload(frame.payload)
        except (BoardNoAnswer, BoardBusError, FrameError) as exc:
            log.warning("board_info_failed spot=%d error=%s", spot.spot, exc)
            return []
        spot.info_read = True
        events: list[UpBody] = []
        changed = info.firmware != spot.firmware
        spot.firmware = info.firmware
        expected = self.settings.expected_board_firmware
        if expected and info.firmware != expected:
            if not spot.firmware_flagged or changed:
                spot.firmware_flagged = True
                events.append(
                    BoardFault(
                        spot.spot, fit_text(f"firmware {info.firmware}, expected {expected}", 60)
                    )
                )
        elif spot.firmware_flagged:
            spot.firmware_flagged = False
            events.append(BoardRecovered(spot.spot))
        return events

    async def _relock_expired(self, spot: SpotRecord) -> list[UpBody]:
        ctx = spot.unlock
        assert ctx is not None
        spot.unlock = None
        self.counters["unlock_expired"] += 1
        events: list[UpBody] = [UnlockExpired(spot.spot, ctx.cid, ctx.badge)]
        try:
            await self.bus.transact(spot.spot, Cmd.LOCK)
            spot.lock = BusLock.LOCKED
        except (BoardNoAnswer, BoardBusError) as exc:
            spot.lock_fault = LOCK_DID_NOT_CLOSE
            events.append(BoardFault(spot.spot, spot.lock_fault))
            log.warning("relock_failed spot=%d error=%s", spot.spot, exc)
        return events

    # ---------------------------------------------------------------- unlock

    @staticmethod
    def _check_idle(spot: SpotRecord) -> None:
        """One action per spot: a second one while the first runs is refused BUSY."""
        if spot.unlocking or spot.locking or spot.updating:
            raise CommandRefused(RejectReason.BUSY, f"spot {spot.spot} busy")

    def _check_unlockable(self, spot: SpotRecord) -> None:
        if spot.maintenance or self.station_maintenance:
            raise CommandRefused(RejectReason.MAINTENANCE, f"spot {spot.spot} in maintenance")
        if spot.board_fault or spot.lock_fault:
            raise CommandRefused(
                RejectReason.HARDWARE_FAULT, spot.board_fault or spot.lock_fault or ""
            )
        self._check_idle(spot)
        if spot.unlock is not None:
            raise CommandRefused(RejectReason.BUSY, f"spot {spot.spot} busy")
        if not spot.present:
            raise CommandRefused(RejectReason.INVALID_STATE, f"spot {spot.spot} is empty")

    async def _unlock(
        self,
        spot: SpotRecord,
        window_s: int,
        cause: LockCause,
        command_id: bytes | None = None,
        badge_uid: bytes | None = None,
    ) -> list[UpBody]:
        """Open the spot's latch; the events to store with the spot (the caller stores them).

        CommandRefused before anything moved, CommandFailed when the hardware failed.
        """
        self._check_unlockable(spot)
        spot.unlocking = True  # before the first await: a second unlock now sees BUSY
        try:
            await self._release_latch(spot)
        finally:
            spot.unlocking = False
        spot.lock = BusLock.OPEN
        spot.unlock = UnlockContext(
            self.clock.now_ms() + window_s * 1000,
            command_id.hex() if command_id else None,
            badge_uid.hex() if badge_uid else None,
        )
        self.counters["unlocks"] += 1
        self._poke_spot(spot)
        return [Unlocked(spot.spot, cause, command_id, badge_uid)]

    async def _release_latch(self, spot: SpotRecord) -> None:
        n = spot.spot
        poll_s = self.settings.unlock_poll_s
        try:
            if await self.bus.unlock(n, poll_s=poll_s):
                return
            # Written while the latch moves, not before it starts: off the rider's wait.
            self._commit([], [spot])
            await self.bus.wait_open(n, poll_s=poll_s, timeout_s=self.settings.actuation_timeout_s)
        except BoardNoAnswer as exc:
            spot.unlocking = False
            self._board_failed(spot, "no answer")
            self._commit([], [spot])
            raise CommandFailed(RejectReason.HARDWARE_FAULT, str(exc)) from None
        except (BoardBusError, FrameError) as exc:
            spot.unlocking = False
            self._commit([], [spot])
            raise CommandFailed(RejectReason.HARDWARE_FAULT, str(exc)[:120]) from None
        except LatchDidNotOpen as exc:
            log.warning("latch_did_not_open device=%s spot=%d reads=%s",
                        self.device_id, n, exc.last.name)
            spot.lock_fault = LOCK_DID_NOT_OPEN
            await self._abort_release(spot)
            spot.unlocking = False
            spot.lock = exc.last
            self._commit([BoardFault(n, LOCK_DID_NOT_OPEN)], [spot])
            raise CommandFailed(RejectReason.HARDWARE_FAULT, LOCK_DID_NOT_OPEN) from None

    async def _abort_release(self, spot: SpotRecord) -> None:
        """LOCK after a latch that did not open: a late release must not free a vehicle."""
        try:
            await self.bus.transact(spot.spot, Cmd.LOCK)
        except (BoardNoAnswer, BoardBusError) as exc:
            log.warning("abort_release_failed spot=%d error=%s", spot.spot, exc)

    def _spot(self, number: int) -> SpotRecord:
        spot = self.spots.get(number)
        if spot is None:
            raise CommandRefused(RejectReason.INVALID_STATE, f"no spot {number}")
        return spot

    # ---------------------------------------------------------------- commands

    def _register_handlers(self) -> None:
        r = self.router
        # One spot each, waiting on a latch: side by side (see the module docstring).
        r.add(Unlock, self._cmd_unlock, concurrent=True)
        r.add(Lock, self._cmd_lock, concurrent=True)
        r.add(SetMaintenance, self._cmd_maintenance)
        r.add(AuthListUpdate, self._cmd_authlist)
        r.add(Config, self._cmd_config)
        r.add(Reboot, self._cmd_reboot)
        r.add(TriggerMessage, self._cmd_trigger)
        r.add(FirmwareUpdate, self._cmd_firmware)

    async def _cmd_unlock(self, envelope: CommandEnvelope, cmd: Unlock) -> Outcome:
        spot = self._spot(cmd.spot)
        window = self.settings.unlock_window_s or cmd.window_s or 30
        events = await self._unlock(
            spot, window, LockCause.COMMAND, command_id=envelope.command_id
        )
        return self._done(events, [spot])

    async def _cmd_lock(self, envelope: CommandEnvelope, cmd: Lock) -> Outcome:
        spot = self._spot(cmd.spot)
        if spot.board_fault:
            raise CommandRefused(RejectReason.HARDWARE_FAULT, spot.board_fault)
        self._check_idle(spot)
        spot.locking = True
        try:
            await self.bus.transact(spot.spot, Cmd.LOCK)
        except (BoardNoAnswer, BoardBusError) as exc:
            raise CommandFailed(RejectReason.HARDWARE_FAULT, str(exc)) from None
        finally:
            spot.locking = False
        events: list[UpBody] = [Locked(spot.spot, LockCause.COMMAND, envelope.command_id)]
        if spot.lock_fault is not None:
            events.append(BoardRecovered(spot.spot))
        spot.lock = BusLock.LOCKED
        spot.unlock = None
        spot.lock_fault = None
        return self._done(events, [spot])

    async def _cmd_maintenance(self, envelope: CommandEnvelope, cmd: SetMaintenance) -> Outcome:
        if cmd.spot == 0:
            self.station_maintenance = cmd.on
            self._commit([], list(self.spots.values()))
        else:
            spot = self._spot(cmd.spot)
            spot.maintenance = cmd.on
            self._commit([], [spot])
        return Outcome(ResultStatus.DONE)

    async def _cmd_authlist(self, envelope: CommandEnvelope, cmd: AuthListUpdate) -> Outcome:
        self.authlist.apply(cmd)
        return Outcome(ResultStatus.DONE, detail=f"version {cmd.version}, {len(self.authlist)}")

    def _apply_config(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if key in CONFIG_KEYS:
                setattr(self.settings, key, CONFIG_KEYS[key](value))

    async def _cmd_config(self, envelope: CommandEnvelope, cmd: Config) -> Outcome:
        unknown = sorted(set(cmd.values) - set(CONFIG_KEYS))
        if unknown:
            raise CommandRefused(RejectReason.NOT_SUPPORTED, "unknown keys: " + ",".join(unknown))
        for key, value in cmd.values.items():
            expected = CONFIG_KEYS[key]
            ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
            if not ok or (expected is int and isinstance(value, bool)):
                raise CommandRefused(RejectReason.MALFORMED, f"{key} must be {expected.__name__}")
        merged = json.loads(self.queue.load_state("config_values") or "{}")
        merged.update(cmd.values)
        self._apply_config(dict(cmd.values))
        self.config_version = cmd.version
        self.queue.save_state(
            {"config_values": json.dumps(merged), "config_version": str(cmd.version)}
        )
        self._poke.set()
        return Outcome(ResultStatus.DONE)

    async def _cmd_reboot(self, envelope: CommandEnvelope, cmd: Reboot) -> Outcome:
        async def later() -> None:
            # Give the link a moment to deliver the result before the process restarts.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(3.0):
                    await self._queue_empty()
            self.stop("reboot")

        self._spawn(later())
        # SPEC §7.4: DONE (the restart follows the result, nothing else is pending).
        return Outcome(ResultStatus.DONE, detail="hard" if cmd.hard else "soft")

    async def _queue_empty(self) -> None:
        while self.queue.depth():  # noqa: ASYNC110 - the queue announces nothing
            await asyncio.sleep(0.05)

    async def _cmd_trigger(self, envelope: CommandEnvelope, cmd: TriggerMessage) -> Outcome:
        if cmd.which is TriggerKind.BIRTH:
            self.link.trigger_birth()
        elif cmd.which is TriggerKind.HEARTBEAT:
            self.link.trigger_heartbeat()
        elif cmd.which is TriggerKind.TELEMETRY:
            self._emit_telemetry()
        else:
            spots = list(self.spots.values()) if cmd.spot == 0 else [self._spot(cmd.spot)]
            self._commit([], spots, force=True)
        return Outcome(ResultStatus.DONE)

    async def _cmd_firmware(self, envelope: CommandEnvelope, update: FirmwareUpdate) -> Outcome:
        if update.spot == 0:
            raise CommandRefused(RejectReason.NOT_SUPPORTED, "mainboard update by package only")
        spot = self._spot(update.spot)
        self._check_idle(spot)
        if spot.unlock is not None:
            raise CommandRefused(RejectReason.BUSY, f"spot {spot.spot} busy")
        if spot.board_fault:
            raise CommandRefused(RejectReason.HARDWARE_FAULT, spot.board_fault)
        cmd = check_manifest(update.manifest, firmware_keys(self.settings.firmware_public_keys),
                             DevicePart("spot-board:"))
        if not 0 < cmd.size <= MAX_FIRMWARE_BYTES or len(cmd.sha256) != 32:
            raise CommandRefused(RejectReason.MALFORMED, "size or sha256 out of range")
        if not cmd.url.startswith(("file://", "http://", "https://")):
            raise CommandRefused(RejectReason.NOT_SUPPORTED, "url scheme")
        spot.updating = True
        self._spawn(self._firmware_update(envelope.command_id, cmd, spot))
        return Outcome(ResultStatus.ACCEPTED, detail="staging")

    async def _fetch(self, url: str, limit: int) -> bytes:
        if url.startswith("file://"):
            path = url[len("file://"):]

            def read() -> bytes:
                with open(path, "rb") as f:
                    return f.read(limit + 1)

            return await asyncio.to_thread(read)
        import httpx  # only stations that update need it in memory

        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.get(url)
            response.raise_for_status()
            return response.content[: limit + 1]

    async def _firmware_update(
        self, command_id: bytes, cmd: Manifest, spot: SpotRecord
    ) -> None:
        def status(state: FirmwareState) -> None:
            self._commit([FirmwareStatus(state, cmd.version, spot.spot)], [])

        def done(ok: bool, reason: RejectReason | None = None, detail: str = "") -> None:
            self.link.emit(CommandResult(
                command_id,
                ResultStatus.DONE if ok else ResultStatus.FAILED,
                reason,
                fit_text(detail, 120) or None,
            ))

        try:
            await self._firmware_steps(command_id, cmd, spot, status, done)
        except (EdgeError, ProtocolError) as exc:
            log.error("firmware_update_failed spot=%d error=%s", spot.spot, exc)
            with contextlib.suppress(EdgeError, ProtocolError):
                done(False, RejectReason.HARDWARE_FAULT, str(exc))
        finally:
            spot.updating = False

    async def _firmware_steps(
        self,
        command_id: bytes,
        cmd: Manifest,
        spot: SpotRecord,
        status: Callable[[FirmwareState], None],
        done: Callable[..., None],
    ) -> None:
        status(FirmwareState.DOWNLOADING)
        try:
            image = await self._fetch(cmd.url, cmd.size)
        except Exception as exc:
            status(FirmwareState.DOWNLOAD_FAILED)
            done(False, RejectReason.HARDWARE_FAULT, f"download: {exc}")
            return
        status(FirmwareState.DOWNLOADED)
        status(FirmwareState.VERIFYING)
        if len(image) != cmd.size or hashlib.sha256(image).digest() != cmd.sha256:
            status(FirmwareState.VERIFY_FAILED)
            done(False, RejectReason.MALFORMED, "size or sha256 mismatch")
            return
        status(FirmwareState.VERIFIED)
        status(FirmwareState.INSTALLING)
        try:
            await self.bus.transact(spot.spot, Cmd.FW_BEGIN,
                                    fw_begin_payload(len(image), cmd.sha256))
            for offset in range(0, len(image), FW_CHUNK_DATA):
                chunk = image[offset: offset + FW_CHUNK_DATA]
                await self.bus.transact(spot.spot, Cmd.FW_CHUNK,
                                        fw_chunk_payload(offset, chunk))
                if self.settings.firmware_chunk_delay_s:
                    await asyncio.sleep(self.settings.firmware_chunk_delay_s)
            await self.bus.transact(spot.spot, Cmd.FW_COMMIT)
            frame = await self.bus.transact(spot.spot, Cmd.GET_INFO)
            info = BoardInfo.from_payload(frame.payload)
        except (BoardNoAnswer, BoardBusError, FrameError) as exc:
            status(FirmwareState.INSTALL_FAILED)
            done(False, RejectReason.HARDWARE_FAULT, str(exc))
            return
        spot.firmware = info.firmware
        if info.firmware != cmd.version:
            status(FirmwareState.INSTALL_FAILED)
            done(False, RejectReason.HARDWARE_FAULT, f"board reports {info.firmware}")
            return
        spot.firmware_flagged = False
        status(FirmwareState.INSTALLED)
        done(True)

    # ---------------------------------------------------------------- badges

    async def _badges(self) -> None:
        async for uid in self.badge_reader.badges():
            try:
                await self._on_badge(uid)
            except (EdgeError, ProtocolError) as exc:
                log.error("badge_handling_failed uid=%s error=%s", uid.hex(), exc)

    async def _on_badge(self, uid: bytes) -> None:
        """Online, the cloud decides (it answers with a BadgeReply and, to ride, a signed
        Unlock): the station never opens by itself. Offline, a badge in the local list
        opens the lowest-numbered spot holding an identified vehicle, docked and locked."""
        self.counters["badges"] += 1
        known = uid in self.authlist
        if self.link.accepted.is_set():
            self._commit([BadgePresented(uid, known, False, 0)], [])
            return
        if not known and not self.settings.offline_allow_unknown:
            self.counters["badges_refused"] += 1
            log.info("badge_refused_offline uid=%s", uid.hex())
            self._commit([BadgePresented(uid, False, True, 0)], [])
            self._indicate(BadgeIndication(uid, "refused", "not_in_local_list"))
            return
        candidates = [
            s for s in self.spots.values()
            if s.state is SpotState.DOCKED_LOCKED and s.serial and not self.station_maintenance
        ]
        if not candidates:
            self._commit([BadgePresented(uid, True, True, 0)], [])
            self._indicate(BadgeIndication(uid, "refused", "no_vehicle"))
            return
        spot = candidates[0]
        self._commit([BadgePresented(uid, True, True, spot.spot)], [])
        self._indicate(BadgeIndication(uid, "unlocking", None, spot.spot))
        try:
            events = await self._unlock(
                spot, self.settings.offline_window_s, LockCause.OFFLINE_BADGE, badge_uid=uid
            )
        except (CommandRefused, CommandFailed) as exc:
            log.warning("offline_unlock_failed spot=%d error=%s", spot.spot, exc)
            return
        self._commit(events, [spot])
        self.counters["offline_unlocks"] += 1

    def _on_badge_reply(self, reply: BadgeReply) -> None:
        """The cloud's answer to a badge: shown at the reader (the Unlock, if any, comes
        as a command of its own)."""
        self.counters["badge_replies"] += 1
        self._indicate(BadgeIndication(
            reply.badge_uid,
            reply.outcome.name.lower(),
            reply.reason.name.lower() if reply.reason is not None else None,
            reply.spot,
        ))

    def _indicate(self, indication: BadgeIndication) -> None:
        try:
            self.badge_reader.indicate(indication)
        except Exception as exc:  # a broken indicator must not stop badges or the link
            log.warning("badge_indication_failed error=%s", exc)

    # ---------------------------------------------------------------- inputs, telemetry

    async def _inputs_loop(self) -> None:
        while True:
            try:
                reading = await self.inputs.read()
            except Exception as exc:
                self.counters["inputs_errors"] += 1
                log.warning("inputs_failed error=%s", exc)
                await asyncio.sleep(self.settings.inputs_interval_s)
                continue
            self.last_inputs = reading
            events: list[UpBody] = []
            if reading.power_present != self.power_present:
                self.power_present = reading.power_present
                events.append(PowerRestored() if reading.power_present else PowerCut())
            if reading.alarm != self.alarm:
                self.alarm = reading.alarm
                events.append(AlarmTriggered(fit_text(reading.alarm_reason, 60)) if reading.alarm
                              else AlarmCleared())
            if events:
                try:
                    self._commit(events, [])
                except (EdgeError, ProtocolError) as exc:
                    log.error("inputs_commit_failed error=%s", exc)
            await asyncio.sleep(self.settings.inputs_interval_s)

    def _emit_telemetry(self) -> None:
        r = self.last_inputs
        temps = tuple(
            (s.spot, round(s.temperature_c, 1))
            for s in self.spots.values() if s.temperature_c is not None
        )
        self.link.emit(Telemetry(
            temperature_c=r.temperature_c,
            energy_wh=r.energy_wh,
            power_w=r.power_w,
            spot_temperatures_c=temps,
        ))

    async def _telemetry_loop(self) -> None:
        await self.ready.wait()
        while True:
            await asyncio.sleep(self.settings.telemetry_interval_s)
            try:
                self._emit_telemetry()
            except (EdgeError, ProtocolError) as exc:
                log.error("telemetry_failed error=%s", exc)

    # ---------------------------------------------------------------- status

    def snapshot(self) -> dict[str, Any]:
        data = self.link.snapshot()
        data["station"] = {
            "state": self._station_status().state.name,
            "power_present": self.power_present,
            "alarm": self.alarm,
            "maintenance": self.station_maintenance,
            "auth_list_version": self.authlist.version,
            "auth_list_size": len(self.authlist),
            "config_version": self.config_version,
        }
        data["spots"] = [
            {
                "spot": s.spot,
                "state": s.state.name,
                "lock": s.lock.name if s.lock is not None else None,
                "serial": s.serial,
                "temperature_c": s.temperature_c,
                "fault": s.board_fault or s.lock_fault,
                "firmware": s.firmware,
            }
            for s in self.spots.values()
        ]
        data["bus"] = self.bus.snapshot()
        data["counters"] = dict(self.counters)
        return data


class _Stop(Exception):
    """Ends the agent's task group (stop or reboot)."""
