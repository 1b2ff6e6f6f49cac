"""Demo network: Lyon (idempotent; `python -m kickstand.cloud seed`).

Device ids (used by the simulators and the demo launcher):

* stations: ``st-0001`` … ``st-0004`` (one per cluster, 6 spots each, numbered 1–6);
* vehicle controllers: ``vh-<serial_number>`` for every vehicle, e.g. ``vh-LY0001``.

Vehicles ``LY0001``–``LY0012`` are docked (spots 1–3 of each station, bikes and
e-bikes); ``LYF001``–``LYF004`` are free-floating kick-scooters in the centre.

Pricing (Europe/Paris, EUR), 0 = Sunday:

* all week (Sun 00:00 → Sat 24:00): unlock 1.00, 300 s included, 0.10/min riding,
  0.05/min on hold, free-float lock 0.50;
* weekend (Sat 00:00 → Mon 00:00, the shorter window wins): unlock 0.50, nothing
  included, 0.15/min riding, 0.05/min on hold, free-float lock 1.00.

Riders (printed by the seed command): ``alice@example.com`` / ``alice-demo-1`` (badge
``04A1B2C3D4E5F6``), ``bob@example.com`` / ``bob-demo-1``; operator
``operator@example.com`` / ``operator-demo-1``. Wallets start at 20.00 EUR.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.access.grants import OPERATOR_PERMISSIONS, ou_snapshot
from kickstand.cloud.access.models import OrganizationalUnit
from kickstand.cloud.db import create_engine, create_sessionmaker
from kickstand.cloud.errors import CloudError
from kickstand.cloud.models import (
    Badge,
    Base,
    Cluster,
    Device,
    DeviceKind,
    Network,
    PricingRule,
    Spot,
    Station,
    User,
    UserRole,
    Vehicle,
    VehicleType,
)
from kickstand.cloud.security import hash_password

NETWORK_NAME = "Lyon"
#: The demo accounts count as confirmed (they log in at once).
DEMO_CONFIRMED_AT = datetime(2026, 1, 1, tzinfo=UTC)
SPOTS_PER_STATION = 6
# Border: a polygon around central Lyon and Villeurbanne, GeoJSON order [lng, lat].
LYON_BORDER = {
    "type": "Polygon",
    "coordinates": [
        [
            [4.7700, 45.7050],
            [4.9300, 45.7050],
            [4.9300, 45.8100],
            [4.7700, 45.8100],
            [4.7700, 45.7050],
        ]
    ],
}
CLUSTERS = [
    ("Bellecour", 45.757814, 4.832011),
    ("Hôtel de Ville", 45.767299, 4.836289),
    ("Part-Dieu", 45.760585, 4.859438),
    ("Perrache", 45.748940, 4.826190),
]
FREE_FLOATING = [
    ("LYF001", 45.762100, 4.834500),
    ("LYF002", 45.759300, 4.841200),
    ("LYF003", 45.764800, 4.850100),
    ("LYF004", 45.754200, 4.829800),
]
RIDERS = [
    ("alice@example.com", "alice-demo-1", "Alice Martin", UserRole.RIDER),
    ("bob@example.com", "bob-demo-1", "Bob Durand", UserRole.RIDER),
    ("operator@example.com", "operator-demo-1", "Olivia Operator", UserRole.OPERATOR),
]
ALICE_BADGE_UID = "04A1B2C3D4E5F6"
WALLET_START = Decimal("20.00")

T = TypeVar("T", bound=Base)


@dataclass
class DemoRefs:
    network_id: int
    cluster_ids: dict[str, int] = field(default_factory=dict)
    station_device_ids: list[str] = field(default_factory=list)
    user_ids: dict[str, int] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)
    vehicle_ids: dict[str, int] = field(default_factory=dict)
    created: int = 0


def station_device_id(index: int) -> str:
    return f"st-{index:04d}"


def vehicle_device_id(serial_number: str) -> str:
    return f"vh-{serial_number}"


@lru_cache(maxsize=16)
def _demo_hash(password: str) -> str:
    # The demo passwords are public (printed by the seed): a light argon2 profile is enough.
    return hash_password(password, demo=True)


def rider_permissions(network_id: int, ou_id: int | None = None) -> list[dict[str, Any]]:
    """The seeds' permission shape: one rent permission on the network's organisational unit."""
    ou = {
        "id": ou_id or network_id,
        "networks": [network_id],
        "clusters": [],
        "app_labels": [],
        "organizations": [],
    }
    return [
        {"perm_key": "rent", "write": True, "ou": ou},
        {"perm_key": "trips", "write": False, "ou": ou},
    ]


def operator_permissions(network_id: int, ou_id: int | None = None) -> list[dict[str, Any]]:
    """The ``operator`` role (migration 0010) on the network's organizational unit."""
    ou = ou_snapshot(ou_id or network_id, [network_id], [], [], [])
    return [
        {"perm_key": "rent", "write": True, "ou": ou},
        *(
            {"perm_key": p, "write": True, "ou": ou, "role": "operator"}
            for p in OPERATOR_PERMISSIONS
        ),
    ]


