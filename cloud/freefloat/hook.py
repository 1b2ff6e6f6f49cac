"""The ingest hook for vehicles: zone transitions from positions, and free-float lock verdicts.

    hook = FreeFloatHook(GeofenceCache(), commands=gateway, alerts=alert_engine)
    # inside the ingest batch transaction:
    hook.begin_batch()
    hook.add_position(vehicle_id, device_id, network_id, lon, lat, at)    # each vehicle fix
    result = await hook.on_locked(session, device_id, at)                 # a vehicle Locked
    # after the batch committed:
    await hook.after_commit(sessionmaker)

Positions go through a :class:`~kickstand.cloud.geofence.VehicleZoneTracker` per network
(debounced) AFTER the batch committed, so a batch rolled back and retried never feeds the
tracker twice, and a telemetry replayed later is ignored as stale (older than the
vehicle's last fix). The transitions are written in one transaction of their own:

* ``SpeedZoneEntered`` / ``SpeedZoneLeft`` → ``SetSpeedLimit(max_speed)`` to the vehicle
  (signed, through ``commands.send``; fire-and-forget, the result is logged and counted).
  Leaving the last zone with no network default sends :data:`DEFAULT_VEHICLE_MAX_KMH`.
* ``ForbiddenZoneEntered`` → outbox ``vehicule.position.forbidden`` (seed 000: only for a
  vehicle with a running trip).
* ``NetworkAreaLeft`` → fleet alert ``vehicle-out-of-network-area`` through the alerts
  engine (when the border's ``trigger_alert``) and outbox ``vehicule.position.out_of_network``
  (``notify_user`` tells the push service to warn the rider); ``reduce_vehicle_speed`` sends
  the minimum speed, ``lock_vehicle`` a Lock command. ``NetworkAreaEntered`` stops the alert
  and, if the speed was reduced, sends the limit in force again.

The tracker state lives in this process: run ingest workers with a broker that keeps one
device's messages on one worker (sticky / hash shared subscriptions) for exact transitions.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud import outbox, trips
from kickstand.cloud.alerts.engine import AlertEngine, point, vehicle_subject
from kickstand.cloud.alerts.types import AlertType
from kickstand.cloud.events import catalogue as ev
from kickstand.cloud.events import payloads as p
from kickstand.cloud.freefloat.service import LockOutcome, active_trip, vehicle_locked
from kickstand.cloud.geofence import (
    MAX_SPEED_MAX,
    CoordinateRangeError,
    ForbiddenZoneEntered,
    GeofenceIndex,
    NetworkAreaEntered,
    NetworkAreaLeft,
    SpeedZoneEntered,
    SpeedZoneLeft,
    VehicleZoneTracker,
    ZoneEvent,
)
from kickstand.cloud.geofence.store import GeofenceCache
from kickstand.cloud.models import TripStatus, Vehicle
from kickstand.cloud.networks import service as networks
from kickstand.protocol.v1 import messages as m

log = logging.getLogger("kickstand.cloud.freefloat.hook")

#: Sent when a vehicle leaves its last speed zone and the network sets no default (km/h).
DEFAULT_VEHICLE_MAX_KMH = MAX_SPEED_MAX
VEHICLE_POSITION_FORBIDDEN = ev.VEHICLE_POSITION_FORBIDDEN
VEHICLE_POSITION_OUT_OF_NETWORK = ev.VEHICLE_POSITION_OUT_OF_NETWORK


def _lowest(*limits: int | None) -> int | None:
    """The lowest of the limits that are set (None: none is)."""
    return min((x for x in limits if x is not None), default=None)


class CommandSender(Protocol):
    """What sends a signed command to a device and awaits its answer
    (:class:`kickstand.cloud.commands.MqttCommandGateway` is one)."""

    async def send(
        self,
        device_id: str,
        command: m.CommandBody,
        *,
        rent_id: int | None = None,
        timeout_s: float | None = None,
    ) -> Any: ...


@dataclass(frozen=True, slots=True)
class Fix:
    vehicle_id: int
    device_id: str
    network_id: int
    lon: float
    lat: float
    at: datetime


@dataclass(frozen=True, slots=True)
class SentCommand:
    device_id: str
    command: m.CommandBody
    outcome: str  # "done", "rejected", "failed", or the exception class name


class FreeFloatHook:
    """See the module docstring. Share one between the ingest workers of a process."""

    def __init__(
        self,
        cache: GeofenceCache | None = None,
        *,
        commands: CommandSender | None = None,
        alerts: AlertEngine | None = None,
        hysteresis_m: float = 10.0,
        confirmations: int = 2,
        command_timeout_s: float = 10.0,
        parking_tolerance_m: float = 0.0,
    ) -> None:
        self.cache = cache or GeofenceCache()
        self.commands = commands
        self.alerts = alerts
        self.hysteresis_m = hysteresis_m
        self.confirmations = confirmations
        self.command_timeout_s = command_timeout_s
        self.parking_tolerance_m = parking_tolerance_m
        self.stats: Counter[str] = Counter()
        #: The latest command outcomes (newest last), for metrics and tests.
        self.sent: deque[SentCommand] = deque(maxlen=1000)
        self._trackers: dict[int, VehicleZoneTracker] = {}
        # Per task: the workers of one process share the hook (and its trackers), each
        # applying its own batches in its own task.
        self._positions: dict[asyncio.Task[Any] | None, list[Fix]] = {}
        # Per task: the speed limits of rides the batch started, sent after its commit.
        self._ride_limits: dict[asyncio.Task[Any] | None, dict[str, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # ── inside the ingest transaction ─────────────────────────────────────────────────

    def begin_batch(self) -> None:
        """Forget positions of a batch that did not commit (this task's)."""
        self._positions.pop(asyncio.current_task(), None)
        self._ride_limits.pop(asyncio.current_task(), None)

    def add_position(
        self,
        vehicle_id: int,
        device_id: str,
        network_id: int,
        lon: float | None,
        lat: float | None,
        at: datetime,
    ) -> None:
        """A vehicle telemetry of the batch (a telemetry without a fix is ignored)."""
        if lon is None or lat is None:
            return
        fix = Fix(vehicle_id, device_id, network_id, lon, lat, at)
        self._positions.setdefault(asyncio.current_task(), []).append(fix)

    async def on_locked(
        self, session: AsyncSession, device_id: str, at: datetime
    ) -> trips.TripEventResult:
        """A vehicle ``Locked`` event: end its free-float trip per the return verdict."""
        outcome: LockOutcome = await vehicle_locked(
            session, self.cache, device_id, at, parking_tolerance_m=self.parking_tolerance_m
        )
        if outcome.check is not None:
            self.stats[f"lock-{outcome.check.verdict.kind.value}"] += 1
        if outcome.refused:
            self.stats["lock-refused"] += 1
        return outcome.result

    async def on_unlocked(
        self, session: AsyncSession, device_id: str, result: trips.TripEventResult
    ) -> None:
        """A vehicle ``Unlocked`` that started (or resumed) its ride: the vehicle is told
        its limit (seed 002 vehicle speed settings: its type's normal speed on the network,
        lowered by the speed zone it stands in), sent after the batch commits."""
        if result.action not in ("created", "updated") or result.trip is None:
            return
        vehicle = await session.get(Vehicle, result.trip.vehicle_id)
        if vehicle is None:
            return
        normal = await networks.normal_speed(session, vehicle)
        if normal is None:
            return  # the network sets no speeds for this type: zones alone limit it
        zone: int | None = None
        if vehicle.latitude is not None and vehicle.longitude is not None:
            index = await self.cache.index(session, vehicle.network_id)
            try:
                zone = index.check(vehicle.longitude, vehicle.latitude).max_speed
            except CoordinateRangeError:
                zone = None
        limit = _lowest(zone, normal)
        assert limit is not None
        self._ride_limits.setdefault(asyncio.current_task(), {})[device_id] = limit

    # ── after the commit ──────────────────────────────────────────────────────────────

    async def after_commit(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        """Feed the batch's positions to the trackers; write and send what they cause."""
        # Rides started first: a zone the batch's positions enter then lowers the limit.
        for device_id, max_kmh in self._ride_limits.pop(asyncio.current_task(), {}).items():
            self.stats["ride-speed-limit"] += 1
            self._send(device_id, m.SetSpeedLimit(max_kmh=max_kmh))
        fixes = self._positions.pop(asyncio.current_task(), [])
        if not fixes:
            return
        by_network: dict[int, list[Fix]] = {}
        for fix in fixes:
            by_network.setdefault(fix.network_id, []).append(fix)
        for network_id, group in sorted(by_network.items()):
            try:
                await self._network_fixes(sessionmaker, network_id, group)
            except Exception as exc:  # geofencing must never stop the ingest
                self.stats["zone-apply-failed"] += 1
                log.exception(
                    "event=freefloat_zone_apply_failed network_id=%s error=%r", network_id, exc
                )

    async def _network_fixes(
        self, sessionmaker: async_sessionmaker[AsyncSession], network_id: int, fixes: list[Fix]
    ) -> None:
        commands: dict[str, list[m.CommandBody]] = {}
        async with sessionmaker() as session, session.begin():
            index = await self.cache.index(session, network_id)
            tracker = self._tracker(index)
            events: list[tuple[Fix, ZoneEvent]] = []
            for fix in sorted(fixes, key=lambda f: f.at):
                try:
                    changes = tracker.update(str(fix.vehicle_id), fix.lon, fix.lat, fix.at)
                except CoordinateRangeError as exc:
                    self.stats["bad-position"] += 1
                    log.warning(
                        "event=freefloat_bad_position device=%s error=%s", fix.device_id, exc
                    )
                    continue
                events.extend((fix, e) for e in changes)
            self.stats["positions"] += len(fixes)
            if events:
                await self._apply(session, index, events, commands)
        for device_id, bodies in commands.items():
            for body in bodies:
                self._send(device_id, body)

    def _tracker(self, index: GeofenceIndex) -> VehicleZoneTracker:
        tracker = self._trackers.get(index.network_id)
        if tracker is None:
            tracker = VehicleZoneTracker(
                index, hysteresis_m=self.hysteresis_m, confirmations=self.confirmations
            )
            self._trackers[index.network_id] = tracker
        elif tracker.index is not index:
            tracker.set_index(index)
        return tracker

    async def _apply(
        self,
        session: AsyncSession,
        index: GeofenceIndex,
        events: Sequence[tuple[Fix, ZoneEvent]],
        commands: dict[str, list[m.CommandBody]],
    ) -> None:
        vehicles: dict[int, Vehicle] = {}
        normals: dict[int, int | None] = {}  # per vehicle: its network's normal speed
        speed: dict[str, int] = {}  # the last limit of the batch wins
        border = index.border
        for fix, event in events:
            vehicle = vehicles.get(fix.vehicle_id)
            if vehicle is None:
                found = await session.get(Vehicle, fix.vehicle_id)
                if found is None:
                    continue
                vehicle = vehicles[fix.vehicle_id] = found
            self.stats[type(event).__name__] += 1
            if isinstance(event, SpeedZoneEntered | SpeedZoneLeft):
                # Zones lower the network's normal speed, never raise it.
                if vehicle.id not in normals:
                    normals[vehicle.id] = await networks.normal_speed(session, vehicle)
                limit = _lowest(event.max_speed, normals[vehicle.id])
                speed[fix.device_id] = limit or DEFAULT_VEHICLE_MAX_KMH
            elif isinstance(event, ForbiddenZoneEntered):
                await self._forbidden(session, vehicle, fix, event)
            elif isinstance(event, NetworkAreaLeft):
                await self._left_network(session, vehicle, fix, event)
                if event.reduce_vehicle_speed and event.max_speed is not None:
                    speed[fix.device_id] = event.max_speed
                if event.lock_vehicle:
                    commands.setdefault(fix.device_id, []).append(m.Lock(spot=0))
            elif isinstance(event, NetworkAreaEntered):
                if self.alerts is not None:
                    await self.alerts.stop_alert(
                        session,
                        AlertType.VEHICLE_OUT_OF_NETWORK_AREA,
                        f"vehicle:{vehicle.id}",
                        now=fix.at,
                    )
                if border is not None and border.reduce_vehicle_speed:
                    speed[fix.device_id] = event.max_speed or DEFAULT_VEHICLE_MAX_KMH
        for device_id, max_kmh in speed.items():
            commands.setdefault(device_id, []).insert(0, m.SetSpeedLimit(max_kmh=max_kmh))

    async def _forbidden(
        self, session: AsyncSession, vehicle: Vehicle, fix: Fix, event: ForbiddenZoneEntered
    ) -> None:
        trip = await active_trip(session, vehicle.id)
        if trip is None or trip.status != TripStatus.RUNNING:
            self.stats["forbidden-without-trip"] += 1
            return
        outbox.emit(
            session,
            VEHICLE_POSITION_FORBIDDEN,
            vehicle.id,
            p.PositionForbidden(
                vehicle_id=vehicle.id,
                serial_number=vehicle.serial_number,
                network_id=vehicle.network_id,
                trip_id=trip.id,
                user_id=trip.user_id,
                forbidden_zone_id=event.forbidden_zone_id,
                latitude=fix.lat,
                longitude=fix.lon,
                at=fix.at,
            ),
        )
        log.info(
            "event=vehicle_position_forbidden vehicle=%s trip_id=%s zone=%s",
            vehicle.serial_number,
            trip.id,
            event.forbidden_zone_id,
        )

    async def _left_network(
        self, session: AsyncSession, vehicle: Vehicle, fix: Fix, event: NetworkAreaLeft
    ) -> None:
        trip = await active_trip(session, vehicle.id)
        if event.trigger_alert and self.alerts is not None:
            subject = vehicle_subject(vehicle)
            subject.extra["location"] = point(fix.lat, fix.lon)
            if trip is not None:
                subject.trip_id, subject.user_id = trip.id, trip.user_id
                subject.extra["trip_id"] = trip.id
            await self.alerts.raise_alert(
                session,
                AlertType.VEHICLE_OUT_OF_NETWORK_AREA,
                subject,
                now=fix.at,
                message=f"vehicle {vehicle.serial_number} left the network area",
            )
        outbox.emit(
            session,
            VEHICLE_POSITION_OUT_OF_NETWORK,
            vehicle.id,
            p.PositionOutOfNetwork(
                vehicle_id=vehicle.id,
                serial_number=vehicle.serial_number,
                network_id=vehicle.network_id,
                trip_id=trip.id if trip is not None else None,
                user_id=trip.user_id if trip is not None else None,
                notify_user=event.notify_user and trip is not None,
                play_vehicle_sound=event.play_vehicle_sound,
                latitude=fix.lat,
                longitude=fix.lon,
                at=fix.at,
            ),
        )

    # ── commands ──────────────────────────────────────────────────────────────────────

    def lock(self, device_id: str) -> None:
        """Lock a vehicle whose trip the engine ended (its network's ``trip_auto_lock``)."""
        self._send(device_id, m.Lock(spot=0))

    def _send(self, device_id: str, body: m.CommandBody) -> None:
        if self.commands is None:
            self.stats["command-no-sender"] += 1
            log.info("event=freefloat_command_not_sent device=%s command=%s", device_id, body)
            return
        task = asyncio.create_task(self._send_one(device_id, body), name=f"ff-cmd:{device_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_one(self, device_id: str, body: m.CommandBody) -> None:
        assert self.commands is not None
        try:
            reply = await self.commands.send(device_id, body, timeout_s=self.command_timeout_s)
            status = getattr(reply, "status", None)
            outcome = status.name.lower() if status is not None else "sent"
        except Exception as exc:  # offline, timeout, broker down: logged and counted
            outcome = type(exc).__name__
        self.stats[f"command-{outcome}"] += 1
        self.sent.append(SentCommand(device_id, body, outcome))
        log.info(
            "event=freefloat_command device=%s command=%s outcome=%s", device_id, body, outcome
        )

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait for the commands in flight (tests, shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
