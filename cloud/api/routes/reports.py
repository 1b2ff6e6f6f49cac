"""Riders' reports of a problem, and the technicians who handle them.

Riders (seed 001): ``POST /v1/reports`` (report a problem on a vehicle, a spot, a trip or
a network), ``GET /v1/reports`` (mine), ``GET /v1/reports/{report_id}``, ``POST
/v1/reports/{report_id}/pictures`` (multipart ``chat_image``) and ``GET
…/pictures/{picture_id}``.

Operators with ``maintenances`` (seed 002 ``Reports``): ``GET /v1/dashboard/reports``
(networks, email, archived; keyset), ``GET /v1/dashboard/reports/{report_id}`` (with the
maintenances opened from it), ``POST …/{report_id}/resolve``, ``GET
…/{report_id}/pictures/{picture_id}``. Chat messages are not kept (yet).

Pictures are answered as JSON (``data``: base64), like every other answer of the API.
"""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Depends, File, Path, Query, UploadFile
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.alerts.api import NetworksDep
from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.deps import CurrentUser, SessionDep
from kickstand.cloud.api.ids import Id, Text
from kickstand.cloud.api.pagination import KeysetDep
from kickstand.cloud.api.schemas import Envelope, OkEnvelope, Page
from kickstand.cloud.keyset import cut
from kickstand.cloud.operations import repository, service
from kickstand.cloud.operations.models import Maintenance, Report, ReportPicture
from kickstand.cloud.operations.schemas import (
    MaintenancePublic,
    PictureContent,
    PicturePublic,
    ReportCreate,
    ReportDetail,
    ReportPublic,
)

router = APIRouter(tags=["reports"])
# The one operator access check (kickstand.cloud.api.access): technicians.
ReportsOperator = Annotated[OperatorContext, Depends(Operator("maintenances"))]

ReportId = Annotated[Id, Path(description="Identifier of the report.")]
PictureId = Annotated[Id, Path(description="Identifier of the picture.")]
RIDER = "/v1/reports"
DASHBOARD = "/v1/dashboard/reports"


async def _publics(
    session: AsyncSession, rows: list[tuple[Report, str]], prefix: str
) -> list[ReportPublic]:
    pictures: dict[int, list[PicturePublic]] = {}
    for picture_id, report_id, date in await service.pictures_of(session, [r.id for r, _ in rows]):
        pictures.setdefault(report_id, []).append(
            PicturePublic(
                id=str(picture_id),
                date=date,
                url=f"{prefix}/{report_id}/pictures/{picture_id}",
            )
        )
    return [ReportPublic.of(r, sender, pictures.get(r.id, [])) for r, sender in rows]


def _content(picture: ReportPicture) -> PictureContent:
    return PictureContent(
        id=picture.id,
        content_type=picture.content_type,
        size=picture.size,
        date=picture.created_at,
        data=base64.b64encode(picture.data).decode("ascii"),
    )


# ── riders ────────────────────────────────────────────────────────────────────────────


@router.post("/reports", response_model=Envelope[ReportPublic], summary="Report a problem")
async def create_report(
    user: CurrentUser, session: SessionDep, body: ReportCreate
) -> Envelope[ReportPublic]:
    report = await service.create_report(
        session,
        user.id,
        message=body.message,
        network_id=body.network_id,
        vehicle_id=body.vehicle_id,
        spot_id=body.spot_id,
        trip_id=body.trip_id,
    )
    await session.commit()
    (public,) = await _publics(session, [(report, user.email)], RIDER)
    return Envelope(data=public)


@router.get("/reports", response_model=Page[ReportPublic], summary="My reports, newest first")
async def get_my_reports(
    user: CurrentUser, session: SessionDep, keyset: KeysetDep
) -> Page[ReportPublic]:
    rows, total = await repository.reports(session, keyset, user_id=user.id)
    page, next_key = cut(rows, keyset, key=lambda row: row[0].id)
    data = await _publics(session, [(r, mail) for r, mail in page], RIDER)
    return Page(data=data, total=total, next_primary_key=next_key)


@router.get("/reports/{report_id}", response_model=Envelope[ReportPublic], summary="A report")
async def get_my_report(
    user: CurrentUser, session: SessionDep, report_id: ReportId
) -> Envelope[ReportPublic]:
    report = await service.rider_report(session, user.id, report_id)
    (public,) = await _publics(session, [(report, user.email)], RIDER)
    return Envelope(data=public)


