"""Seed 002 ``Maintenances`` (current maintenances, maintenance types) and the maintenance
operations of stations, spots, vehicles and clusters (seed 001's technician operations as
dashboard routes):

* ``GET|POST /v1/dashboard/maintenance-types``, ``DELETE …/maintenance-types?key=``;
* ``GET /v1/dashboard/maintenances?networks=`` (current, keyset), ``GET|PATCH|DELETE
  /v1/dashboard/maintenances/{maintenance_id}`` (DELETE resolves it; with
  ``delete_from_history`` the record goes too);
* ``POST|GET /v1/dashboard/{stations|spots|vehicles}/{id}/maintenances`` (open one; the
  target's maintenances, current and old), ``GET /v1/dashboard/clusters/{id}/maintenances``.

Rules in :mod:`kickstand.cloud.operations.service`.
"""

from __future__ import annotations

from typing import Annotated, Literal, Unpack

from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.alerts.api import NetworksDep
from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.deps import GatewayDep, SessionDep
from kickstand.cloud.api.ids import Id, Text
from kickstand.cloud.api.pagination import KeysetDep
from kickstand.cloud.api.schemas import Envelope, OkEnvelope, Page
from kickstand.cloud.errors import NotFoundError
from kickstand.cloud.keyset import Keyset, cut
from kickstand.cloud.operations import repository, service
from kickstand.cloud.operations.models import Maintenance, MaintenanceTarget
from kickstand.cloud.operations.schemas import (
    ANSWER,
    MaintenanceChanged,
    MaintenanceCreate,
    MaintenancePublic,
    MaintenanceTypeCreate,
    MaintenanceTypePublic,
    MaintenanceUpdate,
)
from kickstand.cloud.rent_gateway import CommandGateway

router = APIRouter(prefix="/dashboard", tags=["maintenances"])
# The one operator access check (kickstand.cloud.api.access).
MaintenanceOperator = Annotated[OperatorContext, Depends(Operator("maintenances"))]

MaintenanceId = Annotated[Id, Path(description="Identifier of the maintenance.")]
Lang = Annotated[
    Text | None,
    Query(
        min_length=2,
        max_length=2,
        description="The lang in which to get the maintenance types localized.",
    ),
]
State = Annotated[
    Literal["current", "resolved", "all"],
    Query(description="Current (open) maintenances, resolved ones, or both."),
]


async def _page(
    session: AsyncSession, rows: list[Maintenance], next_key: int | None
) -> Page[MaintenancePublic]:
    names = await service.maintainers(session, rows)
    return Page(data=[MaintenancePublic.of(r, names) for r in rows], next_primary_key=next_key)


# ── types ─────────────────────────────────────────────────────────────────────────────


@router.get(
    "/maintenance-types",
    response_model=Envelope[list[MaintenanceTypePublic]],
    summary="Get maintenance types",
)
async def get_maintenance_types(
    operator: MaintenanceOperator, session: SessionDep, lang: Lang = None
) -> Envelope[list[MaintenanceTypePublic]]:
    rows = await service.maintenance_types(session)
    return Envelope(data=[MaintenanceTypePublic.of(r) for r in rows])


@router.post(
    "/maintenance-types",
    response_model=Envelope[MaintenanceTypePublic],
    summary="Create maintenance type",
)
async def create_maintenance_type(
    operator: MaintenanceOperator, session: SessionDep, body: MaintenanceTypeCreate
) -> Envelope[MaintenanceTypePublic]:
    row = await service.create_type(session, body.key, body.target_type, body.severity)
    await session.commit()
    return Envelope(data=MaintenanceTypePublic.of(row))


@router.delete("/maintenance-types", response_model=OkEnvelope, summary="Delete maintenance type")
async def delete_maintenance_type(
    operator: MaintenanceOperator,
    session: SessionDep,
    key: Annotated[Text, Query(min_length=1, max_length=50)],
) -> OkEnvelope:
    await service.delete_type(session, key)
    await session.commit()
    return OkEnvelope()


# ── records ───────────────────────────────────────────────────────────────────────────


@router.get(
    "/maintenances",
    response_model=Page[MaintenancePublic],
    summary="Get current maintenances (stations, spots, vehicles of the networks)",
)
async def get_current_maintenances(
    operator: MaintenanceOperator,
    session: SessionDep,
    networks: NetworksDep,
    keyset: KeysetDep,
    lang: Lang = None,
    state: State = "current",
    target_type: MaintenanceTarget | None = None,
) -> Page[MaintenancePublic]:
    rows = await repository.maintenances(
        session, keyset, networks=networks, state=state, target_type=target_type
    )
    page, next_key = cut(rows, keyset, key=lambda r: r.id)
    return await _page(session, page, next_key)


