"""Seed 002 ``Vehicles`` for operators: the fleet listing, detail, registration, used
serials, decommissioning, network change, QR codes, statistic and alerts.

Mounted by the app factory under ``/v1``: ``/v1/dashboard/vehicles…``. The vehicle
timeline and battery history are the telemetry routes' (``/v1/dashboard/vehicles/{id}/
timeline``, ``…/battery-history``), its maintenances the maintenance routes'
(``…/{id}/maintenances``). Rules live in :mod:`kickstand.cloud.vehicles.service`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response

from kickstand.cloud.alerts.api import NetworksDep
from kickstand.cloud.alerts.schemas import FleetAlertPublic
from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.deps import SessionDep, SettingsDep
from kickstand.cloud.api.errors import invalid
from kickstand.cloud.api.ids import MAX_ID, Id, Text
from kickstand.cloud.api.openapi import error_responses
from kickstand.cloud.api.pagination import KeysetDep
from kickstand.cloud.api.schemas import Envelope, OkEnvelope, Page
from kickstand.cloud.devices import identity
from kickstand.cloud.keyset import cut
from kickstand.cloud.models import Vehicle, VehicleState, VehicleType
from kickstand.cloud.vehicles import qr, service
from kickstand.cloud.vehicles import repository as repo
from kickstand.cloud.vehicles.models import DecommissionReason
from kickstand.cloud.vehicles.schemas import (
    SERIAL_PATTERN,
    DecommissionedVehicle,
    NetworkChange,
    VehicleCreate,
    VehicleDetail,
    VehiclePublic,
    VehicleStatistic,
)

router = APIRouter(prefix="/dashboard/vehicles", tags=["vehicles"])
# The one operator access check (kickstand.cloud.api.access), one alias per permission.
FleetOperator = Annotated[OperatorContext, Depends(Operator("vehicles.manage"))]
RegisterOperator = Annotated[OperatorContext, Depends(Operator("vehicles.register"))]
AlertsOperator = Annotated[OperatorContext, Depends(Operator("vehicles.alerts"))]

VehicleId = Annotated[Id, Path(description="Identifier of the vehicle.")]
#: Serials checked at once by "Get used serials".
MAX_SERIALS = 500
#: Stickers in one QR code sheet request.
MAX_SHEET_CODES = 1000


def _file(media_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    """A success that is a file, not the JSON envelope (errors stay enveloped)."""
    schema = {"type": "string", "format": "binary"}
    return {200: {"description": description, "content": {media_type: {"schema": schema}}}}


PNG = _file("image/png", "The QR code (PNG).")
PDF = _file("application/pdf", "The QR code sheets (PDF), one page per sheet.")


def _png(content: bytes) -> Response:
    return Response(content, media_type="image/png")


async def _vehicle(
    session: Any, operator: OperatorContext, vehicle_id: int, *, lock: bool = False
) -> Vehicle:
    vehicle = await service.get_vehicle(session, vehicle_id, lock=lock)
    operator.check([vehicle.network_id])
    return vehicle


# ── the fleet ───────────────────────────────────────────────────────────────────────


@router.get("", response_model=Page[VehiclePublic], summary="Get vehicles")
async def get_vehicles(
    operator: FleetOperator,
    session: SessionDep,
    networks: NetworksDep,
    keyset: KeysetDep,
    vehicle_type: Annotated[list[VehicleType] | None, Query()] = None,
    state: Annotated[list[VehicleState] | None, Query()] = None,
    serial_number: Annotated[
        Text | None,
        Query(min_length=1, max_length=10, pattern=r"^[a-zA-Z0-9]+$", description="Prefix."),
    ] = None,
    battery_min: Annotated[int | None, Query(ge=0, le=100)] = None,
    battery_max: Annotated[int | None, Query(ge=0, le=100)] = None,
    in_maintenance: bool | None = None,
    online: bool | None = None,
    docked: bool | None = None,
) -> Page[VehiclePublic]:
    now = datetime.now(UTC)
    rows = await repo.list_vehicles(
        session,
        repo.VehicleFilters(
            networks=networks,
            vehicle_types=vehicle_type or (),
            states=state or (),
            serial_number=serial_number,
            battery_min=battery_min,
            battery_max=battery_max,
            in_maintenance=in_maintenance,
            online=online,
            docked=docked,
        ),
        keyset,
        now,
    )
    page, next_key = cut(rows, keyset, key=lambda row: row[0].id)
    return Page(data=[service.vehicle_public(r, now) for r in page], next_primary_key=next_key)


@router.post(
    "",
    response_model=Envelope[VehicleDetail],
    summary="Register vehicle",
    responses=error_responses(409),
)
async def register_vehicle(
    operator: RegisterOperator, session: SessionDep, body: VehicleCreate
) -> Envelope[VehicleDetail]:
    operator.check([body.network_id])
    vehicle = await service.register(
        session,
        service.Registration(
            serial_number=body.serial_number,
            vehicle_type=body.vehicle_type,
            model=body.model,
            network_id=body.network_id,
            device_id=body.device_id,
        ),
    )
    await session.commit()
    return Envelope(data=await service.vehicle_detail(session, vehicle.id, datetime.now(UTC)))


@router.get(
    "/decommissioned",
    response_model=Page[DecommissionedVehicle],
    summary="Get decommissioned vehicles",
)
async def get_decommissioned_vehicles(
    operator: FleetOperator, session: SessionDep, networks: NetworksDep, keyset: KeysetDep
) -> Page[DecommissionedVehicle]:
    now = datetime.now(UTC)
    rows, next_key = cut(
        await repo.list_decommissioned(session, networks, keyset, now),
        keyset,
        key=lambda row: row[0].id,
    )
    data = [
        DecommissionedVehicle(
            **service.vehicle_public(row[:-1], now).model_dump(),
            decommission=service.decommission_public(row[-1]),
        )
        for row in rows
    ]
    return Page(data=data, next_primary_key=next_key)


async def _serials(
    serials: Annotated[
        str,
        Query(
            description="Serial numbers: `serials=SXB123` or `serials=SXB123,SXB234`.",
            examples=["SXB123", "SXB123,SXB234,SXB345"],
            max_length=MAX_SERIALS * 11,
            pattern=r"^[A-Za-z0-9]+(,[A-Za-z0-9]+)*$",
        ),
    ],
) -> list[str]:
    values = [s.upper() for s in serials.split(",")]
    if len(values) > MAX_SERIALS:
        raise invalid("serials", f"at most {MAX_SERIALS} serial numbers")
    return values


@router.get("/used-serials", response_model=Envelope[list[str]], summary="Get used serials")
async def get_used_serials(
    _operator: RegisterOperator,
    session: SessionDep,
    serials: Annotated[list[str], Depends(_serials)],
) -> Envelope[list[str]]:
    return Envelope(data=await repo.used_serials(session, serials))


@router.get(
    "/qr-code",
    response_class=Response,
    response_model=None,
    responses=PNG,
    summary="Generate vehicle QR code",
)
async def generate_qr_code(
    _operator: RegisterOperator,
    serial: Annotated[
        Text, Query(pattern=SERIAL_PATTERN, description="Serial number to print on the QR code.")
    ],
) -> Response:
    return _png(qr.png(serial))


@router.get(
    "/qr-code-sheet",
    response_class=Response,
    response_model=None,
    responses=PDF,
    summary="Generate vehicle QR code sheet",
)
async def generate_qr_code_sheet(
    _operator: RegisterOperator,
    prefix: Annotated[
        Text, Query(pattern=r"^[A-Z][A-Z0-9]{0,6}$", description="Prefix of the QR codes.")
    ],
    begin_id: Annotated[
        int,
        Query(ge=0, le=MAX_ID, description="Number of the first code, then one more each."),
    ],
    width_in_cm: Annotated[
        float, Query(ge=0, le=200, description="Width of the sheet in centimeters.")
    ],
    height_in_cm: Annotated[
        float, Query(ge=0, le=200, description="Height of the sheet in centimeters.")
    ],
    count: Annotated[
        int | None,
        Query(ge=1, le=MAX_SHEET_CODES, description="How many codes (default: one full sheet)."),
    ] = None,
) -> Response:
    layout = qr.SheetLayout(width_in_cm, height_in_cm)
    if layout.per_sheet == 0:
        raise invalid(
            "width_in_cm",
            f"a sheet holds codes of {qr.CELL_WIDTH_CM} x {qr.CELL_HEIGHT_CM} cm inside "
            f"{qr.MARGIN_CM} cm margins: this one holds none",
        )
    serials = qr.sheet_serials(prefix, begin_id, count or layout.per_sheet)
    if len(serials[-1]) > 10:
        raise invalid("begin_id", "prefix and number make serials longer than 10 characters")
    return Response(qr.sheet_pdf(serials, layout), media_type="application/pdf")


# ── one vehicle ─────────────────────────────────────────────────────────────────────


@router.get("/{vehicle_id}", response_model=Envelope[VehicleDetail], summary="Get vehicle detail")
async def get_vehicle_detail(
    operator: FleetOperator, session: SessionDep, vehicle_id: VehicleId
) -> Envelope[VehicleDetail]:
    await _vehicle(session, operator, vehicle_id)
    return Envelope(data=await service.vehicle_detail(session, vehicle_id, datetime.now(UTC)))


@router.post(
    "/{vehicle_id}/decommission",
    response_model=OkEnvelope,
    summary="Decommission vehicle",
    responses=error_responses(409),
)
async def decommission_vehicle(
    operator: FleetOperator,
    session: SessionDep,
    settings: SettingsDep,
    vehicle_id: VehicleId,
    reason: Annotated[DecommissionReason, Query(description="Why the vehicle is decommissioned.")],
    comment: Annotated[Text | None, Query(min_length=1, max_length=200)] = None,
    amount: Annotated[
        float | None,
        Query(
            ge=-1e9,
            le=1e9,
            description="Sold for (positive) or cost of recycling (negative), in the currency "
            "of the vehicle's network.",
        ),
    ] = None,
) -> OkEnvelope:
    vehicle = await _vehicle(session, operator, vehicle_id, lock=True)
    await service.decommission(
        session,
        vehicle,
        service.Decommission(
            reason=reason,
            comment=comment,
            amount=Decimal(f"{amount:.4f}") if amount is not None else None,
        ),
        operator.user_id,
        datetime.now(UTC),
    )
    await session.commit()
    if vehicle.device_id is not None:
        # Its controller's certificates were revoked with it: the CRL, the broker, the session.
        await identity.publish_revocations(session, settings, [vehicle.device_id])
    return OkEnvelope()


@router.get(
    "/{vehicle_id}/qr-code",
    response_class=Response,
    response_model=None,
    responses=PNG,
    summary="Get vehicle QR code",
)
async def get_vehicle_qr_code(
    operator: FleetOperator, session: SessionDep, vehicle_id: VehicleId
) -> Response:
    vehicle = await _vehicle(session, operator, vehicle_id)
    return _png(qr.png(vehicle.serial_number))


@router.put(
    "/{vehicle_id}/network",
    response_model=OkEnvelope,
    summary="Change vehicle network",
    responses=error_responses(409),
)
async def change_vehicle_network(
    operator: FleetOperator, session: SessionDep, vehicle_id: VehicleId, body: NetworkChange
) -> OkEnvelope:
    vehicle = await _vehicle(session, operator, vehicle_id, lock=True)
    operator.check([body.network_id])
    await service.change_network(session, vehicle, body.network_id)
    await session.commit()
    return OkEnvelope()


@router.get(
    "/{vehicle_id}/statistic",
    response_model=Envelope[VehicleStatistic],
    summary="Get vehicle statistic",
)
async def get_vehicle_statistic(
    operator: FleetOperator,
    session: SessionDep,
    vehicle_id: VehicleId,
    days: Annotated[
        int, Query(ge=1, le=366, description="The period: this many local days up to today.")
    ] = 30,
) -> Envelope[VehicleStatistic]:
    vehicle = await _vehicle(session, operator, vehicle_id)
    return Envelope(data=await service.statistic(session, vehicle, days, datetime.now(UTC)))


@router.get(
    "/{vehicle_id}/alerts",
    response_model=Envelope[list[FleetAlertPublic]],
    summary="Get vehicle alerts",
)
async def get_vehicle_alerts(
    operator: AlertsOperator, session: SessionDep, vehicle_id: VehicleId
) -> dict[str, Any]:
    vehicle = await _vehicle(session, operator, vehicle_id)
    return {"code": 0, "data": await service.current_alerts(session, vehicle)}
