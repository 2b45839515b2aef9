"""An independent check of the money arithmetic against DESIGN.md "Money rules" and seed 003.

The reference below is written from the documents, not from ``connector.domain``: exact
rational arithmetic (``fractions.Fraction``), its own half-up rounding, its own calendar.
The product is then compared with it through the places a partner sees the figures:
``payout-estimate`` (in process and as the installed command), the invoice plan, and the
expected payout that reconciliation compares against Stripe.

The rules, as DESIGN.md words them:
- line total = quantity x unit price per month x 12; it is an amount of money (it goes on
  the invoice), so it is half-up to the cent (DESIGN is silent on this rounding; it only
  matters for sub-cent unit prices, which the calculator's spec does not forbid);
- revenue share per line = line total x PPC % , half-up to the cent *per line*;
  order share = sum of line shares; expected payout = subtotal - order share;
- add-on: line total x remaining days / term days, half-up to the cent, remaining days
  from the add-on start to the initial end, both ends counted; initial end = initial
  start + 12 months - 1 day (the day clamped to the month's length, like Salesforce's
  ``Date.addMonths``); the share is computed on the prorated total.
"""

from __future__ import annotations

import calendar
import io
import json
import math
import subprocess
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.domain import (
    EntitlementItem,
    EntitlementOrder,
    OrderItem,
    OrderStatus,
    Proration,
    ProrationPolicy,
    entitlements,
    expected_payout,
    order_payout,
    plan_invoice,
    to_cents,
)
from connector.domain.reconciliation import Contribution, Expected, InvoiceFacts, reconcile_order
from connector.entrypoints.cli import payout_estimate
from connector.errors import RecordError
from tests.unit.domain.builders import an_order

# ----------------------------------------------------------------------------- reference


def ref_cents(amount: Fraction) -> int:
    """Half-up (away from zero) to whole cents; every amount here is >= 0."""
    assert amount >= 0
    return math.floor(amount * 100 + Fraction(1, 2))


