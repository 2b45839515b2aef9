"""Invoice status: Stripe's word on each invoice, from signed webhooks, with polling as the
fallback.

Each webhook event is recorded once by id (``stripe_events``; a duplicate delivery is
acknowledged and ignored) and applied through the invoice state machine in the same
transaction: the status in the event's invoice snapshot replaces the local one only when
it lies ahead (draft → open → paid | void | uncollectible, uncollectible → paid | void).
An event older than the local state (``invoice.finalized`` delivered after
``invoice.paid``) is *stale* and never moves an invoice back; among events with the same
status the latest ``created`` wins for amounts; a jump no path allows (paid → void) is
recorded as an anomaly and not applied. Events of other types are acknowledged and ignored.

Polling (``poll``): open or uncollectible invoices whose row nothing has updated for
``poll_after`` are fetched from Stripe and applied by the same rules.

An order the GTM app billed as several invoices (its billing junction links them all) has
one row holding their sum (``billing_port.combined_invoice``, as adopting them wrote it):
polling fetches every one; a webhook about one of them is ``deferred`` to polling, since
its snapshot alone is not the order's amounts, tax or status.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import structlog

from connector.domain import INVOICE_MACHINE, is_forward
from connector.domain.states import InvoiceStatus
from connector.errors import AuthError, PermanentError, RecordError
from connector.retry import call_with_retry
from connector.services.billing_port import BillingEvent, StripeInvoice, combined_invoice
from connector.services.orders import linked_invoice_ids
from connector.services.ports import BillingGateway, OrgContext, UnitOfWork, UnitOfWorkFactory

INVOICE_EVENTS = frozenset({
    "invoice.created", "invoice.updated", "invoice.finalized", "invoice.sent", "invoice.paid",
    "invoice.payment_succeeded", "invoice.payment_failed", "invoice.voided", "invoice.marked_uncollectible",
})
POLLED_STATUSES = ("open", "uncollectible")
KNOWN_STATUSES = frozenset(status.value for status in InvoiceStatus)
DEFAULT_POLL_AFTER = timedelta(minutes=60)


@dataclass
class PollReport:
    checked: int = 0
    changed: int = 0
    anomalies: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


def _invoice_columns(invoice: StripeInvoice, source: str) -> dict[str, Any]:
    """The invoice row's columns as Stripe has them now; a field Stripe left empty (no number
    before finalizing, no ``paid_at`` before payment) keeps the row's value."""
    fields: dict[str, Any] = dict(status=invoice.status, status_source=source, amount_due=invoice.amount_due,
                                  amount_paid=invoice.amount_paid, amount_remaining=invoice.amount_remaining,
                                  tax=invoice.tax)
    for name, value in (("number", invoice.number), ("hosted_url", invoice.hosted_url),
                        ("due_date", invoice.due_date), ("finalized_at", invoice.finalized_at),
                        ("paid_at", invoice.paid_at), ("voided_at", invoice.voided_at)):
        if value is not None:
            fields[name] = value
    return fields


