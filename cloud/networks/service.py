"""The rules of networks for operators (seed 002 Networks and Pricing).

* A network is created by an operator holding ``networks.manage`` with write access. An
  operator whose grant is not global gets the new network added to the organizational
  units through which it holds that grant (``access.service.save_unit``, which rewrites
  every grant naming the unit): the creator's team, not the creator alone, runs it — as
  for the networks it already runs.
* "Delete a network" closes it for good (``closed_at``; hidden from listings and riders)
  and is refused while it still has stations, vehicles or running trips.
* Pricing rules are versions. Adding one starts it now; an update closes the rule and adds
  its successor; a delete closes it. Billing prices a trip with the versions valid when the
  trip started (``trips.rule_book``), so an edit never reprices a running trip.
* Windows of one network either do not meet, or one lies strictly inside the other (the
  documented override: the shortest window is in force). Partial overlaps and equal
  windows are refused: which rule applies there would depend on ids, not on intent.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud import trips
from kickstand.cloud.access import service as access
from kickstand.cloud.access.grants import parse_grants
from kickstand.cloud.access.models import OrganizationalUnit
from kickstand.cloud.billing import WEEK_S, Rule, compute_cost, minor_unit
from kickstand.cloud.errors import (
    ConflictError,
    InvalidInputError,
    InvalidPricingRuleError,
    NoPricingRuleError,
    NotFoundError,
)
from kickstand.cloud.geofence.model import MAX_SPEED_MAX
from kickstand.cloud.models import Network, PricingRule, User, UserRole, Vehicle
from kickstand.cloud.networks import repository
from kickstand.cloud.networks.models import (
    BalancingDiscount,
    ClusterBalancing,
    NetworkAccessRule,
    NetworkNotificationSetting,
    NetworkNotificationTarget,
    NetworkOutOfOrder,
    NetworkSpeedSettings,
    NetworkVehicleModel,
)
from kickstand.protocol.v1 import messages as m

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Rent settings and timings an operator edits (seed 002 "Update rent settings/timings").
RENT_SETTINGS = (
    "default_vehicle_guarantee", "trip_to_skip_pre_auth_guarantee", "first_purchase_required",
    "min_battery_to_rent", "max_simultaneous_rented_vehicle", "trip_on_hold",
    "credit_depletion_auto_lock", "min_battery_to_auto_lock",
)  # fmt: skip
RENT_TIMINGS = (
    "trip_too_long_notifications", "trip_too_long_notifications_frequency", "vehicle_stolen",
    "trip_auto_pause", "trip_max_pause", "trip_auto_lock",
)  # fmt: skip
FREEFLOAT_REWARD = (
    "freefloat_to_station_discount_per_km", "freefloat_to_station_free_credits",
    "freefloat_to_receiver_station_free_credits", "freefloat_to_station_min_battery",
)  # fmt: skip
SPONSORSHIP = ("sponsoring_reward", "sponsored_reward")
PRICING_FIELDS = (
    "start_dow", "start_hod", "end_dow", "end_hod", "unlock_price", "unlock_included_time",
    "freefloat_lock_price", "use_per_minute_price", "on_hold_price",
)  # fmt: skip


def _now() -> datetime:
    return datetime.now(UTC)


def _check_amount(network: Network, field: str, value: Decimal) -> None:
    """A fixed amount fits the network's currency (cents for EUR)."""
    places = minor_unit(network.currency)
    if Decimal(value) != Decimal(value).quantize(Decimal(1).scaleb(-places)):
        raise InvalidInputError(
            f"{network.currency} amounts have {places} decimal places", field=field
        )


async def _of_network(
    session: AsyncSession, model: type[T], key: Any, network: Network, what: str
) -> T:
    """The row of ``model`` at ``key`` if it belongs to ``network`` (else not found)."""
    row = await session.get(model, key)
    if row is None or getattr(row, "network_id", None) != network.id:
        raise NotFoundError(what, key)
    return row


# ── networks ──────────────────────────────────────────────────────────────────────────


async def get_network(session: AsyncSession, network_id: int) -> Network:
    """An open network (a closed one is gone for operators too)."""
    network = await session.get(Network, network_id)
    if network is None or network.closed_at is not None:
        raise NotFoundError("network", network_id)
    return network