async def _get_or_add(
    session: AsyncSession, refs: DemoRefs, model: type[T], where: dict[str, Any], **values: Any
) -> T:
    found = (await session.scalars(select(model).filter_by(**where))).first()
    if found is not None:
        return found
    obj = model(**where, **values)
    session.add(obj)
    await session.flush()
    refs.created += 1
    return obj


async def seed_demo(session: AsyncSession) -> DemoRefs:
    """Create what is missing of the demo network (never duplicates; caller commits)."""
    probe = DemoRefs(network_id=0)
    network = await _get_or_add(
        session,
        probe,
        Network,
        {"name": NETWORK_NAME},
        currency="EUR",
        timezone="Europe/Paris",
        border=LYON_BORDER,
        center_latitude=45.7640,
        center_longitude=4.8357,
        max_simultaneous_rented_vehicle=2,
        trip_on_hold=True,
        trip_max_pause=1800,
    )
    refs = DemoRefs(network_id=network.id, created=probe.created)
    has_rules = (
        await session.scalars(select(PricingRule).where(PricingRule.network_id == network.id))
    ).first()
    if has_rules is None:
        session.add_all(
            [
                PricingRule(
                    network_id=network.id,
                    start_dow=0,
                    start_hod="00:00:00",
                    end_dow=6,
                    end_hod="24:00:00",
                    unlock_price=Decimal("1.00"),
                    unlock_included_time=300,
                    use_per_minute_price=Decimal("0.10"),
                    on_hold_price=Decimal("0.05"),
                    freefloat_lock_price=Decimal("0.50"),
                ),
                PricingRule(
                    network_id=network.id,
                    start_dow=6,
                    start_hod="00:00:00",
                    end_dow=1,
                    end_hod="00:00:00",
                    unlock_price=Decimal("0.50"),
                    unlock_included_time=0,
                    use_per_minute_price=Decimal("0.15"),
                    on_hold_price=Decimal("0.05"),
                    freefloat_lock_price=Decimal("1.00"),
                ),
            ]
        )
        refs.created += 2

    serial = 0
    for index, (name, lat, lng) in enumerate(CLUSTERS, start=1):
        cluster = await _get_or_add(
            session,
            refs,
            Cluster,
            {"network_id": network.id, "name": name},
            latitude=lat,
            longitude=lng,
            has_badge_reader=True,
        )
        refs.cluster_ids[name] = cluster.id
        device_id = station_device_id(index)
        refs.station_device_ids.append(device_id)
        await _get_or_add(
            session,
            refs,
            Device,
            {"device_id": device_id},
            kind=DeviceKind.STATION,
            hardware_version="station-v1",
        )
        station = await _get_or_add(
            session, refs, Station, {"device_id": device_id}, cluster_id=cluster.id, name=name
        )
        for number in range(1, SPOTS_PER_STATION + 1):
            spot = await _get_or_add(
                session, refs, Spot, {"station_id": station.id, "displayed_number": number}
            )
            if number <= 3:
                serial += 1
                sn = f"LY{serial:04d}"
                vtype = VehicleType.E_BIKE if number == 3 else VehicleType.BIKE
                await _get_or_add(
                    session,
                    refs,
                    Device,
                    {"device_id": vehicle_device_id(sn)},
                    kind=DeviceKind.VEHICLE,
                )
                vehicle = await _get_or_add(
                    session,
                    refs,
                    Vehicle,
                    {"serial_number": sn},
                    vehicle_type=vtype,
                    network_id=network.id,
                    spot_id=spot.id,
                    latitude=lat,
                    longitude=lng,
                    battery_level=90,
                    assist_battery_level=80 if vtype == VehicleType.E_BIKE else None,
                    device_id=vehicle_device_id(sn),
                )
                refs.vehicle_ids[sn] = vehicle.id
    for sn, lat, lng in FREE_FLOATING:
        await _get_or_add(
            session, refs, Device, {"device_id": vehicle_device_id(sn)}, kind=DeviceKind.VEHICLE
        )
        vehicle = await _get_or_add(
            session,
            refs,
            Vehicle,
            {"serial_number": sn},
            vehicle_type=VehicleType.KICK_SCOOTER,
            network_id=network.id,
            latitude=lat,
            longitude=lng,
            battery_level=75,
            device_id=vehicle_device_id(sn),
        )
        refs.vehicle_ids[sn] = vehicle.id

    unit = await _get_or_add(
        session,
        refs,
        OrganizationalUnit,
        {"name": NETWORK_NAME[:50]},
        networks=[network.id],
        clusters=[],
        app_labels=[],
        organizations=[],
    )
    for email, password, full_name, role in RIDERS:
        perms = (
            operator_permissions(network.id, unit.id)
            if role != UserRole.RIDER
            else rider_permissions(network.id, unit.id)
        )
        user = await _get_or_add(
            session,
            refs,
            User,
            {"email": email},
            password_hash=_demo_hash(password),
            full_name=full_name,
            role=role,
            permissions=perms,
            wallet_balance=WALLET_START,
            email_confirmed_at=DEMO_CONFIRMED_AT,
        )
        refs.user_ids[email] = user.id
        refs.passwords[email] = password
    await _get_or_add(
        session,
        refs,
        Badge,
        {"uid": ALICE_BADGE_UID},
        name="Alice's card",
        user_id=refs.user_ids["alice@example.com"],
        network_id=network.id,
    )
    await session.flush()
    return refs


