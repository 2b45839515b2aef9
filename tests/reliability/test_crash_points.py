"""A crash at every line that does I/O: nothing lost, nothing written twice.

Each test lets the process die at one point between an external call (the sandbox org,
the local Stripe server) and the local commit that records it, then runs the service
again, as the next daemon tick would, and checks that the two converge: exactly one
external effect, counted on the sandboxes, and local state (cursor, outbox, dead letters,
payload hashes) that matches it.

A crash is ``Crash``, a ``BaseException``: nothing in the connector handles it, and the
open transaction is rolled back, as the database does when a killed process's connection
drops. It is raised from a thin wrapper around the real gateway (after the other side
applied the call, before its answer is used) or around the real unit of work (just before
or just after a commit). Invoicing's own crash-between-every-two-Stripe-calls tests live in
``tests/integration/stripe/test_invoicing.py``; the mirror's SIGKILL of a whole daemon in
``tests/reliability/daemon``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import stripe
import structlog

from connector.adapters.salesforce import SalesforceOrg
from connector.adapters.store import SqlUnitOfWork
from connector.adapters.stripe_billing import StripeBilling
from connector.entrypoints.webhook import WebhookReceiver, make_webhook_app, serve
from connector.jobs import runner
from connector.mappings import load_mapping
from connector.services import writeback
from connector.services.invoice_status import InvoiceStatusService
from connector.services.invoicing import InvoicingService, InvoicingSettings
from connector.services.mirror import MirrorService
from connector.services.offers_push import OffersPushService, draft_toml
from connector.services.payouts import Reconciler, payout_ids_of
from connector.services.replay import replay
from gtm_sandbox.org import SandboxOrg
from gtm_sandbox.stripe import StripeSandbox
from tests.fixtures.payouts import PartnerBooks, billing_records, core_app, invoiced_orders, validation_rule
from tests.integration.stripe.gtm import ORG, Clock, GtmOrg, order_id

MAPPING = load_mapping("gtm-v2")
LOG = structlog.get_logger("test.crash_points")
TODAY = datetime.now(UTC).date()


# ------------------------------------------------------------------------------ dying


class Crash(BaseException):
    """The process dies here (see the module docstring)."""


class DiesAt:
    """The real gateway, except that the process dies on the ``nth`` call of ``method``:
    ``before`` it is sent, or ``after`` the other side applied it."""

    def __init__(self, inner: Any, method: str, *, nth: int = 1, when: str = "after") -> None:
        self.inner, self.method, self.nth, self.when = inner, method, nth, when
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name != self.method:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls != self.nth:
                return attr(*args, **kwargs)
            if self.when == "before":
                raise Crash(f"died before {name} #{self.nth}")
            attr(*args, **kwargs)
            raise Crash(f"died after {name} #{self.nth} was applied")

        return call


class DiesAtCommit:
    """A unit-of-work factory over the real one whose commit dies once ``at()`` holds:
    ``before`` committing (the transaction is lost) or ``after`` (durable; the process dies
    before its next step). ``at`` is asked at every commit until it first holds."""

    def __init__(self, factory: Callable[[], SqlUnitOfWork], at: Callable[[], bool], *, when: str = "before") -> None:
        self.factory, self.at, self.when = factory, at, when
        self.fired = False

    def __call__(self) -> _DyingUnit:
        return _DyingUnit(self, self.factory())

    def commit(self, unit: SqlUnitOfWork) -> None:
        if not self.fired and self.when == "before" and self.at():
            self.fired = True
            raise Crash("died before the commit")
        unit.commit()
        if not self.fired and self.when == "after" and self.at():
            self.fired = True
            raise Crash("died right after the commit")


class _DyingUnit:
    def __init__(self, plan: DiesAtCommit, inner: SqlUnitOfWork) -> None:
        self._plan, self._inner = plan, inner

    def __enter__(self) -> _DyingUnit:
        self._inner.__enter__()
        return self

    def __exit__(self, *exc: Any) -> bool:
        return self._inner.__exit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def commit(self) -> None:
        self._plan.commit(self._inner)


def nth_time(n: int) -> Callable[[], bool]:
    count = [0]

    def at() -> bool:
        count[0] += 1
        return count[0] == n

    return at


# ------------------------------------------------------------------------------ mirror


class PagesDieAt:
    """The real org gateway, except around page ``page`` of ``sobject``'s query: ``before``
    arms ``trap`` (the unit of work dies at the commit of that page), ``after`` dies when
    the next page is asked for (that page committed, the next one never fetched)."""

    def __init__(self, inner: SalesforceOrg, sobject: str, page: int, when: str) -> None:
        self.inner, self.sobject, self.page, self.when = inner, sobject, page, when
        self.armed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def query_pages(self, soql: str, include_deleted: bool = False) -> Iterator[Any]:
        pages = self.inner.query_pages(soql, include_deleted)
        if f" FROM {self.sobject} " not in soql:
            yield from pages
            return
        for number, page in enumerate(pages, 1):
            if number == self.page and self.when == "before":
                self.armed = True
            yield page
            if number == self.page and self.when == "after":
                raise Crash(f"died after page {number} of {self.sobject} was committed")


@pytest.mark.parametrize(("page", "when"), [(2, "before"), (3, "before"), (2, "after")],
                         ids=["page-2-lost", "quarantine-page-lost", "after-page-2"])
def test_mirror_dies_around_a_page_commit_and_the_rerun_completes_it(
    page: int, when: str, sandbox_org: SandboxOrg, gateway: SalesforceOrg, uow_factory: Callable[..., Any]
) -> None:
    sandbox_org.set_batch_size(2)  # the 5 order items come in 3 pages; the malformed one is on the last
    org_id = sandbox_org.org_id
    dying = PagesDieAt(gateway, "SfdcPartnerOrderItem", page, when)
    units = DiesAtCommit(uow_factory, lambda: dying.armed)
    with pytest.raises(Crash):
        MirrorService(dying, units, MAPPING, org_id).run()
    with uow_factory() as uow:
        stored = uow.mirror("order_item").ids(org_id)
        state = uow.sync_state.get(org_id, "SfdcPartnerOrderItem")
    committed_pages = page - 1 if when == "before" else page
    assert len(stored) == min(2 * committed_pages, 4)  # only what was committed, with its cursor
    assert (state is not None and state.cursor is not None) == (committed_pages > 0)

    MirrorService(gateway, uow_factory, MAPPING, org_id).run()

    bad = sandbox_org.demo_ids["malformed_order_item"]
    with uow_factory() as uow:
        stored = uow.mirror("order_item").ids(org_id)
        letters = [d for d in uow.dead_letters.open(org_id, source="mirror") if d.record_id == bad]
        state = uow.sync_state.get(org_id, "SfdcPartnerOrderItem")
    in_org = sandbox_org.records("SfdcPartnerOrderItem")
    assert stored == {r["Id"] for r in in_org} - {bad}
    assert [(d.error_code, d.attempts) for d in letters] == [(letters[0].error_code, 1)]  # quarantined once
    assert state.cursor == max(datetime.fromisoformat(r["SystemModstamp"].replace("+0000", "+00:00"))
                               for r in in_org)
    assert MirrorService(gateway, uow_factory, MAPPING, org_id).run().written == 0


# ------------------------------------------------------------------------------ offers push


@pytest.fixture
def drafts(tmp_path: Path, sandbox_org: SandboxOrg, gateway: SalesforceOrg, uow_factory: Callable[..., Any]) -> Path:
    MirrorService(gateway, uow_factory, MAPPING, sandbox_org.org_id).run()  # the catalog drafts refer to
    path = tmp_path / "offers" / "acme"
    path.mkdir(parents=True)
    return path


def write_draft(drafts: Path, key: str = "wayne-2026", **overrides: Any) -> None:
    content: dict[str, Any] = {
        "customer_name": "Wayne Enterprises", "customer_org_id": "00D5g0000012345ABC", "offer_type": "initial",
        "service_start_date": TODAY + timedelta(days=30), "valid_until": TODAY + timedelta(days=14),
        "recipient_email": "buyer@wayne.example.com", "billing_email": "ap@wayne.example.com",
        "items": [{"product": "Core App", "quantity": 10, "unit_price_per_month": "50.00"},
                  {"product": "Premium Add-On", "quantity": 1, "unit_price_per_month": "200.00"}],
    }
    content.update(overrides)
    (drafts / f"{key}.toml").write_text(draft_toml(content))


def pusher(org: Any, uow_factory: Callable[..., Any], sandbox_org: SandboxOrg, drafts: Path) -> OffersPushService:
    return OffersPushService(org, uow_factory, MAPPING, sandbox_org.org_id, drafts)


# Wayne is a new customer: composite call #1 creates its SfdcCustomerForPartner record,
# #2 the offer with its items.
CUSTOMER_CREATE, OFFER_CREATE = 1, 2


@pytest.mark.parametrize("when", ["after", "before"])
def test_customer_create_dies_around_the_org_call_and_the_rerun_makes_exactly_one(
    when: str, drafts: Path, sandbox_org: SandboxOrg, gateway: SalesforceOrg, uow_factory: Callable[..., Any]
) -> None:
    write_draft(drafts)
    customers = lambda: [c for c in sandbox_org.records("SfdcCustomerForPartner")  # noqa: E731
                         if c["BillingCustomerOrg"] == "00D5g0000012345ABC"]
    with pytest.raises(Crash):
        pusher(DiesAt(gateway, "composite", nth=CUSTOMER_CREATE, when=when), uow_factory, sandbox_org, drafts).push()
    assert len(customers()) == (1 if when == "after" else 0) and wayne_offers(sandbox_org) == []
    [result] = pusher(gateway, uow_factory, sandbox_org, drafts).push().results
    [customer] = customers()  # looked up before it is created: never two
    [offer] = wayne_offers(sandbox_org)
    assert result.action == "created" and offer["CustomerForPartnerId"] == customer["Id"]


def wayne_offers(sandbox_org: SandboxOrg) -> list[dict[str, Any]]:
    return [r for r in sandbox_org.records("SfdcPartnerOffer") if r["BillingCustomerOrg"] == "00D5g0000012345ABC"]


def offer_items(sandbox_org: SandboxOrg, offer_id: str) -> list[tuple[int, Decimal]]:
    return sorted((r["Quantity"], r["CustomerUnitPricePerMonth"]) for r in sandbox_org.records("SfdcPartnerOfferItem")
                  if r["PartnerOfferId"] == offer_id)


@pytest.mark.parametrize("when", ["after", "before"])
def test_offer_create_dies_around_the_org_call_and_the_rerun_makes_exactly_one(
    when: str, drafts: Path, sandbox_org: SandboxOrg, gateway: SalesforceOrg, uow_factory: Callable[..., Any]
) -> None:
    write_draft(drafts)
    with pytest.raises(Crash):
        pusher(DiesAt(gateway, "composite", nth=OFFER_CREATE, when=when), uow_factory, sandbox_org, drafts).push()
    assert len(wayne_offers(sandbox_org)) == (1 if when == "after" else 0)

    [result] = pusher(gateway, uow_factory, sandbox_org, drafts).push().results

    [offer] = wayne_offers(sandbox_org)  # the lost answer's offer is found, not made again
    assert (result.action, result.sf_id) == ("created", offer["Id"])
    assert offer_items(sandbox_org, offer["Id"]) == [(1, Decimal("200.00")), (10, Decimal("50.00"))]
    with uow_factory() as uow:
        state = uow.offer_drafts.get(sandbox_org.org_id, "wayne-2026")
        assert uow.dead_letters.count_open(sandbox_org.org_id, source="offers_push") == 0
    assert (state.sf_id, state.status, state.last_error) == (offer["Id"], "draft", None)
    sandbox_org.reset_counters()
    assert pusher(gateway, uow_factory, sandbox_org, drafts).push().results[0].action == "unchanged"
    assert sandbox_org.api_calls == 0


def test_offer_edited_after_a_lost_create_is_adopted_then_updated_in_one_run(
    drafts: Path, sandbox_org: SandboxOrg, gateway: SalesforceOrg, uow_factory: Callable[..., Any]
) -> None:
    write_draft(drafts)
    with pytest.raises(Crash):
        pusher(DiesAt(gateway, "composite", nth=OFFER_CREATE), uow_factory, sandbox_org, drafts).push()
    write_draft(drafts, items=[{"product": "Core App", "quantity": 12, "unit_price_per_month": "45.00"}])

    [result] = pusher(gateway, uow_factory, sandbox_org, drafts).push().results

    [offer] = wayne_offers(sandbox_org)
    assert (result.action, result.sf_id) == ("updated", offer["Id"])
    assert offer_items(sandbox_org, offer["Id"]) == [(12, Decimal("45.00"))]
    assert pusher(gateway, uow_factory, sandbox_org, drafts).push().results[0].action == "unchanged"


def test_offer_update_applied_but_not_recorded_is_not_reported_as_a_conflict(
    drafts: Path, sandbox_org: SandboxOrg, gateway: SalesforceOrg, uow_factory: Callable[..., Any]
) -> None:
    write_draft(drafts)
    offer_id = pusher(gateway, uow_factory, sandbox_org, drafts).push().results[0].sf_id
    write_draft(drafts, items=[{"product": "Core App", "quantity": 12, "unit_price_per_month": "45.00"}])
    with pytest.raises(Crash):  # the customer exists by now: composite #1 is the update
        pusher(DiesAt(gateway, "composite"), uow_factory, sandbox_org, drafts).push()
    assert offer_items(sandbox_org, offer_id) == [(12, Decimal("45.00"))]  # the org has our update
    sandbox_org.reset_counters()

    [result] = pusher(gateway, uow_factory, sandbox_org, drafts).push().results

    assert (result.action, result.sf_id) == ("updated", offer_id)
    assert sandbox_org.api_calls == 2  # the customer look-up and the org's view: nothing is sent again
    assert len(wayne_offers(sandbox_org)) == 1 and offer_items(sandbox_org, offer_id) == [(12, Decimal("45.00"))]
    with uow_factory() as uow:
        assert uow.dead_letters.count_open(sandbox_org.org_id, source="offers_push") == 0
    assert pusher(gateway, uow_factory, sandbox_org, drafts).push().results[0].action == "unchanged"


# ------------------------------------------------------------------------------ invoicing


@pytest.fixture
def gtm(uow_factory: Callable[[], SqlUnitOfWork]) -> GtmOrg:
    return GtmOrg(uow_factory).catalogue()


def invoicing(uow: Callable[[], Any], billing: Any, clock: Clock) -> InvoicingService:
    return InvoicingService(org_id=ORG, uow=uow, billing=billing, mapping=MAPPING, settings=InvoicingSettings(),
                            clock=clock)


def sent_locally(uow_factory: Callable[[], SqlUnitOfWork], n: int = 1) -> Callable[[], bool]:
    def at() -> bool:
        with uow_factory() as uow:
            row = uow.invoices.get(ORG, order_id(n))
        return row is not None and row.sent_at is not None

    return at


def test_invoicing_dies_after_recording_the_send_and_the_orders_letter_still_resolves(
    gtm: GtmOrg, stripe_sandbox: StripeSandbox, stripe_billing: StripeBilling,
    uow_factory: Callable[[], SqlUnitOfWork],
) -> None:
    clock = Clock(datetime(2025, 12, 31, 10, tzinfo=UTC))
    gtm.order(1, start=date(2026, 1, 1), subtotal="9000.00")  # disagrees with its items: quarantined
    assert invoicing(uow_factory, stripe_billing, clock).run().quarantined
    gtm.change_order(1, subtotal=Decimal("8400.00"))  # the org fixes it
    with pytest.raises(Crash):  # the invoice is sent and recorded; the process dies right then
        invoicing(DiesAtCommit(uow_factory, sent_locally(uow_factory), when="after"), stripe_billing, clock).run()

    invoicing(uow_factory, stripe_billing, clock).run()

    [invoice] = stripe_sandbox.invoices()
    assert len(stripe_sandbox.invoice_sends(invoice["id"])) == 1
    with uow_factory() as uow:
        assert uow.dead_letters.open(ORG, source="invoicing") == []  # no stale error for write-back
        assert uow.outbox.pending(ORG) == []


# Two batches (orders of one e-mail never share one): [1] and [2, 3], five commits each: the
# first intents (with the pins), then each step's result with the next step's intent.
COMMITS_FOR_THREE_ORDERS = 10


@pytest.mark.parametrize("expired", [False, True], ids=["keys-kept", "keys-expired"])
@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("nth", range(1, COMMITS_FOR_THREE_ORDERS + 1))
def test_invoicing_dies_at_any_commit_and_the_rerun_leaves_one_customer_per_email_and_one_invoice_per_order(
    nth: int, when: str, expired: bool, gtm: GtmOrg, stripe_sandbox: StripeSandbox, stripe_billing: StripeBilling,
    uow_factory: Callable[[], SqlUnitOfWork],
) -> None:
    """Each step's result shares a transaction with the next step's intent: dying before
    that commit leaves the call unrecorded (the rerun looks first, or replays its key),
    dying after it leaves the next intent pending with no call made. Orders 1 and 2 share a
    billing e-mail (2 reuses the customer 1 created); order 3 has its own and runs beside 2
    in one batch, their writes sharing each transaction."""
    clock = Clock(datetime(2025, 12, 31, 10, tzinfo=UTC))
    for n, email in ((1, "ap@acme.example"), (2, "ap@acme.example"), (3, "billing@globex.example")):
        gtm.order(n, start=date(2026, 1, 1), email=email)
    dying = DiesAtCommit(uow_factory, nth_time(nth), when=when)
    with pytest.raises(Crash):
        invoicing(dying, stripe_billing, clock).run()
    if expired:
        stripe_sandbox.advance_clock(seconds=25 * 3600)  # Stripe forgets idempotency keys after 24 hours

    report = invoicing(uow_factory, stripe_billing, clock).run()

    assert report.quarantined == []
    invoices = stripe_sandbox.invoices()
    assert sorted(i["metadata"]["gtm_order_id"] for i in invoices) == [order_id(n) for n in (1, 2, 3)]
    assert all((i["status"], i["total"], len(i["lines"]["data"])) == ("open", 840_000, 2) for i in invoices)
    assert all(len(stripe_sandbox.invoice_sends(i["id"])) == 1 for i in invoices)
    assert sorted(c["email"] for c in stripe_sandbox.objects("customer")) == ["ap@acme.example",
                                                                             "billing@globex.example"]
    with uow_factory() as uow:
        assert uow.outbox.pending(ORG) == []
        rows = {n: uow.invoices.get(ORG, order_id(n)) for n in (1, 2, 3)}
    assert {i["id"] for i in invoices} == {r.stripe_invoice_id for r in rows.values()}
    assert all(r.sent_at is not None and r.status == "open" for r in rows.values())
    assert rows[1].stripe_customer_id == rows[2].stripe_customer_id != rows[3].stripe_customer_id


def test_a_clean_invoicing_run_of_three_orders_commits_ten_times(
    gtm: GtmOrg, stripe_billing: StripeBilling, uow_factory: Callable[[], SqlUnitOfWork],
) -> None:
    """The crash test above covers every commit: a run makes exactly this many."""
    for n, email in ((1, "ap@acme.example"), (2, "ap@acme.example"), (3, "billing@globex.example")):
        gtm.order(n, start=date(2026, 1, 1), email=email)
    counted = [0]

    def counting() -> bool:
        counted[0] += 1
        return False

    invoicing(DiesAtCommit(uow_factory, counting), stripe_billing,
              Clock(datetime(2025, 12, 31, 10, tzinfo=UTC))).run()
    assert counted[0] == COMMITS_FOR_THREE_ORDERS


# ------------------------------------------------------------------------------ invoice status


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2025, 12, 31, 10, tzinfo=UTC))


def invoice_two_orders(gtm: GtmOrg, uow_factory: Callable[[], SqlUnitOfWork], billing: StripeBilling,
                       clock: Clock) -> list[str]:
    gtm.order(1, start=date(2026, 1, 1))
    gtm.order(2, start=date(2026, 1, 1))
    invoicing(uow_factory, billing, clock).run()
    with uow_factory() as uow:
        return [uow.invoices.get(ORG, order_id(n)).stripe_invoice_id for n in (1, 2)]


def test_invoice_status_poll_dies_mid_batch_and_the_rerun_polls_only_the_rest(
    gtm: GtmOrg, stripe_sandbox: StripeSandbox, stripe_billing: StripeBilling, clock: Clock,
    uow_factory: Callable[[], SqlUnitOfWork],
) -> None:
    for invoice_id in invoice_two_orders(gtm, uow_factory, stripe_billing, clock):
        stripe_sandbox.pay_invoice(invoice_id)  # no webhook endpoint: only polling can tell
    clock.now = datetime.now(UTC) + timedelta(hours=2)
    dying = DiesAt(stripe_billing, "retrieve_invoice", nth=2)  # the second invoice read, never applied
    with pytest.raises(Crash):
        InvoiceStatusService(uow=uow_factory, billing=dying, clock=clock, org_id=ORG).poll()
    with uow_factory() as uow:
        assert [uow.invoices.get(ORG, order_id(n)).status for n in (1, 2)] == ["paid", "open"]
    stripe_sandbox.reset_counters()

    report = InvoiceStatusService(uow=uow_factory, billing=stripe_billing, clock=clock, org_id=ORG).poll()

    assert (report.checked, report.changed) == (1, 1)
    assert stripe_sandbox.counters() == {"GET /v1/invoices/{id}": 1}
    with uow_factory() as uow:
        assert [uow.invoices.get(ORG, order_id(n)).status for n in (1, 2)] == ["paid", "paid"]


@pytest.mark.parametrize("when", ["before", "after"], ids=["event-lost", "answer-lost"])
def test_webhook_dies_around_its_commit_and_stripes_retry_applies_the_event_once(
    when: str, gtm: GtmOrg, stripe_sandbox: StripeSandbox, stripe_billing: StripeBilling,
    stripe_client: stripe.StripeClient, clock: Clock, uow_factory: Callable[[], SqlUnitOfWork],
) -> None:
    gtm.order(1, start=date(2026, 1, 1))
    invoicing(uow_factory, stripe_billing, clock).run()
    with uow_factory() as uow:
        invoice_id = uow.invoices.get(ORG, order_id(1)).stripe_invoice_id
    units = DiesAtCommit(uow_factory, nth_time(1), when=when)  # the receiver's first event dies
    service = InvoiceStatusService(uow=units, billing=None, clock=clock, org_id=ORG)
    receivers: list[WebhookReceiver] = []
    server, thread = serve(make_webhook_app(receivers))
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/stripe/webhook"
        endpoint = stripe_client.v1.webhook_endpoints.create(params={"url": url, "enabled_events": ["invoice.paid"]})
        receivers.append(WebhookReceiver("acme", endpoint.secret, stripe_billing.verify_event, service))
        stripe_sandbox.pay_invoice(invoice_id)
        assert stripe_sandbox.wait_for_webhooks()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    deliveries = stripe_sandbox.webhook_deliveries()
    assert [d["status"] for d in deliveries] == [500, 200]  # the dead attempt, then Stripe's retry
    [paid] = stripe_sandbox.events("invoice.paid")
    with uow_factory() as uow:
        event = uow.stripe_events.get(paid["id"])
        row = uow.invoices.get(ORG, order_id(1))
        assert uow.anomalies.list(ORG) == []
    # Stored by the first attempt when only its answer was lost (the retry is a duplicate),
    # by the retry when the first attempt's transaction was lost.
    assert (event.received_at.timestamp() < deliveries[0]["at"]) == (when == "after")
    assert event.outcome == "applied"
    assert (row.status, row.last_event_id, row.amount_paid) == ("paid", paid["id"], Decimal("8400.00"))


# ------------------------------------------------------------------------------ reconcile


def test_reconcile_dies_reading_a_payout_and_the_rerun_ingests_it_exactly_once(
    books_on: Callable[..., PartnerBooks], database_url: str
) -> None:
    books = books_on(database_url)
    order = books.an_order()
    books.invoice(order)
    books.pay_with_share_deducted(order, 420_000)  # half now, half in the next payout
    first = books.payout()
    books.pay_with_share_deducted(order)
    stray = books.an_order(core_app(1))
    books.invoice(stray, metadata={}, record=False)  # money that traces to no order
    books.pay(stray)
    second = books.payout()
    runtime = books.runtime
    with pytest.raises(Crash):  # the second payout's transactions are read, never committed
        Reconciler(runtime, DiesAt(runtime.payouts(), "transactions", nth=2), log=LOG).run()
    with books.uow() as uow:
        assert [p.stripe_payout_id for p in uow.payouts.list(books.org_id)] == [first["id"]]
        assert uow.sync_state.get(books.org_id, "stripe_payouts").records_total == 1
    assert books.open_letters("payouts") == []
    assert books.reconciliation(order).actual_payout == Decimal("3630.00")

    counts = Reconciler(runtime, runtime.payouts(), log=LOG).run()

    assert counts["payouts"] == 1
    row = books.reconciliation(order)
    assert (row.actual_payout, row.discrepancy) == (order.expected_payout, None)
    assert payout_ids_of(row.payout_ids) == [first["id"], second["id"]]
    (letter,) = books.open_letters("payouts")
    assert (letter.error_code, letter.attempts, letter.payload["payout_id"]) == ("UNKNOWN_CHARGE", 1, second["id"])
    with books.uow() as uow:
        state = uow.sync_state.get(books.org_id, "stripe_payouts")
        assert state.records_total == 2 and state.cursor == datetime.fromtimestamp(second["created"], UTC)
    again = Reconciler(runtime, runtime.payouts(), log=LOG).run()
    assert (again["payouts"], again["orders_written"], again["unknown_charges"]) == (0, 0, 0)


# ------------------------------------------------------------------------------ write-back


def dying_org(books: PartnerBooks, method: str, **how: Any) -> Any:
    """The books' runtime whose org gateway dies as ``DiesAt`` says (same store, same org)."""
    return dataclasses.replace(books.runtime, _salesforce=DiesAt(books.runtime.salesforce(), method, **how))


