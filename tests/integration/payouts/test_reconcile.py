"""Reconciliation against the local Stripe sandbox with the official SDK: the partner's
payouts, net of fees, checked order by order against seed 003's expected payout."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog

from connector.domain.reconciliation import BalanceTxn, StripePayout
from connector.services.payouts import Reconciler
from tests.fixtures.payouts import Line, Order, PartnerBooks, core_app, sf_id


def test_seed_003_order_paid_out_net_of_the_revenue_share_reconciles_exactly(
        books_on: Callable[..., PartnerBooks], database_url: str) -> None:
    books = books_on(database_url)
    order = books.an_order()
    books.invoice(order)
    books.pay_with_share_deducted(order)
    payout = books.payout()

    outcome = books.run("reconcile")

    row = books.reconciliation(order)
    assert (row.subtotal, row.revenue_share, row.expected_payout) == (
        Decimal("8400.00"), Decimal("1140.00"), Decimal("7260.00"))
    assert row.actual_payout == Decimal("7260.00") and row.difference == Decimal("0.00")
    assert row.discrepancy is None
    assert [p["payout_id"] for p in row.payout_ids] == [payout["id"]]
    assert row.payout_date is not None
    assert outcome.counts["payouts"] == 1 and outcome.counts["matched"] == 1
    assert outcome.counts["discrepancies"] == 0
    with books.uow() as uow:
        (stored,) = uow.payouts.list(books.org_id)
        state = uow.sync_state.get(books.org_id, "stripe_payouts")
    assert stored.amount == Decimal("7260.00") and stored.stripe_payout_id == payout["id"]
    assert state.cursor is not None and state.records_total == 1


def test_rerunning_adds_nothing_and_only_lists_payouts(
    books_on: Callable[..., PartnerBooks], database_url: str
) -> None:
    books = books_on(database_url)
    order = books.an_order()
    books.invoice(order)
    books.pay_with_share_deducted(order)
    books.payout()
    books.run("reconcile")
    first = books.reconciliation(order)
    books.stripe_box.reset_counters()

    again = books.run("reconcile")

    assert again.counts["payouts"] == 0 and again.counts["orders_written"] == 0
    assert books.reconciliation(order) == first  # not even computed_at moved
    assert books.stripe_box.counters() == {"GET /v1/payouts": 1}


def test_stripe_processing_fee_alone_is_flagged_fee_differs(books: PartnerBooks) -> None:
    order = books.an_order()
    books.invoice(order)
    books.pay(order)  # the sandbox's standard pricing: 2.9 % + 30¢, no share deducted
    books.payout()

    outcome = books.run("reconcile")

    row = books.reconciliation(order)
    assert row.actual_payout == Decimal("8156.10")  # 8,400.00 - 243.90
    assert row.difference == Decimal("896.10")
    assert row.discrepancy == ("fee differs: deducted 243.90 (revenue share 0.00, Stripe fee 243.90); "
                               "expected revenue share 1140.00")
    assert outcome.counts["fee_differs"] == 1 and outcome.counts["discrepancies"] == 1


def test_partial_payment_is_flagged_until_the_rest_is_paid_out(books: PartnerBooks) -> None:
    order = books.an_order()
    books.invoice(order)
    books.pay_with_share_deducted(order, 420_000)
    first = books.payout()
    books.run("reconcile")
    row = books.reconciliation(order)
    assert row.actual_payout == Decimal("3630.00")
    assert row.discrepancy == "partial payment: 4200.00 paid of 8400.00 invoiced"

    books.pay_with_share_deducted(order)  # the remaining 4,200.00
    second = books.payout()
    books.run("reconcile")

    row = books.reconciliation(order)
    assert row.actual_payout == Decimal("7260.00") and row.discrepancy is None
    assert [p["payout_id"] for p in row.payout_ids] == [first["id"], second["id"]]


def test_a_refund_in_a_later_payout_is_flagged_refund(books: PartnerBooks) -> None:
    refunded, other = books.an_order(), books.an_order(core_app(2))
    for order in (refunded, other):
        books.invoice(order)
    charge = books.pay_with_share_deducted(refunded)
    books.payout()
    books.run("reconcile")
    assert books.reconciliation(refunded).discrepancy is None

    books.refund(charge, 100_000)  # 1,000.00 back to the customer
    books.pay_with_share_deducted(other)  # the next payout also carries another order's money
    books.payout()
    books.run("reconcile")

    row = books.reconciliation(refunded)
    assert row.actual_payout == Decimal("6260.00") and row.difference == Decimal("-1000.00")
    assert row.discrepancy == "refund: 1000.00 refunded of 8400.00 paid"
    assert len(row.payout_ids) == 2
    assert books.reconciliation(other).discrepancy is None


def test_a_payout_spanning_several_invoices_is_split_per_order(books: PartnerBooks) -> None:
    orders = [books.an_order(), books.an_order(core_app(3)), books.an_order(core_app(1, "99.99"))]
    for order in orders:
        books.invoice(order)
        books.pay_with_share_deducted(order)
    payout = books.payout()

    outcome = books.run("reconcile")

    rows = [books.reconciliation(o) for o in orders]
    assert [r.actual_payout for r in rows] == [o.expected_payout for o in orders]
    assert all(r.discrepancy is None for r in rows)
    assert {r.payout_ids[0]["payout_id"] for r in rows} == {payout["id"]}
    assert sum(r.actual_payout for r in rows) == Decimal(payout["amount"]).scaleb(-2)
    assert outcome.counts["matched"] == 3 and outcome.counts["transactions"] == 3


def test_a_charge_tracing_to_no_known_order_is_reported_once_per_org(books: PartnerBooks) -> None:
    order = books.an_order()
    books.invoice(order)
    books.pay_with_share_deducted(order)
    stray = books.an_order(core_app(1))
    books.invoice(stray, metadata={}, record=False)  # an invoice someone made by hand in Stripe
    books.pay(stray)
    payout = books.payout()

    outcome = books.run("reconcile")
    books.run("reconcile")

    (letter,) = books.open_letters("payouts")
    assert letter.error_code == "UNKNOWN_CHARGE" and letter.object_name == "balance_transaction"
    assert letter.reason.startswith("unknown charge: charge ch_") and "and no known order" in letter.reason
    assert letter.payload["payout_id"] == payout["id"] and letter.payload["amount"] == "600.00"
    assert letter.attempts == 1
    assert outcome.counts["unknown_charges"] == 1 and outcome.counts["discrepancies"] == 1
    assert books.reconciliation(order).discrepancy is None


def test_a_paid_invoice_in_no_payout_is_flagged_after_the_grace_days(books: PartnerBooks) -> None:
    order = books.an_order()
    books.invoice(order)
    books.pay_with_share_deducted(order)  # paid, but Stripe has not paid it out
    books.run("reconcile")
    assert books.reconciliation(order).discrepancy is None

    books.now[0] += timedelta(days=8)  # config default: missing after 7 days
    outcome = books.run("reconcile")

    row = books.reconciliation(order)
    assert row.discrepancy is not None and row.discrepancy.startswith("missing from payout: 8400.00 paid on ")
    assert row.actual_payout is None
    assert outcome.counts["missing_from_payout"] == 1


def test_the_orgs_payout_records_are_matched_by_stripe_payout_id(books: PartnerBooks) -> None:
    order = books.an_order()
    books.invoice(order)
    books.pay_with_share_deducted(order)
    payout = books.payout()
    with books.uow() as uow:
        uow.mirror("payout").upsert_many(books.org_id, [
            {"sf_id": "1PY000000000001AAA", "system_modstamp": books.now[0], "stripe_payout_id": payout["id"],
             "amount": Decimal("7260.00")},
            {"sf_id": "1PY000000000002AAA", "system_modstamp": books.now[0], "stripe_payout_id": payout["id"],
             "amount": Decimal("7200.00")},
        ])
        uow.commit()

    outcome = books.run("reconcile")

    assert outcome.counts["org_payouts_matched"] == 2 and outcome.counts["org_payouts_differing"] == 1
    (letter,) = [d for d in books.open_letters("payouts") if d.object_name == "SfdcPartnerPayout"]
    assert letter.record_id == "1PY000000000002AAA" and letter.error_code == "PAYOUT_AMOUNT_DIFFERS"
    assert "says 7200.00" in letter.reason and "paid 7260.00" in letter.reason


def test_dry_run_computes_but_writes_nothing(books: PartnerBooks) -> None:
    order = books.an_order()
    books.invoice(order)
    books.pay_with_share_deducted(order)
    books.payout()

    books.run("reconcile", dry_run=True)

    assert books.reconciliation(order) is None
    with books.uow() as uow:
        assert uow.payouts.list(books.org_id) == []
        assert uow.sync_state.get(books.org_id, "stripe_payouts") is None


def test_an_add_on_is_expected_on_its_prorated_total(books: PartnerBooks) -> None:
    initial = books.an_order()
    # 5 more Core App seats from 2 July on a term that started 1 January: 183 of 365 days
    add_on = books.an_order(core_app(5), start=date(2025, 7, 2), add_on_to=(initial, date(2025, 1, 1)),
                            totals=[Decimal("1504.11")])
    books.invoice(add_on)
    books.pay_with_share_deducted(add_on)
    books.payout()

    books.run("reconcile")

    row = books.reconciliation(add_on)
    assert (row.subtotal, row.revenue_share, row.expected_payout) == (
        Decimal("1504.11"), Decimal("225.62"), Decimal("1278.49"))
    assert row.actual_payout == Decimal("1278.49") and row.discrepancy is None


def test_the_orgs_payout_object_is_mirrored_in_cents_and_matched_by_external_id(
    org_books: PartnerBooks, sandbox_org: Any
) -> None:
    """SfdcPartnerPayout as a real org keeps it: Amount in cents, ExternalId = the Stripe
    payout id, ArrivalDate and Status. Mirrored through the org's API, then reconciled."""
    order = org_books.an_order()
    org_books.invoice(order)
    org_books.pay_with_share_deducted(order)
    payout = org_books.payout()
    arrival = datetime.fromtimestamp(payout["arrival_date"], UTC).date().isoformat()
    good, failed = sandbox_org.insert("SfdcPartnerPayout", [
        {"ExternalId": payout["id"], "Amount": Decimal(726000), "ArrivalDate": arrival, "Status": "In_Transit",
         "CurrencyIsoCode": "USD"},
        {"ExternalId": payout["id"], "Amount": Decimal(726001), "ArrivalDate": arrival, "Status": "Failed",
         "CurrencyIsoCode": "USD"},
    ])

    org_books.run("mirror")
    with org_books.uow() as uow:
        mirrored = {r["sf_id"]: r for r in uow.mirror("payout").list(org_books.org_id)}
    assert mirrored[good]["amount"] == Decimal("7260.00")  # cents converted once, at the edge
    outcome = org_books.run("reconcile")

    assert outcome.counts["org_payouts_matched"] == 2 and outcome.counts["org_payouts_differing"] == 1
    (letter,) = [d for d in org_books.open_letters("payouts") if d.object_name == "SfdcPartnerPayout"]
    assert letter.record_id == failed and letter.error_code == "PAYOUT_AMOUNT_DIFFERS"
    assert "the org says 7260.01, Stripe paid 7260.00" in letter.reason
    assert f"the org says Failed, Stripe says {payout['status']}" in letter.reason


