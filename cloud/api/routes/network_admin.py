"""Seed 002 Networks for operators: ``/v1/dashboard/networks/...`` (rules in
``kickstand.cloud.networks.service``). Writes need ``networks.manage`` with write access,
reads the same permission read-only; a network in the path goes through the check."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Query

from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.deps import GatewayDep, SessionDep, SessionmakerDep
from kickstand.cloud.api.ids import Id, Text
from kickstand.cloud.api.openapi import error_responses
from kickstand.cloud.api.pagination import KeysetDep
from kickstand.cloud.api.schemas import Envelope, OkEnvelope, Page
from kickstand.cloud.api.views import money_str
from kickstand.cloud.devices.service import DeviceCommands
from kickstand.cloud.keyset import cut
from kickstand.cloud.models import Network
from kickstand.cloud.networks import repository, service
from kickstand.cloud.networks.models import NetworkNotificationSetting
from kickstand.cloud.networks.schemas import (
    AccessRuleCreate,
    AccessRulePublic,
    AccessRuleUpdate,
    BalancingCreate,
    BalancingPublic,
    BalancingUpdate,
    DiscountPublic,
    DiscountUpdate,
    EstimatePublic,
    FreefloatRewardPublic,
    FreefloatRewardUpdate,
    NetworkCreate,
    NetworkDetail,
    NetworkItem,
    NetworkShort,
    NetworkSpeedSettingsPublic,
    NotificationFields,
    NotificationPublic,
    NotificationTarget,
    OutOfOrderCreate,
    OutOfOrderPublic,
    RentSettingsPublic,
    RentSettingsUpdate,
    RentTimingsUpdate,
    SpeedSettingsForm,
    SpeedSettingsPublic,
    SponsorshipUpdate,
    VehicleModelGuaranteeForm,
    VehicleModelGuaranteePublic,
    VehicleModelSettingsForm,
    VehicleModelSettingsPublic,
    VehiclesReset,
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
RuleId = Annotated[Id, Path(description="Identifier of the access rule.")]
ModelId = Annotated[Id, Path(description="The vehicle model identifier.")]
NotificationId = Annotated[Id, Path(description="The notification setting's identifier.")]


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
    network = await _network(session, operator, network_id)
    now = datetime.now(UTC)
    periods = await repository.out_of_orders(session, network.id)
    detail = NetworkDetail.of(network)
    detail.out_of_orders = [
        OutOfOrderPublic.of(p) for p in periods if p.end_date is None or p.end_date > now
    ]
    return Envelope(data=detail)


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
    """What takes effect: ``trip_max_pause`` (a trip on hold longer is ended by the ingest
    sweep), ``trip_auto_lock`` (a trip with a vehicle controller running longer is ended
    and the vehicle locked; 0: no maximum), ``vehicle_stolen`` (a trip still running past
    it raises the fleet alert vehicle-not-returned). Stored only: ``trip_auto_pause`` (no
    "the vehicle does not move" detection yet) and ``trip_too_long_notifications`` with
    its frequency (no rider notifications are sent yet)."""
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


# ── access rules ──────────────────────────────────────────────────────────────────────


@router.get(
    "/{network_id}/access-rules",
    response_model=Envelope[list[AccessRulePublic]],
    summary="Get access rules",
)
async def get_access_rules(
    operator: NetworksOperator, session: SessionDep, network_id: NetworkId
) -> Envelope[list[AccessRulePublic]]:
    network = await _network(session, operator, network_id)
    rules = await service.access_rules(session, network.id)
    return Envelope(data=[AccessRulePublic.of(r) for r in rules])


@router.post(
    "/{network_id}/access-rules", response_model=Envelope[int], summary="Create access rule"
)
async def create_access_rule(
    operator: NetworksOperator, session: SessionDep, network_id: NetworkId, body: AccessRuleCreate
) -> Envelope[int]:
    """The new rule's id; at least one of email_pattern, organization, app_label."""
    network = await _network(session, operator, network_id)
    rule = await service.add_access_rule(session, network, body.model_dump(), operator.networks)
    await session.commit()
    return Envelope(data=rule.id)


