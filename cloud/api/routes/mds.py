"""MDS 2.0 provider API for a city's agency at ``/mds/…`` (documents in
``kickstand.cloud.feeds.mds.service``; mapping and limits in docs/feeds.md), and the
operator's issuing of agency tokens at ``/v1/dashboard/networks/{network_id}/mds-tokens``.

``/mds`` asks for ``Accept: application/vnd.mds+json;version=2.0`` (406 otherwise, as
MDS versioning says) and ``Authorization: Bearer <agency token>`` (401); the token opens
one network. Hours are ``YYYY-MM-DDTHH`` UTC: 400 when missing or malformed, 404 for an
hour not over yet or before the network existed. Outside the OpenAPI document (the
success bodies are MDS's, not our envelope); errors are our envelope.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response

from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.deps import BearerDep, SessionDep, TelemetryDep
from kickstand.cloud.api.errors import (
    bad_request,
    not_acceptable,
    not_found,
    telemetry_unavailable,
    unauthenticated,
)
from kickstand.cloud.api.ids import Id
from kickstand.cloud.api.openapi import error_responses
from kickstand.cloud.api.pagination import KeysetDep
from kickstand.cloud.api.schemas import Envelope, Page
from kickstand.cloud.errors import InvalidInputError
from kickstand.cloud.feeds.ids import parse_mds_id
from kickstand.cloud.feeds.mds import service
from kickstand.cloud.feeds.mds.models import MdsAgencyToken
from kickstand.cloud.feeds.mds.schemas import MdsTokenCreate, MdsTokenIssued, MdsTokenPublic
from kickstand.cloud.keyset import cut
from kickstand.cloud.models import Network
from kickstand.cloud.telemetry import TelemetryError

log = logging.getLogger("kickstand.cloud.api.routes.mds")
feed = APIRouter(prefix="/mds", tags=["mds"], include_in_schema=False)
router = APIRouter(prefix="/dashboard/networks", tags=["mds"])
# The one operator access check: a city's access is part of running the network.
MdsOperator = Annotated[OperatorContext, Depends(Operator("networks.manage"))]
NetworkId = Annotated[Id, Path(description="Identifier of the network.")]
TokenId = Annotated[Id, Path(description="Identifier of the agency token.")]


# ── the agency's API ───────────────────────────────────────────────────────────────────


async def agency_network(request: Request, session: SessionDep, bearer: BearerDep) -> Network:
    """The network the agency's token opens, once the version asked for is ours."""
    if not service.accepts(request.headers.get("accept")):
        raise not_acceptable(
            f"send Accept: {service.CONTENT_TYPE} (MDS versioning; only {service.MEDIA_VERSION}"
            " is served)"
        )
    if bearer is None:
        raise unauthenticated("send Authorization: Bearer <agency token>")
    network_id = await service.authenticate(session, bearer.credentials)
    network = await session.get(Network, network_id) if network_id is not None else None
    await session.commit()
    if network is None:
        raise unauthenticated("unknown or revoked agency token")
    return network


AgencyNetwork = Annotated[Network, Depends(agency_network)]


def _mds(body: dict[str, Any]) -> Response:
    return Response(
        json.dumps({"version": service.VERSION, **body}, separators=(",", ":")),
        media_type=service.CONTENT_TYPE,
    )


def _realtime(now: datetime) -> dict[str, Any]:
    return {"last_updated": service.ms(now), "ttl": service.TTL_MS}


def _id(kind: str, value: str) -> int:
    found = parse_mds_id(kind, value)
    if found is None:
        raise not_found(kind, value)
    return found


def _hour(network: Network, value: str | None, field: str, now: datetime) -> datetime:
    if value is None:
        raise bad_request(field, "required: an hour YYYY-MM-DDTHH (UTC)")
    try:
        start = service.parse_hour(value, field)
    except InvalidInputError as exc:
        raise bad_request(field, str(exc)) from exc
    if not service.hour_served(network, start, now):
        raise not_found("hour", f"{value} (not over yet, or before the network existed)")
    return start


def _link(request: Request, **params: Any) -> str:
    query = {k: v for k, v in request.query_params.items() if k not in params}
    query.update({k: str(v) for k, v in params.items() if v is not None})
    return str(request.url.replace_query_params(**query))


@feed.get("/vehicles", summary="MDS vehicles (keyset pages, JSON API links)")
async def vehicles(
    request: Request, session: SessionDep, network: AgencyNetwork, keyset: KeysetDep
) -> Response:
    rows = await service.vehicles(session, network, keyset)
    page, next_key = cut(rows, keyset, key=lambda v: v.id)
    first = str(request.url.remove_query_params("last_primary_key"))
    return _mds(
        {
            "vehicles": [service.vehicle_doc(network.id, v) for v in page],
            "links": {
                "first": first,
                "next": _link(request, last_primary_key=next_key) if next_key else None,
            },
        }
    )


@feed.get("/vehicles/status", summary="MDS vehicle status (near real time)")
async def vehicles_status(session: SessionDep, network: AgencyNetwork) -> Response:
    now = datetime.now(UTC)
    found = await service.vehicles_status(session, network, now)
    return _mds({**_realtime(now), "vehicles_status": found})


