"""The one add-on rule: an add-on is prorated from its start to its initial order's end,
and one without its initial order's start is quarantined with one code, whoever asks."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest

from connector.domain import (
    INITIAL_ORDER_MISSING,
    Proration,
    ProrationPolicy,
    add_on_proration,
    current_code,
    order_payout,
    plan_invoice,
)
from connector.errors import RecordError
from tests.unit.domain.builders import an_order, core_app

ADD_ON = an_order(order_id="a0B5g00000ADDON1", start=date(2025, 3, 1), add_on_to=date(2025, 1, 1),
                  items=[core_app(quantity=15)])


def test_an_initial_order_is_not_prorated() -> None:
    assert add_on_proration(an_order(items=[core_app()])) is None


def test_an_add_on_is_prorated_from_its_start_to_its_initial_orders_end() -> None:
    assert add_on_proration(ADD_ON) == Proration(date(2025, 1, 1), date(2025, 3, 1), ProrationPolicy.DAILY)
    assert add_on_proration(ADD_ON, "monthly") == Proration(date(2025, 1, 1), date(2025, 3, 1),
                                                            ProrationPolicy.MONTHLY)


def test_invoice_and_payout_of_an_add_on_use_the_same_prorated_total() -> None:
    proration = add_on_proration(ADD_ON)
    assert plan_invoice(ADD_ON, proration=proration).total == Decimal("7545.21")  # 9000 x 306 / 365
    estimate = order_payout(ADD_ON)
    assert (estimate.subtotal, estimate.revenue_share, estimate.expected_payout) == (
        Decimal("7545.21"), Decimal("1131.78"), Decimal("6413.43"))


@pytest.mark.parametrize("initial_order_id", ["a0B5g00000INITIAL", None])
def test_an_add_on_without_its_initial_orders_start_is_initial_order_missing(initial_order_id: str | None) -> None:
    orphan = replace(ADD_ON, initial_order_id=initial_order_id, initial_start_date=None)
    for compute in (add_on_proration, order_payout):
        with pytest.raises(RecordError) as caught:
            compute(orphan)
        assert caught.value.code == INITIAL_ORDER_MISSING == "INITIAL_ORDER_MISSING"
        assert caught.value.record_id == "a0B5g00000ADDON1"
        assert (initial_order_id or "(none given)") in caught.value.reason


def test_an_add_on_without_its_own_start_is_missing_start_date() -> None:
    with pytest.raises(RecordError) as caught:
        order_payout(replace(ADD_ON, service_start_date=None))
    assert caught.value.code == "MISSING_START_DATE"


def test_an_initial_start_the_connector_cannot_compute_with_names_the_add_on() -> None:
    with pytest.raises(RecordError) as caught:
        add_on_proration(replace(ADD_ON, initial_start_date=date(1, 1, 1)))
    assert (caught.value.code, caught.value.record_id) == ("INVALID_DATE", "a0B5g00000ADDON1")


def test_an_add_on_after_its_initial_term_is_refused_by_the_payout_too() -> None:
    with pytest.raises(RecordError) as caught:
        order_payout(replace(ADD_ON, service_start_date=date(2026, 1, 5)))
    assert caught.value.code == "ADDON_AFTER_TERM"


def test_payout_of_an_order_needs_items_and_their_revenue_shares() -> None:
    with pytest.raises(RecordError) as caught:
        order_payout(an_order())
    assert caught.value.code == "ORDER_WITHOUT_ITEMS"
    no_share = replace(core_app(), revenue_share_percent=None, item_id="oi-1", ppc_id=None)
    with pytest.raises(RecordError) as caught:
        order_payout(an_order(items=[no_share]))
    assert caught.value.code == "NO_REVENUE_SHARE"
    assert "item oi-1: no revenue share (PPP ppp-core -> PPC None)" in caught.value.reason


def test_the_code_reconciliation_stored_before_is_read_as_today_s() -> None:
    assert current_code("ADDON_WITHOUT_INITIAL") == INITIAL_ORDER_MISSING
    assert current_code("NO_REVENUE_SHARE") == "NO_REVENUE_SHARE"
