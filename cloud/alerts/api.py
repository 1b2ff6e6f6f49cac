"""Seed 002 FleetAlerts for operators: current alerts, history, resolve (+ silence, escalate).

Mounted by the app factory under ``/v1``: ``/v1/dashboard/fleet-alerts…``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field, field_validator

from kickstand.cloud.alerts import service
from kickstand.cloud.alerts.schemas import AlertTypePublic, FleetAlertPublic
from kickstand.cloud.alerts.types import AlertSeverity, AlertState, AlertType
from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.deps import SessionDep
from kickstand.cloud.api.errors import invalid
from kickstand.cloud.api.ids import MAX_ID, Id, Text
from kickstand.cloud.api.pagination import KeysetDep
from kickstand.cloud.api.schemas import Envelope, OkEnvelope, Page
from kickstand.cloud.keyset import cut

router = APIRouter(prefix="/dashboard/fleet-alerts", tags=["fleet-alerts"])

# The one operator access check (kickstand.cloud.api.access); `networks` in the query is
# checked by it.
AlertsOperator = Annotated[OperatorContext, Depends(Operator("vehicles.alerts"))]


async def parse_networks(
    networks: Annotated[
        str,
        Query(
            description="Identifier(s) of networks: `networks=5` or `networks=1,5,7`.",
            examples=["5", "1,5,7"],
            max_length=2000,
            pattern=r"^ *[0-9]+ *(, *[0-9]+ *)*,? *$",
        ),
    ],
) -> list[int]:
    """Seed 002 `networks`: an array of integers >= 1, comma separated or repeated."""
    try:
        ids = [int(part) for part in networks.replace(" ", "").split(",") if part]
    except ValueError as exc:
        raise invalid("networks", "a comma separated list of network ids") from exc
    if not ids or any(not 1 <= i <= MAX_ID for i in ids):
        raise invalid("networks", f"at least one network id, each within 1..{MAX_ID}")
    return ids


NetworksDep = Annotated[list[int], Depends(parse_networks)]


class AlertIds(BaseModel):
    alert_ids: list[Id] = Field(min_length=1, max_length=500)


class SilenceRequest(AlertIds):
    #: Back to `new` at that time (None: until an operator acts).
    until: datetime | None = None

    @field_validator("until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a timezone (e.g. 2026-11-21T18:00:00Z)")
        return value


class EscalateRequest(AlertIds):
    note: Text | None = Field(default=None, max_length=2000)


@router.get(
    "",
    response_model=Envelope[list[FleetAlertPublic]],
    summary="Get fleet alerts (current alerts of the networks)",
)
async def get_fleet_alerts(
    operator: AlertsOperator, session: SessionDep, networks: NetworksDep
) -> dict[str, Any]:
    alerts = await service.current_alerts(session, networks)
    return {"code": 0, "data": await service.describe(session, alerts)}


@router.get("/history", response_model=Page[FleetAlertPublic], summary="Get fleet alerts history")
async def get_fleet_alerts_history(
    operator: AlertsOperator,
    session: SessionDep,
    networks: NetworksDep,
    keyset: KeysetDep,
    sort_by: Literal["creation_date", "alert_severity", "resolved_at"] | None = None,
    sort_dir: Literal["ASC", "DESC"] = "DESC",
    alert_type: AlertType | None = None,
    alert_severity: AlertSeverity | None = None,
    creation_date_min: date | None = None,
    creation_date_max: date | None = None,
    user_id: Annotated[Id | None, Query()] = None,
    email: Annotated[Text | None, Query(min_length=1)] = None,
    resolved_at_min: date | None = None,
    resolved_at_max: date | None = None,
    cluster_name: Annotated[Text | None, Query(min_length=1, max_length=50)] = None,
    cluster_id: Annotated[Id | None, Query()] = None,
    vehicle_id: Annotated[Id | None, Query()] = None,
    serial_number: Annotated[Text | None, Query(min_length=6, max_length=10)] = None,
    state: Annotated[list[AlertState] | None, Query()] = None,
) -> Page[FleetAlertPublic]:
    filters = service.HistoryFilters(
        networks=networks,
        sort_by=sort_by,
        sort_dir=sort_dir,
        alert_type=alert_type,
        alert_severity=alert_severity,
        creation_date_min=creation_date_min,
        creation_date_max=creation_date_max,
        user_id=user_id,
        email=email,
        resolved_at_min=resolved_at_min,
        resolved_at_max=resolved_at_max,
        cluster_name=cluster_name,
        cluster_id=cluster_id,
        vehicle_id=vehicle_id,
        serial_number=serial_number,
        state=state,
    )
    rows = await service.alert_history(session, filters, keyset)
    page, next_key = cut(rows, keyset, key=lambda a: a.id)
    return Page(
        data=[FleetAlertPublic.model_validate(d) for d in await service.describe(session, page)],
        total=await service.count_history(session, filters),
        next_primary_key=next_key,
    )


@router.post("/resolve", response_model=OkEnvelope, summary="Resolve alerts (several at once)")
async def resolve_alerts(
    operator: AlertsOperator, session: SessionDep, body: AlertIds
) -> dict[str, Any]:
    await service.resolve_alerts(
        session,
        body.alert_ids,
        operator_id=operator.user_id,
        allowed_networks=operator.networks,
    )
    await session.commit()
    return {"code": 0}


@router.post(
    "/silence",
    response_model=OkEnvelope,
    summary="Silence alerts (hidden from the current list)",
)
async def silence_alerts(
    operator: AlertsOperator, session: SessionDep, body: SilenceRequest
) -> dict[str, Any]:
    await service.silence_alerts(
        session,
        body.alert_ids,
        operator_id=operator.user_id,
        until=body.until,
        allowed_networks=operator.networks,
    )
    await session.commit()
    return {"code": 0}


@router.post("/escalate", response_model=OkEnvelope, summary="Escalate alerts (turned into a task)")
async def escalate_alerts(
    operator: AlertsOperator, session: SessionDep, body: EscalateRequest
) -> dict[str, Any]:
    await service.escalate_alerts(
        session,
        body.alert_ids,
        operator_id=operator.user_id,
        note=body.note,
        allowed_networks=operator.networks,
    )
    await session.commit()
    return {"code": 0}


@router.get(
    "/types",
    response_model=Envelope[list[AlertTypePublic]],
    summary="Alert types with their default severity",
)
async def get_alert_types(_operator: AlertsOperator) -> dict[str, Any]:
    from kickstand.cloud.alerts.types import DEFAULT_SEVERITY, SEED_003_NAMES

    return {
        "code": 0,
        "data": [
            {
                "alert_type": t.value,
                "default_severity": DEFAULT_SEVERITY[t].value,
                "seed_003_name": SEED_003_NAMES.get(t),
            }
            for t in AlertType
        ],
    }