@router.put(
    "/{network_id}/access-rules/{rid}", response_model=OkEnvelope, summary="Update access rule"
)
async def update_access_rule(
    operator: NetworksOperator,
    session: SessionDep,
    network_id: NetworkId,
    rid: RuleId,
    body: AccessRuleUpdate,
) -> OkEnvelope:
    network = await _network(session, operator, network_id)
    rule = await service.get_access_rule(session, network, rid)
    await service.update_access_rule(session, rule, body.model_dump(), operator.networks)
    await session.commit()
    return OkEnvelope()


@router.delete(
    "/{network_id}/access-rules/{rid}", response_model=OkEnvelope, summary="Delete access rule"
)
async def delete_access_rule(
    operator: NetworksOperator, session: SessionDep, network_id: NetworkId, rid: RuleId
) -> OkEnvelope:
    network = await _network(session, operator, network_id)
    await session.delete(await service.get_access_rule(session, network, rid))
    await session.commit()
    return OkEnvelope()


# ── vehicle speed settings ────────────────────────────────────────────────────────────


@router.get(
    "/{network_id}/vehicle-speed-settings",
    response_model=Envelope[NetworkSpeedSettingsPublic],
    summary="Get networks vehicle speed settings",
)
async def get_speed_settings(
    operator: NetworksOperator, session: SessionDep, network_id: NetworkId
) -> Envelope[NetworkSpeedSettingsPublic]:
    network = await _network(session, operator, network_id)
    rows = await repository.speed_settings(session, network.id)
    return Envelope(
        data=NetworkSpeedSettingsPublic(
            network_id=network.id,
            vehicle_types=[
                SpeedSettingsPublic.model_validate(r, from_attributes=True) for r in rows
            ],
        )
    )


@router.put(
    "/{network_id}/vehicle-speed-settings",
    response_model=OkEnvelope,
    summary="Update networks vehicle speed settings",
)
async def update_speed_settings(
    operator: NetworksOperator,
    session: SessionDep,
    network_id: NetworkId,
    form: Annotated[SpeedSettingsForm, Form()],
) -> OkEnvelope:
    """Stored per vehicle type; a ride that starts is sent its type's normal speed
    (kickstand.cloud.freefloat.hook), "Reset vehicles settings" sends it to the others."""
    network = await _network(session, operator, network_id)
    await service.set_speed_settings(session, network, form.model_dump())
    await session.commit()
    return OkEnvelope()


@router.post(
    "/{network_id}/reset-vehicles-settings",
    response_model=Envelope[VehiclesReset],
    summary="Reset vehicles settings",
)
async def reset_vehicles_settings(
    operator: NetworksOperator,
    session: SessionDep,
    maker: SessionmakerDep,
    gateway: GatewayDep,
    network_id: NetworkId,
) -> Envelope[VehiclesReset]:
    """Every vehicle controller of the network not in a trip is sent its settings again
    (SetSpeedLimit at its type's normal speed), each recorded in its device's command
    history; the answer counts what the devices said."""
    network = await _network(session, operator, network_id)
    commands = await service.vehicle_settings(session, network)
    await session.close()  # nothing held while the devices are awaited
    answers = await DeviceCommands(maker, gateway, operator.user_id).plain_all(commands)
    return Envelope(
        data=VehiclesReset(
            network_id=network_id,
            vehicles=len(answers),
            outcomes=dict(Counter(a.outcome for a in answers)),
        )
    )


# ── notification settings ─────────────────────────────────────────────────────────────


async def _notification(
    session: SessionDep, operator: OperatorContext, network_id: int, notification_id: int
) -> tuple[Network, NetworkNotificationSetting]:
    network = await _network(session, operator, network_id)
    return network, await service.get_notification(session, network, notification_id)


