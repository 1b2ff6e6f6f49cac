"""Seed 002 AccessLogs: the dashboard's requests (``kickstand.cloud.access.log`` writes them).

An operator with a global ``developer`` grant (or an admin) sees everyone's requests; one
whose grant names networks sees its own (a request log names people, not networks).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from kickstand.cloud.access import repository
from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.deps import SessionDep
from kickstand.cloud.api.ids import Id, Text
from kickstand.cloud.api.pagination import KeysetDep
from kickstand.cloud.api.schemas import Page
from kickstand.cloud.keyset import cut

router = APIRouter(prefix="/dashboard/access-logs", tags=["access-logs"])
# The one operator access check (kickstand.cloud.api.access).
LogsOperator = Annotated[OperatorContext, Depends(Operator("developer"))]


class AccessLogPublic(BaseModel):
    id: int
    user_id: int | None
    target_path: str
    verb: str
    user_agent: str | None
    ip: str | None
    http_code: int
    knot_code: int | None
    network_ids: list[int] | None
    created_at: datetime


@router.get("", response_model=Page[AccessLogPublic], summary="Get access logs")
async def get_access_logs(
    operator: LogsOperator,
    session: SessionDep,
    keyset: KeysetDep,
    date_min: datetime | None = None,
    date_max: datetime | None = None,
    user_id: Annotated[Id | None, Query()] = None,
    target_path: Annotated[Text | None, Query(min_length=1, max_length=2048)] = None,
    verb: Annotated[Text | None, Query(min_length=1, max_length=10)] = None,
    user_agent: Annotated[Text | None, Query(min_length=1, max_length=2048)] = None,
    ip: Annotated[Text | None, Query(min_length=1, max_length=128)] = None,
    http_code_min: Annotated[int | None, Query(ge=0, le=999)] = None,
    http_code_max: Annotated[int | None, Query(ge=0, le=999)] = None,
    knot_code_min: Annotated[int | None, Query(ge=-(2**31), le=2**31 - 1)] = None,
    knot_code_max: Annotated[int | None, Query(ge=-(2**31), le=2**31 - 1)] = None,
) -> Page[AccessLogPublic]:
    rows = await repository.list_access_logs(
        session,
        repository.AccessLogFilters(
            date_min=date_min,
            date_max=date_max,
            user_id=user_id,
            target_path=target_path,
            verb=verb,
            user_agent=user_agent,
            ip=ip,
            http_code_min=http_code_min,
            http_code_max=http_code_max,
            knot_code_min=knot_code_min,
            knot_code_max=knot_code_max,
            only_users=None if operator.networks is None else frozenset({operator.user_id}),
        ),
        keyset,
    )
    page, next_key = cut(rows, keyset, key=lambda r: r.id)
    return Page(
        data=[AccessLogPublic.model_validate(r, from_attributes=True) for r in page],
        next_primary_key=next_key,
    )