async def _creator_units(session: AsyncSession, creator: User) -> list[OrganizationalUnit]:
    now = _now()
    ou_ids = sorted(
        {
            g.ou_id
            for g in parse_grants(creator.permissions, user_id=creator.id)
            if g.perm_key == "networks.manage" and g.write and g.active(now) and g.ou_id
        }
    )
    return [await access.get_unit(session, ou_id) for ou_id in ou_ids]


async def create_network(
    session: AsyncSession, creator: User, *, global_scope: bool, fields: dict[str, Any]
) -> Network:
    """A new network; a creator without a global grant reaches it through its units."""
    if await repository.name_taken(session, fields["name"]):
        raise ConflictError(
            f"a network named {fields['name']!r} exists", reason="network-name-taken"
        )
    network = Network(**fields)
    session.add(network)
    await session.flush()
    if not global_scope and creator.role != UserRole.ADMIN:
        units = await _creator_units(session, creator)
        if not units:  # a scope that is not global comes from units: cannot happen
            raise ConflictError(
                "your networks.manage grant names no organizational unit to add the network to",
                reason="no-unit",
            )
        for unit in units:
            await access.save_unit(session, unit, {"networks": [*unit.networks, network.id]})
    log.info("event=network_created network_id=%s by=%s", network.id, creator.id)
    return network


async def close_network(session: AsyncSession, network: Network) -> None:
    used = {k: v for k, v in (await repository.in_use(session, network.id)).items() if v}
    if used:
        raise ConflictError(
            f"network {network.id} still has "
            + ", ".join(f"{v} {k}" for k, v in used.items())
            + ": move or remove them first",
            reason="network-in-use",
        )
    network.closed_at = _now()
    network.is_public = False
    log.info("event=network_closed network_id=%s", network.id)


def update(network: Network, fields: dict[str, Any], allowed: Sequence[str]) -> None:
    """Set settings (only the names ``allowed``: a route's body is its whole group)."""
    for name in allowed:
        if name in fields:
            setattr(network, name, fields[name])


# ── pricing ───────────────────────────────────────────────────────────────────────────


def _rule(fields: dict[str, Any], rule_id: int | None = None) -> Rule:
    try:
        return Rule(**{k: fields[k] for k in PRICING_FIELDS}, id=rule_id)
    except InvalidPricingRuleError as exc:
        raise InvalidInputError(str(exc), field="start_hod") from exc


def _inside(inner: Rule, outer: Rule) -> bool:
    # The whole week has no edge to cross: a window wrapping over Sunday is inside it too.
    if outer.length_s == WEEK_S:
        return True
    return (inner.start_s - outer.start_s) % WEEK_S + inner.length_s <= outer.length_s


def _overlap(a: Rule, b: Rule) -> bool:
    return a.contains(b.start_s % WEEK_S) or b.contains(a.start_s % WEEK_S)


def check_window(new: Rule, others: Sequence[PricingRule]) -> None:
    """Refuse a window that partially overlaps, or equals, one of ``others``."""
    for other in others:
        old = Rule.of(other)
        if not _overlap(new, old):
            continue
        nested = new.length_s != old.length_s and (_inside(new, old) or _inside(old, new))
        if not nested:
            raise ConflictError(
                f"the window overlaps pricing rule {other.id} without lying inside it or "
                "containing it (the shortest window is in force where windows overlap)",
                reason="pricing-overlap",
            )


def _check_money(network: Network, fields: dict[str, Any]) -> None:
    """Fixed amounts fit the network's currency; per-minute prices keep 4 decimals."""
    for name in ("unlock_price", "freefloat_lock_price"):
        _check_amount(network, name, fields[name])


def _new_rule(network: Network, fields: dict[str, Any], at: datetime) -> PricingRule:
    return PricingRule(
        network_id=network.id,
        **{k: fields[k] for k in PRICING_FIELDS},
        valid_from=at,
    )


async def add_rule(session: AsyncSession, network: Network, fields: dict[str, Any]) -> PricingRule:
    await repository.lock_network(session, network.id)
    _check_money(network, fields)
    check_window(_rule(fields), await repository.current_rules(session, [network.id]))
    rule = _new_rule(network, fields, _now())
    session.add(rule)
    await session.flush()
    return rule


async def get_rule(session: AsyncSession, rule_id: int) -> PricingRule:
    rule = await session.get(PricingRule, rule_id)
    if rule is None:
        raise NotFoundError("pricing rule", rule_id)
    return rule


