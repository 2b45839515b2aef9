"""``billing_port.combined_invoice``: the invoices the GTM app billed one order by, kept as
the order's one invoice row (adopting them, polling them)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from connector.services.billing_port import StripeInvoice, combined_invoice


def _invoice(invoice_id: str, status: str, created: int, amount: str, paid_at: datetime | None = None) -> StripeInvoice:
    value = Decimal(amount)
    paid = value if status == "paid" else Decimal("0.00")
    return StripeInvoice(id=invoice_id, customer_id="cus_1", status=status, number=f"N-{invoice_id}", hosted_url=None,
                         currency="usd", total=value, amount_due=value, amount_paid=paid,
                         amount_remaining=value - paid, line_count=1, created=created, paid_at=paid_at)


def test_the_order_is_as_far_as_its_least_advanced_invoice() -> None:
    paid_at = datetime(2026, 1, 5, tzinfo=UTC)
    whole = combined_invoice([_invoice("in_b", "open", 2, "400.00"), _invoice("in_a", "paid", 1, "8000.00", paid_at)])
    assert (whole.id, whole.status, whole.number) == ("in_a", "open", "N-in_a, N-in_b")
    assert (whole.amount_due, whole.amount_paid, whole.paid_at) == (Decimal("8400.00"), Decimal("8000.00"), None)


def test_an_order_whose_invoices_are_all_void_is_void() -> None:
    # Polling keeps the live invoices, or all of them when every one is void ("all void:
    # the order's is void"): the row must say void, not lose its status (None is ignored
    # by the state machine, and the row would stay open and polled for ever).
    whole = combined_invoice([_invoice("in_a", "void", 1, "8000.00"), _invoice("in_b", "void", 2, "400.00")])
    assert whole.status == "void"
