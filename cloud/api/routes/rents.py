"""Rents: unlock a vehicle (spot or free-floating) with an Idempotency-Key; current rents.

``POST /v1/rents`` translates HTTP only: the flow is :mod:`kickstand.cloud.rent_flow`, its
HTTP answers and their storage under the key :mod:`kickstand.cloud.api.rent_answers`, the
key itself :mod:`kickstand.cloud.api.idempotency`. A retry with the same key gets the stored
response (``Idempotent-Replayed: true``); a retry while the first is still in flight waits
for it.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from kickstand.cloud.api.deps import (
    ClaimsDep,
    GatewayDep,
    SessionDep,
    SettingsDep,
    verify_rider,
)
from kickstand.cloud.api.idempotency import RentIdempotency
from kickstand.cloud.api.openapi import error_responses
from kickstand.cloud.api.rent_answers import unlock_response
from kickstand.cloud.api.schemas import Envelope, RentCreate, RentPublic
from kickstand.cloud.api.views import rider_rents

router = APIRouter(prefix="/rents", tags=["rents"])


@router.post(
    "",
    status_code=201,
    response_model=Envelope[RentPublic],
    summary="Unlock (rent) a vehicle at a spot or a free-floating one",
    description="Requires an `Idempotency-Key` header: a retried request returns the first "
    "answer and never opens a second rent or trip. The trip starts (and billing with it) "
    "only when the vehicle leaves the spot.",
    responses=error_responses(402, 409, 504),
)
async def create_rent(
    body: RentCreate,
    claims: ClaimsDep,
    settings: SettingsDep,
    gateway: GatewayDep,
    idem: RentIdempotency,
) -> JSONResponse:
    return await unlock_response(body, claims, idem, settings, gateway)


@router.get(
    "", response_model=Envelope[list[RentPublic]], summary="My current rents and trips in progress"
)
async def current_rents(claims: ClaimsDep, session: SessionDep) -> Envelope[list[RentPublic]]:
    # Riders' apps poll this while a rent is open: three reads, nothing loaded twice.
    await verify_rider(session, claims)
    return Envelope(data=await rider_rents(session, claims.user_id))