def ref_text(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def ref_initial_end(start: date) -> date:
    # 12 months later is the same month next year; only 29 Feb has no twin (-> 28 Feb).
    year = start.year + 1
    day = min(start.day, calendar.monthrange(year, start.month)[1])
    return date(year, start.month, day) - timedelta(days=1)


@dataclass(frozen=True)
class RefItem:
    quantity: int
    price: str  # unit price per month, as decimal text
    percent: str  # PPC revenue share percent, as decimal text


def ref_lines(
    items: list[RefItem], initial_start: date | None = None, addon_start: date | None = None
) -> list[tuple[int, int]]:
    """(line total cents, revenue share cents) per item."""
    out = []
    for item in items:
        total = ref_cents(item.quantity * Fraction(item.price) * 12)
        if addon_start is not None:
            assert initial_start is not None
            end = ref_initial_end(initial_start)
            remaining = (end - addon_start).days + 1
            days = (end - initial_start).days + 1
            assert 1 <= remaining <= days
            total = ref_cents(Fraction(total, 100) * remaining / days)
        share = ref_cents(Fraction(total, 100) * Fraction(item.percent) / 100)
        out.append((total, share))
    return out


def ref_estimate(order_id: object, items: list[RefItem], initial_start: date | None = None,
                 addon_start: date | None = None) -> dict[str, object]:
    """What ``payout-estimate`` must print for one good order."""
    lines = ref_lines(items, initial_start, addon_start)
    subtotal = sum(total for total, _ in lines)
    share = sum(s for _, s in lines)
    return {
        "id": order_id,
        "lines": [{"line_total": ref_text(t), "revenue_share": ref_text(s)} for t, s in lines],
        "subtotal": ref_text(subtotal),
        "revenue_share": ref_text(share),
        "expected_payout": ref_text(subtotal - share),
    }


def test_reference_reproduces_seed_003_and_rounds_half_up() -> None:
    # Guard the reference itself before trusting it as a judge.
    assert ref_estimate("s", [RefItem(10, "50", "15"), RefItem(1, "200", "10")])["expected_payout"] == "7260.00"
    assert ref_cents(Fraction("0.005")) == 1 and ref_cents(Fraction("0.0049999")) == 0
    assert ref_cents(Fraction("0.025")) == 3  # half-even would give 2
    assert ref_initial_end(date(2025, 1, 31)) == date(2026, 1, 30)
    assert ref_initial_end(date(2024, 2, 29)) == date(2025, 2, 27)
    assert ref_initial_end(date(2025, 1, 1)) == date(2025, 12, 31)


# ------------------------------------------------------------------------- the product

def order_json(order_id: object, items: list[RefItem], *, numbers: bool = False, **extra: object) -> str:
    """One order as JSON text; with ``numbers`` the amounts are bare JSON numbers (0.1, not "0.1")."""

    def amount(text: str) -> str:
        return text if numbers else json.dumps(text)

    body = ", ".join(
        f'{{"quantity": {i.quantity}, "unit_price_per_month": {amount(i.price)}, '
        f'"revenue_share_percent": {amount(i.percent)}}}'
        for i in items
    )
    head = {"id": order_id, "contract_term_months": 12, **extra}
    return json.dumps(head)[:-1] + f', "items": [{body}]}}'


def estimate(text: str) -> list[dict]:
    out = io.StringIO()
    payout_estimate.run(io.StringIO(text), out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def one(text: str) -> dict:
    (record,) = estimate(text)
    return record


SEED_003_ITEMS = [RefItem(10, "50.00", "15"), RefItem(1, "200.00", "10")]


# ------------------------------------------------------------------- seeds, exactly

@pytest.mark.parametrize("numbers", [False, True])
def test_seed_003_worked_example_exactly(numbers: bool) -> None:
    record = one(order_json("00000101", SEED_003_ITEMS, numbers=numbers))
    assert record == {
        "id": "00000101",
        "lines": [{"line_total": "6000.00", "revenue_share": "900.00"},
                  {"line_total": "2400.00", "revenue_share": "240.00"}],
        "subtotal": "8400.00",
        "revenue_share": "1140.00",
        "expected_payout": "7260.00",
    }
    assert record == ref_estimate("00000101", SEED_003_ITEMS)


def test_seed_003_through_the_domain_and_the_invoice_plan() -> None:
    estimate_ = expected_payout([OrderItem(10, Decimal("50"), Decimal("15")),
                                 OrderItem(1, Decimal("200"), Decimal("10"))])
    assert (estimate_.subtotal, estimate_.revenue_share, estimate_.expected_payout) == (
        Decimal("8400.00"), Decimal("1140.00"), Decimal("7260.00"))
    plan = plan_invoice(an_order(subtotal="8400.00", items=[
        OrderItem(10, Decimal("50.00"), ppp_id="ppp-core", ppp_name="Core App", line_item_total=Decimal("6000.00")),
        OrderItem(1, Decimal("200.00"), ppp_id="ppp-premium", ppp_name="Premium Add-On",
                  line_item_total=Decimal("2400.00")),
    ]))
    assert [to_cents(line.amount) for line in plan.lines] == [600000, 240000]
    assert to_cents(plan.total) == 840000


def test_seed_001_add_on_licenses_add_to_the_existing_ones() -> None:
    # Seed 001: 10 licenses of Product A, then an add-on of 15 more -> 25.
    orders = [EntitlementOrder("o-1", OrderStatus.ACTIVATED, (EntitlementItem("ppp-a", 10),)),
              EntitlementOrder("o-2", OrderStatus.ACTIVATED, (EntitlementItem("ppp-a", 15),))]
    assert entitlements(orders) == {"ppp-a": 25}


# ------------------------------------------------------------------ rounding point

def test_share_is_rounded_half_up_per_line_not_per_order() -> None:
    # 15.00 x 0.3% = 0.045 per line: per line 0.05 + 0.05 = 0.10 (per order it would be 0.09,
    # and half-even per line 0.04 + 0.04 = 0.08).
    items = [RefItem(1, "1.25", "0.3"), RefItem(1, "1.25", "0.3")]
    record = one(order_json("r", items))
    assert record["lines"] == [{"line_total": "15.00", "revenue_share": "0.05"}] * 2
    assert (record["revenue_share"], record["expected_payout"]) == ("0.10", "29.90")
    assert record == ref_estimate("r", items)


@pytest.mark.parametrize(
    ("item", "line_total", "share"),
    [
        (RefItem(1, "10", "1.0125"), "120.00", "1.22"),  # 1.215 -> 1.22 (a float 1.0125 gives 1.21)
        (RefItem(1, "1", "12.5"), "12.00", "1.50"),
        (RefItem(3, "10", "33.333"), "360.00", "120.00"),  # 119.9988
        (RefItem(1, "1", "33.333"), "12.00", "4.00"),  # 3.99996
        (RefItem(7, "13.37", "33.333"), "1123.08", "374.36"),  # 374.35925...
        (RefItem(1, "0.1", "0"), "1.20", "0.00"),
        (RefItem(1, "0.1", "100"), "1.20", "1.20"),
        (RefItem(1, "0", "15"), "0.00", "0.00"),
    ],
)
def test_percent_edges_and_decimals(item: RefItem, line_total: str, share: str) -> None:
    for numbers in (False, True):
        record = one(order_json("p", [item], numbers=numbers))
        assert record["lines"] == [{"line_total": line_total, "revenue_share": share}]
        assert record == ref_estimate("p", [item])


def test_zero_and_full_share_leave_everything_or_nothing() -> None:
    assert one(order_json("z", [RefItem(10, "50", "0")]))["expected_payout"] == "6000.00"
    assert one(order_json("f", [RefItem(10, "50", "100")]))["expected_payout"] == "0.00"


@pytest.mark.parametrize(
    ("price", "line_total"),
    [
        ("0.125", "1.50"),  # sub-cent price, exact annual amount
        ("0.00125", "0.02"),  # 0.015 -> 0.02, half-up
        ("0.0004", "0.00"),  # 0.0048 -> 0.00
        ("0.000416", "0.00"),  # 0.004992 -> 0.00
        ("33.3333", "400.00"),  # 399.9996 -> 400.00
    ],
)
def test_sub_cent_unit_prices_are_accepted_and_the_line_total_rounded_half_up(price: str, line_total: str) -> None:
    item = RefItem(1, price, "15")
    record = one(order_json("c", [item]))
    assert record["lines"][0]["line_total"] == line_total
    assert record == ref_estimate("c", [item])


def test_large_quantities_stay_exact() -> None:
    items = [RefItem(10**9, "99999.99", "33.333"), RefItem(123_456_789, "0.01", "12.5")]
    record = one(order_json("big", items))
    assert record["subtotal"] == "1199999894814814.68"
    assert record == ref_estimate("big", items)


HUGE_ITEMS = [RefItem(7, "1234567890123456789012345678.91", "15"), RefItem(1, "0.01", "0")]


def test_sums_past_28_digits_stay_exact_in_the_estimate() -> None:
    # Each line is exact (60-digit products); the subtotal (30 digits) once came out of
    # sum() in the default 28-digit context, silently rounded to 1.037037027703703702770370370E+29.
    estimate = expected_payout([OrderItem(it.quantity, Decimal(it.price), Decimal(it.percent)) for it in HUGE_ITEMS])
    ref = ref_lines(HUGE_ITEMS)
    subtotal, share = sum(t for t, _ in ref), sum(s for _, s in ref)
    assert (to_cents(estimate.subtotal), to_cents(estimate.revenue_share), to_cents(estimate.expected_payout)) == (
        subtotal, share, subtotal - share)
    assert one(order_json("huge", HUGE_ITEMS)) == ref_estimate("huge", HUGE_ITEMS)


def test_sums_past_28_digits_stay_exact_in_the_invoice_plan() -> None:
    items = [OrderItem(it.quantity, Decimal(it.price), ppp_id=f"ppp-{i}", ppp_name=f"Product {i}")
             for i, it in enumerate(HUGE_ITEMS)]
    plan = plan_invoice(an_order(items=items))
    assert to_cents(plan.total) == sum(t for t, _ in ref_lines(HUGE_ITEMS))


def test_absurd_amounts_are_a_bad_order_not_a_crash() -> None:
    records = estimate(
        order_json("huge-q", [RefItem(10**70, "1", "15")]) + "\n"
        + order_json("huge-p", [RefItem(1, "1e999999", "15")]) + "\n"
        + order_json("ok", SEED_003_ITEMS) + "\n"
    )
    assert [r["id"] for r in records] == ["huge-q", "huge-p", "ok"]
    assert records[0]["error"].startswith("items[0]: ") and records[1]["error"].startswith("items[0]: ")
    assert records[2]["expected_payout"] == "7260.00"


def test_absurd_amounts_are_a_quarantined_invoice_not_a_crash() -> None:
    items = [OrderItem(1, Decimal("1e999999"), ppp_id="ppp-1", ppp_name="Core App"),
             OrderItem(10**70, Decimal("1"), ppp_id="ppp-2", ppp_name="Premium")]
    with pytest.raises(RecordError) as caught:
        plan_invoice(an_order(items=items))
    assert caught.value.code == "AMOUNT_OUT_OF_RANGE"
    assert "items[0]:" in caught.value.reason and "items[1]:" in caught.value.reason


# -------------------------------------------------------------------- JSON numbers

def test_json_numbers_are_read_as_decimals_never_floats() -> None:
    # 0.1 x 3 x 12 = 3.60 exactly; 0.1 as a float is 0.1000000000000000055...
    # 0.285 x 100 x 12 = 342.00, share 14.35% = 49.077 -> 49.08
    for items in ([RefItem(3, "0.1", "0.1")], [RefItem(100, "0.285", "14.35")], [RefItem(1, "1.005", "50")]):
        assert one(order_json("n", items, numbers=True)) == one(order_json("n", items)) == ref_estimate("n", items)
    # 1.005 x 12 = 12.06 exactly; share 50% = 6.03
    assert one(order_json("n", [RefItem(1, "1.005", "50")], numbers=True))["lines"] == [
        {"line_total": "12.06", "revenue_share": "6.03"}]


def test_exponent_and_integral_float_notation_are_accepted() -> None:
    text = ('{"id": "e", "contract_term_months": 12.0, '
            '"items": [{"quantity": 1e1, "unit_price_per_month": 5e1, "revenue_share_percent": 1.5e1}]}')
    assert one(text) == ref_estimate("e", [RefItem(10, "50", "15")])


# ---------------------------------------------------------------------- proration

ADD_ON_ITEMS = [RefItem(15, "50.00", "15")]


@pytest.mark.parametrize(
    ("initial", "addon", "subtotal"),
    [
        (date(2025, 1, 1), date(2025, 3, 1), "7545.21"),  # 9000 x 306/365 = 7545.205...
        (date(2024, 1, 1), date(2024, 3, 1), "7524.59"),  # leap year: 9000 x 306/366 = 7524.590...
        (date(2023, 3, 1), date(2024, 2, 28), "49.18"),  # term spans 29 Feb: 9000 x 2/366
        (date(2024, 2, 29), date(2025, 2, 27), "24.66"),  # starts on 29 Feb: ends 27 Feb 2025, 365 days
        (date(2025, 1, 31), date(2026, 1, 30), "24.66"),  # month end: ends 30 Jan, last day = 1 day
        (date(2025, 1, 31), date(2025, 1, 31), "9000.00"),  # on the initial start: everything
        (date(2025, 1, 1), date(2025, 12, 31), "24.66"),  # last day: one day, 9000/365 = 24.657...
    ],
)
def test_add_on_proration(initial: date, addon: date, subtotal: str) -> None:
    text = order_json("a", ADD_ON_ITEMS, initial_start_date=initial.isoformat(), addon_start_date=addon.isoformat())
    record = one(text)
    assert record["subtotal"] == subtotal
    assert record == ref_estimate("a", ADD_ON_ITEMS, initial, addon)
    # the same order with its (correct) initial end date given explicitly
    end = ref_initial_end(initial).isoformat()
    assert one(order_json("a", ADD_ON_ITEMS, initial_start_date=initial.isoformat(), initial_end_date=end,
                          addon_start_date=addon.isoformat())) == record


def test_add_on_given_the_initial_end_date_only_is_prorated_from_it() -> None:
    # The term is the 12 months ending on the initial end date.
    text = order_json("e", ADD_ON_ITEMS, initial_end_date="2025-12-31", addon_start_date="2025-03-01")
    assert one(text) == ref_estimate("e", ADD_ON_ITEMS, date(2025, 1, 1), date(2025, 3, 1))
    text = order_json("e", ADD_ON_ITEMS, initial_end_date="2026-01-30", addon_start_date="2026-01-30")
    assert one(text) == ref_estimate("e", ADD_ON_ITEMS, date(2025, 1, 31), date(2026, 1, 30))


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"initial_start_date": "2025-01-01", "addon_start_date": "2024-12-31"},
         "addon_start_date 2024-12-31 is before"),
        ({"initial_start_date": "2025-01-01", "addon_start_date": "2026-01-01"},
         "addon_start_date 2026-01-01 is after"),
        ({"initial_start_date": "2025-01-31", "addon_start_date": "2026-01-31"},
         "addon_start_date 2026-01-31 is after"),
        ({"initial_start_date": "2025-01-01", "initial_end_date": "2024-12-31"},
         "initial_end_date: must be 2025-12-31"),
        ({"initial_end_date": "2025-12-31", "addon_start_date": "2026-01-01"}, "addon_start_date 2026-01-01 is after"),
        ({"addon_start_date": "2025-03-01"}, "initial_start_date: is required when addon_start_date is given"),
        ({"initial_start_date": "2025-02-30"}, "initial_start_date: must be a date"),
    ],
)
def test_add_on_dates_out_of_order_are_a_bad_order(extra: dict, error: str) -> None:
    record = one(order_json("d", ADD_ON_ITEMS, **extra))
    assert set(record) == {"id", "error"} and record["id"] == "d"
    assert error in record["error"]