def _closed(rule: PricingRule) -> ConflictError:
    assert rule.valid_until is not None
    return ConflictError(
        f"pricing rule {rule.id} was replaced or deleted on {rule.valid_until.isoformat()}",
        reason="pricing-rule-closed",
    )


async def replace_rule(
    session: AsyncSession, rule: PricingRule, network: Network, fields: dict[str, Any]
) -> PricingRule:
    """Close ``rule`` now and add its successor (trips started before keep ``rule``)."""
    await repository.lock_network(session, network.id)
    await session.refresh(rule)
    if rule.valid_until is not None:
        raise _closed(rule)
    _check_money(network, fields)
    others = [r for r in await repository.current_rules(session, [network.id]) if r.id != rule.id]
    check_window(_rule(fields), others)
    now = _now()
    rule.valid_until = now
    successor = _new_rule(network, fields, now)
    successor.replaces_id = rule.id
    session.add(successor)
    await session.flush()
    return successor


async def delete_rule(session: AsyncSession, rule: PricingRule) -> None:
    await repository.lock_network(session, rule.network_id)
    await session.refresh(rule)
    if rule.valid_until is not None:
        raise _closed(rule)
    rule.valid_until = _now()


# ── access rules ──────────────────────────────────────────────────────────────────────


async def _check_rule_fields(
    session: AsyncSession, fields: dict[str, Any], scope: frozenset[int] | None
) -> None:
    """``scope``: the operator's networks (None: every one). An organization named must be
    one the operator reaches already: a rule cannot be the way into another network's
    customers."""
    if all(fields.get(k) is None for k in ("email_pattern", "organization", "app_label")):
        raise InvalidInputError(
            "give at least one of email_pattern, organization, app_label", field="email_pattern"
        )
    if fields.get("organization") is not None:
        try:
            await access.reachable_organization(session, fields["organization"], scope)
        except NotFoundError as exc:
            raise InvalidInputError("no such organization", field="organization") from exc


async def access_rules(session: AsyncSession, network_id: int) -> Sequence[NetworkAccessRule]:
    return await repository.access_rules(session, network_id)


async def add_access_rule(
    session: AsyncSession,
    network: Network,
    fields: dict[str, Any],
    scope: frozenset[int] | None,
) -> NetworkAccessRule:
    await _check_rule_fields(session, fields, scope)
    rule = NetworkAccessRule(network_id=network.id)
    _set_access_rule(rule, fields)
    session.add(rule)
    await session.flush()
    return rule


def _set_access_rule(rule: NetworkAccessRule, fields: dict[str, Any]) -> None:
    rule.email_pattern = fields.get("email_pattern")
    rule.organization_id = fields.get("organization")
    rule.app_label_id = fields.get("app_label")


async def get_access_rule(
    session: AsyncSession, network: Network, rule_id: int
) -> NetworkAccessRule:
    return await _of_network(session, NetworkAccessRule, rule_id, network, "access rule")


async def update_access_rule(
    session: AsyncSession,
    rule: NetworkAccessRule,
    fields: dict[str, Any],
    scope: frozenset[int] | None,
) -> None:
    await _check_rule_fields(session, fields, scope)
    _set_access_rule(rule, fields)


# ── vehicle speed settings ────────────────────────────────────────────────────────────


def check_speeds(fields: dict[str, Any]) -> None:
    low, medium, high = (fields[f"default_{k}_speed"] for k in ("low", "medium", "high"))
    if not low <= medium <= high:
        raise InvalidInputError("speeds go low ≤ medium ≤ high", field="default_medium_speed")
    battery, slow = fields["min_battery_to_slow_down"], fields["battery_slow_down_speed"]
    if (battery is None) != (slow is None):
        raise InvalidInputError(
            "give both min_battery_to_slow_down and battery_slow_down_speed, or neither",
            field="battery_slow_down_speed",
        )
    if slow is not None and slow > high:
        raise InvalidInputError(
            "the slow-down speed is at most the high speed", field="battery_slow_down_speed"
        )


async def set_speed_settings(
    session: AsyncSession, network: Network, fields: dict[str, Any]
) -> NetworkSpeedSettings:
    check_speeds(fields)
    row = await session.get(NetworkSpeedSettings, (network.id, fields["vehicle_type"]))
    if row is None:
        row = NetworkSpeedSettings(network_id=network.id, vehicle_type=fields["vehicle_type"])
        session.add(row)
    for name in SPEED_FIELDS:
        setattr(row, name, fields[name])
    return row


