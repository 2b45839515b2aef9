"""The records the billing port answers with (Decimal money, no SDK objects); the port
itself, ``BillingGateway``, is in ``connector.services.ports`` with the others.

``connector.adapters.stripe_billing.StripeBilling`` implements it against Stripe; tests may
pass an in-memory fake. Every write takes the idempotency ``key`` the caller derived and
recorded in its outbox, so a retried or resumed call is the same call to Stripe.
Errors are the connector's: ``TransientError`` (retry with the same key),
``PermanentError`` / ``AuthError`` (stop), ``RecordError`` (this record only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from connector.domain.invoice_plan import MAX_INVOICE_LINES
from connector.errors import PermanentError

MAX_LINES_PER_CALL = MAX_INVOICE_LINES  # Stripe's limit of line items on one invoice (the plan checks it)


class MalformedEvent(PermanentError):
    """A webhook whose signature verified but whose body is not an event the connector can
    read (answered 400: retrying the same body cannot help)."""


@dataclass(frozen=True)
class StripeCustomer:
    id: str
    email: str | None
    created: bool  # True when this call created it


@dataclass(frozen=True)
class StripeInvoice:
    """The fields of a Stripe invoice the connector keeps (amounts in Decimal dollars)."""

    id: str
    customer_id: str
    status: str | None
    number: str | None
    hosted_url: str | None
    currency: str
    total: Decimal
    amount_due: Decimal
    amount_paid: Decimal
    amount_remaining: Decimal
    line_count: int
    created: int
    due_date: date | None = None
    finalized_at: datetime | None = None
    paid_at: datetime | None = None
    voided_at: datetime | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    customer_email: str | None = None
    collection_method: str | None = None
    days_until_due: int | None = None
    line_amounts: tuple[Decimal, ...] = ()  # the lines Stripe embeds in the invoice (its first page)
    tax: Decimal = Decimal("0.00")  # part of amount_due: passes through to the tax authority, never the partner's


@dataclass(frozen=True)
class BillingEvent:
    """A verified Stripe event: ``invoice`` is set when the event's object is an invoice
    (a snapshot of it when the event happened)."""

    id: str
    type: str
    created: int
    object_type: str | None
    account: str | None = None
    invoice: StripeInvoice | None = None

    def summary(self) -> dict[str, Any]:
        """What is worth keeping of the event (ids, states, amounts; no personal data)."""
        out: dict[str, Any] = {"id": self.id, "type": self.type, "created": self.created, "account": self.account,
                               "object": self.object_type}
        if self.invoice is not None:
            inv = self.invoice
            out["invoice"] = {"id": inv.id, "status": inv.status, "number": inv.number,
                              "amount_due": str(inv.amount_due), "amount_paid": str(inv.amount_paid),
                              "amount_remaining": str(inv.amount_remaining), "tax": str(inv.tax),
                              "order_id": inv.metadata.get("gtm_order_id"), "org_id": inv.metadata.get("gtm_org_id")}
        return out


def __getattr__(name: str) -> Any:
    # The Protocol lives with the other ports (connector.services.ports); still importable here.
    if name == "BillingGateway":
        from connector.services.ports import BillingGateway

        return BillingGateway
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# How far an invoice has come, for an order billed as several: the order is as far as its
# least advanced invoice (one paid and one open leave the order open).
_PROGRESS = ("draft", "open", "uncollectible", "paid")


def least_advanced(statuses: list[str | None]) -> str | None:
    """The least advanced of ``statuses`` (void and unknown ones left out)."""
    known = [s for s in statuses if s in _PROGRESS]
    return min(known, key=_PROGRESS.index) if known else None


def combined_invoice(issued: list[StripeInvoice]) -> StripeInvoice:
    """The invoices one order is billed by (the GTM app may link several), as the one record
    the order's row keeps. Void invoices don't count while another does; every one void is
    the order's void. Of those that count: amounts, tax and line counts summed, the least
    advanced status, the numbers joined; ``paid_at`` the last payment once every invoice is
    paid (until then the order is not paid); dates and ids the first invoice's (by
    creation, then id)."""
    if not issued:
        raise ValueError("combined_invoice needs at least one invoice")
    ordered = sorted(issued, key=lambda i: (i.created, i.id))
    ordered = [i for i in ordered if i.status != "void"] or ordered
    first = ordered[0]
    if len(ordered) == 1:
        return first
    zero = Decimal("0.00")
    # least_advanced leaves void out: what is left void here is every invoice void.
    status = least_advanced([i.status for i in ordered]) or ("void" if first.status == "void" else None)
    paid = [i.paid_at for i in ordered]
    return replace(
        first,
        status=status,
        number=", ".join(i.number for i in ordered if i.number) or None,
        total=sum((i.total for i in ordered), zero),
        amount_due=sum((i.amount_due for i in ordered), zero),
        amount_paid=sum((i.amount_paid for i in ordered), zero),
        amount_remaining=sum((i.amount_remaining for i in ordered), zero),
        tax=sum((i.tax for i in ordered), zero),
        line_count=sum(i.line_count for i in ordered),
        line_amounts=tuple(a for i in ordered for a in i.line_amounts),
        paid_at=max(p for p in paid if p is not None) if status == "paid" and all(p is not None for p in paid)
        else None,
    )
