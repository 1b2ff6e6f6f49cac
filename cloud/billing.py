"""Pure pricing engine: the price of a trip from its times, hold periods and pricing rules.

The rules it applies (also shown to riders in the trip detail):

* A pricing rule covers a week window ``[start_dow start_hod, end_dow end_hod)`` in the
  network's local time (``zoneinfo``), ``0`` = Sunday; ``24:00:00`` may end a window. A
  window whose end is not after its start wraps over the week boundary (Sat → Mon);
  equal start and end mean the whole week. When several windows contain an instant,
  the shortest window wins (a night rule overrides the all-week default); ties go to the
  rule listed first.
* The unlock price and the included time come from the rule in force when the trip starts.
  The included time counts from the start, whatever the trip does (riding or on-hold).
* After the included time the trip is cut into minutes from that point. **Each started
  minute is charged in full**, at the per-minute price (``use_per_minute_price``) of the
  rule in force at the minute's first second, or at its ``on_hold_price`` if the trip is
  on hold at that second. Minutes are real (UTC) minutes: a DST change never adds or
  removes billed time.
* Billing ends at ``min(ended_at, billing_stopped_at)`` ("stop trip billing").
* A trip that ends free-floating adds the ``freefloat_lock_price`` of the rule in force
  at its end.
* Money is Decimal throughout, summed exactly and rounded **once** at the end to the
  currency's minor unit, ROUND_HALF_UP.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from kickstand.cloud.errors import InvalidPricingRuleError, NoPricingRuleError

WEEK_S = 7 * 86400
MINUTE = timedelta(minutes=1)
_HOD = re.compile(r"^(?:(?P<h>[0-1]?\d|2[0-3]):(?P<m>[0-5]\d):(?P<s>[0-5]\d)|(?P<full>24:00:00))$")

#: ISO 4217 minor units that are not 2 (all others: 2).
_MINOR_UNITS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0,
    "XPF": 0, "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    "CLF": 4,
}  # fmt: skip


#: How a trip is priced, in the words the pricing API serves beside the rules
#: (``GET /v1/networks/{id}/pricing``, ``billing_rule``) and docs/pricing.md repeats: the
#: module docstring above, for riders and integrators. Each key names one decision of
#: :func:`compute_cost`; ``tests/cloud/test_billing.py`` holds the engine to every one.
BILLING_RULE: dict[str, str] = {
    "window": "A rule covers a week window [start_dow start_hod, end_dow end_hod) in the "
    "network's local time, 0 = Sunday; a window whose end is not after its start wraps over "
    "the week; equal start and end cover the whole week. Where windows overlap, the shortest "
    "one is in force; between windows of equal length, the lowest pricing_id.",
    "unlock": "The unlock price and the included time (unlock_included_time, seconds) are "
    "those of the rule in force when the trip starts; the included time counts from the "
    "start, riding or on hold.",
    "minutes": "After the included time the trip is cut into real (UTC) minutes. Each minute "
    "is priced at the rule in force at its first second: use_per_minute_price, or "
    "on_hold_price if the trip is on hold at that second. A trip crossing from one window "
    "into another is therefore priced minute by minute at the rule of each minute "
    "(weekend 23:50 to Monday 00:20: ten minutes at the weekend price, twenty at the "
    "weekday price). A change of daylight-saving time adds or removes no billed minute.",
    "rounding": "Each started minute is charged in full. The amounts are summed exactly and "
    "the total is rounded once, at the end, half up, to the currency's minor unit (cents "
    "for EUR).",
    "end": "Billing ends when the trip ends or when its billing was stopped, whichever is "
    "first. A trip ending free-floating adds the freefloat_lock_price of the rule in force "
    "at its end.",
}


def minor_unit(currency: str) -> int:
    return _MINOR_UNITS.get(currency.upper(), 2)


def round_money(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-minor_unit(currency)), rounding=ROUND_HALF_UP)


def parse_hod(value: str) -> int:
    """'HH:MM:SS' (or '24:00:00') → seconds since local midnight."""
    match = _HOD.match(value)
    if not match:
        raise InvalidPricingRuleError(f"hour of day {value!r} is not HH:MM:SS (00:00:00–24:00:00)")
    if match.group("full"):
        return 86400
    return int(match.group("h")) * 3600 + int(match.group("m")) * 60 + int(match.group("s"))


class PricingRuleLike(Protocol):
    """What the engine reads from a rule (the ORM model satisfies it)."""

    id: Any
    start_dow: int
    start_hod: str
    end_dow: int
    end_hod: str
    unlock_price: Decimal
    unlock_included_time: int
    use_per_minute_price: Decimal
    on_hold_price: Decimal
    freefloat_lock_price: Decimal


@dataclass(frozen=True)
class Rule:
    start_dow: int
    start_hod: str
    end_dow: int
    end_hod: str
    unlock_price: Decimal
    unlock_included_time: int
    use_per_minute_price: Decimal
    on_hold_price: Decimal
    freefloat_lock_price: Decimal = Decimal("0")
    id: Any = None
    start_s: int = field(init=False, repr=False)
    end_s: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for dow in (self.start_dow, self.end_dow):
            if not 0 <= dow <= 6:
                raise InvalidPricingRuleError(f"day of week {dow} not in 0..6 (0 = Sunday)")
        for name in (
            "unlock_price",
            "use_per_minute_price",
            "on_hold_price",
            "freefloat_lock_price",
        ):
            value = Decimal(getattr(self, name))
            if value < 0:
                raise InvalidPricingRuleError(f"{name} must be ≥ 0, got {value}")
            object.__setattr__(self, name, value)
        if self.unlock_included_time < 0:
            raise InvalidPricingRuleError("unlock_included_time must be ≥ 0")
        object.__setattr__(self, "start_s", self.start_dow * 86400 + parse_hod(self.start_hod))
        object.__setattr__(self, "end_s", self.end_dow * 86400 + parse_hod(self.end_hod))

    @classmethod
    def of(cls, rule: PricingRuleLike) -> Rule:
        if isinstance(rule, Rule):
            return rule
        return cls(
            start_dow=rule.start_dow,
            start_hod=rule.start_hod,
            end_dow=rule.end_dow,
            end_hod=rule.end_hod,
            unlock_price=rule.unlock_price,
            unlock_included_time=int(rule.unlock_included_time),
            use_per_minute_price=rule.use_per_minute_price,
            on_hold_price=rule.on_hold_price,
            freefloat_lock_price=rule.freefloat_lock_price,
            id=rule.id,
        )

    @property
    def length_s(self) -> int:
        length = (self.end_s - self.start_s) % WEEK_S
        return length or WEEK_S

    def contains(self, second_of_week: int) -> bool:
        return (second_of_week - self.start_s) % WEEK_S < self.length_s


def second_of_week(instant: datetime, tz: ZoneInfo) -> int:
    local = instant.astimezone(tz)
    dow = (local.weekday() + 1) % 7  # Python: Monday = 0; seeds: Sunday = 0
    return dow * 86400 + local.hour * 3600 + local.minute * 60 + local.second


class RuleBook:
    """The rules of one network, with the lookup of the rule in force."""

    def __init__(
        self, rules: Iterable[PricingRuleLike], timezone: str, network_id: int | None = None
    ):
        self.rules = [Rule.of(r) for r in rules]
        self.tz = ZoneInfo(timezone)
        self.network_id = network_id
        # Shortest window first; stable sort keeps the listed order for ties.
        self._by_priority = sorted(self.rules, key=lambda r: r.length_s)

    def rule_at(self, instant: datetime) -> Rule:
        sow = second_of_week(instant, self.tz)
        for rule in self._by_priority:
            if rule.contains(sow):
                return rule
        raise NoPricingRuleError(self.network_id, instant.astimezone(self.tz))


@dataclass
class CostLine:
    rule_id: Any
    kind: str  # "riding" | "on-hold"
    minutes: int
    unit_price: Decimal

    @property
    def amount(self) -> Decimal:
        return self.unit_price * self.minutes


@dataclass
class TripCost:
    total: Decimal
    currency: str
    unlock_price: Decimal
    unlock_rule_id: Any
    included_seconds: int
    billable_seconds: int
    riding_minutes: int
    on_hold_minutes: int
    freefloat_lock_price: Decimal
    lines: list[CostLine]
    unrounded_total: Decimal

    def as_json(self) -> dict[str, Any]:
        return {
            "total": str(self.total),
            "currency": self.currency,
            "unlock_price": str(self.unlock_price),
            "unlock_rule_id": self.unlock_rule_id,
            "included_seconds": self.included_seconds,
            "billable_seconds": self.billable_seconds,
            "riding_minutes": self.riding_minutes,
            "on_hold_minutes": self.on_hold_minutes,
            "freefloat_lock_price": str(self.freefloat_lock_price),
            "unrounded_total": str(self.unrounded_total),
            "lines": [
                {
                    "rule_id": line.rule_id,
                    "kind": line.kind,
                    "minutes": line.minutes,
                    "unit_price": str(line.unit_price),
                    "amount": str(line.amount),
                }
                for line in self.lines
            ],
        }


def _check_aware(name: str, value: datetime | None) -> None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")


def compute_cost(
    book: RuleBook,
    currency: str,
    started_at: datetime,
    ended_at: datetime,
    hold_periods: Sequence[tuple[datetime, datetime]] = (),
    billing_stopped_at: datetime | None = None,
    free_floating_end: bool = False,
) -> TripCost:
    """Price a trip (see the module docstring for the rules)."""
    for name, value in (("started_at", started_at), ("ended_at", ended_at)):
        _check_aware(name, value)
    _check_aware("billing_stopped_at", billing_stopped_at)
    end = ended_at if billing_stopped_at is None else min(ended_at, billing_stopped_at)
    end = max(end, started_at)
    holds = sorted((s, e) for s, e in hold_periods if e > s)
    start_rule = book.rule_at(started_at)
    lines: dict[tuple[Any, str, Decimal], CostLine] = {}
    riding = on_hold = 0
    t = started_at + timedelta(seconds=start_rule.unlock_included_time)
    while t < end:
        rule = book.rule_at(t)
        held = any(s <= t < e for s, e in holds)
        kind, price = (
            ("on-hold", rule.on_hold_price) if held else ("riding", rule.use_per_minute_price)
        )
        line = lines.get((rule.id, kind, price))
        if line is None:
            line = lines[(rule.id, kind, price)] = CostLine(rule.id, kind, 0, price)
        line.minutes += 1
        if held:
            on_hold += 1
        else:
            riding += 1
        t += MINUTE
    ff = book.rule_at(ended_at).freefloat_lock_price if free_floating_end else Decimal("0")
    unrounded = start_rule.unlock_price + sum((li.amount for li in lines.values()), Decimal(0)) + ff
    return TripCost(
        total=round_money(unrounded, currency),
        currency=currency,
        unlock_price=start_rule.unlock_price,
        unlock_rule_id=start_rule.id,
        included_seconds=start_rule.unlock_included_time,
        billable_seconds=int((end - started_at).total_seconds()),
        riding_minutes=riding,
        on_hold_minutes=on_hold,
        freefloat_lock_price=ff,
        lines=list(lines.values()),
        unrounded_total=unrounded,
    )
