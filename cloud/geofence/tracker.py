"""VehicleZoneTracker: per-vehicle zone state, turned into transition events.

Feed it each vehicle position (in time order); it answers with the events to act on:

- :class:`SpeedZoneEntered` / :class:`SpeedZoneLeft` — ``max_speed`` is the limit in
  force once this position is applied (the lowest of the speed zones the vehicle is
  still in, else the network's ``default_max_speed``): send it to the vehicle.
- :class:`ForbiddenZoneEntered` (webhook topic ``vehicule.position.forbidden``, seed
  000) / :class:`ForbiddenZoneLeft`.
- :class:`NetworkAreaLeft` (fleet alert type ``vehicle-out-of-network-area``, seed 002;
  carries the border settings) / :class:`NetworkAreaEntered` (back inside).

Debounce (GPS jitter at zone edges) — a Schmitt trigger plus confirmation:

- A zone (or the network area) is *entered* when the position is inside it or on its
  edge, and *left* only when the position is more than ``hysteresis_m`` metres
  outside it (default 10 m, about a consumer GPS's error). Between the edge and
  edge + ``hysteresis_m`` the vehicle keeps its previous state, so one riding along
  an edge, jittering a few metres either side, stays in one state.
- Either change also needs ``confirmations`` consecutive positions saying so
  (default 2), so a single stray fix neither raises a forbidden-zone alert nor
  releases a speed limit. With positions every 5 s while riding, this delays a
  transition by one report.
- The first position of a vehicle (or the first after :meth:`forget`) sets its state
  at once, emitting the events for every zone it is in (so its speed limit is sent),
  from an assumed "inside the network, in no zone" start.

Positions with ``at`` not after the vehicle's last one are ignored (counted in
``stale_positions``): store-and-forward can deliver old fixes late. Impossible
coordinates raise :class:`~kickstand.cloud.geofence.errors.CoordinateRangeError`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from kickstand.cloud.events.catalogue import VEHICLE_POSITION_FORBIDDEN
from kickstand.cloud.geofence.index import GeofenceIndex, GeofenceVerdict
from kickstand.cloud.geofence.model import MAX_SPEED_MIN, ZoneType

log = logging.getLogger("kickstand.cloud.geofence.tracker")

DEFAULT_HYSTERESIS_M = 10.0
DEFAULT_CONFIRMATIONS = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class _Event:
    vehicle_id: str
    lon: float
    lat: float
    at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeedZoneEntered(_Event):
    speed_zone_id: int
    max_speed: int | None  # the limit in force now: send it to the vehicle


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeedZoneLeft(_Event):
    speed_zone_id: int
    max_speed: int | None  # remaining zones' lowest, else the network default (None: vehicle's own)


@dataclass(frozen=True, slots=True, kw_only=True)
class ForbiddenZoneEntered(_Event):
    webhook_topic: ClassVar[str] = VEHICLE_POSITION_FORBIDDEN.topic
    forbidden_zone_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ForbiddenZoneLeft(_Event):
    forbidden_zone_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkAreaLeft(_Event):
    alert_type: ClassVar[str] = "vehicle-out-of-network-area"
    # The border settings (seed 002 "Update border settings") the caller acts on.
    trigger_alert: bool
    notify_user: bool
    reduce_vehicle_speed: bool
    play_vehicle_sound: bool
    lock_vehicle: bool
    max_speed: int | None  # the minimum speed when reduce_vehicle_speed, else None (unchanged)


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkAreaEntered(_Event):
    max_speed: int | None  # the limit in force now (zones', else the network default)


ZoneEvent = (
    SpeedZoneEntered
    | SpeedZoneLeft
    | ForbiddenZoneEntered
    | ForbiddenZoneLeft
    | NetworkAreaLeft
    | NetworkAreaEntered
)

_NETWORK = (ZoneType.BORDER, 0)
_Key = tuple[ZoneType, int]


@dataclass(frozen=True, slots=True)
class VehicleZoneState:
    """A snapshot of what the tracker believes about one vehicle."""

    vehicle_id: str
    in_network: bool
    speed_zone_ids: frozenset[int]
    forbidden_zone_ids: frozenset[int]
    max_speed: int | None
    last_verdict: GeofenceVerdict
    at: datetime | None


@dataclass(slots=True)
class _Vehicle:
    in_network: bool = True
    speed: set[int] = field(default_factory=set)
    forbidden: set[int] = field(default_factory=set)
    pending: dict[_Key, int] = field(default_factory=dict)
    last_verdict: GeofenceVerdict | None = None
    at: datetime | None = None


class VehicleZoneTracker:
    """Per-vehicle zone state over one network's :class:`GeofenceIndex`. Not thread-safe."""

    def __init__(
        self,
        index: GeofenceIndex,
        *,
        hysteresis_m: float = DEFAULT_HYSTERESIS_M,
        confirmations: int = DEFAULT_CONFIRMATIONS,
    ) -> None:
        if not hysteresis_m >= 0.0:
            raise ValueError(f"hysteresis_m must be >= 0, got {hysteresis_m!r}")
        if confirmations < 1:
            raise ValueError(f"confirmations must be >= 1, got {confirmations!r}")
        self._index = index
        self.hysteresis_m = float(hysteresis_m)
        self.confirmations = int(confirmations)
        self._vehicles: dict[str, _Vehicle] = {}
        self.stale_positions = 0

    @property
    def index(self) -> GeofenceIndex:
        return self._index

    def set_index(self, index: GeofenceIndex) -> None:
        """Swap in an index rebuilt after a zone change. States are kept by zone id; a
        vehicle in a deleted zone leaves it (with the usual debounce) on its next positions.
        """
        if index.network_id != self._index.network_id:
            raise ValueError("the new index belongs to another network")
        self._index = index

    def forget(self, vehicle_id: str) -> None:
        """Drop a vehicle's state (e.g. its trip ended); its next position starts afresh."""
        self._vehicles.pop(vehicle_id, None)

    def __len__(self) -> int:
        return len(self._vehicles)

    def state(self, vehicle_id: str) -> VehicleZoneState | None:
        v = self._vehicles.get(vehicle_id)
        if v is None or v.last_verdict is None:
            return None
        return VehicleZoneState(
            vehicle_id,
            v.in_network,
            frozenset(v.speed),
            frozenset(v.forbidden),
            self._max_speed(v.speed),
            v.last_verdict,
            v.at,
        )

    def _max_speed(self, speed_zone_ids: set[int]) -> int | None:
        limit = self._index.max_speed_for(frozenset(speed_zone_ids))
        return limit if limit is not None else self._index.default_max_speed

    def _clearly_out(self, key: _Key, lon: float, lat: float) -> bool:
        kind, zone_id = key
        try:
            d = self._index.distance_m(kind, zone_id, lon, lat)
        except KeyError:  # the zone was deleted since the vehicle entered it
            return True
        return d > self.hysteresis_m

    def update(
        self, vehicle_id: str, lon: float, lat: float, at: datetime | None = None
    ) -> list[ZoneEvent]:
        """Apply one position; the transition events it causes (often none)."""
        v = self._vehicles.get(vehicle_id)
        if v is not None and at is not None and v.at is not None and at <= v.at:
            self.stale_positions += 1
            log.debug(
                "geofence.stale_position vehicle_id=%s at=%s last_at=%s",
                vehicle_id,
                at.isoformat(),
                v.at.isoformat(),
            )
            return []
        verdict = self._index.check(lon, lat)  # raises CoordinateRangeError first
        first = v is None or v.last_verdict is None
        if v is None:
            v = self._vehicles[vehicle_id] = _Vehicle()
        needed = 1 if first else self.confirmations

        raw_in: set[_Key] = {(ZoneType.SPEED_ZONE, i) for i in verdict.speed_zone_ids}
        raw_in.update((ZoneType.FORBIDDEN_ZONE, i) for i in verdict.forbidden_zone_ids)
        if verdict.inside_network:
            raw_in.add(_NETWORK)
        state_in: set[_Key] = {(ZoneType.SPEED_ZONE, i) for i in v.speed}
        state_in.update((ZoneType.FORBIDDEN_ZONE, i) for i in v.forbidden)
        if v.in_network:
            state_in.add(_NETWORK)

        entered: list[_Key] = []
        left: list[_Key] = []
        for key in sorted(state_in | raw_in | v.pending.keys()):
            if key in state_in:
                disagrees = key not in raw_in and self._clearly_out(key, lon, lat)
            else:
                disagrees = key in raw_in
            if not disagrees:
                v.pending.pop(key, None)
                continue
            count = v.pending.get(key, 0) + 1
            if count < needed:
                v.pending[key] = count
                continue
            v.pending.pop(key, None)
            (left if key in state_in else entered).append(key)

        for kind, zone_id in left:
            if kind is ZoneType.BORDER:
                v.in_network = False
            elif kind is ZoneType.SPEED_ZONE:
                v.speed.discard(zone_id)
            else:
                v.forbidden.discard(zone_id)
        for kind, zone_id in entered:
            if kind is ZoneType.BORDER:
                v.in_network = True
            elif kind is ZoneType.SPEED_ZONE:
                v.speed.add(zone_id)
            else:
                v.forbidden.add(zone_id)
        v.last_verdict = verdict
        v.at = at
        if not entered and not left:
            return []
        return self._events(vehicle_id, lon, lat, at, v, entered, left)

    def _events(
        self,
        vehicle_id: str,
        lon: float,
        lat: float,
        at: datetime | None,
        v: _Vehicle,
        entered: list[_Key],
        left: list[_Key],
    ) -> list[ZoneEvent]:
        max_speed = self._max_speed(v.speed)
        events: list[ZoneEvent] = []
        border = self._index.border
        if _NETWORK in left:
            reduce = border.reduce_vehicle_speed if border else False
            events.append(
                NetworkAreaLeft(
                    vehicle_id=vehicle_id,
                    lon=lon,
                    lat=lat,
                    at=at,
                    trigger_alert=border.trigger_alert if border else True,
                    notify_user=border.notify_user if border else False,
                    reduce_vehicle_speed=reduce,
                    play_vehicle_sound=border.play_vehicle_sound if border else False,
                    lock_vehicle=border.lock_vehicle if border else False,
                    max_speed=MAX_SPEED_MIN if reduce else None,
                )
            )
        if _NETWORK in entered:
            events.append(
                NetworkAreaEntered(
                    vehicle_id=vehicle_id, lon=lon, lat=lat, at=at, max_speed=max_speed
                )
            )
        for kind, zone_id in left:
            if kind is ZoneType.SPEED_ZONE:
                events.append(
                    SpeedZoneLeft(
                        vehicle_id=vehicle_id,
                        lon=lon,
                        lat=lat,
                        at=at,
                        speed_zone_id=zone_id,
                        max_speed=max_speed,
                    )
                )
        for kind, zone_id in entered:
            if kind is ZoneType.SPEED_ZONE:
                events.append(
                    SpeedZoneEntered(
                        vehicle_id=vehicle_id,
                        lon=lon,
                        lat=lat,
                        at=at,
                        speed_zone_id=zone_id,
                        max_speed=max_speed,
                    )
                )
        for kind, zone_id in left:
            if kind is ZoneType.FORBIDDEN_ZONE:
                events.append(
                    ForbiddenZoneLeft(
                        vehicle_id=vehicle_id, lon=lon, lat=lat, at=at, forbidden_zone_id=zone_id
                    )
                )
        for kind, zone_id in entered:
            if kind is ZoneType.FORBIDDEN_ZONE:
                events.append(
                    ForbiddenZoneEntered(
                        vehicle_id=vehicle_id, lon=lon, lat=lat, at=at, forbidden_zone_id=zone_id
                    )
                )
        for e in events:
            log.info("geofence.transition vehicle_id=%s event=%s", vehicle_id, type(e).__name__)
        return events
