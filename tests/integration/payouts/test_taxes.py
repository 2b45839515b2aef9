"""Taxes on a Stripe invoice, through the real parts: a tax rate on the local Stripe
sandbox, the connector reading the invoice's tax (polling), the customer paying subtotal +
tax, Stripe paying out, reconciliation and the report. The tax passes through the payout
and is reported apart; it is never a payout difference."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

from connector.services.report import build_report
from tests.fixtures.payouts import PartnerBooks

TAX = Decimal("745.50")  # 8.875 % of seed 003's 8,400.00


def test_tax_on_the_invoice_is_stored_passed_through_and_never_a_payout_difference(
        books_on: Callable[..., PartnerBooks], database_url: str) -> None:
    books = books_on(database_url)
    rate = books.client.v1.tax_rates.create(params={"display_name": "Sales Tax", "percentage": 8.875,
                                                    "inclusive": False, "jurisdiction": "NY - New York"})
    order = books.an_order()
    books.invoice(order, tax_rates=[rate.id])
    with books.uow() as uow:
        assert uow.invoices.get(books.org_id, order.order_id).tax is None  # not read yet

    books.now[0] += timedelta(hours=2)  # past poll_after: the polling fallback reads the invoice
    books.run("invoice_status")
    with books.uow() as uow:
        invoice = uow.invoices.get(books.org_id, order.order_id)
    assert (invoice.amount_due, invoice.tax) == (Decimal("9145.50"), TAX)

    books.pay(order, fee_cents=order.share_cents)  # the customer pays 9,145.50; the share is deducted
    payout = books.payout()
    assert payout["amount"] == 914_550 - 114_000  # the payout's gross carries the tax

    outcome = books.run("reconcile")

    row = books.reconciliation(order)
    assert row.discrepancy is None and outcome.counts["discrepancies"] == 0
    assert (row.expected_payout, row.actual_payout, row.difference) == (
        Decimal("7260.00"), Decimal("7260.00"), Decimal("0.00"))
    assert row.tax == TAX  # passed through, apart from the partner's money

    report = build_report([books.runtime])
    [line] = [r for r in report.rows if r.order_id == order.order_id]
    assert line.as_json()["tax"] == "745.50" and line.as_json()["tax_paid_out"] == "745.50"
    assert line.as_json()["invoiced"] == "9145.50" and line.discrepancy is None
    [month] = report.months
    assert month.as_json()["tax"] == "745.50" and month.as_json()["difference"] == "0.00"


def test_a_processing_fee_on_a_taxed_order_is_the_only_difference(books: PartnerBooks) -> None:
    rate = books.client.v1.tax_rates.create(params={"display_name": "Sales Tax", "percentage": 8.875,
                                                    "inclusive": False})
    order = books.an_order()
    books.invoice(order, tax_rates=[rate.id])
    books.now[0] += timedelta(hours=2)
    books.run("invoice_status")
    books.pay(order)  # Stripe's 2.9 % + 30¢ of 9,145.50 = 265.52, no share deducted
    books.payout()

    books.run("reconcile")

    row = books.reconciliation(order)
    assert row.tax == TAX
    assert row.actual_payout == Decimal("9145.50") - Decimal("265.52") - TAX
    assert row.discrepancy.startswith("fee differs: deducted 265.52")


def test_tax_salesforce_withholds_with_its_share_is_no_payout_difference_either(books: PartnerBooks) -> None:
    """The GTM reference: a partner payout is "net of all invoices of the period after
    Salesforce's share and taxes". When Salesforce collects the tax itself, its application
    fee carries the share and the tax (1,140.00 + 745.50); the payout is then 7,260.00 with
    no tax in it, which is the expected payout, not a difference of the tax."""
    rate = books.client.v1.tax_rates.create(params={"display_name": "Sales Tax", "percentage": 8.875,
                                                    "inclusive": False})
    order = books.an_order()
    books.invoice(order, tax_rates=[rate.id])
    assert order.invoice_id
    books.now[0] += timedelta(hours=2)
    books.run("invoice_status")
    books.stripe_box.pay_invoice(order.invoice_id, fee=order.share_cents + 74_550)
    books.track_invoice(order)
    payout = books.payout()
    assert payout["amount"] == 726_000

    books.run("reconcile")

    row = books.reconciliation(order)
    assert (row.expected_payout, row.actual_payout, row.difference, row.discrepancy) == (
        Decimal("7260.00"), Decimal("7260.00"), Decimal("0.00"), None)
    assert row.tax == Decimal("0.00")  # none of it passed through this payout
    report = build_report([books.runtime])
    [line] = [r for r in report.rows if r.order_id == order.order_id]
    assert line.as_json()["tax"] == "745.50" and line.discrepancy is None  # still reported, apart