class InvoiceStatusService:
    """Applies Stripe's invoice states to the local ``invoices`` rows of one store."""

    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        billing: BillingGateway | None,
        clock: Callable[[], datetime],
        org_id: str | None = None,
        poll_after: timedelta = DEFAULT_POLL_AFTER,
        log: Any = None,
    ) -> None:
        self._uow = uow
        self._billing = billing
        self._clock = clock
        self.org_id = org_id
        self.poll_after = poll_after
        self._log = log or structlog.get_logger("connector.invoice_status").bind(org_id=org_id, job="invoice_status")

    # -- webhooks -------------------------------------------------------------------------
    def handle_event(self, event: BillingEvent) -> str:
        """Record and apply one verified event; returns the outcome (``applied``,
        ``refreshed``, ``stale``, ``anomaly``, ``duplicate``, ``ignored``, ``unknown_invoice``,
        ``deferred``: one of an order's several invoices, left to polling)."""
        outcome = call_with_retry("store.webhook", lambda: self._record_and_apply(event), attempts=4, max_wait_s=0.5)
        if outcome == "duplicate":
            self._log.info("webhook.duplicate", event_id=event.id, type=event.type)
            return outcome
        self._log.info("webhook.processed", event_id=event.id, type=event.type, outcome=outcome,
                       invoice=event.invoice.id if event.invoice else None)
        return outcome

    def _record_and_apply(self, event: BillingEvent) -> str:
        """One transaction whose first statement is the event's insert, so it holds the
        write lock before it reads (SQLite cannot upgrade a read snapshot another writer
        has moved past)."""
        org_id = event.invoice.metadata.get("gtm_org_id") if event.invoice else None
        with self._uow() as uow:
            if not uow.stripe_events.add(event.id, type=event.type, created=event.created, payload=event.summary(),
                                         org_id=org_id or self.org_id):
                return "duplicate"
            # Locked: another delivery about this invoice waits for this one's commit, then
            # reads what it wrote (without the lock, an older event read before a newer one
            # committed would write its stale status over it on PostgreSQL).
            row = uow.invoices.get_by_stripe_id(event.invoice.id, lock=True) if event.invoice else None
            if event.type not in INVOICE_EVENTS or event.invoice is None:
                outcome = "ignored"
            elif row is None:
                outcome = "unknown_invoice"  # not ours, or not recorded yet: polling settles it
            elif len(order_invoice_ids(uow, row)) > 1:
                # One of several invoices of the order: its snapshot is not the order's
                # (amounts, tax, status); polling reads them all and keeps their sum.
                outcome = "deferred"
            else:
                outcome = self._apply(uow, row, event.invoice, source="webhook", event_id=event.id,
                                      created=event.created, sent=event.type == "invoice.sent")
            uow.stripe_events.mark_processed(event.id, outcome)
            uow.commit()
            return outcome

    # -- the state machine -----------------------------------------------------------------
    def _apply(self, uow: UnitOfWork, row: Any, invoice: StripeInvoice, *, source: str, event_id: str | None,
               created: int | None, sent: bool = False) -> str:
        current, new = row.status, invoice.status
        newer = created is None or created >= (row.last_event_created or 0)
        if new is None:
            return "ignored"
        if new not in KNOWN_STATUSES:
            # A status this connector does not know (a newer Stripe API, a forged body):
            # recorded with the event, never applied, never a crash.
            self._log.warning("invoice.unknown_status", invoice=invoice.id, status=new, source=source,
                              event_id=event_id)
            return "ignored"
        if current == new:
            outcome = "refreshed" if newer else "stale"
        elif current is None or is_forward(current, new):
            outcome = "applied"
        elif is_forward(new, current):
            self._log.info("invoice.stale_event", invoice=invoice.id, local=current, event_status=new,
                           event_id=event_id)
            return "stale"  # an older state arriving late: never move back
        else:
            uow.anomalies.add(row.org_id, "invoice", row.order_id, INVOICE_MACHINE.name, current, new,
                              detail=f"{source}: {INVOICE_MACHINE.explain(current, new)} ({invoice.id})")
            self._log.warning("invoice.anomaly", invoice=invoice.id, local=current, observed=new, source=source)
            return "anomaly"
        fields = _invoice_columns(invoice, source) if outcome == "applied" or newer else {}
        if created is not None and newer:
            fields.update(last_event_id=event_id, last_event_created=created)
        if sent and row.sent_at is None:
            fields["sent_at"] = self._clock()
        if not fields:
            return "stale"
        uow.invoices.upsert(row.org_id, row.order_id, **fields)
        if outcome == "applied":
            self._log.info("invoice.status_changed", invoice=invoice.id, order_id=row.order_id, old=current,
                           new=new, source=source)
        return outcome

    # -- polling --------------------------------------------------------------------------
    def due_for_poll(self, *, force: bool = False, order_ids: list[str] | None = None) -> list[Any]:
        """Open/uncollectible rows of the org nothing updated within ``poll_after``;
        ``force``: every open/uncollectible row now; ``order_ids``: those orders' invoices
        now, whatever their status."""
        horizon = self._clock() - self.poll_after
        with self._uow() as uow:
            if order_ids is not None:
                found = [uow.invoices.get(self._require_org(), order_id) for order_id in order_ids]
                return [r for r in found if r is not None and r.stripe_invoice_id]
            rows = [r for status in POLLED_STATUSES for r in uow.invoices.list(self._require_org(), status=status)]
        return [r for r in rows if r.stripe_invoice_id and (force or r.updated_at <= horizon)]

    def poll(self, *, force: bool = False, order_ids: list[str] | None = None) -> PollReport:
        """Fetch and apply the rows ``due_for_poll`` picks (same arguments)."""
        billing = self._billing
        if billing is None:
            raise RuntimeError("InvoiceStatusService.poll needs a billing gateway")
        report = PollReport()
        for row in self.due_for_poll(force=force, order_ids=order_ids):
            report.checked += 1
            with self._uow() as uow:
                ids = order_invoice_ids(uow, row)
            try:
                found = [call_with_retry("stripe.retrieve_invoice", partial(billing.retrieve_invoice, invoice_id))
                         for invoice_id in ids]
                # Several invoices for one order (the GTM app may link several): the order's
                # row keeps them as one, as adopting them did.
                invoice = combined_invoice(found)
            except AuthError:
                raise
            except (RecordError, PermanentError) as exc:
                self._log.warning("invoice.poll_failed", invoice=row.stripe_invoice_id, error=str(exc))
                report.outcomes["failed"] = report.outcomes.get("failed", 0) + 1
                continue
            outcome = call_with_retry("store.poll", partial(self._apply_polled, row, invoice),
                                      attempts=5, max_wait_s=2.0)
            report.outcomes[outcome] = report.outcomes.get(outcome, 0) + 1
            report.changed += outcome == "applied"
            report.anomalies += outcome == "anomaly"
        self._log.info("invoice_status.polled", checked=report.checked, changed=report.changed,
                       anomalies=report.anomalies)
        return report

    def _apply_polled(self, row: Any, invoice: StripeInvoice) -> str:
        with self._uow() as uow:
            uow.invoices.upsert(row.org_id, row.order_id)  # touch first: takes the write lock, re-arms poll_after
            current = uow.invoices.get(row.org_id, row.order_id)
            outcome = self._apply(uow, current, invoice, source="poll", event_id=None, created=None)
            uow.commit()
            return outcome

    def _require_org(self) -> str:
        if self.org_id is None:
            raise RuntimeError("polling needs the org id")
        return self.org_id