# ---------------------------------------------------------------------- bad orders

@pytest.mark.parametrize(
    ("raw_item", "error"),
    [
        ('{"quantity": -1, "unit_price_per_month": "50", "revenue_share_percent": 15}', "items[0].quantity"),
        ('{"quantity": 1.5, "unit_price_per_month": "50", "revenue_share_percent": 15}', "items[0].quantity"),
        ('{"quantity": "2.5", "unit_price_per_month": "50", "revenue_share_percent": 15}', "items[0].quantity"),
        ('{"quantity": true, "unit_price_per_month": "50", "revenue_share_percent": 15}', "items[0].quantity"),
        ('{"quantity": 1, "unit_price_per_month": "-0.01", "revenue_share_percent": 15}',
         "items[0].unit_price_per_month"),
        ('{"quantity": 1, "unit_price_per_month": "fifty", "revenue_share_percent": 15}',
         "items[0].unit_price_per_month"),
        ('{"quantity": 1, "unit_price_per_month": NaN, "revenue_share_percent": 15}', "items[0].unit_price_per_month"),
        ('{"quantity": 1, "unit_price_per_month": "50", "revenue_share_percent": -0.001}',
         "items[0].revenue_share_percent"),
        ('{"quantity": 1, "unit_price_per_month": "50", "revenue_share_percent": 100.001}',
         "items[0].revenue_share_percent"),
        ('{"quantity": 1, "unit_price_per_month": "50", "revenue_share_percent": Infinity}',
         "items[0].revenue_share_percent"),
    ],
)
def test_bad_lines_name_the_field_and_the_others_are_still_computed(raw_item: str, error: str) -> None:
    bad = f'{{"id": "bad", "contract_term_months": 12, "items": [{raw_item}]}}'
    records = estimate(bad + "\n" + order_json("good", SEED_003_ITEMS) + "\n")
    assert records[0]["id"] == "bad" and set(records[0]) == {"id", "error"}
    assert records[0]["error"].startswith(error)
    assert records[1] == ref_estimate("good", SEED_003_ITEMS)