async def _notification_public(
    session: SessionDep, setting: NetworkNotificationSetting
) -> NotificationPublic:
    return NotificationPublic.of(setting, list(await repository.targets_of(session, [setting.id])))


@router.get(
    "/{network_id}/notifications",
    response_model=Envelope[list[NotificationPublic]],
    summary="Get notification settings",
)
async def get_notifications(
    operator: NetworksOperator, session: SessionDep, network_id: NetworkId
) -> Envelope[list[NotificationPublic]]:
    network = await _network(session, operator, network_id)
    rows = await repository.notifications(session, network.id)
    return Envelope(data=[NotificationPublic.of(s, targets) for s, targets in rows])


@router.post(
    "/{network_id}/notifications",
    response_model=Envelope[NotificationPublic],
    summary="Create notification settings",
)
async def create_notification(
    operator: NetworksOperator,
    session: SessionDep,
    network_id: NetworkId,
    body: NotificationFields,
) -> Envelope[NotificationPublic]:
    network = await _network(session, operator, network_id)
    setting = NetworkNotificationSetting(network_id=network.id)
    service.set_notification(setting, body.model_dump())
    session.add(setting)
    await session.commit()
    return Envelope(data=NotificationPublic.of(setting, []))


@router.put(
    "/{network_id}/notifications/{notification_id}",
    response_model=OkEnvelope,
    summary="Update notification settings",
)
async def update_notification(
    operator: NetworksOperator,
    session: SessionDep,
    network_id: NetworkId,
    notification_id: NotificationId,
    body: NotificationFields,
) -> OkEnvelope:
    _, setting = await _notification(session, operator, network_id, notification_id)
    service.set_notification(setting, body.model_dump())
    await session.commit()
    return OkEnvelope()


@router.delete(
    "/{network_id}/notifications/{notification_id}",
    response_model=OkEnvelope,
    summary="Delete notification settings",
)
async def delete_notification(
    operator: NetworksOperator,
    session: SessionDep,
    network_id: NetworkId,
    notification_id: NotificationId,
) -> OkEnvelope:
    _, setting = await _notification(session, operator, network_id, notification_id)
    await session.delete(setting)
    await session.commit()
    return OkEnvelope()


@router.post(
    "/{network_id}/notifications/{notification_id}/targets",
    response_model=OkEnvelope,
    summary="Add notification target",
    responses=error_responses(409),
)
async def add_notification_target(
    operator: NetworksOperator,
    session: SessionDep,
    network_id: NetworkId,
    notification_id: NotificationId,
    body: NotificationTarget,
) -> OkEnvelope:
    """A user operating this network (or an admin), or an external email."""
    network, setting = await _notification(session, operator, network_id, notification_id)
    await service.add_target(session, network, setting, body.user_id, body.email)
    await session.commit()
    return OkEnvelope()


@router.delete(
    "/{network_id}/notifications/{notification_id}/targets",
    response_model=OkEnvelope,
    summary="Delete notification target",
)
async def delete_notification_target(
    operator: NetworksOperator,
    session: SessionDep,
    network_id: NetworkId,
    notification_id: NotificationId,
    user_id: Annotated[Id | None, Query()] = None,
    email: Annotated[Text | None, Query(max_length=255)] = None,
) -> OkEnvelope:
    _, setting = await _notification(session, operator, network_id, notification_id)
    await service.remove_target(session, setting, user_id, email)
    await session.commit()
    return OkEnvelope()


# ── estimate ──────────────────────────────────────────────────────────────────────────