def order_invoice_ids(uow: UnitOfWork, row: Any) -> list[str]:
    """The Stripe invoices of ``row``'s order: its own and every one the GTM app's billing
    junction (mirrored ``SfdcPartnerOrderBillingTrxn``) links to the order."""
    return sorted(linked_invoice_ids(uow, row.org_id, row.order_id) | {row.stripe_invoice_id})


def build_invoice_status(runtime: OrgContext, *, log: Any = None, with_billing: bool = True) -> InvoiceStatusService:
    """The service for one org runtime; ``[invoicing] poll_after_minutes`` (default 60)."""
    minutes = getattr(runtime.config.invoicing, "poll_after_minutes", None)
    return InvoiceStatusService(
        uow=runtime.uow,
        billing=runtime.billing() if with_billing else None,
        clock=runtime.clock,
        org_id=runtime.org_id,
        poll_after=timedelta(minutes=minutes) if minutes else DEFAULT_POLL_AFTER,
        log=log,
    )


def run_invoice_status_job(runtime: OrgContext, *, log: Any, dry_run: bool = False) -> dict[str, int]:
    """The ``invoice_status`` job: the polling fallback. ``dry_run`` counts, calls nothing."""
    if dry_run:
        return {"would_poll": len(build_invoice_status(runtime, log=log, with_billing=False).due_for_poll())}
    report = build_invoice_status(runtime, log=log).poll()
    return {"checked": report.checked, "changed": report.changed, "anomalies": report.anomalies}


__all__ = [
    "INVOICE_EVENTS",
    "InvoiceStatusService",
    "PollReport",
    "build_invoice_status",
    "run_invoice_status_job",
]
