"""Permission entries are parsed strictly: a malformed one grants nothing, never raises."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kickstand.cloud.access.grants import networks_for, ou_snapshot, parse_grants

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)


def entry(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "perm_key": "stations",
        "write": True,
        "ou": ou_snapshot(3, [1], [], [], []),
    }
    return {**base, **changes}


def test_a_well_formed_entry_opens_its_networks() -> None:
    grants = parse_grants([entry(), entry(perm_key="trips", write=False)])
    assert networks_for(grants, "stations", write=True, now=NOW) == {1}
    assert networks_for(grants, "trips", write=False, now=NOW) == {1}
    assert networks_for(grants, "trips", write=True, now=NOW) == frozenset()
    assert networks_for(grants, "maintenances", write=False, now=NOW) == frozenset()


def test_a_global_entry_opens_every_network() -> None:
    assert networks_for(parse_grants([entry(ou=None)]), "stations", write=True, now=NOW) is None


@pytest.mark.parametrize(
    "bad",
    [
        entry(ou={"id": 3, "networks": ["1"]}),  # "1" is not a network id: no grant at all
        entry(ou={"id": 3, "networks": [True]}),
        entry(ou={"id": 3, "networks": 1}),
        entry(ou={"id": "3", "networks": [1]}),
        entry(ou="everything"),
        entry(write="yes"),
        {"perm_key": "stations", "ou": None},  # write missing
        {"perm_key": "stations", "write": True},  # ou missing (null is global, absent is not)
        entry(perm_key="vehicles"),  # not in seed 002's enum
        entry(start_date="yesterday"),
        entry(end_date="2026-01-01T00:00:00"),  # no time zone
        "stations",
        None,
        [],
    ],
)
def test_a_malformed_entry_grants_nothing_and_is_logged(
    bad: Any, caplog: pytest.LogCaptureFixture
) -> None:
    grants = parse_grants([bad], user_id=7)
    assert grants == []
    assert "event=permission_malformed user_id=7" in caplog.text


def test_malformed_entries_do_not_hide_good_ones() -> None:
    grants = parse_grants([{"ou": {"networks": ["x"]}}, entry()], user_id=1)
    assert networks_for(grants, "stations", write=True, now=NOW) == {1}


def test_not_a_list_grants_nothing() -> None:
    assert parse_grants({"perm_key": "stations"}) == []


def test_dates_bound_a_grant() -> None:
    later = (NOW + timedelta(days=1)).isoformat()
    earlier = (NOW - timedelta(days=1)).isoformat()
    grants = parse_grants([entry(start_date=later), entry(perm_key="trips", end_date=earlier)])
    assert networks_for(grants, "stations", write=True, now=NOW) == frozenset()
    assert networks_for(grants, "trips", write=True, now=NOW) == frozenset()
    grants = parse_grants([entry(start_date=earlier, end_date=later)])
    assert networks_for(grants, "stations", write=True, now=NOW) == {1}
