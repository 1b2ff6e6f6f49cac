"""Seed 002 Networks for operators: ``/v1/dashboard/networks/...`` (rules in
``kickstand.cloud.networks.service``). Writes need ``networks.manage`` with write access,
reads the same permission read-only; a network in the path goes through the check."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.deps import SessionDep
from kickstand.cloud.api.ids import Id
from kickstand.cloud.api.openapi import error_responses
from kickstand.cloud.api.pagination import KeysetDep
from kickstand.cloud.api.schemas import Envelope, OkEnvelope, Page
from kickstand.cloud.keyset import cut
from kickstand.cloud.models import Network
from kickstand.cloud.networks import repository, service
from kickstand.cloud.networks.schemas import (
    FreefloatRewardPublic,
    FreefloatRewardUpdate,
    NetworkCreate,
    NetworkDetail,
    NetworkItem,
    NetworkShort,
    RentSettingsPublic,
    RentSettingsUpdate,
    RentTimingsUpdate,
    SponsorshipUpdate,
)
from kickstand.cloud.networks.service import (
    FREEFLOAT_REWARD,
    RENT_SETTINGS,
    RENT_TIMINGS,
    SPONSORSHIP,
)

router = APIRouter(prefix="/dashboard/networks", tags=["networks"])
# The one operator access check (kickstand.cloud.api.access).
NetworksOperator = Annotated[OperatorContext, Depends(Operator("networks.manage"))]
NetworkId = Annotated[Id, Path(description="Identifier of the network.")]


async def _network(session: SessionDep, operator: OperatorContext, network_id: int) -> Network:
    operator.check([network_id])
    return await service.get_network(session, network_id)


@router.get("", response_model=Page[NetworkItem], summary="Get networks")
async def get_networks(
    operator: NetworksOperator, session: SessionDep, keyset: KeysetDep
) -> Page[NetworkItem]:
    """Open networks within your scope, with their indicators (owner, creation date, total
    stations, vehicles and trips)."""
    rows, next_key = cut(
        await repository.network_page(session, operator.networks, keyset),
        keyset,
        key=lambda row: row[0].id,
    )
    return Page(
        data=[
            NetworkItem(
                network_id=n.id,
                name=n.name,
                currency=n.currency,
                timezone=n.timezone,
                third_party_id=n.third_party_id,
                created_at=n.created_at,
                total_stations=i.stations,
                total_vehicles=i.vehicles,
                total_trips=i.trips,
            )
            for n, i in rows
        ],
        next_primary_key=next_key,
    )


@router.post(
    "", response_model=Envelope[int], summary="Create a network", responses=error_responses(409)
)
async def create_network(
    operator: NetworksOperator, session: SessionDep, body: NetworkCreate
) -> Envelope[int]:
    """The new network's id. Unless your grant is global, the network is added to the
    organizational units through which you hold ``networks.manage``: you and your team
    operate it at once."""
    network = await service.create_network(
        session,
        operator.user,
        global_scope=operator.networks is None,
        fields=body.model_dump(),
    )
    operator.touched.append(network.id)
    await session.commit()
    return Envelope(data=network.id)


@router.get(
    "/short", response_model=Envelope[list[NetworkShort]], summary="Get short networks list"
)
async def get_short_networks(
    operator: NetworksOperator, session: SessionDep
) -> Envelope[list[NetworkShort]]:
    """Your authorized networks in activity, by name (the dashboard's network selector)."""
    rows = await repository.open_networks(session, operator.networks)
    return Envelope(data=[NetworkShort(network_id=i, name=name) for i, name in rows])


@router.get("/{network_id}", response_model=Envelope[NetworkDetail], summary="Get network detail")
async def get_network(
    operator: NetworksOperator, session: SessionDep, network_id: NetworkId
) -> Envelope[NetworkDetail]:
    return Envelope(data=NetworkDetail.of(await _network(session, operator, network_id)))


@router.delete(
    "/{network_id}",
    response_model=OkEnvelope,
    summary="Delete a network",
    responses=error_responses(409),
)
async def delete_network(
    operator: NetworksOperator, session: SessionDep, network_id: NetworkId
) -> OkEnvelope:
    """Close the network for good; refused (409 ``network-in-use``) while it has stations,
    vehicles or running trips."""
    await service.close_network(session, await _network(session, operator, network_id))
    await session.commit()
    return OkEnvelope()


@router.get(
    "/{network_id}/rent-settings",
    response_model=Envelope[RentSettingsPublic],
    summary="Get rent settings",
)
async def get_rent_settings(
    operator: NetworksOperator, session: SessionDep, network_id: NetworkId
) -> Envelope[RentSettingsPublic]:
    return Envelope(data=RentSettingsPublic.of(await _network(session, operator, network_id)))


@router.put(
    "/{network_id}/rent-settings", response_model=OkEnvelope, summary="Update rent settings"
)
async def update_rent_settings(
    operator: NetworksOperator,
    session: SessionDep,
    network_id: NetworkId,
    body: RentSettingsUpdate,
) -> OkEnvelope:
    """Read by the rent path from the next rent on (simultaneous rents, battery to rent)."""
    network = await _network(session, operator, network_id)
    service.update(network, body.model_dump(), RENT_SETTINGS)
    await session.commit()
    return OkEnvelope()


@router.put("/{network_id}/rent-timings", response_model=OkEnvelope, summary="Update rent timings")
async def update_rent_timings(
    operator: NetworksOperator,
    session: SessionDep,
    network_id: NetworkId,
    body: RentTimingsUpdate,
) -> OkEnvelope:
    network = await _network(session, operator, network_id)
    service.update(network, body.model_dump(), RENT_TIMINGS)
    await session.commit()
    return OkEnvelope()


@router.put(
    "/{network_id}/sponsorship", response_model=OkEnvelope, summary="Update network sponsorship"
)
async def update_sponsorship(
    operator: NetworksOperator,
    session: SessionDep,
    network_id: NetworkId,
    body: SponsorshipUpdate,
) -> OkEnvelope:
    """The rewards of sponsorship, in the network's currency (shown in the network detail)."""
    network = await _network(session, operator, network_id)
    service.update(network, body.model_dump(), SPONSORSHIP)
    await session.commit()
    return OkEnvelope()


@router.get(
    "/{network_id}/freefloat-to-station-reward",
    response_model=Envelope[FreefloatRewardPublic],
    summary="Get freefloat to station reward",
)
async def get_freefloat_reward(
    operator: NetworksOperator, session: SessionDep, network_id: NetworkId
) -> Envelope[FreefloatRewardPublic]:
    return Envelope(data=FreefloatRewardPublic.of(await _network(session, operator, network_id)))


@router.put(
    "/{network_id}/freefloat-to-station-reward",
    response_model=OkEnvelope,
    summary="Update freefloat to station reward",
)
async def update_freefloat_reward(
    operator: NetworksOperator,
    session: SessionDep,
    network_id: NetworkId,
    body: FreefloatRewardUpdate,
) -> OkEnvelope:
    """Stored and served; granting the rewards at a trip's end is not built yet."""
    network = await _network(session, operator, network_id)
    service.update(network, body.model_dump(exclude_unset=True), FREEFLOAT_REWARD)
    await session.commit()
    return OkEnvelope()