@pytest.mark.parametrize("term", ["24", "1", "0", "12.5", '"twelve"', "null"])
def test_term_other_than_12_is_a_bad_order(term: str) -> None:
    text = order_json("t", SEED_003_ITEMS).replace('"contract_term_months": 12', f'"contract_term_months": {term}')
    record = one(text)
    assert record["id"] == "t" and record["error"].startswith("contract_term_months: ")


def test_domain_refuses_a_term_other_than_12() -> None:
    # Reconciliation computes its expected payout with this function from mirrored orders;
    # DESIGN: anything but a 12-month term is a validation error on that record.
    with pytest.raises(RecordError, match="12"):
        expected_payout([OrderItem(10, Decimal("50"), Decimal("15"))], 24)


# ---------------------------------------------------------------- input and output

def test_json_array_and_json_lines_give_the_same_records() -> None:
    orders = [order_json("a", SEED_003_ITEMS), order_json("b", ADD_ON_ITEMS, initial_start_date="2024-01-01",
                                                              addon_start_date="2024-03-01")]
    as_lines = estimate("\n".join(orders) + "\n")
    as_array = estimate("[\n  " + ",\n  ".join(orders) + "\n]\n")
    assert as_lines == as_array == [ref_estimate("a", SEED_003_ITEMS),
                                    ref_estimate("b", ADD_ON_ITEMS, date(2024, 1, 1), date(2024, 3, 1))]