def test_a_letter_stored_under_the_retired_add_on_code_takes_todays_code(books: PartnerBooks) -> None:
    initial = books.an_order()
    add_on = books.an_order(core_app(5), start=date(2025, 7, 2), add_on_to=(initial, date(2025, 1, 1)),
                            totals=[Decimal("1504.11")])
    books.invoice(add_on)
    with books.uow() as uow:
        uow.mirror("order").soft_delete(books.org_id, [initial.order_id], books.now[0])
        # What reconciliation stored before invoicing and payouts shared one order reader.
        uow.dead_letters.add(books.org_id, "payouts", "order", add_on.order_id, "ADDON_WITHOUT_INITIAL",
                             "add-on order: the initial order or a start date is not mirrored")
        uow.commit()

    books.run("reconcile")

    letters = [(letter.error_code, letter.attempts) for letter in books.open_letters("payouts")
               if letter.record_id == add_on.order_id]
    assert letters == [("INITIAL_ORDER_MISSING", 2)]  # the same letter, under the one code invoicing uses


def test_an_order_too_large_to_keep_is_quarantined_and_the_others_reconcile(
        books_on: Callable[..., PartnerBooks], database_url: str) -> None:
    books = books_on(database_url)
    # 1,000,000 licenses at 999,999,999.99 a month: a subtotal of 1.2e16, beyond NUMERIC(18, 2).
    # The org gives no totals (they would not fit either); Salesforce linked an invoice to it.
    line = Line("Core App", 1_000_000, "999999999.99", "15")
    ppp, stamp, huge_id = books._ppp(line), books.now[0], sf_id("1Or")
    with books.uow() as uow:
        uow.mirror("order").upsert_many(books.org_id, [{
            "sf_id": huge_id, "system_modstamp": stamp, "name": "Order huge", "order_number": "00009999",
            "status": "Activated", "order_type": "Initial", "customer_name": "Acme Corp", "contract_term_months": 12,
            "service_start_date": stamp.date(), "billing_email": "billing@acme.example.com", "currency": "USD"}])
        uow.mirror("order_item").upsert_many(books.org_id, [{
            "sf_id": sf_id("1Oi"), "system_modstamp": stamp, "name": line.name, "order_id": huge_id, "ppp_id": ppp,
            "quantity": line.quantity, "unit_price_per_month": Decimal(line.price)}])
        uow.commit()
    books.invoice(Order(huge_id, "00009999", Decimal("100.00"), Decimal("15.00")))
    order = books.an_order()
    books.invoice(order)
    books.pay_with_share_deducted(order)
    books.payout()

    outcome = books.run("reconcile")  # once failed at the commit: "does not fit NUMERIC(18, 2)"

    assert books.reconciliation(order).discrepancy is None and books.reconciliation(order).difference == 0
    assert books.reconciliation(Order(huge_id, "00009999", Decimal(0), Decimal(0))) is None
    (letter,) = [d for d in books.open_letters("payouts") if d.record_id == huge_id]
    assert letter.error_code == "AMOUNT_OUT_OF_RANGE"
    assert letter.reason == ("subtotal 11999999999880000.00 is beyond the largest amount the connector keeps "
                             "(9999999999999999.99)")
    assert outcome.counts["errors"] == 1 and outcome.counts["matched"] == 1