SPEED_FIELDS = (
    "default_low_speed", "default_medium_speed", "default_high_speed",
    "min_battery_to_slow_down", "battery_slow_down_speed",
)  # fmt: skip


async def normal_speed(session: AsyncSession, vehicle: Vehicle) -> int | None:
    """The speed limit a vehicle of this network rides at outside speed zones (km/h): its
    type's normal speed (``default_medium_speed``), the ``battery_slow_down_speed`` when
    its battery is below ``min_battery_to_slow_down``; None when the network sets no
    speeds for its type (the vehicle's own maximum then)."""
    row = await session.get(NetworkSpeedSettings, (vehicle.network_id, vehicle.vehicle_type))
    if row is None:
        return None
    limit = row.default_medium_speed
    if (
        row.min_battery_to_slow_down is not None
        and row.battery_slow_down_speed is not None
        and vehicle.battery_level is not None
        and vehicle.battery_level < row.min_battery_to_slow_down
    ):
        limit = min(limit, row.battery_slow_down_speed)
    return limit


async def vehicle_settings(
    session: AsyncSession, network: Network
) -> list[tuple[str, m.SetSpeedLimit]]:
    """Seed 002 "Reset vehicles settings": what each vehicle controller of the network is
    sent again: its type's normal speed (:func:`normal_speed`; the vehicle's full speed
    where the network sets none). Decommissioned vehicles and vehicles in a trip (their
    ride's limit is the ride's, zones included) are left alone."""
    vehicles = await repository.vehicles_to_reset(session, network.id)
    return [
        (v.device_id, m.SetSpeedLimit(max_kmh=await normal_speed(session, v) or MAX_SPEED_MAX))
        for v in vehicles
        if v.device_id is not None
    ]


# ── notification settings ─────────────────────────────────────────────────────────────


async def get_notification(
    session: AsyncSession, network: Network, notification_id: int
) -> NetworkNotificationSetting:
    return await _of_network(
        session, NetworkNotificationSetting, notification_id, network, "notification setting"
    )


def set_notification(setting: NetworkNotificationSetting, fields: dict[str, Any]) -> None:
    setting.notification_type = fields["notification_type"]
    setting.alert_types = sorted(set(fields["alert_types"]))
    setting.alert_severities = sorted(set(fields["alert_severities"]))
    setting.check_interval = fields["check_interval"]
    setting.check_delay = fields["check_delay"]


async def add_target(
    session: AsyncSession,
    network: Network,
    setting: NetworkNotificationSetting,
    user_id: int | None,
    email: str | None,
) -> None:
    """A user who works on the network (an operator of it, or an admin), or an email."""
    if (user_id is None) == (email is None):
        raise InvalidInputError("give user_id or email (one of them)", field="user_id")
    if user_id is not None:
        user = await session.get(User, user_id)
        if user is None or not (
            user.role == UserRole.ADMIN
            or (
                user.role == UserRole.OPERATOR
                and network.id in await access.user_networks(session, user)
            )
        ):
            raise InvalidInputError(
                "the target must be an operator of this network", field="user_id"
            )
    if await repository.find_target(session, setting.id, user_id, email) is not None:
        raise ConflictError("already a target of this notification", reason="target-exists")
    session.add(NetworkNotificationTarget(notification_id=setting.id, user_id=user_id, email=email))
    await session.flush()


async def remove_target(
    session: AsyncSession,
    setting: NetworkNotificationSetting,
    user_id: int | None,
    email: str | None,
) -> None:
    if (user_id is None) == (email is None):
        raise InvalidInputError("give user_id or email (one of them)", field="user_id")
    target = await repository.find_target(session, setting.id, user_id, email)
    if target is None:
        raise NotFoundError("notification target", user_id or email)
    await session.delete(target)


# ── estimate ──────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Estimate:
    trips: int
    sample: int
    #: Seconds; None without any trip between the clusters.
    average_duration: int | None
    #: The price of that duration with the network's current rules, starting now.
    price: Decimal | None