@router.get(
    "/{network_id}/estimate", response_model=Envelope[EstimatePublic], summary="Get estimate"
)
async def get_estimate(
    operator: NetworksOperator,
    session: SessionDep,
    network_id: NetworkId,
    donor_cluster_id: Annotated[Id, Query(description="The cluster the trips start on.")],
    receiver_cluster_id: Annotated[Id, Query(description="The cluster the trips end on.")],
    fastest_trip_percentage: Annotated[int, Query(ge=1, le=50)],
) -> Envelope[EstimatePublic]:
    """The average duration of the ``fastest_trip_percentage`` % fastest finished trips
    between the clusters (at least one trip), and its price with the current rules."""
    network = await _network(session, operator, network_id)
    found = await service.estimate(
        session, network, donor_cluster_id, receiver_cluster_id, fastest_trip_percentage
    )
    return Envelope(
        data=EstimatePublic(
            donor_cluster_id=donor_cluster_id,
            receiver_cluster_id=receiver_cluster_id,
            fastest_trip_percentage=fastest_trip_percentage,
            trips_count=found.trips,
            sample_size=found.sample,
            average_duration=found.average_duration,
            estimated_price=money_str(found.price, network.currency),
            currency=network.currency,
        )
    )


# ── out of order ──────────────────────────────────────────────────────────────────────


@router.post(
    "/{network_id}/out-of-order",
    response_model=Envelope[OutOfOrderPublic],
    summary="Set out of order",
    responses=error_responses(409),
)
async def set_out_of_order(
    operator: NetworksOperator, session: SessionDep, network_id: NetworkId, body: OutOfOrderCreate
) -> Envelope[OutOfOrderPublic]:
    """A period (shown in the network detail until it ends); refused (409
    ``out-of-order-overlap``) when it meets another one."""
    network = await _network(session, operator, network_id)
    period = await service.set_out_of_order(session, network, operator.user, body.model_dump())
    await session.commit()
    return Envelope(data=OutOfOrderPublic.of(period))


# ── cluster balancing ─────────────────────────────────────────────────────────────────


@router.get(
    "/{network_id}/clusters-balancing",
    response_model=Envelope[list[BalancingPublic]],
    summary="Get clusters balancing",
)
async def get_balancing(
    operator: NetworksOperator, session: SessionDep, network_id: NetworkId
) -> Envelope[list[BalancingPublic]]:
    network = await _network(session, operator, network_id)
    rows = await repository.balancings(session, network.id)
    return Envelope(data=[BalancingPublic.model_validate(r, from_attributes=True) for r in rows])


@router.post(
    "/{network_id}/clusters-balancing",
    response_model=OkEnvelope,
    summary="Create cluster balancing",
    responses=error_responses(409),
)
async def create_balancing(
    operator: NetworksOperator, session: SessionDep, network_id: NetworkId, body: BalancingCreate
) -> OkEnvelope:
    network = await _network(session, operator, network_id)
    await service.add_balancing(session, network, body.model_dump())
    await session.commit()
    return OkEnvelope()


@router.put(
    "/{network_id}/clusters-balancing",
    response_model=OkEnvelope,
    summary="Update cluster balancing",
)
async def update_balancing(
    operator: NetworksOperator, session: SessionDep, network_id: NetworkId, body: BalancingUpdate
) -> OkEnvelope:
    network = await _network(session, operator, network_id)
    row = await service.get_balancing(session, network, body.cluster_id)
    row.target_count = body.target_count
    await session.commit()
    return OkEnvelope()


@router.delete(
    "/{network_id}/clusters-balancing",
    response_model=OkEnvelope,
    summary="Delete cluster balancing",
)
async def delete_balancing(
    operator: NetworksOperator,
    session: SessionDep,
    network_id: NetworkId,
    cluster_id: Annotated[Id, Query(description="The cluster's identifier.")],
) -> OkEnvelope:
    """Its discount routes go with it."""
    network = await _network(session, operator, network_id)
    await session.delete(await service.get_balancing(session, network, cluster_id))
    await session.commit()
    return OkEnvelope()