class DemoSeedRefusedError(CloudError):
    """The demo seed (accounts with published passwords) was asked to run outside
    development."""


def ensure_development(environment: str) -> None:
    """The demo seed creates accounts whose passwords are printed and documented: it runs
    only where ENVIRONMENT is development."""
    if environment != "development":
        raise DemoSeedRefusedError(
            f"the demo seed creates accounts with published passwords and runs only with "
            f"ENVIRONMENT=development (here: {environment}); on a real deployment create the "
            "first administrator with `python -m kickstand.cloud create-admin --email ...`"
        )


async def run_seed(database_url: str, migrate: bool = True, *, environment: str) -> str:
    """Migrate (by default) and seed; returns a report to print. Refused outside development
    (:func:`ensure_development`)."""
    from kickstand.cloud.migrations import upgrade

    ensure_development(environment)
    engine = create_engine(database_url)
    try:
        if migrate:
            await upgrade(engine)
        async with create_sessionmaker(engine)() as session, session.begin():
            refs = await seed_demo(session)
    finally:
        await engine.dispose()
    lines = [
        f"demo network {NETWORK_NAME!r} (id {refs.network_id}): {refs.created} rows created",
        f"stations: {', '.join(refs.station_device_ids)} (spots 1–{SPOTS_PER_STATION})",
        "vehicle controllers: vh-<serial_number>, e.g. vh-LY0001, vh-LYF001",
        "demo accounts (email / password):",
        *(f"  {email} / {password}" for email, password in refs.passwords.items()),
        f"  alice's badge uid: {ALICE_BADGE_UID}",
    ]
    return "\n".join(lines)
