"""The spot state machine: what a board's reports and the agent's actions do to a spot.

Pure: no bus, no clock, no queue. The agent does the I/O (GET_STATUS, GET_INFO, UNLOCK,
LOCK) and hands each outcome to a transition here, which changes the :class:`SpotRecord`
and returns the events to store with it. Tested without hardware
(``tests/edge/station/test_spot_machine.py``).

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
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from kickstand.edge.core.errors import CommandRefused
from kickstand.protocol.spotbus import BusLock, SpotReport
from kickstand.protocol.v1.enums import LockCause, LockState, RejectReason, SpotState
from kickstand.protocol.v1.fields import fit_text
from kickstand.protocol.v1.messages import (
    AlarmTriggered,
    BoardFault,
    BoardRecovered,
    Locked,
    SpotIdentifyFail,
    Status,
    Temperature,
    Unlocked,
    UnlockExpired,
    UpBody,
    VehicleDocked,
    VehicleRemoved,
)

log = logging.getLogger("kickstand.edge.station.spots")

UNKNOWN_SERIAL = "unknown"  # a removed vehicle whose serial was never readable
LOCK_DID_NOT_CLOSE = "lock did not close"
LOCK_DID_NOT_OPEN = "lock did not open"
TEMP_MIN_C, TEMP_MAX_C = -100.0, 250.0
LOCK_STATE = {BusLock.LOCKED: LockState.LOCKED, BusLock.OPEN: LockState.OPEN,
              BusLock.JAMMED: LockState.JAMMED}


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The settings the machine reads (they change with a Config)."""

    temperature_high_c: float = 60.0
    temperature_clear_c: float = 55.0
    expected_board_firmware: str | None = None


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

    @property
    def fault(self) -> str | None:
        return self.board_fault or self.lock_fault

    def status(self) -> Status:
        return Status(
            self.spot,
            self.state,
            LOCK_STATE.get(self.lock) if self.lock is not None else None,
            self.serial if self.present else None,
            self.fault,
        )

    # ---------------------------------------------------------------- persistence

    def persisted(self) -> str:
        # Written at every change of the spot: no deep copy (asdict) on that path.
        data = {name: getattr(self, name) for name in _PERSISTED}
        if self.unlock is not None:
            data["unlock"] = asdict(self.unlock)
        return json.dumps(data)

    @classmethod
    def restore(cls, spot: int, data: Any) -> SpotRecord:
        """The record persisted as ``data`` (parsed JSON; None or garbage: a fresh one)."""
        record = cls(spot)
        if not data:
            return record
        try:
            data = dict(data)
            unlock = data.pop("unlock", None)
            for key, value in data.items():
                if key in _PERSISTED and key != "spot":
                    setattr(record, key, value)
            if unlock:
                record.unlock = UnlockContext(**unlock)
        except (ValueError, TypeError) as exc:
            log.warning("spot_state_unreadable spot=%d error=%s", spot, exc)
            return cls(spot)
        return record

    # ---------------------------------------------------------------- checks

    def check_idle(self) -> None:
        """One action per spot: a second one while the first runs is refused BUSY."""
        if self.unlocking or self.locking or self.updating:
            raise CommandRefused(RejectReason.BUSY, f"spot {self.spot} busy")

    def check_unlockable(self, station_maintenance: bool) -> None:
        if self.maintenance or station_maintenance:
            raise CommandRefused(RejectReason.MAINTENANCE, f"spot {self.spot} in maintenance")
        if self.fault:
            raise CommandRefused(RejectReason.HARDWARE_FAULT, self.fault)
        self.check_idle()
        if self.unlock is not None:
            raise CommandRefused(RejectReason.BUSY, f"spot {self.spot} busy")
        if not self.present:
            raise CommandRefused(RejectReason.INVALID_STATE, f"spot {self.spot} is empty")

    def check_updatable(self) -> None:
        self.check_idle()
        if self.unlock is not None:
            raise CommandRefused(RejectReason.BUSY, f"spot {self.spot} busy")
        if self.board_fault:
            raise CommandRefused(RejectReason.HARDWARE_FAULT, self.board_fault)

    # ---------------------------------------------------------------- the board speaks

    def board_failed(self, reason: str) -> list[UpBody]:
        """No (valid) answer: FAULT from the first failure, one BoardFault for it."""
        self.failures += 1
        if self.board_fault is not None:
            return []
        self.board_fault = reason
        return [BoardFault(self.spot, reason)]

    def board_answered(self) -> list[UpBody]:
        """A valid GET_STATUS: a faulty board is back (its info is read again)."""
        self.failures = 0
        if self.board_fault is None:
            return []
        self.board_fault = None
        self.info_read = False
        return [BoardRecovered(self.spot)]

    def board_info(self, firmware: str, expected: str | None) -> list[UpBody]:
        """GET_INFO: the board's firmware, flagged once when it is not the expected one."""
        self.info_read = True
        changed = firmware != self.firmware
        self.firmware = firmware
        if expected and firmware != expected:
            if self.firmware_flagged and not changed:
                return []
            self.firmware_flagged = True
            return [BoardFault(self.spot,
                               fit_text(f"firmware {firmware}, expected {expected}", 60))]
        if self.firmware_flagged:
            self.firmware_flagged = False
            return [BoardRecovered(self.spot)]
        return []

    def report(self, report: SpotReport, now_ms: int, limits: Thresholds) -> tuple[
        list[UpBody], bool
    ]:
        """A GET_STATUS report: its events, and whether the unlock window ran out (the
        agent then locks: :meth:`window_expired`)."""
        n = self.spot
        events: list[UpBody] = []
        previous_lock = self.lock
        self.lock = report.lock
        # A broken sensor may say anything an int16 holds; keep it inside what the wire carries.
        self.temperature_c = min(TEMP_MAX_C, max(TEMP_MIN_C, report.temperature_c))
        if report.vehicle_present and not self.present:
            self.present = True
            self.unlock = None
            self.serial = report.serial_number
            events.append(VehicleDocked(n, self.serial) if self.serial else SpotIdentifyFail(n))
            if report.lock is BusLock.LOCKED:
                events.append(Locked(n, LockCause.DOCKING))
            else:
                self.lock_fault = LOCK_DID_NOT_CLOSE
                events.append(BoardFault(n, self.lock_fault))
        elif report.vehicle_present and self.serial is None and report.serial_number:
            self.serial = report.serial_number
            events.append(VehicleDocked(n, self.serial))
        elif not report.vehicle_present and self.present:
            ctx = self.unlock
            forced = ctx is None and (previous_lock is BusLock.LOCKED or report.tamper)
            events.append(VehicleRemoved(
                n,
                self.serial or UNKNOWN_SERIAL,
                badge_uid=ctx.badge if ctx else None,
                command_id=ctx.cid if ctx else None,
            ))
            if forced:
                events.append(AlarmTriggered(f"spot {n}: vehicle removed while locked"))
            self.present = False
            self.serial = None
            self.unlock = None
        # A lock that would not close recovers when the board reports it closed. One that
        # would not open reads closed all along: that proves nothing (a Lock clears it).
        if self.lock_fault == LOCK_DID_NOT_CLOSE and report.lock is BusLock.LOCKED \
                and not report.lock_fault:
            self.lock_fault = None
            events.append(BoardRecovered(n))
        t = self.temperature_c
        if not self.temp_high and t >= limits.temperature_high_c:
            self.temp_high = True
            events.append(Temperature(n, t, True))
        elif self.temp_high and t <= limits.temperature_clear_c:
            self.temp_high = False
            events.append(Temperature(n, t, False))
        if self.unlock is not None and not self.present:
            self.unlock = None  # e.g. restored from a boot that ended mid-window
        expired = self.unlock is not None and now_ms >= self.unlock.deadline_ms
        return events, expired

    # ---------------------------------------------------------------- the agent acts

    def window_expired(self) -> list[UpBody]:
        """Nobody took the vehicle in time: UnlockExpired; the agent locks the latch."""
        ctx = self.unlock
        if ctx is None:
            return []
        self.unlock = None
        return [UnlockExpired(self.spot, ctx.cid, ctx.badge)]

    def relocked(self) -> None:
        self.lock = BusLock.LOCKED

    def relock_failed(self) -> list[UpBody]:
        self.lock_fault = LOCK_DID_NOT_CLOSE
        return [BoardFault(self.spot, self.lock_fault)]

    def opened(
        self,
        deadline_ms: int,
        cause: LockCause,
        command_id: bytes | None = None,
        badge_uid: bytes | None = None,
    ) -> list[UpBody]:
        """The latch reads OPEN: the window runs until ``deadline_ms``."""
        self.unlocking = False
        self.lock = BusLock.OPEN
        self.unlock = UnlockContext(
            deadline_ms,
            command_id.hex() if command_id else None,
            badge_uid.hex() if badge_uid else None,
        )
        return [Unlocked(self.spot, cause, command_id, badge_uid)]

    def latch_did_not_open(self, reads: BusLock) -> list[UpBody]:
        """The lock sensor never read OPEN: FAULT until a Lock command closes it."""
        self.unlocking = False
        self.lock_fault = LOCK_DID_NOT_OPEN
        self.lock = reads
        return [BoardFault(self.spot, LOCK_DID_NOT_OPEN)]

    def locked_by_command(self, command_id: bytes) -> list[UpBody]:
        events: list[UpBody] = [Locked(self.spot, LockCause.COMMAND, command_id)]
        if self.lock_fault is not None:
            events.append(BoardRecovered(self.spot))
        self.lock = BusLock.LOCKED
        self.unlock = None
        self.lock_fault = None
        return events


_PERSISTED = tuple(f.name for f in fields(SpotRecord) if not f.metadata.get("runtime"))


def offline_spot(spots: Iterable[SpotRecord], station_maintenance: bool) -> SpotRecord | None:
    """Offline, a known badge opens the lowest-numbered spot holding an identified vehicle,
    docked and locked (None: nothing to open)."""
    if station_maintenance:
        return None
    for spot in sorted(spots, key=lambda s: s.spot):
        if spot.state is SpotState.DOCKED_LOCKED and spot.serial:
            return spot
    return None
