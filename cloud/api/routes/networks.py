"""Networks: all or in an area, by distance, detail (rent timings)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from sqlalchemy import select

from kickstand.cloud.api.deps import SessionDep
from kickstand.cloud.api.errors import invalid_fields, not_found
from kickstand.cloud.api.geo import BBox, haversine_m
from kickstand.cloud.api.ids import Id
from kickstand.cloud.api.schemas import (
    BillingRule,
    Envelope,
    NetworkByDistance,
    NetworkDetail,
    NetworkPublic,
    PricingEnvelope,
    PricingRulePublic,
)
from kickstand.cloud.api.views import in_area, money_str, network_public
from kickstand.cloud.billing import BILLING_RULE, minor_unit
from kickstand.cloud.models import Network, PricingRule

router = APIRouter(prefix="/networks", tags=["networks"])


@router.get(
    "",
    response_model=Envelope[list[NetworkPublic]],
    summary="All networks, or those in an area (lat, lng, latdeg, lngdeg all given)",
)
async def list_networks(
    session: SessionDep,
    lat: Annotated[float | None, Query(ge=-90, le=90)] = None,
    lng: Annotated[float | None, Query(ge=-180, le=180)] = None,
    latdeg: Annotated[float | None, Query(ge=0, le=180)] = None,
    lngdeg: Annotated[float | None, Query(ge=0, le=360)] = None,
) -> Envelope[list[NetworkPublic]]:
    area = (lat, lng, latdeg, lngdeg)
    if any(v is not None for v in area) and not all(v is not None for v in area):
        raise invalid_fields(
            "give all of lat, lng, latdeg and lngdeg for an area, or none of them",
            [
                {"field": n, "message": "required with the other area parameters"}
                for n, v in zip(("lat", "lng", "latdeg", "lngdeg"), area, strict=True)
                if v is None
            ],
        )
    networks = (
        await session.scalars(select(Network).where(Network.is_public).order_by(Network.id))
    ).all()
    if lat is not None and lng is not None and latdeg is not None and lngdeg is not None:
        box = BBox(lat, lng, latdeg, lngdeg)
        networks = [n for n in networks if in_area(n, box)]
    return Envelope(data=[network_public(n) for n in networks])


@router.get(
    "/by-distance",
    response_model=Envelope[list[NetworkByDistance]],
    summary="All networks, nearest first",
)
async def networks_by_distance(
    session: SessionDep,
    lat: Annotated[float, Query(ge=-90, le=90)],
    lng: Annotated[float, Query(ge=-180, le=180)],
) -> Envelope[list[NetworkByDistance]]:
    networks = (await session.scalars(select(Network).where(Network.is_public))).all()
    items = []
    for n in networks:
        if n.center_latitude is None or n.center_longitude is None:
            continue
        distance = round(haversine_m(lat, lng, n.center_latitude, n.center_longitude))
        items.append(NetworkByDistance(**network_public(n).model_dump(), distance=distance))
    items.sort(key=lambda i: i.distance)
    return Envelope(data=items)


@router.get(
    "/{network_id}", response_model=Envelope[NetworkDetail], summary="Network rent settings"
)
async def network_detail(
    session: SessionDep, network_id: Annotated[Id, Path()]
) -> Envelope[NetworkDetail]:
    n = await session.get(Network, network_id)
    if n is None or n.closed_at is not None:  # closed: "Delete a network"
        raise not_found("network", network_id)
    return Envelope(
        data=NetworkDetail(
            network_id=n.id,
            allow_trip_on_hold=n.trip_on_hold,
            max_simultaneous_rented_vehicle=n.max_simultaneous_rented_vehicle,
            trip_too_long=n.trip_too_long_notifications,
            trip_auto_pause=n.trip_auto_pause,
            trip_max_pause=n.trip_max_pause,
            trip_auto_lock=n.trip_auto_lock,
        )
    )


@router.get(
    "/{network_id}/pricing",
    response_model=PricingEnvelope,
    summary="Pricing rules of a network, and how a trip is priced with them",
    description="`data`: the network's pricing rules. `billing_rule`: how a trip is priced "
    "with them, the same text as docs/pricing.md.\n\n"
    + "\n\n".join(f"**{key}**: {text}" for key, text in BILLING_RULE.items()),
)
async def network_pricing(
    session: SessionDep, network_id: Annotated[Id, Path()]
) -> PricingEnvelope:
    n = await session.get(Network, network_id)
    if n is None or n.closed_at is not None:  # closed: "Delete a network"
        raise not_found("network", network_id)
    rules = (
        await session.scalars(
            select(PricingRule)
            # The rules in force now (older versions price the trips that started under them).
            .where(PricingRule.network_id == n.id, PricingRule.valid_until.is_(None))
            .order_by(PricingRule.id)
        )
    ).all()
    return PricingEnvelope(
        data=[
            PricingRulePublic(
                pricing_id=r.id,
                network_id=n.id,
                start_dow=r.start_dow,
                start_hod=r.start_hod,
                end_dow=r.end_dow,
                end_hod=r.end_hod,
                unlock_price=money_str(r.unlock_price, n.currency) or "0",
                unlock_included_time=r.unlock_included_time,
                freefloat_lock_price=money_str(r.freefloat_lock_price, n.currency) or "0",
                use_per_minute_price=str(r.use_per_minute_price.normalize()),
                on_hold_price=str(r.on_hold_price.normalize()),
                currency=n.currency,
            )
            for r in rules
        ],
        billing_rule=BillingRule(
            timezone=n.timezone,
            currency=n.currency,
            minor_unit=minor_unit(n.currency),
            **BILLING_RULE,
        ),
    )