@router.post(
    "/reports/{report_id}/pictures",
    response_model=Envelope[PicturePublic],
    summary="Upload a picture to a report (multipart `chat_image`)",
)
async def upload_picture(
    user: CurrentUser,
    session: SessionDep,
    report_id: ReportId,
    chat_image: Annotated[UploadFile, File(description="The picture (JPEG, PNG or WebP).")],
) -> Envelope[PicturePublic]:
    report = await service.rider_report(session, user.id, report_id)
    # One byte more than allowed tells a picture too large without reading all of it.
    data = await chat_image.read(service.PICTURE_MAX_BYTES + 1)
    picture = await service.add_picture(session, report, chat_image.content_type, data)
    await session.commit()
    return Envelope(
        data=PicturePublic(
            id=str(picture.id),
            date=picture.created_at,
            url=f"{RIDER}/{report.id}/pictures/{picture.id}",
        )
    )


@router.get(
    "/reports/{report_id}/pictures/{picture_id}",
    response_model=Envelope[PictureContent],
    summary="A picture of my report",
)
async def get_my_picture(
    user: CurrentUser, session: SessionDep, report_id: ReportId, picture_id: PictureId
) -> Envelope[PictureContent]:
    report = await service.rider_report(session, user.id, report_id)
    return Envelope(data=_content(await service.get_picture(session, report, picture_id)))


# ── technicians ───────────────────────────────────────────────────────────────────────


@router.get("/dashboard/reports", response_model=Page[ReportPublic], summary="Get reports")
async def get_reports(
    operator: ReportsOperator,
    session: SessionDep,
    networks: NetworksDep,
    keyset: KeysetDep,
    email: Annotated[Text | None, Query(min_length=1, max_length=255)] = None,
    archived: Annotated[
        bool | None, Query(description="Current reports (false) or archived ones (true).")
    ] = None,
) -> Page[ReportPublic]:
    rows, total = await repository.reports(
        session, keyset, networks=networks, email=email, archived=archived
    )
    page, next_key = cut(rows, keyset, key=lambda row: row[0].id)
    data = await _publics(session, [(r, mail) for r, mail in page], DASHBOARD)
    return Page(data=data, total=total, next_primary_key=next_key)


async def _report(
    session: AsyncSession, operator: OperatorContext, report_id: int, *, lock: bool = False
) -> Report:
    report = await service.get_report(session, report_id, lock=lock)
    operator.check([report.network_id])
    return report


@router.get(
    "/dashboard/reports/{report_id}", response_model=Envelope[ReportDetail], summary="Get a report"
)
async def get_report(
    operator: ReportsOperator, session: SessionDep, report_id: ReportId
) -> Envelope[ReportDetail]:
    report = await _report(session, operator, report_id)
    rider = await service.people(session, {report.user_id})
    (public,) = await _publics(session, [(report, rider[report.user_id].email)], DASHBOARD)
    records = list(
        await session.scalars(
            select(Maintenance).where(Maintenance.report_id == report.id).order_by(Maintenance.id)
        )
    )
    names = await service.maintainers(session, records)
    return Envelope(
        data=ReportDetail(
            **public.model_dump(),
            maintenances=[MaintenancePublic.of(r, names) for r in records],
            resolved_by_uid=report.resolved_by,
        )
    )


@router.post(
    "/dashboard/reports/{report_id}/resolve",
    response_model=OkEnvelope,
    summary="Resolve report",
)
async def resolve_report(
    operator: ReportsOperator, session: SessionDep, report_id: ReportId
) -> OkEnvelope:
    report = await _report(session, operator, report_id, lock=True)
    await service.resolve_report(report, operator.user_id)
    await session.commit()
    return OkEnvelope()


@router.get(
    "/dashboard/reports/{report_id}/pictures/{picture_id}",
    response_model=Envelope[PictureContent],
    summary="A picture of a report",
)
async def get_report_picture(
    operator: ReportsOperator, session: SessionDep, report_id: ReportId, picture_id: PictureId
) -> Envelope[PictureContent]:
    report = await _report(session, operator, report_id)
    return Envelope(data=_content(await service.get_picture(session, report, picture_id)))