def _installed_cli() -> Path:
    script = Path(sys.executable).with_name("gtm-connector")
    if not script.exists():
        pytest.skip(f"{script} is not installed (run `make test` to install the project)")
    return script


def test_installed_command_output_format() -> None:
    good = order_json("00000101", SEED_003_ITEMS, numbers=True)
    bad = order_json("bad-q", [RefItem(-3, "50", "15")])
    done = subprocess.run([str(_installed_cli()), "payout-estimate"], input=f"{good}\n{bad}\n",
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2  # one JSON line per order, nothing else on stdout
    first, second = map(json.loads, lines)
    assert list(first) == ["id", "lines", "subtotal", "revenue_share", "expected_payout"]
    assert first == ref_estimate("00000101", SEED_003_ITEMS)
    assert all(isinstance(v, str) for v in (first["subtotal"], first["revenue_share"], first["expected_payout"]))
    assert second == {"id": "bad-q", "error": "items[0].quantity: must be a positive integer, got -3"}

    done = subprocess.run([str(_installed_cli()), "payout-estimate"], input=f"[{good}]",
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [first]

    done = subprocess.run([str(_installed_cli()), "payout-estimate", "--table"], input=f"{good}\n",
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "8400.00" in done.stdout and "1140.00" in done.stdout and "7260.00" in done.stdout


# ---------------------------------------------------------------------- properties

amounts = st.builds(lambda n, scale: str(Decimal(n).scaleb(-scale)), st.integers(0, 10**9), st.integers(0, 4))
percents = st.builds(lambda n: str(Decimal(n).scaleb(-3)), st.integers(0, 100_000))
ref_items = st.lists(st.builds(RefItem, st.integers(1, 10**6), amounts, percents), min_size=1, max_size=5)
starts = st.dates(date(2020, 1, 1), date(2032, 12, 31))


@settings(max_examples=300, deadline=None)
@given(items=ref_items, numbers=st.booleans())
def test_initial_orders_match_the_reference(items: list[RefItem], numbers: bool) -> None:
    assert one(order_json("h", items, numbers=numbers)) == ref_estimate("h", items)


@settings(max_examples=300, deadline=None)
@given(items=ref_items, start=starts, offset=st.floats(0, 1), numbers=st.booleans())
def test_add_on_orders_match_the_reference(items: list[RefItem], start: date, offset: float, numbers: bool) -> None:
    days = (ref_initial_end(start) - start).days  # the last day is start + days
    addon = start + timedelta(days=round(offset * days))
    text = order_json("h", items, numbers=numbers, initial_start_date=start.isoformat(),
                      addon_start_date=addon.isoformat())
    assert one(text) == ref_estimate("h", items, start, addon)


@settings(max_examples=200, deadline=None)
@given(items=ref_items, start=starts, offset=st.floats(0, 1), add_on=st.booleans())
def test_invoice_plan_lines_match_the_reference(items: list[RefItem], start: date, offset: float, add_on: bool) -> None:
    addon = start + timedelta(days=round(offset * (ref_initial_end(start) - start).days))
    proration = Proration(initial_start=start, addon_start=addon) if add_on else None
    planned = [OrderItem(it.quantity, Decimal(it.price), ppp_id=f"ppp-{i}", ppp_name=f"Product {i}")
               for i, it in enumerate(items)]
    plan = plan_invoice(an_order(start=addon if add_on else start, items=planned), proration=proration)
    expected = ref_lines(items, start, addon) if add_on else ref_lines(items)
    assert [to_cents(line.amount) for line in plan.lines] == [total for total, _ in expected]
    assert to_cents(plan.total) == sum(total for total, _ in expected)
    for line in plan.lines:  # what Stripe is sent adds up: quantity x unit amount = amount
        assert line.quantity * to_cents(line.unit_amount) == to_cents(line.amount)


@settings(max_examples=200, deadline=None)
@given(items=ref_items, start=starts, offset=st.floats(0, 1), add_on=st.booleans())
def test_reconciliation_expects_the_reference_payout(
    items: list[RefItem], start: date, offset: float, add_on: bool
) -> None:
    addon = start + timedelta(days=round(offset * (ref_initial_end(start) - start).days))
    lines = [OrderItem(it.quantity, Decimal(it.price), Decimal(it.percent)) for it in items]
    # Through the one add-on rule: the order carries its initial order's start.
    got = order_payout(an_order(start=addon if add_on else start, add_on_to=start if add_on else None, items=lines))
    ref = ref_lines(items, start, addon) if add_on else ref_lines(items)
    subtotal, share = sum(t for t, _ in ref), sum(s for _, s in ref)
    assert (to_cents(got.subtotal), to_cents(got.revenue_share), to_cents(got.expected_payout)) == (
        subtotal, share, subtotal - share)
    # Stripe paying out exactly subtotal - share for the invoice reconciles with no discrepancy.
    expected = Expected(got.subtotal, got.revenue_share, got.expected_payout)
    paid = Decimal(subtotal).scaleb(-2)
    net = Decimal(subtotal - share).scaleb(-2)
    result = reconcile_order(
        "o", expected, [InvoiceFacts("in_1", "paid", paid, paid, date(2026, 1, 2))],
        [Contribution("po_1", date(2026, 1, 5), gross=paid, fees=paid - net, net=net)], today=date(2026, 1, 6))
    assert result.matched and result.difference == 0


# ------------------------------------------------------------- monthly policy, agreement

def ref_add_months(start: date, months: int) -> date:
    year, month = divmod(start.year * 12 + start.month - 1 + months, 12)
    return date(year, month + 1, min(start.day, calendar.monthrange(year, month + 1)[1]))


def ref_monthly_lines(items: list[RefItem], initial_start: date, addon_start: date) -> list[tuple[int, int]]:
    """The configurable monthly policy: the term's 12 periods start on initial start + k
    months (day clamped); the period the add-on starts in counts whole."""
    started = sum(1 for k in range(1, 12) if ref_add_months(initial_start, k) <= addon_start)
    out = []
    for item in items:
        total = ref_cents(Fraction(ref_cents(item.quantity * Fraction(item.price) * 12), 100) * (12 - started) / 12)
        out.append((total, ref_cents(Fraction(total, 100) * Fraction(item.percent) / 100)))
    return out


@settings(max_examples=300, deadline=None)
@given(items=ref_items, start=starts, offset=st.floats(0, 1))
def test_monthly_policy_matches_the_reference(items: list[RefItem], start: date, offset: float) -> None:
    addon = start + timedelta(days=round(offset * (ref_initial_end(start) - start).days))
    lines = [OrderItem(it.quantity, Decimal(it.price), Decimal(it.percent)) for it in items]
    got = order_payout(an_order(start=addon, add_on_to=start, items=lines), "monthly")
    ref = ref_monthly_lines(items, start, addon)
    assert [(to_cents(ln.line_total), to_cents(ln.revenue_share)) for ln in got.lines] == ref
    assert to_cents(got.expected_payout) == sum(t for t, _ in ref) - sum(s for _, s in ref)


@settings(max_examples=200, deadline=None)
@given(items=ref_items, start=starts, offset=st.floats(0, 1), add_on=st.booleans(),
       policy=st.sampled_from(["daily", "monthly"]))
def test_the_invoice_bills_exactly_the_subtotal_the_payout_is_expected_on(
        items: list[RefItem], start: date, offset: float, add_on: bool, policy: str) -> None:
    # One order, two consumers: invoicing (what Stripe is sent, in cents) and reconciliation
    # (the expected payout's subtotal) must agree to the cent under either policy.
    addon = start + timedelta(days=round(offset * (ref_initial_end(start) - start).days))
    lines = [OrderItem(it.quantity, Decimal(it.price), Decimal(it.percent), ppp_id=f"ppp-{i}", ppp_name=f"P{i}")
             for i, it in enumerate(items)]
    order = an_order(start=addon if add_on else start, add_on_to=start if add_on else None, items=lines)
    proration = Proration(initial_start=start, addon_start=addon, policy=ProrationPolicy(policy)) if add_on else None
    plan = plan_invoice(order, proration=proration)
    sent = sum(line.quantity * to_cents(line.unit_amount) for line in plan.lines)  # what Stripe totals
    assert sent == to_cents(plan.total) == to_cents(order_payout(order, policy).subtotal)