def billing_ids(org: SandboxOrg) -> list[str]:
    return sorted(r["Order_Id__c"] for r in org.records("GTM_Order_Billing__c"))


@pytest.mark.parametrize(("nth", "when", "resent"), [(1, "after", 250), (2, "before", 50), (2, "after", 50)],
                         ids=["batch-1-unrecorded", "between-batches", "batch-2-unrecorded"])
def test_writeback_dies_around_a_batch_and_the_rerun_resends_only_the_unrecorded_by_external_id(
    nth: int, when: str, resent: int, org_books: PartnerBooks, sandbox_org: SandboxOrg
) -> None:
    orders = invoiced_orders(org_books, 250)  # two batches: 200 + 50
    refused = orders[7]
    with validation_rule(sandbox_org, lambda r: r.get("Order_Id__c") == refused.order_id):
        with pytest.raises(Crash):
            writeback.run_writeback_job(dying_org(org_books, "upsert_collection", nth=nth, when=when), log=LOG)
        counts = writeback.run_writeback_job(org_books.runtime, log=LOG)
        again = writeback.run_writeback_job(org_books.runtime, log=LOG)

    assert counts["sent"] == resent and counts["failed"] == (1 if resent == 250 else 0)
    assert billing_ids(sandbox_org) == sorted(o.order_id for o in orders if o is not refused)  # no duplicates
    (letter,) = org_books.open_letters("writeback")
    assert (letter.record_id, letter.attempts) == (refused.order_id, 1)
    assert (again["sent"], again["unchanged"], again["awaiting_replay"]) == (0, 249, 1)  # every hash recorded