async def _record(
    session: AsyncSession, operator: OperatorContext, maintenance_id: int, *, lock: bool = False
) -> Maintenance:
    record = await service.get_maintenance(session, maintenance_id, lock=lock)
    operator.check([record.network_id])
    return record


@router.get(
    "/maintenances/{maintenance_id}",
    response_model=Envelope[MaintenancePublic],
    summary="Get a maintenance",
)
async def get_maintenance(
    operator: MaintenanceOperator, session: SessionDep, maintenance_id: MaintenanceId
) -> Envelope[MaintenancePublic]:
    record = await _record(session, operator, maintenance_id)
    return Envelope(data=MaintenancePublic.of(record, await service.maintainers(session, [record])))


@router.patch(
    "/maintenances/{maintenance_id}",
    response_model=Envelope[MaintenancePublic],
    summary="Update the comment and severity of a maintenance",
)
async def update_maintenance(
    operator: MaintenanceOperator,
    session: SessionDep,
    maintenance_id: MaintenanceId,
    body: MaintenanceUpdate,
) -> Envelope[MaintenancePublic]:
    record = await _record(session, operator, maintenance_id, lock=True)
    await service.update_maintenance(record, comment=body.comment, severity=body.severity)
    await session.commit()
    return Envelope(data=MaintenancePublic.of(record, await service.maintainers(session, [record])))


async def _answer(
    session: AsyncSession,
    gateway: CommandGateway,
    change: service.Change,
    out_of_service: bool,
) -> Envelope[MaintenanceChanged]:
    record = change.records[0]
    public = MaintenancePublic.of(record, await service.maintainers(session, [record]))
    await session.commit()
    answer = MaintenanceChanged(maintenance=public, out_of_service=out_of_service)
    if change.command is not None:
        # Sent after the commit: the decision stands whatever the device answers (a
        # station is told again when it reports the spot otherwise, SPEC §4.4).
        outcome = await gateway.send_command(change.command)
        answer.device_answer = ANSWER[outcome.result]
        answer.device_reason = outcome.reason
    return Envelope(data=answer)


@router.delete(
    "/maintenances/{maintenance_id}",
    response_model=Envelope[MaintenanceChanged],
    summary="Mark a maintenance as resolved (or delete it from the history)",
)
async def resolve_maintenance(
    operator: MaintenanceOperator,
    session: SessionDep,
    gateway: GatewayDep,
    maintenance_id: MaintenanceId,
    delete_from_history: bool = False,
) -> Envelope[MaintenanceChanged]:
    record = await _record(session, operator, maintenance_id)
    t = await service.target(session, *service.target_of(record))
    record = await service.get_maintenance(session, maintenance_id, lock=True)
    change = await service.resolve_maintenance(
        session,
        gateway,
        record,
        t,
        user_id=operator.user_id,
        delete_from_history=delete_from_history,
    )
    return await _answer(session, gateway, change, service.out_of_service(t))


async def _open(
    session: AsyncSession,
    gateway: CommandGateway,
    operator: OperatorContext,
    kind: MaintenanceTarget,
    target_id: int,
    body: MaintenanceCreate,
) -> Envelope[MaintenanceChanged]:
    t = await service.target(session, kind, target_id)
    operator.check([t.network_id])
    change = await service.open_maintenance(
        session,
        gateway,
        t,
        type_key=body.maintenance_type,
        user_id=operator.user_id,
        comment=body.comment,
        severity=body.severity,
        report_id=body.report_id,
    )
    return await _answer(session, gateway, change, service.out_of_service(t))


async def _of_target(
    session: AsyncSession,
    operator: OperatorContext,
    keyset: Keyset,
    state: repository.MaintenanceState,
    *,
    network_id: int | None,
    resource: str,
    target_id: int,
    **where: Unpack[repository.MaintenanceOf],
) -> Page[MaintenancePublic]:
    if network_id is None:
        raise NotFoundError(resource, target_id)
    operator.check([network_id])
    rows = await repository.maintenances(session, keyset, state=state, **where)
    page, next_key = cut(rows, keyset, key=lambda r: r.id)
    return await _page(session, page, next_key)


