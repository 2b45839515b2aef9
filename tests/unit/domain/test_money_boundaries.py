"""Boundary tables for DESIGN.md "Money rules", with every expected figure worked out here
from the documents (``calendar`` for months, ``Fraction`` for exact ratios, a half-up of
our own), never by calling ``connector.domain``'s helpers.

Choices where the documents are silent, stated once:
- "initial start + 12 months" keeps the day of the month, clamped to the target month's
  length (Apex ``Date.addMonths``): 31 Jan 2024 -> 31 Jan 2025, 29 Feb 2024 -> 28 Feb
  2025. So a term starting 29 Feb 2024 ends 27 Feb 2025 (365 days); one starting 1 Mar
  2023 ends 29 Feb 2024 (366 days).
- An add-on starting before the initial start or after the initial end is a bad record
  (``ADDON_BEFORE_TERM`` / ``ADDON_AFTER_TERM``), not a negative or zero charge.
- Quantity 0 and negative prices/percentages are bad records (the GTM app sells licenses;
  DESIGN: anything else is a validation error on that record, not a crash).
- The line total is an amount of money (it goes on the invoice): half-up to the cent; an
  add-on prorates that line total.
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from connector.domain import OrderItem, ProrationPolicy, expected_payout, order_payout, plan_invoice
from connector.domain.entitlement import EntitlementItem, EntitlementOrder, entitlements
from connector.domain.money import from_cents, to_cents
from connector.domain.orders import add_on_proration
from connector.domain.reconciliation import Contribution, Expected, InvoiceFacts, Policy, reconcile_order, tax_share
from connector.domain.states import OrderStatus
from connector.errors import RecordError
from tests.unit.domain.builders import an_order, core_app, premium_add_on

# ----------------------------------------------------------------------------- reference


def ref_half_up(value: Fraction) -> Decimal:
    """Half away from zero to the cent, from an exact fraction."""
    cents = value * 100
    whole = abs(cents.numerator) * 2 + cents.denominator
    magnitude = whole // (2 * cents.denominator)
    signed = magnitude if cents >= 0 else -magnitude
    return Decimal(signed) / 100


def ref_plus_months(day: date, months: int) -> date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def ref_end(start: date) -> date:
    return ref_plus_months(start, 12) - timedelta(days=1)


def ref_prorated(line_total: Decimal, addon: date, initial: date) -> Decimal:
    end = ref_end(initial)
    left = (end - addon).days + 1
    days = (end - initial).days + 1
    return ref_half_up(Fraction(line_total) * left / days)


def item(quantity: int, price: str, share: str, ppp: str = "ppp-core") -> OrderItem:
    return OrderItem(quantity, Decimal(price), Decimal(share), ppp_id=ppp, ppp_name="Core App")


# ------------------------------------------------------------------------------- dates

END_OF_MONTH_STARTS = [
    (date(2024, 1, 29), date(2025, 1, 28), 366),
    (date(2024, 1, 30), date(2025, 1, 29), 366),
    (date(2024, 1, 31), date(2025, 1, 30), 366),  # + 12 months is 31 Jan 2025: no clamping
    (date(2025, 1, 31), date(2026, 1, 30), 365),
    (date(2024, 2, 29), date(2025, 2, 27), 365),  # 29 Feb 2024 + 12 months = 28 Feb 2025 (clamped)
    (date(2023, 3, 1), date(2024, 2, 29), 366),
    (date(2023, 2, 28), date(2024, 2, 27), 365),
    (date(2024, 2, 28), date(2025, 2, 27), 366),  # spans 29 Feb 2024
    (date(2024, 3, 31), date(2025, 3, 30), 365),
    (date(2024, 8, 30), date(2025, 8, 29), 365),
    (date(2024, 12, 31), date(2025, 12, 30), 365),
]


@pytest.mark.parametrize(("initial", "end", "days"), END_OF_MONTH_STARTS)
def test_terms_starting_late_in_a_month_and_on_leap_day(initial: date, end: date, days: int) -> None:
    assert ref_end(initial) == end and (end - initial).days + 1 == days  # the table agrees with the reference
    line = core_app()  # 10 x 50.00 x 12 = 6,000.00
    on_start = order_payout(an_order(start=initial, add_on_to=initial, items=[line]))
    on_end = order_payout(an_order(start=end, add_on_to=initial, items=[line]))
    assert on_start.subtotal == Decimal("6000.00")  # every day of the term
    assert on_end.subtotal == ref_half_up(Fraction(6000) / days)  # one day of `days`
    plan = plan_invoice(an_order(start=end, add_on_to=initial, items=[line]),
                        proration=add_on_proration(an_order(start=end, add_on_to=initial, items=[line])))
    assert plan.metadata["gtm_service_period"] == f"{end.isoformat()}..{end.isoformat()}"
    assert f"(1 of {days} days)" in plan.lines[0].description


@pytest.mark.parametrize(("initial", "addon", "code"), [
    (date(2025, 1, 1), date(2024, 12, 31), "ADDON_BEFORE_TERM"),
    (date(2025, 1, 1), date(2026, 1, 1), "ADDON_AFTER_TERM"),  # the day after 31 Dec 2025
    (date(2024, 2, 29), date(2025, 2, 28), "ADDON_AFTER_TERM"),  # the term ended 27 Feb 2025
])
def test_an_add_on_outside_the_initial_term_is_a_bad_record(initial: date, addon: date, code: str) -> None:
    with pytest.raises(RecordError) as caught:
        order_payout(an_order(start=addon, add_on_to=initial, items=[core_app()]))
    assert caught.value.code == code


@pytest.mark.parametrize("initial", [date(2024, 1, 31), date(2024, 2, 29), date(2023, 3, 1), date(2025, 6, 15)])
def test_daily_proration_on_every_day_of_awkward_terms(initial: date) -> None:
    total = Decimal("1234.57")  # 1 x 102.880833... a month: line total 1,234.57 (half-up)
    line = item(1, "102.880833", "15.555")
    assert ref_half_up(Fraction(Decimal("102.880833")) * 12) == total
    day = initial
    while day <= ref_end(initial):
        got = order_payout(an_order(start=day, add_on_to=initial, items=[line]))
        amount = ref_prorated(total, day, initial)
        assert got.subtotal == amount, day
        assert got.revenue_share == ref_half_up(Fraction(amount) * Fraction(Decimal("15.555")) / 100), day
        day += timedelta(days=17)


# Monthly policy: the term's 12 periods start on initial + k months (clamped); the period
# the add-on starts in counts whole; months left / 12 of the line total.
@pytest.mark.parametrize(("initial", "addon", "months"), [
    (date(2025, 1, 1), date(2025, 1, 1), 12),
    (date(2025, 1, 1), date(2025, 1, 31), 12),
    (date(2025, 1, 1), date(2025, 2, 1), 11),
    (date(2025, 1, 1), date(2025, 12, 31), 1),
    (date(2025, 1, 31), date(2025, 2, 27), 12),
    (date(2025, 1, 31), date(2025, 2, 28), 11),  # 31 Jan + 1 month = 28 Feb
    (date(2025, 1, 31), date(2025, 3, 30), 11),
    (date(2025, 1, 31), date(2025, 3, 31), 10),
    (date(2024, 2, 29), date(2025, 2, 27), 1),  # the term's last day
])
def test_monthly_policy_named_in_config(initial: date, addon: date, months: int) -> None:
    got = order_payout(an_order(start=addon, add_on_to=initial, items=[core_app()]), ProrationPolicy.MONTHLY)
    assert got.subtotal == ref_half_up(Fraction(6000) * months / 12)


def test_several_add_ons_on_one_ppp_add_up_per_ppp() -> None:
    orders = [
        EntitlementOrder("initial", OrderStatus.ACTIVATED, (EntitlementItem("A", 10), EntitlementItem("B", 1))),
        EntitlementOrder("add-on 1", OrderStatus.ACTIVATED, (EntitlementItem("A", 15),)),
        EntitlementOrder("add-on 2", OrderStatus.PROCESSING, (EntitlementItem("A", 5), EntitlementItem("A", 2))),
        EntitlementOrder("add-on 3", OrderStatus.NEW, (EntitlementItem("C", 3),)),
    ]
    assert entitlements(orders) == {"A": 32, "B": 1, "C": 3}


def test_each_add_on_is_charged_for_its_own_licenses_only() -> None:
    """Entitlements add up; the charge of an add-on is its own lines, prorated."""
    initial = date(2025, 1, 1)
    first = order_payout(an_order(start=date(2025, 3, 1), add_on_to=initial, items=[core_app(15)]))
    second = order_payout(an_order(start=date(2025, 7, 1), add_on_to=initial, items=[core_app(5)]))
    assert first.subtotal == ref_prorated(Decimal("9000.00"), date(2025, 3, 1), initial)
    assert second.subtotal == ref_prorated(Decimal("3000.00"), date(2025, 7, 1), initial)


# ----------------------------------------------------------------------------- rounding


@pytest.mark.parametrize(("quantity", "price", "share", "line", "fee"), [
    (1, "0.01", "50", "0.12", "0.06"),
    (1, "0.0125", "20", "0.15", "0.03"),  # 0.15 x 20 % = 0.03 exactly
    (1, "0.125", "15", "1.50", "0.23"),  # 0.225 -> 0.23 (half-up, not to even)
    (3, "0.125", "15", "4.50", "0.68"),  # 0.675 -> 0.68
    (1, "0.0004125", "10", "0.00", "0.00"),  # 0.00495 -> 0.00
    (1, "0.000416666", "10", "0.00", "0.00"),  # 0.004999992 -> 0.00, share of 0.00 is 0.00
    (1, "0.00041667", "10", "0.01", "0.00"),  # 0.00500004 -> 0.01; 10 % of 0.01 = 0.001 -> 0.00
    (1, "1.00", "15.555", "12.00", "1.87"),  # 1.8666 -> 1.87
    (7, "3.33", "15.555", "279.72", "43.51"),  # 43.510446 -> 43.51
    (1, "100.00", "0", "1200.00", "0.00"),
    (1, "100.00", "100", "1200.00", "1200.00"),
    (100000, "99999.99", "15", "119999988000.00", "17999998200.00"),
])
def test_line_total_and_share_half_up_per_line(quantity: int, price: str, share: str, line: str, fee: str) -> None:
    assert ref_half_up(Fraction(Decimal(price)) * quantity * 12) == Decimal(line)
    assert ref_half_up(Fraction(Decimal(line)) * Fraction(Decimal(share)) / 100) == Decimal(fee)
    got = expected_payout([item(quantity, price, share)])
    assert (got.subtotal, got.revenue_share, got.expected_payout) == (Decimal(line), Decimal(fee),
                                                                       Decimal(line) - Decimal(fee))


def test_shares_are_rounded_per_line_not_on_the_order_total() -> None:
    lines = [item(1, "0.25", "15", f"ppp-{n}") for n in range(3)]  # line 3.00; 15 % = 0.45 (exact)
    half = [item(1, "0.0025", "25", f"ppp-{n}") for n in range(4)]  # line 0.03; 25 % = 0.0075 -> 0.01
    assert expected_payout(lines).revenue_share == Decimal("1.35")
    got = expected_payout(half)
    assert got.revenue_share == Decimal("0.04")  # 4 x 0.01; rounding the total 0.03 would give 0.03
    assert got.subtotal == Decimal("0.12") and got.expected_payout == Decimal("0.08")


def test_seed_003_plus_an_add_on_line_share_on_the_prorated_total() -> None:
    initial = date(2025, 1, 1)
    addon = date(2025, 3, 1)
    got = order_payout(an_order(start=addon, add_on_to=initial, items=[core_app(), premium_add_on()]))
    core = ref_prorated(Decimal("6000.00"), addon, initial)
    prem = ref_prorated(Decimal("2400.00"), addon, initial)
    assert (core, prem) == (Decimal("5030.14"), Decimal("2012.05"))  # 306 of 365 days
    share = ref_half_up(Fraction(core) * 15 / 100) + ref_half_up(Fraction(prem) * 10 / 100)
    assert (got.subtotal, got.revenue_share, got.expected_payout) == (core + prem, share, core + prem - share)


@pytest.mark.parametrize(("field", "value"), [("quantity", 0), ("quantity", -1), ("unit_price_per_month", "-0.01"),
                                              ("revenue_share_percent", "-1"), ("revenue_share_percent", "100.01")])
def test_zero_and_negative_values_are_refused_as_a_bad_line(field: str, value: object) -> None:
    values = {"quantity": 1, "unit_price_per_month": Decimal("50.00"), "revenue_share_percent": Decimal("15")}
    values[field] = Decimal(value) if isinstance(value, str) else value
    with pytest.raises(RecordError) as caught:
        expected_payout([OrderItem(values["quantity"], values["unit_price_per_month"],  # type: ignore[arg-type]
                                   values["revenue_share_percent"])])  # type: ignore[arg-type]
    assert caught.value.code == "INVALID_LINE" and f"lines[0].{field}" in caught.value.reason


# ------------------------------------------------------------------------------- cents


@pytest.mark.parametrize("cents", [0, 1, 5, 99, 100, 726_000, 11_999_998_800_000, 10**17 + 1])
def test_cents_round_trip_exactly(cents: int) -> None:
    amount = from_cents(cents)
    assert amount == Fraction(cents, 100) and to_cents(amount) == cents


def test_invoice_lines_sum_to_the_plan_in_whole_cents() -> None:
    initial = date(2024, 2, 29)
    order = an_order(start=date(2024, 8, 31), add_on_to=initial, items=[core_app(7, "3.33"), item(3, "0.125", "15")])
    plan = plan_invoice(order, proration=add_on_proration(order))
    lines = [ref_prorated(Decimal("279.72"), date(2024, 8, 31), initial),
             ref_prorated(Decimal("4.50"), date(2024, 8, 31), initial)]
    assert [line.amount for line in plan.lines] == lines
    assert sum(to_cents(line.amount) for line in plan.lines) == to_cents(plan.total) == sum(to_cents(a) for a in lines)
    assert all(to_cents(line.unit_amount) * line.quantity == to_cents(line.amount) for line in plan.lines)


# ------------------------------------------------------------------------ reconciliation

EXPECTED = Expected(Decimal("8400.00"), Decimal("1140.00"), Decimal("7260.00"))
PAID_ON = date(2025, 1, 2)


def paid_invoice(total: str = "8400.00", tax: str = "0.00", paid: str | None = None) -> InvoiceFacts:
    return InvoiceFacts("in_1", "paid" if paid is None else "open", Decimal(total),
                        Decimal(total if paid is None else paid), PAID_ON, tax=Decimal(tax))


def payout(net: str, gross: str = "8400.00", fees: str | None = None, payout_id: str = "po_1") -> Contribution:
    fee = Decimal(gross) - Decimal(net) if fees is None else Decimal(fees)
    return Contribution(payout_id, date(2025, 1, 4), gross=Decimal(gross), fees=fee, net=Decimal(net))


@pytest.mark.parametrize(("tolerance", "net", "flagged"), [
    ("0.00", "7260.00", False),
    ("0.00", "7259.99", True),
    ("0.05", "7259.95", False),  # the difference is exactly the tolerance: tolerated
    ("0.05", "7260.05", False),
    ("0.05", "7259.94", True),
    ("0.05", "7260.06", True),
])
def test_tolerance_is_inclusive(tolerance: str, net: str, flagged: bool) -> None:
    got = reconcile_order("o", EXPECTED, [paid_invoice()], [payout(net)], today=PAID_ON,
                          policy=Policy(Decimal(tolerance)))
    assert got.difference == Decimal(net) - Decimal("7260.00")
    assert (got.reason is not None) is flagged


def test_tax_passes_through_and_is_never_a_difference() -> None:
    # 8,400.00 + 8.875 % tax 745.50 = 9,145.50 paid; Salesforce's 1,140.00 deducted.
    got = reconcile_order("o", EXPECTED, [paid_invoice("9145.50", "745.50")], [payout("8005.50", "9145.50")],
                          today=PAID_ON, policy=Policy())
    assert (got.actual_payout, got.difference, got.reason, got.tax_paid_out) == (
        Decimal("7260.00"), Decimal("0.00"), None, Decimal("745.50"))


def test_a_partial_payment_is_flagged_with_its_figures_and_its_share_of_the_tax() -> None:
    half = reconcile_order("o", EXPECTED, [paid_invoice("9145.50", "745.50", paid="4572.75")],
                           [payout("4002.75", "4572.75")], today=PAID_ON, policy=Policy())
    assert half.reason == "partial payment"
    assert half.detail == "4572.75 paid of 9145.50 invoiced"
    assert half.tax_paid_out == ref_half_up(Fraction(Decimal("745.50")) * Fraction(Decimal("4572.75"))
                                            / Fraction(Decimal("9145.50")))  # 372.75


def test_one_order_paid_out_over_two_payouts_adds_up() -> None:
    got = reconcile_order("o", EXPECTED, [paid_invoice()], [payout("3630.00", "4200.00", payout_id="po_1"),
                                                            payout("3630.00", "4200.00", payout_id="po_2")],
                          today=PAID_ON, policy=Policy())
    assert (got.actual_payout, got.reason, got.payout_ids) == (Decimal("7260.00"), None, ("po_1", "po_2"))


@pytest.mark.parametrize(("days_after_payment", "flagged"), [(6, False), (7, False), (8, True)])
def test_missing_from_payout_after_the_grace_days(days_after_payment: int, flagged: bool) -> None:
    """``missing_after_days = 7``: a paid invoice may be in no payout for 7 days; on the
    8th it is flagged (the same grace reading as invoicing's ``missing_after_days``)."""
    got = reconcile_order("o", EXPECTED, [paid_invoice()], [],
                          today=PAID_ON + timedelta(days=days_after_payment), policy=Policy(missing_after_days=7))
    assert (got.reason == "missing from payout") is flagged


@pytest.mark.parametrize(("tax", "total", "amount"), [
    ("0.01", "2.00", "1.00"),
    ("407720262093.65", "8966676110156.58", "4483338055078.29"),  # half the total: X.825 exactly
    ("1885190009741.47", "3015231566861.38", "1507615783430.69"),
])
def test_the_tax_inside_a_partial_payment_is_half_up_exactly_at_any_size(tax: str, total: str, amount: str) -> None:
    """The product of two amounts within NUMERIC(18, 2) has up to 36 digits: worked out in
    the 28-digit default context it lost the half cent (…46.82 for …46.825)."""
    exact = Fraction(Decimal(tax)) * Fraction(Decimal(amount)) / Fraction(Decimal(total))
    assert (exact * 1000).denominator == 1 and (exact * 1000) % 10 == 5  # a half cent, exactly
    assert tax_share(Decimal(tax), Decimal(total), Decimal(amount)) == ref_half_up(exact)


@pytest.mark.parametrize(("fees", "stripe_fees", "net", "reason", "tax_paid_out"), [
    ("1885.50", "0.00", "7260.00", None, "0.00"),  # the deduction is share + tax: tax withheld
    ("2151.02", "265.52", "6994.48", "fee differs", "0.00"),  # ... and a Stripe fee besides
    ("1140.00", "0.00", "8005.50", None, "745.50"),  # the share only: the tax passed through
    ("1885.49", "0.00", "7260.01", "fee differs", "745.50"),  # neither: the tax is not guessed away
])
def test_tax_is_apart_whether_it_passes_through_or_salesforce_withholds_it(
        fees: str, stripe_fees: str, net: str, reason: str | None, tax_paid_out: str) -> None:
    contribution = Contribution("po_1", date(2025, 1, 4), gross=Decimal("9145.50"), fees=Decimal(fees),
                                stripe_fees=Decimal(stripe_fees), net=Decimal(net))
    got = reconcile_order("o", EXPECTED, [paid_invoice("9145.50", "745.50")], [contribution], today=PAID_ON,
                          policy=Policy())
    assert (got.reason, got.tax_paid_out, got.tax) == (reason, Decimal(tax_paid_out), Decimal("745.50"))
    assert got.actual_payout == Decimal(net) - Decimal(tax_paid_out)
    if reason == "fee differs" and stripe_fees != "0.00":
        assert got.detail == ("deducted 2151.02 (revenue share 1140.00, tax 745.50, Stripe fee 265.52); "
                              "expected revenue share 1140.00")