# ------------------------------------------------------------------------------ replay


def test_replay_dies_after_the_resend_before_the_letter_resolves(org_books: PartnerBooks,
                                                                 sandbox_org: SandboxOrg) -> None:
    orders = invoiced_orders(org_books, 3)
    refused = orders[1]
    with validation_rule(sandbox_org, lambda r: r.get("Order_Id__c") == refused.order_id):
        writeback.run_writeback_job(org_books.runtime, log=LOG)
    (letter,) = org_books.open_letters("writeback")  # the cause is fixed: the rule is gone
    with pytest.raises(Crash):
        replay(dying_org(org_books, "upsert_collection"), log=LOG, run_job=runner("replay"))
    assert refused.order_id in billing_records(sandbox_org)  # the re-send went through ...
    assert [d.id for d in org_books.open_letters("writeback")] == [letter.id]  # ... unrecorded
    assert writeback.run_writeback_job(org_books.runtime, log=LOG)["sent"] == 0  # parked for replay

    report = replay(org_books.runtime, log=LOG, run_job=runner("replay"))

    assert [(i.record_id, i.outcome) for i in report.items] == [(refused.order_id, "resolved")]
    assert billing_ids(sandbox_org) == sorted(o.order_id for o in orders)
    assert org_books.open_letters("writeback") == []
    counts = writeback.run_writeback_job(org_books.runtime, log=LOG)
    assert (counts["sent"], counts["unchanged"]) == (0, 3)


def test_replay_of_a_refused_invoice_dies_before_invoicing_and_the_next_replay_invoices_once(
    books: PartnerBooks, stripe_sandbox: StripeSandbox
) -> None:
    order = books.an_order()
    stripe_sandbox.fail_next("POST /v1/invoices", fault=400)
    books.run("invoicing")
    (letter,) = books.open_letters("invoicing")

    def dies(runtime: Any, job: str) -> Any:
        raise Crash(f"died after reopening the refused steps, before {job}")

    with pytest.raises(Crash):
        replay(books.runtime, log=LOG, run_job=dies)

    report = replay(books.runtime, log=LOG, run_job=runner("replay"))

    assert [(i.record_id, i.outcome) for i in report.items] == [(order.order_id, "resolved")]
    [invoice] = stripe_sandbox.invoices()
    assert invoice["metadata"]["gtm_order_id"] == order.order_id
    assert len(stripe_sandbox.invoice_sends(invoice["id"])) == 1
    with books.uow() as uow:
        assert uow.outbox.pending(books.org_id) == []
        assert uow.invoices.get(books.org_id, order.order_id).stripe_invoice_id == invoice["id"]
