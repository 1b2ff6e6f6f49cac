"""What the Overview and UsageStats operations answer (seed 002 gives the envelope only;
the fields are named after the seeds' words: trips, users, vehicles, stations, spots)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import Query
from pydantic import BaseModel, Field

from kickstand.cloud.api.ids import Text

PaymentMode = Literal["paid", "free"]
#: Seed 002 ``timezone`` of Overview and UsageStats (checked by ``service.zone``).
TimezoneQuery = Annotated[
    Text,
    Query(
        min_length=1,
        max_length=64,
        description="The time zone of the user making the request (IANA name).",
        examples=["Europe/Paris"],
    ),
]


# ── overview ────────────────────────────────────────────────────────────────────────────


class StationsInfo(BaseModel):
    #: Places (seed "clusters") and the station devices at them.
    clusters: int
    stations: int
    stations_online: int
    stations_offline: int
    spots: int
    spots_active: int
    spots_maintenance: int
    spots_out_of_order: int
    #: Spots holding a vehicle / active spots without one (where a rider can return).
    spots_occupied: int
    spots_free: int


class VehiclesInfo(BaseModel):
    total: int
    by_state: dict[str, int]
    by_type: dict[str, int]
    in_maintenance: int
    docked: int
    undocked: int
    #: Rentable now by the one rule (kickstand.cloud.rentable).
    rentable: int
    #: A battery below the network's min_battery_to_rent (e-bikes, kick-scooters).
    low_battery: int


class TripsInfo(BaseModel):
    running: int
    on_hold: int
    #: Trips started (cancelled ones left out) on local days of the request's time zone;
    #: last_7_days / last_30_days include today.
    today: int
    yesterday: int
    last_7_days: int
    last_30_days: int


class UsersInfo(BaseModel):
    #: Riders of the networks: a user belongs to a network from its first trip there.
    total: int
    #: Riders registered in the last 30 local days (today included).
    new_last_30_days: int
    #: Riders with a trip started in the window.
    active_today: int
    active_last_7_days: int
    active_last_30_days: int


class MapStation(BaseModel):
    cluster_id: int
    network_id: int
    name: str
    latitude: float
    longitude: float
    stations: int
    stations_online: int
    spots: int
    spots_active: int
    spots_free: int
    vehicles: int


class MapStationState(BaseModel):
    """One station as the map draws it (``overview/map/stations``, every station of the
    networks in keyset pages). Stations have no position of their own: their cluster's."""

    station_id: int
    name: str
    device_id: str
    cluster_id: int
    cluster_name: str
    network_id: int
    latitude: float
    longitude: float
    #: The liveness rule on its mainboard (reported online, heard within its heartbeats).
    online: bool
    #: A spot in maintenance or out of order.
    maintenance: bool
    #: Fleet alerts needing attention (new, escalated) on the station or one of its spots.
    open_alerts: int
    spots: int
    spots_active: int
    #: Active spots without a vehicle (a rider can return one there).
    spots_free: int
    #: Vehicles docked in active spots.
    vehicles_available: int


# ── usage stats ─────────────────────────────────────────────────────────────────────────


class UsagePoint(BaseModel):
    #: The grouping, chosen from the period's length: up to 31 days by day, 183 by week
    #: (weeks start on Monday), 731 by month, beyond by quarter.
    period: Literal["day", "week", "month", "quarter"]
    #: First local day of the group (clipped to nothing: a week may start before start_date).
    date: date
    trips: int
    #: Distinct riders in the group.
    users: int


class Measures(BaseModel):
    #: Trips measured (finished, with both positions for a distance).
    count: int
    total: float
    average: float | None
    median: float | None = Field(
        description=(
            "Bucket-accurate when read from the usage rollup (a period asked in the networks' "
            "own time zone, no organizations filter): the middle of the 100 m / 1 min bucket "
            "holding the median (within 50 m / 30 s); exact otherwise (read from trips)."
        )
    )
    max: float | None


class UsageSummary(BaseModel):
    trips: int
    users: int
    #: Distinct vehicles rented.
    vehicles: int
    #: Straight line from start to end position, meters.
    distance: Measures
    #: Seconds from start to end (finished trips).
    duration: Measures


class DowCount(BaseModel):
    #: 0 is Sunday (as pricing rules' start_dow).
    dow: int = Field(ge=0, le=6)
    trips: int


class HourCount(BaseModel):
    hour: int = Field(ge=0, le=23)
    trips: int


class RangeCount(BaseModel):
    #: [min, max) in meters (distance) or seconds (duration); max None: no upper bound.
    min: float
    max: float | None
    #: "paid": the trip cost something; "free": it did not.
    payment_mode: PaymentMode
    trips: int


class StationCount(BaseModel):
    cluster_id: int
    network_id: int
    name: str
    latitude: float
    longitude: float
    started: int
    ended: int


class UsageOrganization(BaseModel):
    id: int
    name: str
    #: Members who rode on the requested networks.
    users: int