@feed.get("/vehicles/status/{device_id}", summary="MDS status of one vehicle")
async def vehicle_status(device_id: str, session: SessionDep, network: AgencyNetwork) -> Response:
    now = datetime.now(UTC)
    found = await service.vehicles_status(session, network, now, _id("vehicle", device_id))
    return _mds({**_realtime(now), "vehicles_status": found})


@feed.get("/vehicles/{device_id}", summary="MDS vehicle")
async def vehicle(device_id: str, session: SessionDep, network: AgencyNetwork) -> Response:
    row = await service.vehicle(session, network, _id("vehicle", device_id))
    return _mds({"vehicles": [service.vehicle_doc(network.id, row)]})


@feed.get("/trips", summary="MDS trips that ended in an hour")
async def trips(
    session: SessionDep, network: AgencyNetwork, end_time: str | None = None
) -> Response:
    start = _hour(network, end_time, "end_time", datetime.now(UTC))
    return _mds({"trips": await service.trips(session, network, start)})


@feed.get("/telemetry", summary="MDS telemetry of an hour")
async def telemetry(
    session: SessionDep,
    network: AgencyNetwork,
    store: TelemetryDep,
    telemetry_time: str | None = None,
) -> Response:
    """503 while the telemetry store cannot answer: an hour without its ride points would
    look complete to the agency."""
    now = datetime.now(UTC)
    start = _hour(network, telemetry_time, "telemetry_time", now)
    try:
        points = await service.telemetry(session, network, start, now, store)
    except (TelemetryError, OSError) as exc:
        log.warning("event=mds_telemetry_unavailable error=%s", exc)
        raise telemetry_unavailable() from exc
    return _mds({"telemetry": points})


@feed.get("/events/historical", summary="MDS events of an hour")
async def events_historical(
    session: SessionDep, network: AgencyNetwork, event_time: str | None = None
) -> Response:
    now = datetime.now(UTC)
    start = _hour(network, event_time, "event_time", now)
    end = start + timedelta(hours=1)
    return _mds({"events": await service.events(session, network, start, end, now)})


def _ms_param(value: str | None, field: str, now: datetime) -> datetime:
    if value is None or not value.isdigit() or len(value) > 15:
        raise bad_request(field, "required: a timestamp in milliseconds since the epoch")
    at = datetime.fromtimestamp(int(value) / 1000, UTC)
    if at < now - service.RECENT_WINDOW:
        raise bad_request(field, "more than two weeks ago: use /mds/events/historical")
    return at


@feed.get("/events/recent", summary="MDS events of the last two weeks")
async def events_recent(
    session: SessionDep,
    network: AgencyNetwork,
    start_time: str | None = None,
    end_time: str | None = None,
) -> Response:
    now = datetime.now(UTC)
    start = _ms_param(start_time, "start_time", now)
    end = _ms_param(end_time, "end_time", now)
    if end <= start:
        raise bad_request("end_time", "must be after start_time")
    return _mds({"events": await service.events(session, network, start, end, now)})


@feed.get("/stops", summary="MDS stops (our stations)")
async def stops(session: SessionDep, network: AgencyNetwork) -> Response:
    now = datetime.now(UTC)
    return _mds({**_realtime(now), "stops": await service.stops(session, network, now)})


@feed.get("/stops/{stop_id}", summary="MDS stop")
async def stop(stop_id: str, session: SessionDep, network: AgencyNetwork) -> Response:
    now = datetime.now(UTC)
    found = await service.stops(session, network, now, _id("stop", stop_id))
    return _mds({**_realtime(now), "stops": found})


# ── the operator's tokens ──────────────────────────────────────────────────────────────


def _public(row: MdsAgencyToken) -> MdsTokenPublic:
    return MdsTokenPublic.model_validate(row, from_attributes=True)


@router.post(
    "/{network_id}/mds-tokens",
    response_model=Envelope[MdsTokenIssued],
    summary="Issue an MDS agency token",
    responses=error_responses(404),
)
async def issue_token(
    network_id: NetworkId, body: MdsTokenCreate, session: SessionDep, operator: MdsOperator
) -> Envelope[MdsTokenIssued]:
    operator.check([network_id])
    row, token = await service.issue_token(session, network_id, body.name, operator.user_id)
    return Envelope(data=MdsTokenIssued(**_public(row).model_dump(), token=token))


@router.get(
    "/{network_id}/mds-tokens",
    response_model=Page[MdsTokenPublic],
    summary="Get the MDS agency tokens of a network",
)
async def list_tokens(
    network_id: NetworkId, session: SessionDep, operator: MdsOperator, keyset: KeysetDep
) -> Page[MdsTokenPublic]:
    operator.check([network_id])
    rows = await service.list_tokens(session, network_id, keyset)
    page, next_key = cut(rows, keyset, key=lambda r: r.id)
    return Page(data=[_public(r) for r in page], next_primary_key=next_key)


@router.delete(
    "/{network_id}/mds-tokens/{token_id}",
    response_model=Envelope[MdsTokenPublic],
    summary="Revoke an MDS agency token",
    responses=error_responses(404),
)
async def revoke_token(
    network_id: NetworkId, token_id: TokenId, session: SessionDep, operator: MdsOperator
) -> Envelope[MdsTokenPublic]:
    operator.check([network_id])
    row = await service.revoke_token(session, network_id, token_id)
    return Envelope(data=_public(row))
