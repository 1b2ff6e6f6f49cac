"""Network rules that take effect (issue 16), on PostgreSQL: the rule versions a running
trip is judged by, network out-of-order periods refusing rents, hold semantics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from kickstand.cloud import badge_rides, trips
from kickstand.cloud.alerts.engine import AlertEngine
from kickstand.cloud.alerts.models import FleetAlert
from kickstand.cloud.alerts.types import AlertType
from kickstand.cloud.commands.issuer import CommandIssuer
from kickstand.cloud.ingest.tables import DeviceCommand
from kickstand.cloud.models import (
    Network,
    PricingRule,
    Rent,
    Spot,
    Station,
    Trip,
    TripStatus,
    Vehicle,
    VehicleState,
    VehicleType,
)
from kickstand.cloud.networks import service as networks
from kickstand.cloud.networks.models import NetworkOutOfOrder
from kickstand.cloud.seed import ALICE_BADGE_UID
from kickstand.protocol.signing import CommandSigner, generate_private_key
from kickstand.protocol.v1 import messages as m
from kickstand.protocol.v1.enums import BadgeOutcome, BadgeRefusal
from tests.cloud.networks.conftest import Net

pytestmark = pytest.mark.postgres

T = datetime(2026, 11, 18, 9, 0, 0, tzinfo=UTC)  # a Wednesday, 10:00 in Europe/Paris


def _rule(network_id: int, start: tuple[int, str], end: tuple[int, str], **kw: Any) -> PricingRule:
    return PricingRule(
        network_id=network_id,
        start_dow=start[0],
        start_hod=start[1],
        end_dow=end[0],
        end_hod=end[1],
        unlock_price=Decimal("1"),
        use_per_minute_price=Decimal("0.1"),
        on_hold_price=Decimal("0.05"),
        **kw,
    )


async def _running_trip(net: Net, serial: str, started_at: datetime) -> int:
    async with net.maker() as s, s.begin():
        vehicle_id = net.demo.vehicle_ids[serial]
        await s.execute(
            update(Vehicle).where(Vehicle.id == vehicle_id).values(state=VehicleState.RENTED)
        )
        trip = Trip(
            user_id=net.users["rider"],
            vehicle_id=vehicle_id,
            network_id=net.network_a,
            status=TripStatus.RUNNING,
            started_at=started_at,
            currency="EUR",
            hold_periods=[],
            version=1,
        )
        s.add(trip)
        await s.flush()
        return trip.id


async def test_operational_period_sweep_reads_the_rules_valid_at_each_trip_start(
    net: Net,
) -> None:
    """An all-week rule closed 30 min ago (replaced by a Monday-only one): the trip started
    under it rides in its operational period; the trip started after the change does not."""
    changed_at = T - timedelta(minutes=30)
    async with net.maker() as s, s.begin():
        # The demo's rules: closed long ago (versions the sweep must not read).
        await s.execute(
            update(PricingRule)
            .where(PricingRule.network_id == net.network_a)
            .values(valid_until=T - timedelta(days=3))
        )
        s.add(
            _rule(
                net.network_a,
                (0, "00:00:00"),
                (0, "00:00:00"),
                valid_from=T - timedelta(days=2),
                valid_until=changed_at,
            )
        )
        s.add(_rule(net.network_a, (1, "00:00:00"), (1, "01:00:00"), valid_from=changed_at))
    before = await _running_trip(net, "LYF001", T - timedelta(hours=1))
    after = await _running_trip(net, "LYF003", T - timedelta(minutes=10))

    engine = AlertEngine(clock=lambda: T)
    async with net.maker() as s, s.begin():
        await engine.sweep(s, T)
    async with net.maker() as s:
        alerts = (
            await s.scalars(
                select(FleetAlert).where(
                    FleetAlert.alert_type == AlertType.VEHICLE_OUTSIDE_OPERATIONAL_PERIOD
                )
            )
        ).all()
    assert [a.trip_id for a in alerts] == [after]
    assert before != after


async def _docked(net: Net, serial: str) -> tuple[str, int]:
    """The station device and spot number a demo vehicle is docked at."""
    async with net.maker() as s:
        row = (
            await s.execute(
                select(Station.device_id, Spot.displayed_number)
                .join(Spot, Spot.station_id == Station.id)
                .join(Vehicle, Vehicle.spot_id == Spot.id)
                .where(Vehicle.id == net.demo.vehicle_ids[serial])
            )
        ).one()
    return row[0], row[1]


async def test_badge_rides_refuse_a_decommissioned_vehicle(net: Net) -> None:
    """Online, the badge's rent goes through the one rentable rule (open_rent); offline (the
    station let it go on its own list), the removal is no ride and the vehicle stays
    decommissioned (it used to become RENTED, then available again at its dock)."""
    station, spot = await _docked(net, "LY0001")
    vehicle_id = net.demo.vehicle_ids["LY0001"]
    async with net.maker() as s, s.begin():
        # Alone at its station: the other docked vehicles leave the station.
        await s.execute(
            update(Vehicle)
            .where(
                Vehicle.spot_id.in_(
                    select(Spot.id).join(Station).where(Station.device_id == station)
                ),
                Vehicle.id != vehicle_id,
            )
            .values(spot_id=None)
        )
    done = await net.call(
        "operator",
        "POST",
        f"/v1/dashboard/vehicles/{vehicle_id}/decommission",
        params={"reason": "irreparable"},
    )
    assert done.status_code == 200, done.text

    issuer = CommandIssuer(
        CommandSigner(generate_private_key()), valid_s=30, sent_by="test", unlock_window_s=30
    )
    async with net.maker() as s, s.begin():
        decision = await badge_rides.present(s, issuer, station, ALICE_BADGE_UID, now=T)
    assert decision.outcome is BadgeOutcome.REFUSED
    assert decision.reason is BadgeRefusal.NO_VEHICLE and decision.commands == []

    at = datetime.now(UTC)
    async with net.maker() as s, s.begin():
        result = await trips.vehicle_removed(
            s, station, spot, "LY0001", at, badge_uid=ALICE_BADGE_UID
        )
    assert result.action == "ignored" and result.reason == "vehicle-decommissioned"
    async with net.maker() as s:
        vehicle = await s.get_one(Vehicle, vehicle_id)
        assert vehicle.state is VehicleState.DECOMMISSIONED and vehicle.spot_id is None
        assert (await s.scalars(select(Trip).where(Trip.vehicle_id == vehicle_id))).all() == []
        assert (await s.scalars(select(Rent).where(Rent.vehicle_id == vehicle_id))).all() == []


async def _rent(net: Net, key: str, **target: int) -> Any:
    return await net.client.post(
        "/v1/rents", json=target, headers={**net.headers["rider"], "Idempotency-Key": key}
    )


async def test_out_of_order_period_refuses_rents_and_shows_on_the_map(net: Net) -> None:
    url = f"/v1/dashboard/networks/{net.network_a}/out-of-order"
    now = datetime.now(UTC)
    area = {"lat": 45.76, "lng": 4.84, "latdeg": 0.2, "lngdeg": 0.2}
    before = (await net.call("rider", "GET", "/v1/map", params=area)).json()["data"]
    assert sum(c["available_vehicles"] for c in before["clusters"]) > 0
    assert all(c["exceptional_out_of_order"] is None for c in before["clusters"])

    # A period that starts tomorrow changes nothing today.
    later = await net.call(
        "operator",
        "POST",
        url,
        json={
            "type": "other",
            "reason": "works",
            "start_date": (now + timedelta(days=1)).isoformat(),
        },
    )
    assert later.status_code == 200, later.text
    # Winter, from a minute ago to the end of tomorrow's period: on now.
    on = await net.call(
        "operator",
        "POST",
        url,
        json={
            "type": "winter",
            "reason": "snow",
            "start_date": (now - timedelta(minutes=1)).isoformat(),
            "end_date": (now + timedelta(hours=1)).isoformat(),
        },
    )
    assert on.status_code == 200, on.text
    period_id = on.json()["data"]["out_of_order_id"]

    docked = await _rent(net, "out-of-order-1", vehicle_id=net.demo.vehicle_ids["LY0001"])
    assert docked.status_code == 409, docked.text
    assert docked.json()["reason"] == "network-out-of-order"
    assert "out of order" in docked.json()["message"]
    floating = await _rent(net, "out-of-order-2", vehicle_id=net.demo.vehicle_ids["LYF001"])
    assert floating.json()["reason"] == "network-out-of-order"

    shown = (await net.call("rider", "GET", "/v1/map", params=area)).json()["data"]
    assert shown["clusters"] and all(c["available_vehicles"] == 0 for c in shown["clusters"])
    marks = [c["exceptional_out_of_order"] for c in shown["clusters"]] + [
        v["exceptional_out_of_order"] for v in shown["vehicles"]
    ]
    assert marks and all(
        m
        == {
            "exceptional_out_of_order_id": period_id,
            "type": "winter",
            "reason": "snow",
            "custom_reason": None,
        }
        for m in marks
    )
    assert shown["vehicles"] and not any(v["is_available"] for v in shown["vehicles"])
    cluster_id = shown["clusters"][0]["cluster_id"]
    listed = await net.call("rider", "GET", f"/v1/clusters/{cluster_id}/vehicles")
    assert listed.status_code == 200, listed.text
    assert listed.json()["data"] and not any(v["is_accessible"] for v in listed.json()["data"])

    # Over (the operator's period ends): rents open again.
    async with net.maker() as s, s.begin():
        await s.execute(
            update(NetworkOutOfOrder)
            .where(NetworkOutOfOrder.id == period_id)
            .values(end_date=now - timedelta(seconds=1))
        )
    again = await _rent(net, "out-of-order-3", vehicle_id=net.demo.vehicle_ids["LYF001"])
    assert again.status_code == 201, again.text


async def test_reset_vehicles_settings_sends_each_idle_vehicle_its_normal_speed(net: Net) -> None:
    async with net.maker() as s, s.begin():
        network = await s.get_one(Network, net.network_a)
        await networks.set_speed_settings(
            s,
            network,
            {
                "vehicle_type": VehicleType.KICK_SCOOTER,
                "default_low_speed": 6,
                "default_medium_speed": 18,
                "default_high_speed": 25,
                "min_battery_to_slow_down": None,
                "battery_slow_down_speed": None,
            },
        )
        vehicles = (
            await s.scalars(select(Vehicle).where(Vehicle.network_id == net.network_a))
        ).all()
        types = {v.device_id: v.vehicle_type for v in vehicles if v.device_id is not None}
    await _running_trip(net, "LYF001", datetime.now(UTC))  # riding: its ride's limit stands
    transport = net.client._transport
    assert isinstance(transport, httpx.ASGITransport)
    gateway = transport.app.state.command_gateway  # type: ignore[attr-defined]
    url = f"/v1/dashboard/networks/{net.network_a}/reset-vehicles-settings"
    assert (await net.call("read-only", "POST", url)).status_code == 403
    r = await net.call("operator", "POST", url)
    assert r.status_code == 200, r.text
    expected = {d: 18 if t is VehicleType.KICK_SCOOTER else 25 for d, t in types.items()}
    del expected["vh-LYF001"]
    assert r.json()["data"] == {
        "network_id": net.network_a,
        "vehicles": len(expected),
        "outcomes": {"done": len(expected)},
    }
    sent = {c.device_id: c.command for c in gateway.sent}
    assert sent == {d: m.SetSpeedLimit(max_kmh=kmh) for d, kmh in expected.items()}
    async with net.maker() as s:
        rows = (await s.scalars(select(DeviceCommand))).all()
    assert {(row.device_id, row.command_type, row.operator_id) for row in rows} == {
        (d, "setspeedlimit", net.users["operator"]) for d in expected
    }


async def test_a_trip_not_returned_past_vehicle_stolen_raises_an_alert_until_it_ends(
    net: Net,
) -> None:
    async with net.maker() as s, s.begin():
        limit_s = (await s.get_one(Network, net.network_a)).vehicle_stolen
    late = await _running_trip(net, "LYF001", T - timedelta(seconds=limit_s + 60))
    await _running_trip(net, "LYF003", T - timedelta(seconds=limit_s - 60))

    async def sweep_and_read(now: datetime) -> list[FleetAlert]:
        async with net.maker() as s, s.begin():
            await AlertEngine(clock=lambda: now).sweep(s, now)
        async with net.maker() as s:
            return list(
                (
                    await s.scalars(
                        select(FleetAlert).where(
                            FleetAlert.alert_type == AlertType.VEHICLE_NOT_RETURNED
                        )
                    )
                ).all()
            )

    (alert,) = await sweep_and_read(T)
    assert alert.trip_id == late and alert.state.value == "new"
    assert alert.vehicle_id == net.demo.vehicle_ids["LYF001"]
    assert len(await sweep_and_read(T + timedelta(seconds=30))) == 1  # once, not per sweep
    async with net.maker() as s, s.begin():
        await s.execute(
            update(Trip)
            .where(Trip.id == late)
            .values(status=TripStatus.FINISHED, ended_at=T + timedelta(seconds=40))
        )
    (stopped,) = await sweep_and_read(T + timedelta(seconds=50))
    assert stopped.id == alert.id and stopped.state.value == "stopped"
