"""The free-floating return check prices with the rule versions valid at the trip's start
(as the trip's billing does): a price change made during the ride does not show in the
rider's return preview nor in the trip's recorded return (issue 16, bug 2)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from kickstand.cloud.models import PricingRule, TripStatus
from kickstand.protocol.v1 import messages as m
from kickstand.protocol.v1.enums import LockCause
from tests.cloud.freefloat.conftest import Env
from tests.cloud.freefloat.test_freefloat_rides import T0, ride, start_ride, t

pytestmark = pytest.mark.postgres


async def reprice_during_the_ride(env: Env, lock_price: Decimal) -> None:
    """What "Update pricing" does (close the version, add its successor), one minute
    after the trip started."""
    changed_at = T0 + timedelta(minutes=1)
    async with env.sessionmaker() as s, s.begin():
        rules = (
            await s.scalars(
                select(PricingRule).where(
                    PricingRule.network_id == env.refs.network_id,
                    PricingRule.valid_until.is_(None),
                )
            )
        ).all()
        assert rules
        for old in rules:
            old.valid_until = changed_at
            s.add(
                PricingRule(
                    network_id=old.network_id,
                    start_dow=old.start_dow,
                    start_hod=old.start_hod,
                    end_dow=old.end_dow,
                    end_hod=old.end_hod,
                    unlock_price=old.unlock_price,
                    unlock_included_time=old.unlock_included_time,
                    use_per_minute_price=old.use_per_minute_price,
                    on_hold_price=old.on_hold_price,
                    freefloat_lock_price=lock_price,
                    valid_from=changed_at,
                    replaces_id=old.id,
                )
            )


async def preview(env: Env, trip_id: int) -> dict[str, str]:
    r = await env.client.get(f"/v1/freefloat/trips/{trip_id}/return", headers=await env.login())
    assert r.status_code == 200, r.text
    check: dict[str, str] = r.json()["data"]
    assert check["kind"] == "outside-parking"
    return check


async def test_return_check_prices_with_the_rules_of_the_trip_start(env: Env) -> None:
    scooter = env.scooter()
    await start_ride(env, scooter)
    await ride(scooter, [4.8545, 4.8550, 4.8560], 90)  # beyond the forbidden zone: no parking
    (trip,) = await env.trips_of("LYF002")
    # The preview prices a lock now (whichever rule's window holds now): read it first.
    before = Decimal((await preview(env, trip.id))["freefloat_lock_price"])
    assert before != Decimal("3.00")
    await reprice_during_the_ride(env, Decimal("3.00"))
    assert Decimal((await preview(env, trip.id))["freefloat_lock_price"]) == before

    await scooter.send(m.Locked(0, LockCause.MANUAL, None), t(1200))  # a Wednesday morning
    (trip,) = await env.trips_of("LYF002")
    assert trip.status is TripStatus.FINISHED and trip.cost_detail is not None
    assert Decimal(trip.cost_detail["return"]["freefloat_lock_price"]) == Decimal("0.50")
    assert Decimal(trip.cost_detail["freefloat_lock_price"]) == Decimal("0.50")
    assert trip.cost == Decimal("3.00")  # 1.00 + 15 min × 0.10 + 0.50, as before the change
