"""Billing engine: table-driven, every expectation computed by hand (see the comments)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from kickstand.cloud.billing import Rule, RuleBook, compute_cost, round_money
from kickstand.cloud.errors import InvalidPricingRuleError, NoPricingRuleError

PARIS = ZoneInfo("Europe/Paris")
D = Decimal

# R1: all week default: free unlock, 30 min included, 0.05/min riding, 0.02/min on hold.
R1 = Rule(0, "00:00:00", 6, "24:00:00", D("0"), 1800, D("0.05"), D("0.02"), D("0.50"), id="R1")
# R2: weekend Sat 00:00 → Mon 00:00 (wraps over the Sunday week start): 0.50 unlock, nothing
# included, 0.10/min, 0.03/min on hold, free-float lock free.
R2 = Rule(6, "00:00:00", 1, "00:00:00", D("0.50"), 0, D("0.10"), D("0.03"), D("0"), id="R2")
# R3: Sunday 02:00–03:00 local only (the hour DST plays with): 0.20/min riding or on hold.
R3 = Rule(0, "02:00:00", 0, "03:00:00", D("0"), 0, D("0.20"), D("0.20"), D("0"), id="R3")
BOOK = RuleBook([R1, R2, R3], "Europe/Paris", network_id=1)


def local(*args: int) -> datetime:
    """A Paris wall-clock time (fold=0: the first of an ambiguous pair)."""
    return datetime(*args).replace(tzinfo=PARIS)  # type: ignore[arg-type]


def utc(*args: int) -> datetime:
    return datetime(*args).replace(tzinfo=UTC)  # type: ignore[arg-type]


# 2026-11-18 is a Wednesday (CET, UTC+1); 2026-11-20 Friday; 2026-11-21 Saturday.
WED = (2026, 11, 18)

CASES = [
    # id, start, end, holds, billing stop, free-float end, expected total
    # 29m59s < 30 min included, unlock 0 → free.
    ("free-within-included", local(*WED, 10, 0), local(*WED, 10, 29, 59), [], None, False, "0.00"),
    # Exactly the included time: the first paid minute would start at the end → free.
    ("exactly-included", local(*WED, 10, 0), local(*WED, 10, 30), [], None, False, "0.00"),
    # One second past the included time: one started minute → 0.05.
    ("one-started-minute", local(*WED, 10, 0), local(*WED, 10, 30, 1), [], None, False, "0.05"),
    # 61 s past included: 2 started minutes → 0.10.
    ("partial-minute-ceil", local(*WED, 10, 0), local(*WED, 10, 31, 1), [], None, False, "0.10"),
    # 1 h: 30 paid minutes × 0.05 = 1.50.
    ("one-hour", local(*WED, 10, 0), local(*WED, 11, 0), [], None, False, "1.50"),
    # Hold 10:40–10:50: 20 riding × 0.05 + 10 on hold × 0.02 = 1.00 + 0.20 = 1.20.
    (
        "on-hold-period",
        local(*WED, 10, 0),
        local(*WED, 11, 0),
        [(local(*WED, 10, 40), local(*WED, 10, 50))],
        None,
        False,
        "1.20",
    ),
    # Hold inside the included time changes nothing: 1.50.
    (
        "hold-inside-included",
        local(*WED, 10, 0),
        local(*WED, 11, 0),
        [(local(*WED, 10, 5), local(*WED, 10, 15))],
        None,
        False,
        "1.50",
    ),
    # Hold 10:40:30–10:45:00: minute 10:40 starts riding; 10:41..10:44 on hold (4);
    # 26 riding × 0.05 = 1.30 + 4 × 0.02 = 0.08 → 1.38.
    (
        "hold-mid-minute",
        local(*WED, 10, 0),
        local(*WED, 11, 0),
        [(local(*WED, 10, 40, 30), local(*WED, 10, 45))],
        None,
        False,
        "1.38",
    ),
    # Billing stopped at 11:00 on a 2 h trip → as the 1 h trip: 1.50.
    (
        "billing-stopped",
        local(*WED, 10, 0),
        local(*WED, 12, 0),
        [],
        local(*WED, 11, 0),
        False,
        "1.50",
    ),
    # Free-float end adds R1's 0.50 lock price: 1.50 + 0.50 = 2.00.
    ("freefloat-lock", local(*WED, 10, 0), local(*WED, 11, 0), [], None, True, "2.00"),
    # Fri 23:00 → Sat 00:10: R1 start (unlock 0, included to 23:30); 23:30..23:59 30 × 0.05 = 1.50;
    # Sat 00:00..00:09 under R2: 10 × 0.10 = 1.00 → 2.50.
    (
        "into-weekend",
        local(2026, 11, 20, 23, 0),
        local(2026, 11, 21, 0, 10),
        [],
        None,
        False,
        "2.50",
    ),
    # Sat 10:00 → 10:20 under R2: 0.50 + 20 × 0.10 = 2.50.
    ("weekend", local(2026, 11, 21, 10, 0), local(2026, 11, 21, 10, 20), [], None, False, "2.50"),
    # Sat 23:50 → Sun 00:10 crosses the week wrap (dow 6 → 0) inside R2: 0.50 + 20 × 0.10 = 2.50.
    ("week-wrap", local(2026, 11, 21, 23, 50), local(2026, 11, 22, 0, 10), [], None, False, "2.50"),
    # Sun 23:50 → Mon 00:10 (midnight, weekend → weekday): R2 unlock 0.50, 10 × 0.10 = 1.00,
    # then Mon 00:00..00:09 under R1 10 × 0.05 = 0.50 (R1's included time does not apply:
    # it belongs to the rule at the start) → 2.00.
    (
        "midnight-to-monday",
        local(2026, 11, 22, 23, 50),
        local(2026, 11, 23, 0, 10),
        [],
        None,
        False,
        "2.00",
    ),
    # DST spring forward, Sun 2026-03-29: 01:30 CET (00:30Z) → 03:30 CEST (01:30Z) is 60 real
    # minutes; local 02:00–03:00 never happens, so R3 never applies. 0.50 + 60 × 0.10 = 6.50.
    (
        "dst-spring-forward",
        utc(2026, 3, 29, 0, 30),
        utc(2026, 3, 29, 1, 30),
        [],
        None,
        False,
        "6.50",
    ),
    # DST fall back, Sun 2026-10-25: 01:30 CEST (23:30Z Sat) → 02:30 CET (01:30Z) is 120 real
    # minutes: 01:30–01:59 CEST R2 30 × 0.10 = 3.00; 02:00–02:59 CEST R3 60 × 0.20 = 12.00;
    # 02:00–02:29 CET (the hour again) R3 30 × 0.20 = 6.00; + unlock 0.50 → 21.50.
    (
        "dst-fall-back",
        utc(2026, 10, 24, 23, 30),
        utc(2026, 10, 25, 1, 30),
        [],
        None,
        False,
        "21.50",
    ),
]


@pytest.mark.parametrize(
    ("start", "end", "holds", "stop", "freefloat", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_trip_cost(
    start: datetime,
    end: datetime,
    holds: list[tuple[datetime, datetime]],
    stop: datetime | None,
    freefloat: bool,
    expected: str,
) -> None:
    cost = compute_cost(BOOK, "EUR", start, end, holds, stop, freefloat)
    assert cost.total == D(expected)
    assert str(cost.total) == expected


def test_dst_fall_back_breakdown() -> None:
    cost = compute_cost(BOOK, "EUR", utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 1, 30))
    by_rule = {(line.rule_id, line.kind): line.minutes for line in cost.lines}
    assert by_rule == {("R2", "riding"): 30, ("R3", "riding"): 90}
    assert cost.unlock_rule_id == "R2"
    assert cost.billable_seconds == 7200


def test_rounded_once_at_the_end_half_up() -> None:
    # 0.0125/min × 3 = 0.0375 → 0.04 (rounding each minute would give 0.03).
    book = RuleBook([Rule(0, "00:00:00", 0, "00:00:00", D("0"), 0, D("0.0125"), D("0"))], "UTC")
    start = utc(2026, 1, 5, 8, 0)
    assert compute_cost(book, "EUR", start, start + timedelta(minutes=3)).total == D("0.04")
    # 0.125 → 0.13 with HALF_UP (banker's rounding would give 0.12).
    book = RuleBook([Rule(0, "00:00:00", 0, "00:00:00", D("0"), 0, D("0.125"), D("0"))], "UTC")
    assert compute_cost(book, "EUR", start, start + timedelta(minutes=1)).total == D("0.13")


def test_currency_minor_units() -> None:
    # JPY has no minor unit: 100 + 3 × 15.5 = 146.5 → 147.
    book = RuleBook(
        [Rule(0, "00:00:00", 0, "00:00:00", D("100"), 0, D("15.5"), D("0"))], "Asia/Tokyo"
    )
    start = utc(2026, 1, 5, 8, 0)
    assert compute_cost(book, "JPY", start, start + timedelta(minutes=3)).total == D("147")
    assert round_money(D("1.2345"), "KWD") == D("1.235")


def test_shortest_window_wins_and_ties_go_first() -> None:
    # Sunday 02:30 local (a normal Sunday): R1, R2 and R3 all contain it; R3 is the shortest.
    assert BOOK.rule_at(local(2026, 11, 22, 2, 30)).id == "R3"
    assert BOOK.rule_at(local(2026, 11, 22, 3, 0)).id == "R2"  # end is exclusive
    assert BOOK.rule_at(local(2026, 11, 23, 0, 0)).id == "R1"  # R2 ends Monday 00:00
    a = Rule(1, "00:00:00", 2, "00:00:00", D("1"), 0, D("1"), D("1"), id="a")
    b = Rule(1, "00:00:00", 2, "00:00:00", D("2"), 0, D("2"), D("2"), id="b")
    assert RuleBook([a, b], "UTC").rule_at(utc(2026, 11, 23, 12, 0)).id == "a"


def test_no_rule_in_force_is_a_typed_error() -> None:
    weekdays = Rule(1, "06:00:00", 5, "22:00:00", D("1"), 0, D("0.1"), D("0.1"))
    book = RuleBook([weekdays], "Europe/Paris", network_id=7)
    with pytest.raises(NoPricingRuleError) as err:
        compute_cost(book, "EUR", local(2026, 11, 21, 12, 0), local(2026, 11, 21, 12, 5))
    assert err.value.network_id == 7


@pytest.mark.parametrize(
    "kwargs",
    [
        {"start_hod": "25:00:00"},
        {"start_dow": 7},
        {"end_hod": "12:00"},
        {"use_per_minute_price": D("-0.01")},
        {"unlock_included_time": -1},
    ],
)
def test_invalid_rules_are_refused(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = dict(
        start_dow=0,
        start_hod="00:00:00",
        end_dow=6,
        end_hod="24:00:00",
        unlock_price=D("0"),
        unlock_included_time=0,
        use_per_minute_price=D("0.1"),
        on_hold_price=D("0.1"),
    )
    base.update(kwargs)
    with pytest.raises(InvalidPricingRuleError):
        Rule(**base)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        compute_cost(BOOK, "EUR", datetime(2026, 1, 1, 10), datetime(2026, 1, 1, 11))
