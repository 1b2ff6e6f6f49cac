"""The station agent: the station's part on the edge framework (:mod:`kickstand.edge.core.agent`).

What is the station's own: the spot bus and its boards (polling, unlock, lock, board
firmware staging), the spots' state machines (:mod:`kickstand.edge.station.spots`), the
NFC badge reader and the inputs (power, alarm, energy, temperature). Config, Reboot,
TriggerMessage, AuthListUpdate, the FirmwareUpdate seam, the store and the lifecycle are
the framework's.

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
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from kickstand.edge.core.agent import EdgeAgent, Job
from kickstand.edge.core.errors import CommandFailed, CommandRefused, EdgeError
from kickstand.edge.core.firmware.errors import FirmwareError
from kickstand.edge.core.firmware.manifest import DevicePart
from kickstand.edge.core.link import CommandRouter, Outcome
from kickstand.edge.station.config import StationSettings
from kickstand.edge.station.spots import (
    LOCK_DID_NOT_OPEN,
    SpotRecord,
    Thresholds,
    offline_spot,
)
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
    RejectReason,
    ResultStatus,
    SpotState,
)
from kickstand.protocol.v1.fields import fit_text
from kickstand.protocol.v1.messages import (
    AlarmCleared,
    AlarmTriggered,
    BadgePresented,
    BadgeReply,
    CommandEnvelope,
    Component,
    Lock,
    PowerCut,
    PowerRestored,
    SetMaintenance,
    Status,
    Telemetry,
    Unlock,
    UpBody,
)

log = logging.getLogger("kickstand.edge.station.agent")


class StationAgent(EdgeAgent[StationSettings]):
    """``await StationAgent(settings).run()`` — one boot: returns "reboot" or "stopped"."""

    kind: ClassVar[DeviceKind] = DeviceKind.STATION
    max_firmware_bytes: ClassVar[int] = 1 << 20  # SPEC §7.4: a spot board's image

    def __init__(
        self,
        settings: StationSettings,
        *,
        serial_port: SerialPort | None = None,
        badge_reader: BadgeReader | None = None,
        inputs: StationInputs | None = None,
    ) -> None:
        super().__init__(settings)
        self.port = serial_port or open_serial(settings.spot_bus)
        self.bus = SpotBusMaster(
            self.port,
            response_timeout_s=settings.response_timeout_s,
            retries=settings.bus_retries,
        )
        self.badge_reader = badge_reader or open_badge_reader(settings.badge_reader)
        self.inputs = inputs or open_station_inputs(settings.inputs)
        self.spots = {n: SpotRecord(n) for n in range(1, settings.spots + 1)}
        self.power_present = True
        self.alarm = False
        self.station_maintenance = False
        self.last_station_status: list[Any] | None = None
        self.last_inputs = InputsReading()
        self.ready = asyncio.Event()  # first poll round done
        self.counters: dict[str, int] = {
            "badges": 0, "offline_unlocks": 0, "badges_refused": 0, "badge_replies": 0,
            "unlocks": 0,
            "unlock_expired": 0, "inputs_errors": 0, "poll_errors": 0,
        }
        self.limits = Thresholds()
        self._poke = asyncio.Event()
        self._staging = asyncio.Lock()  # one spot board takes an image at a time
        self._first_accept = True
        self._status_sent: set[int] = set()  # spots (0 = station) whose status this boot sent

    # ---------------------------------------------------------------- the framework's hooks

    async def open(self) -> None:
        self.spots = {
            n: SpotRecord.restore(n, self.state.get(f"spot:{n}"))
            for n in range(1, self.settings.spots + 1)
        }
        station = self.state.get("station", {})
        if not isinstance(station, dict):
            station = {}
        self.power_present = bool(station.get("power_present", True))
        self.alarm = bool(station.get("alarm", False))
        self.station_maintenance = bool(station.get("maintenance", False))
        self.last_station_status = station.get("last_status")
        self.ready.clear()
        self._first_accept = True
        self._status_sent = set()
        await self.port.open()
        try:
            await self.badge_reader.start()
        except EdgeError as exc:
            log.error("badge_reader_unavailable error=%s", exc)
        loop = asyncio.get_running_loop()
        n = len(self.spots)
        for i, spot in enumerate(self.spots.values()):
            spot.next_poll = loop.time() + self.settings.poll_interval_s * i / max(1, n)

    async def close(self) -> None:
        await self.badge_reader.close()
        await self.port.close()

    def jobs(self) -> list[Job]:
        return [
            ("poll", self._first_round_then_poll()),
            ("badges", self._badges()),
            ("inputs", self._inputs_loop()),
            ("telemetry", self._telemetry_loop()),
        ]

    async def ready_for_birth(self) -> None:
        # The birth's inventory carries every board's firmware: read them first.
        await self.ready.wait()

    def inventory(self) -> Sequence[Component]:
        return tuple(Component("spot", s.spot, s.firmware) for s in self.spots.values())

    def configured(self) -> None:
        s = self.settings
        self.limits = Thresholds(s.temperature_high_c, s.temperature_clear_c,
                                 s.expected_board_firmware)
        self._poke.set()

    def badge_reply_handler(self) -> Callable[[BadgeReply], None]:
        return self._on_badge_reply

    async def accepted(self) -> None:
        if self._first_accept:
            self._first_accept = False
            self._spawn(self._statuses_after_boot(), "statuses")

    def record(self, bodies: Sequence[UpBody]) -> None:
        self._commit(bodies, [])

    def send_status(self, spot: int) -> None:
        spots = list(self.spots.values()) if spot == 0 else [self._spot(spot)]
        self._commit([], spots, force=True)

    def send_telemetry(self) -> None:
        self._emit_telemetry()

    def register(self, router: CommandRouter) -> None:
        # One spot each, waiting on a latch: side by side (see the module docstring).
        router.add(Unlock, self._cmd_unlock, concurrent=True)
        router.add(Lock, self._cmd_lock, concurrent=True)
        router.add(SetMaintenance, self._cmd_maintenance)

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
            await self._poll_spot_once(spot)
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
        events = spot.board_failed(reason)
        if events:
            log.warning(
                "board_fault device=%s spot=%d reason=%s", self.device_id, spot.spot, reason
            )
            self._commit(events, [spot])

    async def _poll_spot_once(self, spot: SpotRecord) -> None:
        """The I/O of one poll; what it means is the spot machine's (:mod:`.spots`)."""
        try:
            frame = await self.bus.transact(spot.spot, Cmd.GET_STATUS)
            report = SpotReport.from_payload(frame.payload)
        except BoardNoAnswer:
            self._board_failed(spot, "no answer")
            return
        except (BoardBusError, FrameError) as exc:
            self._board_failed(spot, fit_text(f"bad status: {exc}", 60))
            return
        events = spot.board_answered()
        if not spot.info_read:
            events.extend(await self._read_info(spot))
        observed, expired = spot.report(report, self.clock.now_ms(), self.limits)
        events.extend(observed)
        if expired:
            events.extend(await self._relock_expired(spot))
        self._commit(events, [spot])

    async def _read_info(self, spot: SpotRecord) -> list[UpBody]:
        try:
            frame = await self.bus.transact(spot.spot, Cmd.GET_INFO)
            info = BoardInfo.from_payload(frame.payload)
        except (BoardNoAnswer, BoardBusError, FrameError) as exc:
            log.warning("board_info_failed spot=%d error=%s", spot.spot, exc)
            return []
        return spot.board_info(info.firmware, self.limits.expected_board_firmware)

    async def _relock_expired(self, spot: SpotRecord) -> list[UpBody]:
        events = spot.window_expired()
        self.counters["unlock_expired"] += 1
        try:
            await self.bus.transact(spot.spot, Cmd.LOCK)
        except (BoardNoAnswer, BoardBusError) as exc:
            log.warning("relock_failed spot=%d error=%s", spot.spot, exc)
            return events + spot.relock_failed()
        spot.relocked()
        return events

    # ---------------------------------------------------------------- unlock

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
        spot.check_unlockable(self.station_maintenance)
        spot.unlocking = True  # before the first await: a second unlock now sees BUSY
        try:
            await self._release_latch(spot)
        finally:
            spot.unlocking = False
        events = spot.opened(self.clock.now_ms() + window_s * 1000, cause, command_id, badge_uid)
        self.counters["unlocks"] += 1
        self._poke_spot(spot)
        return events

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
            spot.lock_fault = LOCK_DID_NOT_OPEN  # before the LOCK's await: no unlock slips in
            await self._abort_release(spot)
            self._commit(spot.latch_did_not_open(exc.last), [spot])
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
        spot.check_idle()
        spot.locking = True
        try:
            await self.bus.transact(spot.spot, Cmd.LOCK)
        except (BoardNoAnswer, BoardBusError) as exc:
            raise CommandFailed(RejectReason.HARDWARE_FAULT, str(exc)) from None
        finally:
            spot.locking = False
        return self._done(spot.locked_by_command(envelope.command_id), [spot])

    async def _cmd_maintenance(self, envelope: CommandEnvelope, cmd: SetMaintenance) -> Outcome:
        if cmd.spot == 0:
            self.station_maintenance = cmd.on
            self._commit([], list(self.spots.values()))
        else:
            spot = self._spot(cmd.spot)
            spot.maintenance = cmd.on
            self._commit([], [spot])
        return Outcome(ResultStatus.DONE)

    # ---------------------------------------------------------------- spot board firmware

    def slot_part(self) -> DevicePart:
        return DevicePart("station-mainboard", self.settings.hardware, self.settings.bootloader)

    def firmware_busy(self) -> str | None:
        staging = [s.spot for s in self.spots.values() if s.updating]
        return f"spot board {staging[0]} is taking an image" if staging else None

    def firmware_part(self, spot: int) -> DevicePart:
        # Spot 0 (the mainboard) is the framework's slots; here only the spot boards.
        self._spot(spot).check_updatable()
        return DevicePart("spot-board:")

    async def self_check(self) -> str:
        """A trial boot works when the spot bus does: the first poll round reached a board."""
        await self.ready.wait()
        if self.spots and all(s.board_fault for s in self.spots.values()):
            return "no spot board answers on the bus"
        return ""

    def firmware_started(self, spot: int) -> None:
        self.spots[spot].updating = True

    def firmware_finished(self, spot: int) -> None:
        self.spots[spot].updating = False

    async def install_firmware(self, manifest: Manifest, image: bytes, spot: int) -> None:
        """Stage the image to the board over the bus, then read back what it runs. One
        board at a time across the station (SPEC §9.5): the others keep serving riders."""
        async with self._staging:
            await self._stage(manifest, image, spot)

    async def _stage(self, manifest: Manifest, image: bytes, spot: int) -> None:
        record = self.spots[spot]
        try:
            await self.bus.transact(spot, Cmd.FW_BEGIN, fw_begin_payload(len(image),
                                                                        manifest.sha256))
            for offset in range(0, len(image), FW_CHUNK_DATA):
                chunk = image[offset: offset + FW_CHUNK_DATA]
                await self.bus.transact(spot, Cmd.FW_CHUNK, fw_chunk_payload(offset, chunk))
                if self.settings.firmware_chunk_delay_s:
                    await asyncio.sleep(self.settings.firmware_chunk_delay_s)
            await self.bus.transact(spot, Cmd.FW_COMMIT)
            frame = await self.bus.transact(spot, Cmd.GET_INFO)
            info = BoardInfo.from_payload(frame.payload)
        except (BoardNoAnswer, BoardBusError, FrameError) as exc:
            raise FirmwareError(str(exc), FirmwareState.INSTALL_FAILED) from None
        record.firmware = info.firmware
        if info.firmware != manifest.version:
            raise FirmwareError(f"board reports {info.firmware}", FirmwareState.INSTALL_FAILED)
        record.firmware_flagged = False

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
        spot = offline_spot(self.spots.values(), self.station_maintenance)
        if spot is None:
            self._commit([BadgePresented(uid, True, True, 0)], [])
            self._indicate(BadgeIndication(uid, "refused", "no_vehicle"))
            return
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
        data = super().snapshot()
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
                "fault": s.fault,
                "firmware": s.firmware,
            }
            for s in self.spots.values()
        ]
        data["bus"] = self.bus.snapshot()
        data["badge_reader"] = self.badge_reader.liveness()
        data["counters"] = dict(self.counters)
        return data
