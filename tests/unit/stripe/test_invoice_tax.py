"""The tax of a Stripe invoice in every API version's shape, as ``invoice_record`` reads it
(webhooks carry the shape of the endpoint's API version, retrieves the client's)."""

from __future__ import annotations

from decimal import Decimal

from connector.adapters.stripe_billing import invoice_record, invoice_tax

BASE = {"id": "in_1", "customer": "cus_1", "status": "open", "total": 914_550, "amount_due": 914_550,
        "currency": "usd"}


def test_current_versions_total_taxes() -> None:
    data = {**BASE, "total_taxes": [{"amount": 74_550, "tax_behavior": "exclusive"}, {"amount": 10}],
            "total_excluding_tax": 840_000}
    assert invoice_tax(data) == 74_560
    assert invoice_record(data).tax == Decimal("745.60")


def test_older_versions_tax_and_total_tax_amounts() -> None:
    assert invoice_tax({**BASE, "tax": 74_550}) == 74_550
    assert invoice_tax({**BASE, "tax": None, "total_tax_amounts": [{"amount": 74_550, "inclusive": False}]}) == 74_550


def test_totals_or_lines_when_nothing_else_says() -> None:
    assert invoice_tax({**BASE, "total_excluding_tax": 840_000}) == 74_550
    lines = {"data": [{"taxes": [{"amount": 74_000}]}, {"tax_amounts": [{"amount": 550}]}]}
    assert invoice_tax({"id": "in_1", "lines": lines}) == 74_550


def test_an_untaxed_invoice_has_zero_tax() -> None:
    assert invoice_record({**BASE, "total_taxes": [], "total_excluding_tax": 914_550}).tax == Decimal("0.00")
    assert invoice_record({**BASE}).tax == Decimal("0.00")
