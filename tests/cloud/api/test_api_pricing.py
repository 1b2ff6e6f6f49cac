"""The pricing API serves the rules and how a trip is priced with them (docs/pricing.md):
the rule for trips crossing a window and the rounding, in the response and in OpenAPI; the
docs' worked examples are what the engine bills with the rules the API serves."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from kickstand.cloud.billing import BILLING_RULE, Rule, RuleBook, compute_cost
from tests.cloud.api.support import Api

DOCS = Path(__file__).resolve().parents[3] / "docs" / "pricing.md"


async def _pricing(api: Api) -> dict[str, Any]:
    r = await api.client.get(f"/v1/networks/{api.demo.network_id}/pricing")
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    return body


async def test_the_pricing_says_how_a_trip_is_priced(api: Api) -> None:
    body = await _pricing(api)
    assert body["code"] == 0 and len(body["data"]) == 2  # the seeds' shape, unchanged
    rule = body["billing_rule"]
    assert (rule["timezone"], rule["currency"], rule["minor_unit"]) == ("Europe/Paris", "EUR", 2)
    assert {k: rule[k] for k in BILLING_RULE} == BILLING_RULE
    assert "minute by minute at the rule of each minute" in rule["minutes"]
    assert "rounded once" in rule["rounding"] and "half up" in rule["rounding"]
    assert "kickstand.cloud.billing" not in str(body)  # no pointer to our code


async def test_openapi_documents_the_billing_rule(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    op = spec["paths"]["/v1/networks/{network_id}/pricing"]["get"]
    assert "kickstand.cloud.billing" not in op["summary"]
    assert BILLING_RULE["rounding"] in op["description"]
    schema = spec["components"]["schemas"]["BillingRule"]
    assert schema["properties"]["minor_unit"]["description"]


def _book(body: dict[str, Any]) -> RuleBook:
    rules = [
        Rule(
            p["start_dow"],
            p["start_hod"],
            p["end_dow"],
            p["end_hod"],
            Decimal(p["unlock_price"]),
            p["unlock_included_time"],
            Decimal(p["use_per_minute_price"]),
            Decimal(p["on_hold_price"]),
            Decimal(p["freefloat_lock_price"]),
            id=p["pricing_id"],
        )
        for p in body["data"]
    ]
    return RuleBook(rules, body["billing_rule"]["timezone"])


@pytest.mark.parametrize(
    ("start", "end", "total"),
    [
        # Sunday 2026-11-22 23:50 → Monday 00:20 Paris: 0.50 + 10 × 0.15 + 20 × 0.10
        ((2026, 11, 22, 23, 50, 0), (2026, 11, 23, 0, 20, 0), "4.00"),
        # Saturday 10:00:00 → 10:10:01: eleven started minutes at 0.15, after 0.50
        ((2026, 11, 21, 10, 0, 0), (2026, 11, 21, 10, 10, 1), "2.15"),
    ],
)
async def test_the_docs_examples_are_what_the_rules_served_bill(
    api: Api, start: tuple[int, ...], end: tuple[int, ...], total: str
) -> None:
    body = await _pricing(api)
    paris = ZoneInfo(body["billing_rule"]["timezone"])
    cost = compute_cost(
        _book(body),
        body["billing_rule"]["currency"],
        datetime(*start, tzinfo=paris),  # type: ignore[misc]
        datetime(*end, tzinfo=paris),  # type: ignore[misc]
    )
    assert str(cost.total) == total
    assert f"**{total} EUR**" in DOCS.read_text() or f"= {total}" in DOCS.read_text()
