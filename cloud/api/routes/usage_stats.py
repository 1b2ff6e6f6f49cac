"""Seed 002 UsageStats: trips of a period (local days of the request's time zone) on the
operator's networks, aggregated by the database (:mod:`kickstand.cloud.stats`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from kickstand.cloud.alerts.api import NetworksDep
from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.deps import SessionDep
from kickstand.cloud.api.ids import Text
from kickstand.cloud.api.schemas import Envelope
from kickstand.cloud.stats import service
from kickstand.cloud.stats.repository import OrganizationFilter, Window
from kickstand.cloud.stats.schemas import (
    DowCount,
    HourCount,
    RangeCount,
    StationCount,
    TimezoneQuery,
    UsageOrganization,
    UsagePoint,
    UsageSummary,
)

router = APIRouter(prefix="/dashboard/usage-stats", tags=["usage-stats"])
# The one operator access check (kickstand.cloud.api.access): `networks` is checked by it.
UsageOperator = Annotated[OperatorContext, Depends(Operator("trips"))]
OrganizationsOperator = Annotated[OperatorContext, Depends(Operator("organizations"))]


@dataclass(frozen=True, slots=True)
class UsageQuery:
    networks: list[int]
    period: Window
    organizations: OrganizationFilter


async def usage_query(
    networks: NetworksDep,
    start_date: Annotated[date, Query(description="The start date of the period.")],
    end_date: Annotated[
        date, Query(description="The end date of the period (included), not before start_date.")
    ],
    timezone: TimezoneQuery,
    organizations: Annotated[
        Text | None,
        Query(
            max_length=2000,
            description="Organization ids (`1,5,7`); `null`: riders in no organization; "
            "absent: every trip.",
            examples=["5", "1,5,7", "null"],
        ),
    ] = None,
) -> UsageQuery:
    return UsageQuery(
        networks,
        service.window(start_date, end_date, timezone),
        service.organization_filter(organizations),
    )


UsageQueryDep = Annotated[UsageQuery, Depends(usage_query)]


@router.get("", response_model=Envelope[list[UsagePoint]], summary="Get usage stats")
async def get_usage_stats(
    _operator: UsageOperator, session: SessionDep, q: UsageQueryDep
) -> Envelope[list[UsagePoint]]:
    return Envelope(data=await service.usage(session, q.networks, q.period, q.organizations))


@router.get("/summary", response_model=Envelope[UsageSummary], summary="Get usage stats summary")
async def get_usage_summary(
    _operator: UsageOperator, session: SessionDep, q: UsageQueryDep
) -> Envelope[UsageSummary]:
    return Envelope(data=await service.summary(session, q.networks, q.period, q.organizations))


@router.get("/trips-by-dow", response_model=Envelope[list[DowCount]], summary="Get trips by dow")
async def get_trips_by_dow(
    _operator: UsageOperator, session: SessionDep, q: UsageQueryDep
) -> Envelope[list[DowCount]]:
    return Envelope(data=await service.by_dow(session, q.networks, q.period, q.organizations))


@router.get(
    "/trips-by-time-of-day",
    response_model=Envelope[list[HourCount]],
    summary="Get trips by time of day",
)
async def get_trips_by_time_of_day(
    _operator: UsageOperator, session: SessionDep, q: UsageQueryDep
) -> Envelope[list[HourCount]]:
    return Envelope(data=await service.by_hour(session, q.networks, q.period, q.organizations))


@router.get(
    "/distance-distribution",
    response_model=Envelope[list[RangeCount]],
    summary="Get trip distance distribution",
)
async def get_distance_distribution(
    _operator: UsageOperator, session: SessionDep, q: UsageQueryDep
) -> Envelope[list[RangeCount]]:
    return Envelope(
        data=await service.distribution(session, q.networks, q.period, q.organizations, "distance")
    )


@router.get(
    "/duration-distribution",
    response_model=Envelope[list[RangeCount]],
    summary="Get trip duration distribution",
)
async def get_duration_distribution(
    _operator: UsageOperator, session: SessionDep, q: UsageQueryDep
) -> Envelope[list[RangeCount]]:
    return Envelope(
        data=await service.distribution(session, q.networks, q.period, q.organizations, "duration")
    )


@router.get(
    "/station-distribution",
    response_model=Envelope[list[StationCount]],
    summary="Get station distribution",
)
async def get_station_distribution(
    _operator: UsageOperator, session: SessionDep, q: UsageQueryDep
) -> Envelope[list[StationCount]]:
    return Envelope(data=await service.stations(session, q.networks, q.period, q.organizations))


@router.get(
    "/organizations",
    response_model=Envelope[list[UsageOrganization]],
    summary="Get usage stats organizations",
)
async def get_usage_organizations(
    _operator: OrganizationsOperator, session: SessionDep, networks: NetworksDep
) -> Envelope[list[UsageOrganization]]:
    return Envelope(data=await service.organizations(session, networks))