class SettledIn:
    """The org's Stripe payouts as an account settling in ``currency`` reports them: the real
    gateway's payouts, relabelled (the sandbox settles in USD only)."""

    def __init__(self, gateway: Any, currency: str) -> None:
        self.gateway, self.currency = gateway, currency

    def list_payouts(self, created_since: int | None = None) -> list[StripePayout]:
        return [replace(p, currency=self.currency) for p in self.gateway.list_payouts(created_since)]

    def transactions(self, payout: StripePayout) -> list[BalanceTxn]:
        return list(self.gateway.transactions(payout))


def test_a_payout_in_another_currency_is_a_letter_never_set_against_usd_orders(books: PartnerBooks) -> None:
    order = books.an_order()
    books.invoice(order)
    books.pay_with_share_deducted(order)
    payout = books.payout()

    counts = Reconciler(books.runtime, SettledIn(books.runtime.payouts(), "eur"), log=structlog.get_logger()).run()

    # its cents are euro cents: once they were taken for dollars and the order "matched"
    row = books.reconciliation(order)
    assert row is None or row.actual_payout is None
    (letter,) = [d for d in books.open_letters("payouts") if d.object_name == "payout"]
    assert letter.record_id == payout["id"] and letter.error_code == "UNSUPPORTED_CURRENCY"
    assert letter.reason == (f"payout {payout['id']} of 7260.00 EUR is not in USD: the GTM app bills US dollars "
                             "only, so its transactions are not reconciled against orders")
    assert counts["errors"] == 1 and counts["matched"] == 0


def test_an_order_the_org_keeps_in_euros_is_a_bad_record_not_a_dollar_payout(books: PartnerBooks) -> None:
    """Salesforce linked an invoice to an order whose currency is EUR: no expected payout
    in dollars is made up for it (DESIGN: USD only); the order is a letter naming why."""
    order = books.an_order()
    books.invoice(order)
    with books.uow() as uow:
        uow.mirror("order").upsert_many(books.org_id, [{"sf_id": order.order_id, "system_modstamp": books.now[0],
                                                        "currency": "EUR"}])
        uow.commit()

    outcome = books.run("reconcile")

    assert books.reconciliation(order) is None
    (letter,) = [d for d in books.open_letters("payouts") if d.record_id == order.order_id]
    assert letter.error_code == "UNSUPPORTED_CURRENCY" and 'got "EUR"' in letter.reason
    assert outcome.counts["errors"] == 1
