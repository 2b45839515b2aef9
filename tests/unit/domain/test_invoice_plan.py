"""The Stripe invoice planned for one order: seed 003, add-ons, and orders we must refuse."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.domain import OrderItem, Proration, ProrationPolicy, plan_invoice, to_cents
from connector.errors import RecordError
from tests.unit.domain.builders import ORG_ID, an_order, item

MARCH_1_ADD_ON = Proration(initial_start=date(2025, 1, 1), addon_start=date(2025, 3, 1))


def seed_003_items() -> list[OrderItem]:
    return [
        item("Core App", 10, "50.00", ppp_id="ppp-core", org_total="6000.00", item_id="oi-1"),
        item("Premium Add-On", 1, "200.00", ppp_id="ppp-premium", org_total="2400.00", item_id="oi-2"),
    ]


def test_seed_003_invoice_has_two_upfront_annual_lines_for_8400() -> None:
    plan = plan_invoice(an_order(subtotal="8400.00", items=seed_003_items()))

    assert plan.total == Decimal("8400.00")
    assert [(ln.quantity, ln.unit_amount, ln.amount) for ln in plan.lines] == [
        (10, Decimal("600.00"), Decimal("6000.00")),
        (1, Decimal("2400.00"), Decimal("2400.00")),
    ]
    assert [ln.ppp_id for ln in plan.lines] == ["ppp-core", "ppp-premium"]
    assert plan.lines[0].description == "Core App: 12-month subscription, 2025-01-01 to 2025-12-31"
    assert dict(plan.lines[0].metadata) == {
        "gtm_ppp_id": "ppp-core",
        "gtm_order_item_id": "oi-1",
        "licenses": "10",
        "unit_price_per_month": "50.00",
    }
    assert (plan.currency, plan.days_until_due, plan.customer_email) == ("usd", 30, "ap@acme.example")
    assert dict(plan.metadata) == {
        "gtm_org_id": ORG_ID,
        "gtm_order_id": "a0B5g00000ORDER1",
        "gtm_order_number": "00000101",
        "gtm_order_type": "initial",
        "gtm_service_period": "2025-01-01..2025-12-31",
    }


def test_every_line_is_whole_cents_and_adds_up_to_the_total() -> None:
    plan = plan_invoice(an_order(items=seed_003_items()))
    for line in plan.lines:
        assert to_cents(line.amount) == line.quantity * to_cents(line.unit_amount)
    assert sum(to_cents(ln.amount) for ln in plan.lines) == to_cents(plan.total) == 840000


def test_add_on_is_invoiced_for_its_prorated_amount() -> None:
    order = an_order(order_id="a0B5g00000ADDON1", number="00000102", start=date(2025, 3, 1),
                     items=[item("Core App", 15, "50.00", org_total="9000.00")])
    plan = plan_invoice(order, proration=MARCH_1_ADD_ON)

    (line,) = plan.lines
    assert (line.quantity, line.unit_amount, line.amount) == (1, Decimal("7545.21"), Decimal("7545.21"))
    assert line.description == "Core App: 15 licenses added, prorated 2025-03-01 to 2025-12-31 (306 of 365 days)"
    assert line.metadata["licenses"] == "15"
    assert plan.total == Decimal("7545.21")
    assert plan.metadata["gtm_order_type"] == "add_on"
    assert plan.metadata["gtm_proration"] == "daily"


def test_add_on_with_monthly_policy_pays_whole_months() -> None:
    proration = replace(MARCH_1_ADD_ON, policy=ProrationPolicy.MONTHLY)
    plan = plan_invoice(an_order(start=None, items=[item("Core App", 15, "50.00")]), proration=proration)
    assert plan.total == Decimal("7500.00")
    assert plan.lines[0].description.endswith("(10 of 12 months)")


@pytest.mark.parametrize("org_subtotal", ["9000.00", "7545.21"])
def test_add_on_subtotal_may_be_given_prorated_or_not(org_subtotal: str) -> None:
    order = an_order(subtotal=org_subtotal, start=date(2025, 3, 1), items=[item("Core App", 15, "50.00")])
    plan = plan_invoice(order, proration=MARCH_1_ADD_ON)
    assert plan.total == Decimal("7545.21")


def test_add_on_subtotal_matching_neither_is_refused() -> None:
    order = an_order(subtotal="7545.20", start=date(2025, 3, 1), items=[item("Core App", 15, "50.00")])
    expected = r"subtotal: the org says 7545.20, the items add up to 9000.00 \(prorated 7545.21\)"
    with pytest.raises(RecordError, match=expected):
        plan_invoice(order, proration=MARCH_1_ADD_ON)


def test_add_on_starting_after_the_initial_term_is_refused() -> None:
    late = Proration(initial_start=date(2025, 1, 1), addon_start=date(2026, 1, 5))
    with pytest.raises(RecordError, match=r"items\[0\]: addon_start_date 2026-01-05 is after") as caught:
        plan_invoice(an_order(start=date(2026, 1, 5), items=[item()]), proration=late)
    assert caught.value.code == "ADDON_AFTER_TERM"


def test_add_on_start_must_agree_with_the_orders_service_start() -> None:
    with pytest.raises(RecordError, match="service_start_date: the add-on starts 2025-03-05") as caught:
        plan_invoice(an_order(start=date(2025, 3, 5), items=[item()]), proration=MARCH_1_ADD_ON)
    assert caught.value.code == "ADDON_START_MISMATCH"


@pytest.mark.parametrize(
    ("order", "items", "code", "reason"),
    [
        (an_order(currency="EUR"), [item()], "UNSUPPORTED_CURRENCY",
         'currency: must be USD (the GTM app bills in US dollars only), got "EUR"'),
        (an_order(term=24), [item()], "UNSUPPORTED_TERM", "contract_term_months: must be 12 months, got 24"),
        (an_order(email=None), [item()], "MISSING_BILLING_EMAIL", "billing_email: is required"),
        (an_order(email="  "), [item()], "MISSING_BILLING_EMAIL", "billing_email: must be an email address"),
        (an_order(), [], "NO_ITEMS", "items: an order needs at least one item to invoice"),
        (an_order(), [item(quantity=0)], "INVALID_ITEM", "items[0].quantity: must be a positive integer, got 0"),
        (an_order(), [item(name="")], "INVALID_ITEM", "items[0].ppp_name: is required"),
        (
            an_order(),
            [item(), item("Premium Add-On", 1, "200.00", org_total="2399.99")],
            "LINE_TOTAL_MISMATCH",
            "items[1].line_item_total: the org says 2399.99, 1 x 200.00 x 12 = 2400.00",
        ),
        (an_order(subtotal="8400.01"), seed_003_items(), "SUBTOTAL_MISMATCH",
         "subtotal: the org says 8400.01, the items add up to 8400.00"),
    ],
)
def test_order_that_cannot_be_invoiced_is_a_record_error(order, items, code: str, reason: str) -> None:
    with pytest.raises(RecordError) as caught:
        plan_invoice(replace(order, items=tuple(items)))
    error = caught.value
    assert error.code == code
    assert error.record_id == order.order_id
    assert error.reason.startswith("order 00000101: ")
    assert reason in error.reason


def test_every_problem_of_a_bad_order_is_named_at_once() -> None:
    with pytest.raises(RecordError) as caught:
        plan_invoice(an_order(currency="EUR", email=None, items=[item(quantity=-3)]))
    assert caught.value.reason.count(";") == 2
    assert "items[0].quantity: must be a positive integer, got -3" in str(caught.value)


def test_sub_cent_annual_price_is_billed_as_one_exact_unit() -> None:
    plan = plan_invoice(an_order(items=[item("Metered App", 7, "0.1234")]))
    (line,) = plan.lines
    assert (line.quantity, line.unit_amount, line.amount) == (1, Decimal("10.37"), Decimal("10.37"))
    assert line.description.endswith("(7 licenses at 0.1234/month)")


def test_plan_version_is_stable_and_follows_the_content() -> None:
    first = plan_invoice(an_order(items=seed_003_items()))
    again = plan_invoice(an_order(items=seed_003_items()))
    more_seats = plan_invoice(an_order(items=[item(quantity=11)] + seed_003_items()[1:]))
    other_terms = plan_invoice(an_order(items=seed_003_items()), days_until_due=45)

    assert first.version == again.version
    assert first == again and len({first, again}) == 1
    assert len(first.version) == 16
    assert len({first.version, more_seats.version, other_terms.version}) == 3


@settings(max_examples=100)
@given(
    st.lists(
        st.tuples(st.integers(1, 5000), st.decimals(min_value=0, max_value=10_000, places=2)),
        min_size=1,
        max_size=6,
    ),
    st.integers(0, 364),
    st.booleans(),
)
def test_property_lines_are_exact_cents_and_sum_to_the_total(lines, offset: int, add_on: bool) -> None:
    items = [item(f"Product {i}", qty, str(price), ppp_id=f"ppp-{i}") for i, (qty, price) in enumerate(lines)]
    start = date(2025, 1, 1)
    proration = Proration(start, date.fromordinal(start.toordinal() + offset)) if add_on else None
    plan = plan_invoice(an_order(start=None, items=items), proration=proration)
    assert sum(to_cents(ln.quantity * ln.unit_amount) for ln in plan.lines) == to_cents(plan.total)
    assert all(to_cents(ln.amount) == ln.quantity * to_cents(ln.unit_amount) for ln in plan.lines)
