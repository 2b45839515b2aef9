"""The billing port: what the invoicing and invoice-status services need from Stripe, as a
Protocol, and the plain records it answers with (Decimal money, no SDK objects).

``connector.adapters.stripe_billing.StripeBilling`` implements it against Stripe; tests may
pass an in-memory fake. Every write takes the idempotency ``key`` the caller derived and
recorded in its outbox, so a retried or resumed call is the same call to Stripe.
Errors are the connector's: ``TransientError`` (retry with the same key),
``PermanentError`` / ``AuthError`` (stop), ``RecordError`` (this record only).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

from connector.domain import InvoiceLine, InvoicePlan
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


class BillingGateway(Protocol):
    def find_customer(self, *, org_id: str, email: str) -> StripeCustomer | None:
        """The org's customer for this billing email, if Stripe holds one (one list call,
        strongly consistent): the look-first of an unsure customer create."""
        ...

    def create_customer(
        self, *, org_id: str, email: str, name: str | None, customer_org_id: str | None, order_id: str, key: str
    ) -> StripeCustomer:
        """A new customer of the org for this billing email (one call, under ``key``)."""
        ...

    def create_invoice(self, plan: InvoicePlan, customer_id: str, key: str) -> StripeInvoice:
        """A draft: ``send_invoice``, ``days_until_due`` from the plan, metadata from the plan."""
        ...

    def add_lines(self, invoice_id: str, lines: Sequence[InvoiceLine], currency: str, key: str) -> StripeInvoice:
        """All lines in one call (at most 250)."""
        ...

    def finalize(self, invoice_id: str, key: str) -> StripeInvoice:
        """draft -> open; an invoice already finalized is returned as it is."""
        ...

    def send(self, invoice_id: str, key: str) -> StripeInvoice:
        """Email the invoice to the customer; a draft is finalized first (Stripe: "Stripe
        automatically finalizes drafts before sending"), so draft -> open + sent in one call."""
        ...

    def find_invoice_by_metadata(
        self, org_id: str, order_id: str, *, customer_id: str | None = None
    ) -> StripeInvoice | None:
        """The (non-void) invoice Stripe holds for this org's order, if any."""
        ...

    def retrieve_invoice(self, invoice_id: str) -> StripeInvoice: ...

    def was_sent(self, invoice_id: str, *, since: datetime | None = None) -> bool:
        """Whether Stripe has e-mailed the invoice (its ``invoice.sent`` event, after ``since``)."""
        ...

    def find_salesforce_invoice(self, order_id: str) -> StripeInvoice | None:
        """The (non-void) invoice the GTM app issued for this Salesforce order, found by
        the order id in its metadata (search), if any."""
        ...

    def list_invoices(self, org_id: str, *, status: str | None = None) -> Iterator[StripeInvoice]:
        """This org's invoices (by metadata), newest first, every page."""
        ...

    def verify_event(self, payload: bytes, signature_header: str | None, secret: str) -> BillingEvent:
        """The event of a webhook delivery, after checking ``Stripe-Signature`` (300 s
        tolerance); ``PermanentError`` when the signature does not verify."""
        ...