async def estimate(
    session: AsyncSession, network: Network, donor: int, receiver: int, percentage: int
) -> Estimate:
    """Average duration of the ``percentage`` % fastest trips donor → receiver (at least
    one trip), priced by the billing engine as a trip of that duration starting now."""
    owners = await repository.cluster_networks(session, [donor, receiver])
    for cluster in (donor, receiver):
        if owners.get(cluster) != network.id:
            raise NotFoundError("cluster", cluster)
    durations = await repository.trip_durations(session, network.id, donor, receiver)
    if not durations:
        return Estimate(0, 0, None, None)
    sample = durations[: max(1, math.ceil(len(durations) * percentage / 100))]
    average = round(sum(sample) / len(sample))
    now = _now()
    try:
        book = await trips.rule_book(session, network)
        cost = compute_cost(book, network.currency, now, now + timedelta(seconds=average))
        price: Decimal | None = cost.total
    except NoPricingRuleError:
        price = None
    return Estimate(len(durations), len(sample), average, price)


# ── out of order ──────────────────────────────────────────────────────────────────────


async def set_out_of_order(
    session: AsyncSession, network: Network, by: User, fields: dict[str, Any]
) -> NetworkOutOfOrder:
    """A new period; refused when it ends before it starts or meets another period."""
    start, end = fields["start_date"], fields["end_date"]
    if end is not None and end <= start:
        raise InvalidInputError("must be after start_date", field="end_date")
    await repository.lock_network(session, network.id)
    for other in await repository.out_of_orders(session, network.id):
        if (other.end_date is None or start < other.end_date) and (
            end is None or other.start_date < end
        ):
            raise ConflictError(
                f"the network is already out of order from {other.start_date.isoformat()}"
                + (f" to {other.end_date.isoformat()}" if other.end_date else ""),
                reason="out-of-order-overlap",
            )
    period = NetworkOutOfOrder(network_id=network.id, created_by=by.id, **fields)
    session.add(period)
    await session.flush()
    return period


# ── cluster balancing ─────────────────────────────────────────────────────────────────


async def _network_cluster(session: AsyncSession, network: Network, cluster_id: int) -> None:
    owners = await repository.cluster_networks(session, [cluster_id])
    if owners.get(cluster_id) != network.id:
        raise NotFoundError("cluster", cluster_id)


async def get_balancing(
    session: AsyncSession, network: Network, cluster_id: int
) -> ClusterBalancing:
    return await _of_network(session, ClusterBalancing, cluster_id, network, "cluster balancing")


async def add_balancing(
    session: AsyncSession, network: Network, fields: dict[str, Any]
) -> ClusterBalancing:
    await _network_cluster(session, network, fields["cluster_id"])
    if await session.get(ClusterBalancing, fields["cluster_id"]) is not None:
        raise ConflictError(
            f"cluster {fields['cluster_id']} is already balanced", reason="balancing-exists"
        )
    row = ClusterBalancing(network_id=network.id, **fields)
    session.add(row)
    await session.flush()
    return row


async def set_discount(
    session: AsyncSession, network: Network, fields: dict[str, Any]
) -> BalancingDiscount:
    """A donor → receiver route's discount, in the network's currency."""
    for field, kind in (("donor_cluster_id", "donor"), ("receiver_cluster_id", "receiver")):
        row = await session.get(ClusterBalancing, fields[field])
        if row is None or row.network_id != network.id or row.balancing_type != kind:
            raise InvalidInputError(
                f"not a {kind} cluster of this network's balancing", field=field
            )
    amount = Decimal(fields["discount_amount"])
    _check_amount(network, "discount_amount", amount)
    key = (fields["donor_cluster_id"], fields["receiver_cluster_id"])
    discount = await session.get(BalancingDiscount, key)
    if discount is None:
        discount = BalancingDiscount(
            donor_cluster_id=key[0], receiver_cluster_id=key[1], network_id=network.id
        )
        session.add(discount)
    discount.discount_amount = amount
    return discount


# ── vehicle models ────────────────────────────────────────────────────────────────────


async def set_vehicle_model(
    session: AsyncSession, network: Network, model_id: int, fields: dict[str, Any]
) -> NetworkVehicleModel:
    """Settings or guarantees of a model on the network (the other half is kept)."""
    row = await session.get(NetworkVehicleModel, (network.id, model_id))
    if row is None:
        row = NetworkVehicleModel(network_id=network.id, model_id=model_id)
        session.add(row)
    for name, value in fields.items():
        if name in ("guarantee", "pre_auth"):
            _check_amount(network, name, value)
        setattr(row, name, value)
    return row