StationId = Annotated[Id, Path(description="Identifier of the station.")]
SpotId = Annotated[Id, Path(description="Identifier of the spot.")]
VehicleId = Annotated[Id, Path(description="Identifier of the vehicle.")]
ClusterId = Annotated[Id, Path(description="Identifier of the cluster.")]


@router.post(
    "/stations/{station_id}/maintenances",
    response_model=Envelope[MaintenanceChanged],
    summary="Create a maintenance for a station (the station as a whole)",
)
async def open_station_maintenance(
    operator: MaintenanceOperator,
    session: SessionDep,
    gateway: GatewayDep,
    station_id: StationId,
    body: MaintenanceCreate,
) -> Envelope[MaintenanceChanged]:
    return await _open(session, gateway, operator, MaintenanceTarget.STATION, station_id, body)


@router.post(
    "/spots/{spot_id}/maintenances",
    response_model=Envelope[MaintenanceChanged],
    summary="Create a maintenance for a spot",
)
async def open_spot_maintenance(
    operator: MaintenanceOperator,
    session: SessionDep,
    gateway: GatewayDep,
    spot_id: SpotId,
    body: MaintenanceCreate,
) -> Envelope[MaintenanceChanged]:
    return await _open(session, gateway, operator, MaintenanceTarget.SPOT, spot_id, body)


@router.post(
    "/vehicles/{vehicle_id}/maintenances",
    response_model=Envelope[MaintenanceChanged],
    summary="Create a maintenance for a vehicle",
)
async def open_vehicle_maintenance(
    operator: MaintenanceOperator,
    session: SessionDep,
    gateway: GatewayDep,
    vehicle_id: VehicleId,
    body: MaintenanceCreate,
) -> Envelope[MaintenanceChanged]:
    return await _open(session, gateway, operator, MaintenanceTarget.VEHICLE, vehicle_id, body)


@router.get(
    "/stations/{station_id}/maintenances",
    response_model=Page[MaintenancePublic],
    summary="Get the maintenances of a station (as a whole, not its spots')",
)
async def get_station_maintenances(
    operator: MaintenanceOperator,
    session: SessionDep,
    keyset: KeysetDep,
    station_id: StationId,
    state: State = "all",
    lang: Lang = None,
) -> Page[MaintenancePublic]:
    return await _of_target(
        session,
        operator,
        keyset,
        state,
        network_id=await repository.station_network(session, station_id),
        resource="station",
        target_id=station_id,
        station_id=station_id,
    )


@router.get(
    "/spots/{spot_id}/maintenances",
    response_model=Page[MaintenancePublic],
    summary="Get the maintenances of a spot",
)
async def get_spot_maintenances(
    operator: MaintenanceOperator,
    session: SessionDep,
    keyset: KeysetDep,
    spot_id: SpotId,
    state: State = "all",
    lang: Lang = None,
) -> Page[MaintenancePublic]:
    return await _of_target(
        session,
        operator,
        keyset,
        state,
        network_id=await repository.spot_network(session, spot_id),
        resource="spot",
        target_id=spot_id,
        spot_id=spot_id,
    )


@router.get(
    "/vehicles/{vehicle_id}/maintenances",
    response_model=Page[MaintenancePublic],
    summary="Get vehicle maintenances (current and old)",
)
async def get_vehicle_maintenances(
    operator: MaintenanceOperator,
    session: SessionDep,
    keyset: KeysetDep,
    vehicle_id: VehicleId,
    state: State = "all",
    lang: Lang = None,
) -> Page[MaintenancePublic]:
    return await _of_target(
        session,
        operator,
        keyset,
        state,
        network_id=await repository.vehicle_network(session, vehicle_id),
        resource="vehicle",
        target_id=vehicle_id,
        vehicle_id=vehicle_id,
    )


@router.get(
    "/clusters/{cluster_id}/maintenances",
    response_model=Page[MaintenancePublic],
    summary="Get maintenances (the history of the cluster's stations and spots)",
)
async def get_cluster_maintenances(
    operator: MaintenanceOperator,
    session: SessionDep,
    keyset: KeysetDep,
    cluster_id: ClusterId,
    state: State = "all",
    lang: Lang = None,
) -> Page[MaintenancePublic]:
    return await _of_target(
        session,
        operator,
        keyset,
        state,
        network_id=await repository.cluster_network(session, cluster_id),
        resource="cluster",
        target_id=cluster_id,
        cluster_id=cluster_id,
    )
