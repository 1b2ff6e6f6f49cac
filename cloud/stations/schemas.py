"""Request and answer shapes of seed 002 Clusters and Stations (field names, limits of the
seed; ours where the seed names none: commissioning a station)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints

from kickstand.cloud.api.ids import Id, Text
from kickstand.cloud.api.schemas import ClusterPublic

Lang = Annotated[Text, StringConstraints(min_length=2, max_length=2, pattern=r"^[a-z]{2}$")]
#: A station mainboard's device id as the wire takes it (``protocol.topics.DEVICE_ID_RE``:
#: ``<kind>-<4..16 alphanumerics>``), of the station kind ``st``.
DeviceId = Annotated[Text, StringConstraints(pattern=r"^st-[A-Za-z0-9]{4,16}$")]
#: Seed list of [lng, lat] points (a polygon), as geofencing takes it.
Shape = Annotated[
    list[
        Annotated[list[Annotated[float, Field(ge=-180, le=180)]], Field(min_length=2, max_length=2)]
    ],
    Field(min_length=3, max_length=1000),
]


# ── clusters ──────────────────────────────────────────────────────────────────────────


class ClusterCreate(BaseModel):
    network_id: Id
    name: Text = Field(min_length=1, max_length=50)
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    location: Text | None = Field(default=None, min_length=5, max_length=100)
    description: Text | None = Field(default=None, min_length=1, max_length=500)
    has_badge_reader: bool = True
    max_unlock_distance: int | None = Field(default=None, ge=25, le=500)
    comment: Text | None = Field(default=None, min_length=1, max_length=500)


class ClusterLocationUpdate(BaseModel):
    location: Text = Field(min_length=5, max_length=100)


class ClusterSettingsUpdate(BaseModel):
    max_unlock_distance: int = Field(ge=25, le=500)
    comment: Text = Field(min_length=1, max_length=500)


class ClusterDescriptionUpdate(BaseModel):
    lang: Lang
    #: None removes the description in that language.
    description: Text | None = Field(min_length=1, max_length=500)


class CommissioningDate(BaseModel):
    date: datetime = Field(
        ge=datetime.fromisoformat("1970-01-01T00:00:00+00:00"),
        le=datetime.fromisoformat("9999-01-01T00:00:00+00:00"),
    )


class ClusterAdmin(ClusterPublic):
    """What an operator sees of a cluster: the rider's view plus the dashboard's fields."""

    id: int
    location: str | None
    comment: str | None
    max_unlock_distance: int | None
    decommissioned_at: datetime | None
    station_count: int
    pictures: list[str]


class ParkingCreate(BaseModel):
    shape: Shape
    capacity: int = Field(ge=0, le=10_000)


class ParkingPublic(BaseModel):
    virtual_parking_id: int
    network_id: int
    cluster_id: int | None
    capacity: int
    #: GeoJSON Polygon / MultiPolygon ([lng, lat]).
    shape: dict[str, Any]
    #: Free-floating vehicles whose last position is inside.
    vehicle_ids: list[int]


class PicturePublic(BaseModel):
    picture_id: int
    cluster_id: int
    #: The seed's key (``clusterpictures/<uuid>.jpg``): what "Delete cluster picture" takes.
    picture: str
    content_type: str
    size: int
    created_at: datetime


# ── stations and spots ────────────────────────────────────────────────────────────────


class StationCreate(BaseModel):
    """Commission a station: its mainboard's device id and N spots (displayed 1..N)."""

    cluster_id: Id
    device_id: DeviceId
    name: Text = Field(min_length=1, max_length=50)
    spots: int = Field(ge=1, le=64)


class SpotAdmin(BaseModel):
    spot_id: int
    displayed_number: int
    lock_status: int
    state: str
    in_maintenance: bool
    maintenance_source: str | None
    vehicle_id: int | None
    serial_number: str | None


class StationAdmin(BaseModel):
    station_id: int
    cluster_id: int
    network_id: int
    device_id: str
    name: str
    online: bool
    #: Why the liveness rule says it is offline (None: online).
    offline_reason: str | None
    commissioned_at: datetime | None
    decommissioned_at: datetime | None
    spots: list[SpotAdmin]


class OutagePublic(BaseModel):
    outage_id: int
    station_id: int
    device_id: str
    start_date: datetime
    #: None: still offline.
    end_date: datetime | None
    #: Seconds offline (until now while it lasts).
    duration: int


class MaintenanceSpot(BaseModel):
    spot_id: int
    station_id: int
    displayed_number: int
    state: str
    #: ``operator`` / ``station`` / ``device``.
    maintenance_source: str | None


class OutOfOrderStation(BaseModel):
    station_id: int
    device_id: str
    online: bool
    offline_reason: str | None
    #: Start of its open outage, when ingest saw it go offline.
    offline_since: datetime | None


class OutOfOrderDetails(BaseModel):
    """Why a cluster is down (seed 002 "Get out of order details")."""

    cluster_id: int
    cluster_is_down: bool
    description: str | None
    stations: list[OutOfOrderStation]
    out_of_order_spots: list[MaintenanceSpot]