@router.get(
    "/{network_id}/clusters-balancing/discounts",
    response_model=Envelope[list[DiscountPublic]],
    summary="Get clusters balancing discounts",
)
async def get_discounts(
    operator: NetworksOperator, session: SessionDep, network_id: NetworkId
) -> Envelope[list[DiscountPublic]]:
    network = await _network(session, operator, network_id)
    rows = await repository.discounts(session, network.id)
    return Envelope(
        data=[
            DiscountPublic(
                network_id=d.network_id,
                donor_cluster_id=d.donor_cluster_id,
                receiver_cluster_id=d.receiver_cluster_id,
                discount_amount=money_str(d.discount_amount, network.currency) or "0",
            )
            for d in rows
        ]
    )


@router.put(
    "/{network_id}/clusters-balancing/discounts",
    response_model=OkEnvelope,
    summary="Update cluster balancing discount",
)
async def update_discount(
    operator: NetworksOperator, session: SessionDep, network_id: NetworkId, body: DiscountUpdate
) -> OkEnvelope:
    """The discount of trips from a donor to a receiver cluster (stored and served; not yet
    applied by billing)."""
    network = await _network(session, operator, network_id)
    await service.set_discount(session, network, body.model_dump())
    await session.commit()
    return OkEnvelope()


# ── vehicle models ────────────────────────────────────────────────────────────────────


@router.get(
    "/{network_id}/vehicle-models/settings",
    response_model=Envelope[list[VehicleModelSettingsPublic]],
    summary="Get networks vehicle models settings",
)
async def get_vehicle_model_settings(
    operator: NetworksOperator, session: SessionDep, network_id: NetworkId
) -> Envelope[list[VehicleModelSettingsPublic]]:
    network = await _network(session, operator, network_id)
    rows = await repository.vehicle_models(session, network.id)
    return Envelope(
        data=[
            VehicleModelSettingsPublic(
                model_id=r.model_id, auto_light=r.auto_light, speed_mode=r.speed_mode
            )
            for r in rows
            if r.auto_light is not None
        ]
    )


@router.get(
    "/{network_id}/vehicle-models/guarantees",
    response_model=Envelope[list[VehicleModelGuaranteePublic]],
    summary="Get networks vehicle models guarantees",
)
async def get_vehicle_model_guarantees(
    operator: NetworksOperator, session: SessionDep, network_id: NetworkId
) -> Envelope[list[VehicleModelGuaranteePublic]]:
    network = await _network(session, operator, network_id)
    rows = await repository.vehicle_models(session, network.id)
    return Envelope(
        data=[
            VehicleModelGuaranteePublic(
                model_id=r.model_id,
                guarantee=money_str(r.guarantee, network.currency) or "0",
                pre_auth=money_str(r.pre_auth, network.currency) or "0",
            )
            for r in rows
            if r.guarantee is not None and r.pre_auth is not None
        ]
    )


@router.put(
    "/{network_id}/vehicle-models/{model_id}/settings",
    response_model=OkEnvelope,
    summary="Update vehicle settings",
)
async def update_vehicle_model_settings(
    operator: NetworksOperator,
    session: SessionDep,
    network_id: NetworkId,
    model_id: ModelId,
    form: Annotated[VehicleModelSettingsForm, Form()],
) -> OkEnvelope:
    """Stored and served; vehicles are not told yet (device commands)."""
    network = await _network(session, operator, network_id)
    await service.set_vehicle_model(session, network, model_id, form.model_dump())
    await session.commit()
    return OkEnvelope()


@router.put(
    "/{network_id}/vehicle-models/{model_id}/guarantees",
    response_model=OkEnvelope,
    summary="Update vehicle guarantees",
)
async def update_vehicle_model_guarantees(
    operator: NetworksOperator,
    session: SessionDep,
    network_id: NetworkId,
    model_id: ModelId,
    form: Annotated[VehicleModelGuaranteeForm, Form()],
) -> OkEnvelope:
    """Stored and served; the rent path does not take pre-authorizations yet."""
    network = await _network(session, operator, network_id)
    await service.set_vehicle_model(session, network, model_id, form.model_dump())
    await session.commit()
    return OkEnvelope()
