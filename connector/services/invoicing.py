"""Invoicing: every billable GTM order gets exactly one Stripe invoice.

An order is billable when its mapped status is one of the mapping's
``billable_order_states`` (``activated``) and today ≥ its service start − ``lead_days``.
The order is read by the one order reader (``services.orders``) and its invoice planned by
the pure domain (``plan_invoice``: one line per item, upfront for the 12-month term, add-ons
prorated from the initial order's start by ``add_on_proration``); a plan that
disagrees with the org's own totals is quarantined in ``dead_letter`` (source
``invoicing``), never invoiced.

Exactly once. Four steps, each one Stripe call: ``customer`` (created if the org has
none for the billing e-mail; a known one is the result of its outbox entry, no call),
``invoice`` (draft, NET30 ``send_invoice``), ``lines`` (all in one ``add_lines``) and
``send`` (Stripe finalizes a draft it is asked to send, then e-mails it). Each call
carries an Idempotency-Key: ``gtm-<org>-<order>-<step>-<plan version>``, or for the
customer ``gtm-<org>-customer-<sha256(e-mail)>`` (one customer per org and e-mail). Its
intent is committed to the ``outbox`` before the call and its result (with the local
``invoices`` row) after, in the same transaction as the next step's intent. A rerun skips
steps whose result is recorded and repeats an unfinished one with the same key, so Stripe
answers with the first result instead of doing it twice. Where the key alone could not
protect (Stripe forgets keys after 24 hours) the unsure step looks first: an unfinished
``customer`` lists the org's customers by e-mail, an unfinished ``invoice`` step lists the
customer's invoices by the order's metadata, an unfinished ``lines`` step looks at the
draft's lines, an unfinished ``send`` reads the invoice (paid/void: nothing to send; open:
sent if Stripe recorded its ``invoice.sent`` event) and never e-mails twice. The invoice
row pins the plan version with the first intent, so an order edited mid-way is
quarantined (``PLAN_CHANGED``) rather than invoiced twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

import structlog

from connector.domain import (
    InvoicePlan,
    Order,
    OrderLimits,
    OrderStatus,
    ProrationPolicy,
    add_on_proration,
    is_forward,
    plan_invoice,
)
from connector.errors import AuthError, PermanentError, RecordError
from connector.retry import call_with_retry
from connector.services.billing_port import StripeCustomer, StripeInvoice, combined_invoice
from connector.services.mirror import incomplete_orders
from connector.services.orders import OrderReader, linked_invoice_ids
from connector.services.ports import BillingGateway, OrgContext, UnitOfWork, UnitOfWorkFactory

__all__ = [
    "BillingGateway",
    "Candidate",
    "InvoicingReport",
    "InvoicingService",
    "InvoicingSettings",
    "StripeCustomer",
    "StripeInvoice",
    "customer_key",
    "idempotency_key",
]

SOURCE = "invoicing"
OBJECT = "order"
STEPS = ("customer", "invoice", "lines", "send")
CUSTOMER_DIGEST = 24  # hex digits of the e-mail's SHA-256 in a customer key
BATCH_ORDERS = 20  # orders whose outbox writes share transactions (see ``_drive``)
T = TypeVar("T")
Write = Callable[[UnitOfWork], Any]  # one store write of a flow, applied inside a unit of work
Flow = Generator[Write, Any, bool]  # one order's steps: yields writes, returns "resumed"


def idempotency_key(org_id: str, order_id: str, step: str, version: str) -> str:
    """``gtm-<org>-<order>-<step>-<plan version>``: the same call always gets the same key."""
    return f"gtm-{org_id}-{order_id}-{step}-{version}"


def customer_key(org_id: str, email: str) -> str:
    """``gtm-<org>-customer-<sha256(e-mail)>``: one customer per org and billing e-mail, the
    key of its create and of the outbox entry that maps the e-mail to it (no e-mail in it)."""
    digest = hashlib.sha256(email.encode("utf-8")).hexdigest()[:CUSTOMER_DIGEST]
    return f"gtm-{org_id}-customer-{digest}"


@dataclass(frozen=True)
class InvoicingSettings:
    lead_days: int = 1
    days_until_due: int = 30
    proration: ProrationPolicy = ProrationPolicy.DAILY
    issuer: str = "connector"  # or "salesforce": the GTM app issues, the connector adopts
    missing_after_days: int = 2  # salesforce: "invoice missing" this long after service start
    limits: OrderLimits = OrderLimits()

    @classmethod
    def from_config(cls, section: Any) -> InvoicingSettings:
        return cls(section.lead_days, section.days_until_due, ProrationPolicy(section.proration), section.issuer,
                   section.missing_after_days, OrderLimits(section.max_order_total, section.max_quantity))


@dataclass(frozen=True)
class Candidate:
    """A billable order: its plan, or why it cannot be invoiced, and whether it is due."""

    order_id: str
    order_number: str | None
    service_start: date | None
    due: bool
    plan: InvoicePlan | None = None
    error: RecordError | None = None
    customer_org_id: str | None = None  # the customer's Salesforce org, kept on its Stripe customer


@dataclass
class InvoicingReport:
    considered: int = 0
    invoiced: list[str] = field(default_factory=list)
    already_invoiced: int = 0
    not_due: int = 0
    quarantined: list[tuple[str, str, str]] = field(default_factory=list)  # (order id, code, reason)
    resumed: int = 0
    waiting_for_mirror: int = 0  # billable, but a sync of orders/items has not finished
    adopted: list[str] = field(default_factory=list)  # orders whose Salesforce-issued invoice was taken on
    mismatched: list[tuple[str, str]] = field(default_factory=list)  # (order id, reason): adopted, but differs
    missing: list[str] = field(default_factory=list)  # salesforce issuer: no invoice within the grace
    awaiting: int = 0  # salesforce issuer: not issued yet, still within the grace


class InvoicingService:
    """Plans and sends the invoices of one org.

    ``uow`` makes a new ``SqlUnitOfWork``; ``billing`` is the Stripe port (None is fine for
    ``plans()``, which never calls Stripe); ``clock`` gives aware UTC datetimes."""

    def __init__(
        self,
        *,
        org_id: str,
        uow: UnitOfWorkFactory,
        billing: BillingGateway | None,
        mapping: Any,
        settings: InvoicingSettings | None = None,
        clock: Callable[[], datetime],
        log: Any = None,
    ) -> None:
        self.org_id = org_id
        self._uow = uow
        self._billing = billing
        self._mapping = mapping
        self.settings = settings or InvoicingSettings()
        self._clock = clock
        self._log = log or structlog.get_logger("connector.invoicing").bind(org_id=org_id, job="invoicing")
        self.waiting_for_mirror = 0  # billable orders the last ``candidates`` left for an unfinished sync
        self._legacy_customers: bool | None = None  # see ``_customers_before_mapping``

    # -- reading the local model ---------------------------------------------------------
    def _billable_labels(self) -> list[str]:
        vocabularies = self._mapping.vocabularies
        states = vocabularies.get("invoicing", {}).get("billable_order_states", [OrderStatus.ACTIVATED.value])
        return [label for label, state in vocabularies["order_status"].items() if state in states]

    def candidates(self) -> list[Candidate]:
        """Billable orders not invoiced yet (one read-only unit of work), except those a
        mirror run has not finished writing (``incomplete_orders``): they wait for it."""
        today = self._clock().date()
        self.waiting_for_mirror = 0
        lead = timedelta(days=self.settings.lead_days)
        found: list[Candidate] = []
        with self._uow() as uow:
            sent = {row.order_id for row in uow.invoices.list(self.org_id) if row.sent_at is not None}
            unfinished = incomplete_orders(uow, self.org_id, self._mapping)
            for order in OrderReader(uow, self.org_id, self._mapping).orders(statuses=self._billable_labels(),
                                                                             skip=sent):
                if order.order_id in unfinished:
                    self.waiting_for_mirror += 1
                    continue  # half a sync: its items may not all be here yet
                start = order.service_start_date
                try:
                    plan = self._plan(order)  # validates the dates before any arithmetic on them
                    found.append(Candidate(order.order_id, order.order_number, start, _due(start, today, lead),
                                           plan=plan, customer_org_id=order.customer_org_id))
                except RecordError as exc:
                    # No start date, or one the connector cannot compute with: due now, so
                    # it is quarantined and shown rather than waiting forever.
                    due = exc.code == "INVALID_DATE" or _due(start, today, lead)
                    found.append(Candidate(order.order_id, order.order_number, start, due, error=exc,
                                           customer_org_id=order.customer_org_id))
        found.sort(key=lambda c: (c.service_start or date.min, c.order_id))
        return found

    def _plan(self, order: Order) -> InvoicePlan:
        if order.service_start_date is None:
            raise RecordError("the order has no service start date", record_id=order.order_id,
                              code="MISSING_START_DATE")
        return plan_invoice(order, days_until_due=self.settings.days_until_due,
                            proration=add_on_proration(order, self.settings.proration), limits=self.settings.limits)

    def plans(self) -> list[Candidate]:
        """What ``run`` would invoice, without calling Stripe or writing anything."""
        return self.candidates()

    # -- invoicing -----------------------------------------------------------------------
    def run(self) -> InvoicingReport:
        report = InvoicingReport()
        candidates = self.candidates()
        report.waiting_for_mirror = self.waiting_for_mirror
        batch: list[tuple[Candidate, Flow]] = []
        emails: set[str] = set()
        for candidate in candidates:
            report.considered += 1
            if not candidate.due:
                report.not_due += 1
                continue
            email = candidate.plan.customer_email if candidate.plan is not None else None
            if email in emails or len(batch) >= BATCH_ORDERS:
                # Never two orders of one e-mail in a batch: the second must see the first's
                # customer as known, not as an unsure create of its own.
                self._drive(batch, report)
                batch, emails = [], set()
            flow = self._begin(candidate, report)
            if flow is None or email is None:
                continue
            batch.append((candidate, flow))
            emails.add(email)
        self._drive(batch, report)
        self._log.info("invoicing.done", considered=report.considered, invoiced=len(report.invoiced),
                       adopted=len(report.adopted), missing=len(report.missing), not_due=report.not_due,
                       quarantined=len(report.quarantined), resumed=report.resumed,
                       waiting_for_mirror=report.waiting_for_mirror)
        return report

    def _begin(self, candidate: Candidate, report: InvoicingReport) -> Flow | None:
        """What to do with a due order: quarantine it, adopt Salesforce's invoice, wait for
        Salesforce, or (returned) the flow that invoices it."""
        try:
            if candidate.error is not None:
                raise candidate.error
            assert candidate.plan is not None
            issued = self._salesforce_invoices(candidate)
            if issued:
                self._adopt(candidate.plan, issued, report)
                return None
            if self.settings.issuer == "salesforce":
                self._await_salesforce(candidate, report)  # never a second invoice: we only wait and flag
                return None
            return self._invoice(candidate.plan, candidate.customer_org_id)
        except AuthError:
            raise  # the key is wrong for every order: end the cycle
        except (RecordError, PermanentError) as exc:
            self._refused(candidate.order_id, exc, report)
            return None

    def _refused(self, order_id: str, exc: Exception, report: InvoicingReport) -> None:
        code, reason = _code_and_reason(exc)
        self._quarantine(order_id, code, reason)
        report.quarantined.append((order_id, code, reason))

    def _drive(self, batch: list[tuple[Candidate, Flow]], report: InvoicingReport) -> None:
        """Run the flows of a batch of orders side by side: every write they ask for at the
        same point (a step's result and the next step's intent) shares one transaction, then
        each flow makes its Stripe call. Each order keeps its own guarantee (its intent is
        durable before its call, its result is written after), so a crash anywhere leaves at
        most one unsure step per order, resumed as ever; a run commits about five times per
        batch instead of five times per order."""
        done: dict[str, bool] = {}
        waiting: dict[int, Write] = {}

        def advance(i: int, value: Any, first: bool = False) -> None:
            candidate, flow = batch[i]
            try:
                work = next(flow) if first else flow.send(value)
            except StopIteration as stop:
                done[candidate.order_id] = bool(stop.value)
                return
            except AuthError:
                raise
            except (RecordError, PermanentError) as exc:
                self._refused(candidate.order_id, exc, report)
                return
            waiting[i] = work

        for i in range(len(batch)):
            advance(i, None, first=True)
        while waiting:
            works = dict(waiting)
            waiting.clear()
            answers = self._unit("outbox.batch", partial(_apply_all, works))
            for i in sorted(works):
                advance(i, answers[i])
        for candidate, _ in batch:
            if candidate.order_id in done:
                report.resumed += done[candidate.order_id]
                report.invoiced.append(candidate.order_id)

    # -- invoices Salesforce issued ------------------------------------------------------
    def _salesforce_invoices(self, candidate: Candidate) -> list[StripeInvoice]:
        """The live invoices the GTM app issued for this order: those its billing junction
        (SfdcPartnerOrderBillingTrxn, mirrored) links, else (connector issuer, before our
        own first call) one Stripe search by the order id in invoice metadata."""
        order_id = candidate.order_id
        with self._uow() as uow:
            own = uow.invoices.get(self.org_id, order_id)
            linked = linked_invoice_ids(uow, self.org_id, order_id)
        if own is not None and own.issued_by == "connector" and own.stripe_invoice_id:
            return []  # our own invoice is under way: finish it (its outbox makes that safe)
        billing = self._require_billing()
        found = [call_with_retry("stripe.retrieve_invoice", partial(billing.retrieve_invoice, i))
                 for i in sorted(linked)]
        # The search runs once, before our first step: after that our own outbox decides.
        if not linked and self.settings.issuer == "connector" and own is None:
            hit = call_with_retry("stripe.find_salesforce_invoice", lambda: billing.find_salesforce_invoice(order_id))
            found = [hit] if hit is not None else []
        return [i for i in found if i.status != "void"]

    def _adopt(self, plan: InvoicePlan, issued: list[StripeInvoice], report: InvoicingReport) -> None:
        """Record Salesforce's invoice(s) as the order's, after checking them against the
        order. Only local writes: nothing is created, finalized or sent in Stripe."""
        order_id = plan.order_id
        issued = sorted(issued, key=lambda i: (i.created, i.id))
        problems = invoice_differences(plan, issued, days_until_due=self.settings.days_until_due)
        finished = all(i.status not in (None, "draft") for i in issued)

        def record(uow: UnitOfWork) -> None:
            whole = combined_invoice(issued)
            uow.invoices.upsert(
                self.org_id, order_id, stripe_invoice_id=whole.id, stripe_customer_id=whole.customer_id,
                number=whole.number, hosted_url=whole.hosted_url, status=whole.status, due_date=whole.due_date,
                currency=whole.currency, amount_due=whole.amount_due, amount_paid=whole.amount_paid,
                amount_remaining=whole.amount_remaining, tax=whole.tax, finalized_at=whole.finalized_at,
                paid_at=whole.paid_at, sent_at=self._clock() if finished else None, status_source="adopt",
                issued_by="salesforce")
            uow.dead_letters.resolve_for(self.org_id, SOURCE, OBJECT, order_id)
            if problems:
                uow.dead_letters.add(self.org_id, SOURCE, OBJECT, order_id, "INVOICE_MISMATCH", "; ".join(problems))

        self._unit("invoice.adopt", record)
        report.adopted.append(order_id)
        if problems:
            report.mismatched.append((order_id, "; ".join(problems)))
            self._log.warning("invoice.mismatch", order_id=order_id, invoices=[i.id for i in issued],
                              problems=problems)
        self._log.info("invoice.adopted", order_id=order_id, invoices=[i.id for i in issued],
                       total=str(sum((i.total for i in issued), Decimal("0"))))

    def _await_salesforce(self, candidate: Candidate, report: InvoicingReport) -> None:
        """No invoice from the GTM app yet: fine within the grace, "invoice missing" after."""
        start = candidate.service_start
        today = self._clock().date()
        if start is None or today <= start + timedelta(days=self.settings.missing_after_days):
            report.awaiting += 1
            return
        days = (today - start).days
        reason = (f"no invoice from Salesforce {days} day(s) after the service start date {start.isoformat()} "
                  f"(grace {self.settings.missing_after_days} day(s)): check the order's billing in the GTM app")
        self._quarantine(candidate.order_id, "INVOICE_MISSING", reason)
        report.missing.append(candidate.order_id)

    def _unit(self, op: str, work: Callable[[UnitOfWork], T]) -> T:
        """``work(uow)`` in one committed transaction, retried whole when the store is busy
        (every unit here is safe to repeat: outbox writes are keyed, row writes are upserts)."""

        def once() -> T:
            with self._uow() as uow:
                result = work(uow)
                uow.commit()
                return result

        return call_with_retry(f"store.{op}", once, attempts=5, max_wait_s=2.0)

    def retry(self, order_id: str) -> int:
        """Let the next run try again the steps of ``order_id`` that Stripe refused (after
        the cause is fixed): they become unsure, so the run looks at Stripe before calling.
        Returns how many steps were reopened."""
        def reopen(uow: UnitOfWork) -> int:
            failed = [e for e in uow.outbox.for_subject(self.org_id, order_id) if e.status == "failed"]
            for entry in failed:
                uow.outbox.record_result(entry.idempotency_key, None, status="pending", error=None)
            return len(failed)

        return self._unit("outbox.reopen", reopen)

    def _quarantine(self, order_id: str, code: str, reason: str) -> None:
        self._unit("dead_letter.add", lambda uow: uow.dead_letters.add(self.org_id, SOURCE, OBJECT, order_id, code,
                                                                       reason))
        self._log.warning("invoice.quarantined", order_id=order_id, code=code, reason=reason)

    def _invoice(self, plan: InvoicePlan, customer_org_id: str | None) -> Flow:
        """The steps for one order, as a flow that yields each write it needs committed
        (``_drive`` commits a batch's writes together and sends back their answers); its
        value is True if it resumed unfinished work.

        Each step's result is committed in the same transaction as the next step's intent
        (and the first intent with the pinned row): a crash between a call and that commit
        leaves the call's intent pending, which the rerun looks at first, exactly as before;
        a crash after it leaves the next intent pending, whose look-first finds nothing and
        makes the call under its key. Five writes per order, each shared with the other
        orders of its batch."""
        billing = self._require_billing()
        order_id = plan.order_id
        row = self._pin(plan)
        if row is not None and row.sent_at is not None:
            yield lambda uow: uow.dead_letters.resolve_for(self.org_id, SOURCE, OBJECT, order_id)
            return False
        def pin(uow: UnitOfWork) -> None:  # the plan version, pinned with the first intent
            uow.invoices.upsert(self.org_id, order_id, plan_version=plan.version, currency=plan.currency,
                                status_source="create")

        carry: Callable[[UnitOfWork], None] | None = pin if row is None else None
        resumed = False

        def step(name: str, call: Callable[[str], Any], apply: Callable[[Any, Any], None],
                 recover: Callable[[], Any] | None = None, *, key: str | None = None,
                 look_first: bool = False, params: dict[str, Any] | None = None,
                 ) -> Generator[Write, Any, tuple[Any, Any]]:
            nonlocal carry, resumed
            unsure, value, entry, finish = yield from self._step(plan, name, call, apply, recover, key=key,
                                                                 look_first=look_first, carry=carry, params=params)
            carry = finish
            resumed |= unsure
            return value, entry

        customer_id = row.stripe_customer_id if row is not None else None
        if customer_id is None:
            # The org's customer for this e-mail is the result of one outbox entry keyed by
            # (org, e-mail): known -> no Stripe call; new -> one create under that key; an
            # unsure create (a crash) -> a consistent list by e-mail first, never a second one.
            key = customer_key(self.org_id, plan.customer_email)
            # Recorded with the intent: an unsure create resumed by another order of the same
            # e-mail repeats the first order's parameters, as a key reused must (Stripe refuses
            # a key it saw with other parameters).
            params: dict[str, Any] = {"name": plan.customer_name, "customer_org_id": customer_org_id,
                                      "order_id": order_id}
            customer, entry = yield from step(
                "customer",
                lambda key: billing.create_customer(org_id=self.org_id, email=plan.customer_email,
                                                    name=params["name"], customer_org_id=params["customer_org_id"],
                                                    order_id=params["order_id"], key=key),
                lambda uow, customer: self._save(uow, order_id, stripe_customer_id=customer.id),
                recover=lambda: call_with_retry("stripe.find_customer", lambda: billing.find_customer(
                    org_id=self.org_id, email=plan.customer_email)),
                key=key, look_first=self._customers_before_mapping(), params=params)
            customer_id = customer.id if customer is not None else (entry.result or {}).get("customer_id")
            if customer is None:
                known = customer_id
                previous = carry
                def remember(uow: UnitOfWork) -> None:
                    if previous is not None:
                        previous(uow)
                    self._save(uow, order_id, stripe_customer_id=known)
                carry = remember
        assert customer_id is not None
        invoice_id = row.stripe_invoice_id if row is not None else None
        invoice, _ = yield from step(
            "invoice",
            lambda key: billing.create_invoice(plan, customer_id, key),
            lambda uow, invoice: self._save_invoice(uow, order_id, invoice),
            recover=lambda: self._existing_invoice(plan, customer_id))
        invoice_id = invoice.id if invoice is not None else invoice_id
        assert invoice_id is not None
        drafted, _ = yield from step(
            "lines",
            lambda key: billing.add_lines(invoice_id, plan.lines, plan.currency, key),
            lambda uow, invoice: self._save_invoice(uow, order_id, invoice),
            recover=lambda: self._existing_lines(plan, invoice_id))
        if drafted is not None:
            # Raised before the lines' result is written: a rerun finds the step unsure and
            # looks again (``_existing_lines``), so a draft Stripe totals otherwise is never sent.
            _check_draft_total(plan, drafted)

        def sent(uow: UnitOfWork, invoice: StripeInvoice) -> None:
            self._save_invoice(uow, order_id, invoice, sent_at=self._clock())
            # With sent_at the order is never a candidate again: its letter must close in
            # this same transaction, or a crash right after it would leave it open for good.
            uow.dead_letters.resolve_for(self.org_id, SOURCE, OBJECT, order_id)

        # One call finalizes the draft and e-mails it (Stripe finalizes a draft it is asked
        # to send). An order begun by an older release with its own ``finalize`` step goes
        # straight here too: send works on a draft and on an open invoice alike.
        final, _ = yield from step("send", lambda key: billing.send(invoice_id, key), sent,
                                   recover=lambda: self._existing_send(plan, invoice_id))
        if carry is not None:
            yield carry
        self._log.info("invoice.sent", order_id=order_id, invoice=invoice_id, total=str(plan.total),
                       number=final.number if final else None,
                       due_date=str(final.due_date) if final and final.due_date else None, resumed=resumed)
        return resumed

    def _customers_before_mapping(self) -> bool:
        """Whether this org has customers created under the older per-order customer step
        (before the (org, e-mail) mapping): then an unmapped e-mail may already have a
        customer, so it is looked up once (a list) before any create. Asked once per run."""
        if self._legacy_customers is None:
            prefix = customer_key(self.org_id, "")[: -CUSTOMER_DIGEST]
            with self._uow() as uow:
                self._legacy_customers = uow.outbox.has_other_keys(self.org_id, "customer", prefix)
        return self._legacy_customers

    def _require_billing(self) -> BillingGateway:
        if self._billing is None:
            raise RuntimeError("InvoicingService.run needs a billing gateway")
        return self._billing

    def _step(self, plan: InvoicePlan, name: str, call: Callable[[str], T], apply: Callable[[Any, T], None],
              recover: Callable[[], T | None] | None, *, key: str | None = None, look_first: bool = False,
              carry: Callable[[UnitOfWork], None] | None = None, params: dict[str, Any] | None = None,
              ) -> Generator[Write, Any, tuple[bool, T | None, Any, Callable[[UnitOfWork], None] | None]]:
        """One outbox-guarded Stripe call: (resumed an unsure step, the call's value or None
        when an earlier run finished it, the outbox entry, the result write). The result
        write is returned, not committed: the caller commits it with the next step's intent.
        ``carry`` (the previous step's result write) is committed with this step's intent,
        before the call. ``look_first`` runs ``recover`` even for a fresh intent. ``params``
        (what the call sends, read by ``call``) is recorded with the intent; resuming an
        entry recorded with params, ``params`` takes the recorded ones."""
        key = key or idempotency_key(self.org_id, plan.order_id, name, plan.version)

        def intent(uow: UnitOfWork) -> tuple[Any, bool]:
            if carry is not None:
                carry(uow)
            existing = uow.outbox.get(key)
            if existing is not None:
                return existing, existing.status == "pending"  # recorded by an earlier run: unsure
            request: dict[str, Any] = {"step": name, "plan_version": plan.version}
            if params is not None:
                request["params"] = dict(params)
            return uow.outbox.record_intent(self.org_id, key, name, plan.order_id, request), False

        entry, unsure = yield intent
        if entry.status == "done":
            return False, None, entry, None
        if entry.status == "failed":
            raise RecordError(entry.error or f"step {name} failed earlier", record_id=plan.order_id,
                              code=f"STRIPE_{name.upper()}_FAILED")
        if unsure:
            self._log.info("invoice.resuming", order_id=plan.order_id, step=name, key=key)
            _restore(params, entry.request)
        value = recover() if (unsure or look_first) and recover is not None else None
        if value is None:
            try:
                value = call_with_retry(f"stripe.{name}", lambda: call(key))
            except AuthError:
                raise
            except (RecordError, PermanentError) as exc:
                code, reason = _code_and_reason(exc)
                yield lambda uow: uow.outbox.record_result(key, {"code": code}, status="failed", error=reason)
                raise
        done = value

        def result(uow: UnitOfWork) -> None:
            uow.outbox.record_result(key, _summary(done))  # first statement writes: takes the lock
            apply(uow, done)

        self._log.debug("invoice.step", order_id=plan.order_id, step=name, key=key)
        return unsure, done, entry, result

    def _existing_invoice(self, plan: InvoicePlan, customer_id: str) -> StripeInvoice | None:
        """An earlier run may have created the draft and died before recording it."""
        found = call_with_retry("stripe.find_invoice", lambda: self._require_billing().find_invoice_by_metadata(
            self.org_id, plan.order_id, customer_id=customer_id))
        if found is not None:
            version = found.metadata.get("gtm_plan_version")
            if version not in (None, plan.version):
                raise RecordError(f"Stripe already holds invoice {found.id} for this order from plan {version}, "
                                  f"the order now plans as {plan.version}", record_id=plan.order_id,
                                  code="PLAN_CHANGED")
            self._log.info("invoice.found_in_stripe", order_id=plan.order_id, invoice=found.id)
        return found

    def _existing_lines(self, plan: InvoicePlan, invoice_id: str) -> StripeInvoice | None:
        """Lines added by an earlier run whose answer was lost: never add them twice."""
        invoice = call_with_retry("stripe.retrieve_invoice",
                                  lambda: self._require_billing().retrieve_invoice(invoice_id))
        if invoice.line_count == 0:
            return None
        if invoice.line_count == len(plan.lines):
            return _check_draft_total(plan, invoice)
        raise RecordError(f"draft {invoice_id} already has {invoice.line_count} lines totalling {invoice.total}; "
                          f"the plan has {len(plan.lines)} totalling {plan.total}", record_id=plan.order_id,
                          code="INVOICE_LINES_MISMATCH")

    def _existing_send(self, plan: InvoicePlan, invoice_id: str) -> StripeInvoice | None:
        """A send whose answer was lost may have e-mailed the customer already: look at the
        invoice before sending again (the key alone protects for 24 hours only). Paid, void
        or uncollectible needs no e-mail; an open one was sent if Stripe recorded the send."""
        billing = self._require_billing()
        invoice = call_with_retry("stripe.retrieve_invoice", lambda: billing.retrieve_invoice(invoice_id))
        if invoice.status in ("paid", "void", "uncollectible"):
            self._log.info("invoice.send_not_needed", order_id=plan.order_id, invoice=invoice_id, status=invoice.status)
            return invoice
        if invoice.status == "open" and call_with_retry(
                "stripe.was_sent", lambda: billing.was_sent(invoice_id, since=invoice.finalized_at)):
            self._log.info("invoice.found_sent", order_id=plan.order_id, invoice=invoice_id)
            return invoice
        return None

    # -- the local invoice row ---------------------------------------------------------------
    def _row(self, order_id: str) -> Any:
        with self._uow() as uow:
            return uow.invoices.get(self.org_id, order_id)

    def _pin(self, plan: InvoicePlan) -> Any:
        """The order's row (None before the first call: the caller pins the plan version with
        the first intent); a row pinned to another plan, not sent yet, is refused."""
        row = self._row(plan.order_id)
        if row is None:
            return None
        if row.plan_version not in (None, plan.version) and row.sent_at is None:
            raise RecordError(
                f"the order changed while its invoice was being made (plan {row.plan_version}, now "
                f"{plan.version}); draft {row.stripe_invoice_id or '(not created)'} needs a look",
                record_id=plan.order_id, code="PLAN_CHANGED")
        return row

    def _save(self, uow: UnitOfWork, order_id: str, **fields: Any) -> None:
        uow.invoices.upsert(self.org_id, order_id, **fields)

    def _save_invoice(self, uow: UnitOfWork, order_id: str, invoice: StripeInvoice, **extra: Any) -> None:
        row = uow.invoices.get(self.org_id, order_id)
        fields: dict[str, Any] = dict(
            stripe_invoice_id=invoice.id, stripe_customer_id=invoice.customer_id, number=invoice.number,
            hosted_url=invoice.hosted_url, due_date=invoice.due_date, currency=invoice.currency,
            finalized_at=invoice.finalized_at, issued_by="connector", **extra,
        )
        # A webhook may already have moved the row ahead (paid): never move it back.
        if (row is None or row.status is None or invoice.status is None or row.status == invoice.status
                or is_forward(row.status, invoice.status)):
            fields.update(status=invoice.status, status_source="create", amount_due=invoice.amount_due,
                          amount_paid=invoice.amount_paid, amount_remaining=invoice.amount_remaining, tax=invoice.tax,
                          paid_at=invoice.paid_at, voided_at=invoice.voided_at)
        uow.invoices.upsert(self.org_id, order_id, **{k: v for k, v in fields.items() if v is not None})


def _check_draft_total(plan: InvoicePlan, invoice: StripeInvoice) -> StripeInvoice:
    """``invoice`` if Stripe totals the draft (ex tax) at the plan's total, to the cent; else
    ``INVOICE_TOTAL_MISMATCH`` and the draft is not sent. The lines we send add up exactly
    (``line_params``), so a difference is Stripe's doing: a discount on the customer, say."""
    billed = invoice.total - invoice.tax
    if billed != plan.total:
        raise RecordError(f"draft {invoice.id} totals {_money(billed)}{' ex tax' if invoice.tax else ''}, "
                          f"the order {_money(plan.total)} (a discount on the Stripe customer?): left as a "
                          "draft, not sent", record_id=plan.order_id, code="INVOICE_TOTAL_MISMATCH")
    return invoice


def invoice_differences(plan: InvoicePlan, issued: list[StripeInvoice], *, days_until_due: int) -> list[str]:
    """How Salesforce's invoice(s) for an order differ from what the order says: customer
    e-mail, one line per item, amounts to the cent, currency, send_invoice, NET terms."""
    problems: list[str] = []
    # Tax Stripe adds on top is not the order's: compared ex tax (DESIGN: taxes apart).
    tax = sum((i.tax for i in issued), Decimal("0"))
    total = sum((i.total for i in issued), Decimal("0")) - tax
    if total != plan.total:
        problems.append(f"invoice total {_money(total)}{' ex tax' if tax else ''} "
                        f"≠ order subtotal {_money(plan.total)}")
    lines = sum(i.line_count for i in issued)
    if lines != len(plan.lines):
        problems.append(f"{lines} invoice line(s) for {len(plan.lines)} order item(s)")
    elif len(issued) == 1 and issued[0].line_amounts and len(issued[0].line_amounts) == len(plan.lines):
        ours = sorted(line.amount for line in plan.lines)
        if sorted(issued[0].line_amounts) != ours:
            problems.append("line amounts " + ", ".join(_money(a) for a in issued[0].line_amounts) +
                            " ≠ " + ", ".join(_money(a) for a in ours))
    for invoice in issued:
        where = f"invoice {invoice.number or invoice.id}: " if len(issued) > 1 else ""
        if (invoice.currency or "").lower() != plan.currency.lower():
            problems.append(f"{where}currency {invoice.currency} ≠ {plan.currency}")
        if invoice.customer_email and invoice.customer_email.lower() != plan.customer_email.lower():
            problems.append(f"{where}billed to {invoice.customer_email}, the order's billing e-mail is "
                            f"{plan.customer_email}")
        if invoice.collection_method not in (None, "send_invoice"):
            problems.append(f"{where}collection {invoice.collection_method}, not send_invoice")
        if invoice.days_until_due is not None and invoice.days_until_due != days_until_due:
            problems.append(f"{where}NET{invoice.days_until_due}, not NET{days_until_due}")
        elif invoice.due_date is not None and invoice.finalized_at is not None:
            net = (invoice.due_date - invoice.finalized_at.date()).days
            if net != days_until_due:
                problems.append(f"{where}due {invoice.due_date.isoformat()}: NET{net}, not NET{days_until_due}")
    return problems


def _restore(params: dict[str, Any] | None, request: Any) -> None:
    """An unsure call repeats the parameters recorded with its intent (if it has any)."""
    recorded = request.get("params") if isinstance(request, dict) else None
    if params is not None and isinstance(recorded, dict):
        params.update(recorded)


def _apply_all(works: dict[int, Write], uow: UnitOfWork) -> dict[int, Any]:
    """Every write of a batch in one unit of work, each one's answer by its flow's index."""
    return {i: work(uow) for i, work in works.items()}


def _money(amount: Decimal) -> str:
    return f"{amount:,.2f}"


def _due(start: date | None, today: date, lead: timedelta) -> bool:
    """Due from ``lead`` before the service start; an order without a start is due (and
    quarantined); a start too close to ``date``'s limits is due (and quarantined too)."""
    if start is None:
        return True
    try:
        return today >= start - lead
    except OverflowError:
        return True


def _code_and_reason(exc: Exception) -> tuple[str, str]:
    if isinstance(exc, RecordError):
        return exc.code, exc.reason
    code = getattr(exc, "code", None)
    return (f"STRIPE_{code.upper()}" if code else "STRIPE_REJECTED"), str(exc)


def _summary(value: Any) -> dict[str, Any]:
    """What the outbox keeps of a result: ids and states, never personal data."""
    if isinstance(value, StripeCustomer):
        return {"customer_id": value.id, "created": value.created}
    if isinstance(value, StripeInvoice):
        return {"invoice_id": value.id, "status": value.status, "number": value.number,
                "total": str(value.total), "lines": value.line_count}
    return {"value": str(value)}


# -- the job ------------------------------------------------------------------------------


def build_invoicing(runtime: OrgContext, *, log: Any = None, with_billing: bool = True) -> InvoicingService:
    """The service for one org runtime (``connector.bootstrap.OrgRuntime``)."""
    return InvoicingService(
        org_id=runtime.org_id,
        uow=runtime.uow,
        billing=runtime.billing() if with_billing else None,
        mapping=runtime.mapping,
        settings=InvoicingSettings.from_config(runtime.config.invoicing),
        clock=runtime.clock,
        log=log,
    )


def run_invoicing_job(runtime: OrgContext, *, log: Any, dry_run: bool = False) -> dict[str, int]:
    """The ``invoicing`` job. ``dry_run`` plans without calling Stripe or writing anything."""
    if dry_run:
        candidates = build_invoicing(runtime, log=log, with_billing=False).plans()
        due = [c for c in candidates if c.due]
        return {"considered": len(candidates), "would_invoice": sum(1 for c in due if c.plan is not None),
                "not_due": len(candidates) - len(due), "would_quarantine": sum(1 for c in due if c.error is not None)}
    report = build_invoicing(runtime, log=log).run()
    counts = {"considered": report.considered, "invoices_created": len(report.invoiced),
              "invoices_adopted": len(report.adopted), "invoices_mismatched": len(report.mismatched),
              "invoices_missing": len(report.missing), "awaiting_salesforce": report.awaiting,
              "not_due": report.not_due, "quarantined": len(report.quarantined), "resumed": report.resumed}
    if report.waiting_for_mirror:
        counts["waiting_for_mirror"] = report.waiting_for_mirror
    return counts
