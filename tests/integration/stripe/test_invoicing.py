"""Invoicing against the local Stripe server with the official SDK: one NET30 invoice per
activated order, exactly once, whatever fails in between."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from connector.adapters.store import SqlUnitOfWork
from connector.adapters.stripe_billing import StripeBilling, build_client
from connector.mappings import load_mapping
from connector.services.invoicing import STEPS, InvoicingService, InvoicingSettings, customer_key, idempotency_key
from gtm_sandbox.stripe import StripeSandbox
from tests.integration.stripe.gtm import ORG, PPP_CORE, Clock, GtmOrg, order_id

START = date(2026, 1, 1)
DAY = 86_400
POSTS = "POST /v1/*"


def an_invoicing(uow: Callable[[], SqlUnitOfWork], billing: Any, clock: Clock, **settings: Any) -> InvoicingService:
    return InvoicingService(org_id=ORG, uow=uow, billing=billing, mapping=load_mapping("gtm-v2"),
                            settings=InvoicingSettings(**settings), clock=clock)


@pytest.fixture
def org(uow_factory: Callable[[], SqlUnitOfWork]) -> GtmOrg:
    return GtmOrg(uow_factory).catalogue()


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2025, 12, 31, 10, 0, tzinfo=UTC))  # the day before the seed order starts


@pytest.fixture
def invoicing(uow_factory: Callable[[], SqlUnitOfWork], stripe_billing: StripeBilling,
              clock: Clock) -> InvoicingService:
    return an_invoicing(uow_factory, stripe_billing, clock)


def local_invoice(uow: Callable[[], SqlUnitOfWork], n: int) -> Any:
    with uow() as unit:
        return unit.invoices.get(ORG, order_id(n))


def live_invoices(box: StripeSandbox, account: str | None = None) -> list[dict[str, Any]]:
    return [i for i in box.invoices(account=account) if i["status"] != "void"]


# -- the partner's day -----------------------------------------------------------------------


def test_activated_order_gets_one_net30_invoice_sent_with_two_lines(
    org: GtmOrg, invoicing: InvoicingService, stripe_sandbox: StripeSandbox, uow_factory: Callable[[], SqlUnitOfWork]
) -> None:
    org.order(1, start=START)

    report = invoicing.run()

    assert report.invoiced == [order_id(1)] and report.quarantined == []
    [invoice] = stripe_sandbox.invoices()
    assert (invoice["status"], invoice["total"], invoice["amount_due"], invoice["currency"]) == (
        "open", 840_000, 840_000, "usd")
    assert invoice["collection_method"] == "send_invoice" and invoice["days_until_due"] == 30
    assert invoice["due_date"] == invoice["status_transitions"]["finalized_at"] + 30 * DAY
    assert [(line["quantity"], line["amount"]) for line in invoice["lines"]["data"]] == [(10, 600_000), (1, 240_000)]
    assert [line["description"].split(":")[0] for line in invoice["lines"]["data"]] == ["Core App", "Premium Add-On"]
    assert invoice["metadata"]["gtm_order_id"] == order_id(1) and invoice["metadata"]["gtm_org_id"] == ORG
    assert [s["to"] for s in stripe_sandbox.invoice_sends(invoice["id"])] == ["ap@acme.example"]
    [customer] = stripe_sandbox.objects("customer")
    assert customer["email"] == "ap@acme.example" and customer["metadata"]["gtm_org_id"] == ORG

    row = local_invoice(uow_factory, 1)
    assert (row.stripe_invoice_id, row.number, row.hosted_url) == (invoice["id"], invoice["number"],
                                                                  invoice["hosted_invoice_url"])
    assert (row.status, row.amount_due, row.amount_remaining) == ("open", Decimal("8400.00"), Decimal("8400.00"))
    assert row.due_date == datetime.fromtimestamp(invoice["due_date"], UTC).date()
    assert row.sent_at is not None and row.status_source == "create"


def test_add_on_is_invoiced_for_its_prorated_amount(
    org: GtmOrg, stripe_sandbox: StripeSandbox, stripe_billing: StripeBilling,
    uow_factory: Callable[[], SqlUnitOfWork],
) -> None:
    org.order(1, start=START)
    org.order(2, start=date(2026, 3, 1), items=[(PPP_CORE, 5, "50.00")], order_type="Add-On", initial=1)
    clock = Clock(datetime(2026, 2, 28, 12, tzinfo=UTC))

    report = an_invoicing(uow_factory, stripe_billing, clock).run()

    assert sorted(report.invoiced) == [order_id(1), order_id(2)]
    add_on = next(i for i in stripe_sandbox.invoices() if i["metadata"]["gtm_order_id"] == order_id(2))
    # 5 x $50 x 12 = $3,000 for 1 Mar..31 Dec 2026: 306 of the term's 365 days, half-up to the cent.
    expected = (Decimal(3000) * 306 / 365).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert expected == Decimal("2515.07")
    assert add_on["total"] == 251_507
    [line] = add_on["lines"]["data"]
    assert "306 of 365 days" in line["description"] and line["metadata"]["licenses"] == "5"
    assert add_on["metadata"]["gtm_order_type"] == "add_on"
    assert len(stripe_sandbox.objects("customer")) == 1  # same customer for both orders


def test_an_add_on_to_an_add_on_is_invoiced_to_the_initial_orders_end(
    org: GtmOrg, stripe_sandbox: StripeSandbox, stripe_billing: StripeBilling,
    uow_factory: Callable[[], SqlUnitOfWork],
) -> None:
    """The second add-on's InitialOrderId names the first add-on: it still runs to the end
    of the initial term (31 Dec 2026), not 1 Mar 2026 + 12 months - 1 day."""
    org.order(1, start=START)
    org.order(2, start=date(2026, 3, 1), items=[(PPP_CORE, 5, "50.00")], order_type="Add-On", initial=1)
    org.order(3, start=date(2026, 7, 1), items=[(PPP_CORE, 2, "50.00")], order_type="Add-On", initial=2)
    clock = Clock(datetime(2026, 6, 30, 12, tzinfo=UTC))

    report = an_invoicing(uow_factory, stripe_billing, clock).run()

    assert sorted(report.invoiced) == [order_id(1), order_id(2), order_id(3)]
    second = next(i for i in stripe_sandbox.invoices() if i["metadata"]["gtm_order_id"] == order_id(3))
    # 2 x $50 x 12 = $1,200 for 1 Jul..31 Dec 2026: 184 of the term's 365 days.
    days = (date(2026, 12, 31) - date(2026, 7, 1)).days + 1
    expected = (Decimal(1200) * days / 365).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert (days, expected) == (184, Decimal("604.93"))
    assert second["total"] == 60_493
    assert second["metadata"]["gtm_service_period"] == "2026-07-01..2026-12-31"


@pytest.mark.parametrize(("addon", "months"), [(date(2026, 2, 27), 12), (date(2026, 2, 28), 11),
                                              (date(2026, 3, 31), 10), (date(2027, 1, 30), 1)])
def test_monthly_proration_named_in_config_invoices_whole_twelfths(
    addon: date, months: int, org: GtmOrg, stripe_sandbox: StripeSandbox, stripe_billing: StripeBilling,
    uow_factory: Callable[[], SqlUnitOfWork],
) -> None:
    """``proration = "monthly"``: a term starting 31 Jan 2026 has periods starting 31 Jan,
    28 Feb, 31 Mar, ... 31 Dec (the day clamped to the month); the period an add-on starts
    in counts whole. 5 x $50 x 12 = $3,000 x months left / 12."""
    org.order(1, start=date(2026, 1, 31))
    org.order(2, start=addon, items=[(PPP_CORE, 5, "50.00")], order_type="Add-On", initial=1)
    clock = Clock(datetime.combine(addon, datetime.min.time(), UTC))

    report = an_invoicing(uow_factory, stripe_billing, clock, proration="monthly").run()

    assert order_id(2) in report.invoiced
    invoice = next(i for i in stripe_sandbox.invoices() if i["metadata"]["gtm_order_id"] == order_id(2))
    assert invoice["total"] == 300_000 * months // 12
    assert invoice["metadata"]["gtm_proration"] == "monthly"
    assert f"({months} of 12 months)" in invoice["lines"]["data"][0]["description"]


def test_second_run_creates_nothing(org: GtmOrg, invoicing: InvoicingService, stripe_sandbox: StripeSandbox) -> None:
    org.order(1, start=START)
    invoicing.run()
    stripe_sandbox.reset_counters()

    again = invoicing.run()

    assert again.invoiced == [] and again.considered == 0
    assert stripe_sandbox.counters() == {}
    assert len(stripe_sandbox.invoices()) == 1


FIFTY_LINES = [(PPP_CORE, 1 + i, "50.00") for i in range(50)]


def test_new_customer_costs_five_stripe_calls_for_a_fifty_line_invoice(
    org: GtmOrg, invoicing: InvoicingService, stripe_sandbox: StripeSandbox
) -> None:
    """The search first (an invoice Salesforce already issued is adopted, never doubled),
    the customer, the draft, all fifty lines in one call, and one send that finalizes it."""
    org.order(1, start=START, items=FIFTY_LINES)

    assert invoicing.run().invoiced == [order_id(1)]

    assert stripe_sandbox.counters() == {
        "GET /v1/invoices/search": 1,
        "POST /v1/customers": 1,
        "POST /v1/invoices": 1,
        "POST /v1/invoices/{id}/add_lines": 1,
        "POST /v1/invoices/{id}/send": 1,
    }
    [invoice] = stripe_sandbox.invoices()
    assert (invoice["status"], invoice["lines"]["total_count"]) == ("open", 50)
    assert invoice["due_date"] == invoice["status_transitions"]["finalized_at"] + 30 * DAY
    assert len(stripe_sandbox.invoice_sends(invoice["id"])) == 1
    assert [e["type"] for e in stripe_sandbox.events("invoice.finalized")] == ["invoice.finalized"]


def test_known_customer_costs_four_stripe_calls(org: GtmOrg, invoicing: InvoicingService,
                                               stripe_sandbox: StripeSandbox) -> None:
    """The customer of an e-mail the connector created before is known locally: no lookup."""
    org.order(1, start=START)
    invoicing.run()
    org.order(2, start=START, items=FIFTY_LINES)
    stripe_sandbox.reset_counters()

    invoicing.run()

    assert stripe_sandbox.counters() == {
        "GET /v1/invoices/search": 1,
        "POST /v1/invoices": 1,
        "POST /v1/invoices/{id}/add_lines": 1,
        "POST /v1/invoices/{id}/send": 1,
    }
    assert len(stripe_sandbox.objects("customer")) == 1
    first, second = sorted(stripe_sandbox.invoices(), key=lambda i: i["metadata"]["gtm_order_id"])
    assert first["customer"] == second["customer"]


def test_another_email_gets_its_own_customer_created_once(org: GtmOrg, invoicing: InvoicingService,
                                                          stripe_sandbox: StripeSandbox) -> None:
    org.order(1, start=START)
    org.order(2, start=START, email="billing@globex.example")
    org.order(3, start=START, email="billing@globex.example")

    assert len(invoicing.run().invoiced) == 3

    assert sorted(c["email"] for c in stripe_sandbox.objects("customer")) == ["ap@acme.example",
                                                                             "billing@globex.example"]
    assert stripe_sandbox.calls("POST /v1/customers") == 2
    assert stripe_sandbox.calls("GET /v1/customers") == 0


def test_an_org_with_customers_from_the_per_order_step_looks_each_email_up_once(
    org: GtmOrg, invoicing: InvoicingService, stripe_sandbox: StripeSandbox, stripe_client: Any,
    uow_factory: Callable[[], SqlUnitOfWork]
) -> None:
    """Customers an older release made (its customer step was keyed per order) are not in
    the (org, e-mail) mapping: each unmapped e-mail is listed once before any create."""
    existing = stripe_client.v1.customers.create(params={"email": "ap@acme.example",
                                                         "metadata": {"gtm_org_id": ORG}})
    with uow_factory() as uow:
        key = idempotency_key(ORG, order_id(9), "customer", "0000000000000000")
        uow.outbox.record_intent(ORG, key, "customer", order_id(9), {"step": "customer"})
        uow.outbox.record_result(key, {"customer_id": existing.id, "created": True})
        uow.commit()
    org.order(1, start=START)
    org.order(2, start=START)
    stripe_sandbox.reset_counters()

    assert len(invoicing.run().invoiced) == 2

    assert stripe_sandbox.calls("GET /v1/customers") == 1  # the second order finds the mapping
    assert stripe_sandbox.calls("POST /v1/customers") == 0
    assert {i["customer"] for i in stripe_sandbox.invoices()} == {existing.id}


def test_orders_are_invoiced_from_one_day_before_service_start(
    org: GtmOrg, stripe_sandbox: StripeSandbox, stripe_billing: StripeBilling, uow_factory: Callable[[], SqlUnitOfWork]
) -> None:
    org.order(1, start=START)
    clock = Clock(datetime(2025, 12, 30, 23, 59, tzinfo=UTC))
    invoicing = an_invoicing(uow_factory, stripe_billing, clock)

    early = invoicing.run()
    assert (early.not_due, early.invoiced) == (1, [])
    assert stripe_sandbox.counters() == {}

    clock.advance(minutes=1)
    assert invoicing.run().invoiced == [order_id(1)]


def test_only_activated_orders_are_invoiced(org: GtmOrg, invoicing: InvoicingService,
                                            stripe_sandbox: StripeSandbox) -> None:
    org.order(1, start=START, status="Processing")
    org.order(2, start=START, status="New")
    org.order(3, start=START, status="Expired")

    assert invoicing.run().considered == 0
    assert stripe_sandbox.counters() == {}


def test_order_whose_items_disagree_with_its_subtotal_is_quarantined(
    org: GtmOrg, invoicing: InvoicingService, stripe_sandbox: StripeSandbox, uow_factory: Callable[[], SqlUnitOfWork]
) -> None:
    org.order(1, start=START, subtotal="9000.00")

    report = invoicing.run()

    assert [(o, code) for o, code, _ in report.quarantined] == [(order_id(1), "SUBTOTAL_MISMATCH")]
    assert stripe_sandbox.counters() == {}
    with uow_factory() as uow:
        [letter] = uow.dead_letters.open(ORG, source="invoicing")
    assert (letter.record_id, letter.error_code) == (order_id(1), "SUBTOTAL_MISMATCH")
    assert "9000.00" in letter.reason and "8400.00" in letter.reason

    org.change_order(1, subtotal=Decimal("8400.00"))  # the org's figure is corrected
    assert invoicing.run().invoiced == [order_id(1)]
    with uow_factory() as uow:
        assert uow.dead_letters.open(ORG, source="invoicing") == []


def test_add_on_without_its_initial_order_is_quarantined(org: GtmOrg, invoicing: InvoicingService,
                                                         stripe_sandbox: StripeSandbox) -> None:
    org.order(2, start=START, items=[(PPP_CORE, 5, "50.00")], order_type="Add-On", initial=1)

    report = invoicing.run()

    assert [code for _, code, _ in report.quarantined] == ["INITIAL_ORDER_MISSING"]
    assert stripe_sandbox.invoices() == []


def test_rate_limits_and_server_errors_are_retried_with_the_same_key(
    org: GtmOrg, invoicing: InvoicingService, stripe_sandbox: StripeSandbox
) -> None:
    org.order(1, start=START)
    stripe_sandbox.fail_next("POST /v1/invoices", fault=429)
    stripe_sandbox.fail_next("POST /v1/invoices/{id}/add_lines", times=2, fault=500)
    stripe_sandbox.fail_next("POST /v1/invoices/{id}/send", fault=503)

    assert invoicing.run().invoiced == [order_id(1)]

    for endpoint, attempts in (("POST /v1/invoices", 2), ("POST /v1/invoices/{id}/add_lines", 3),
                               ("POST /v1/invoices/{id}/send", 2)):
        keys = stripe_sandbox.idempotency_keys(endpoint)
        assert len(keys) == attempts and len(set(keys)) == 1, endpoint
        assert keys[0] is not None and keys[0].startswith(f"gtm-{ORG}-{order_id(1)}-")
    assert len(stripe_sandbox.invoices()) == 1
    assert len(stripe_sandbox.invoices()[0]["lines"]["data"]) == 2


@pytest.mark.parametrize("endpoint", [
    "POST /v1/customers", "POST /v1/invoices", "POST /v1/invoices/{id}/add_lines", "POST /v1/invoices/{id}/send",
])
def test_an_answer_lost_after_stripe_applied_the_call_is_replayed_not_repeated(
    endpoint: str, org: GtmOrg, invoicing: InvoicingService, stripe_sandbox: StripeSandbox
) -> None:
    org.order(1, start=START)
    stripe_sandbox.fail_next(endpoint, fault="reset")  # applied, then the connection drops

    assert invoicing.run().invoiced == [order_id(1)]

    [invoice] = stripe_sandbox.invoices()
    assert invoice["total"] == 840_000 and len(invoice["lines"]["data"]) == 2
    assert len(stripe_sandbox.objects("customer")) == 1
    assert len(stripe_sandbox.invoice_sends(invoice["id"])) == 1
    attempts = stripe_sandbox.requests(endpoint)
    # The retry carries the same key and gets the stored answer (a customer create too: its
    # key is derived from the org and the e-mail).
    assert [(r["fault"], r["replayed"]) for r in attempts] == [("reset_after", False), (None, True)]
    assert attempts[0]["idempotency_key"] == attempts[1]["idempotency_key"]


# -- crashes --------------------------------------------------------------------------------


class Crash(BaseException):
    """The process dies here (not an Exception: nothing in the connector catches it)."""


STEP_OF = {"create_customer": "customer", "create_invoice": "invoice", "add_lines": "lines", "send": "send"}


class CrashingBilling:
    """The real adapter, except the process dies just before or just after one step's call."""

    def __init__(self, inner: StripeBilling, step: str, when: str) -> None:
        self._inner, self._step, self._when = inner, step, when

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)
        if STEP_OF.get(name) != self._step:
            return method

        def crashing(*args: Any, **kwargs: Any) -> Any:
            if self._when == "before":
                raise Crash(f"died before {name}")
            method(*args, **kwargs)
            raise Crash(f"died after {name} reached Stripe")

        return crashing


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("step", STEPS)
def test_a_crash_at_any_step_then_a_rerun_leaves_exactly_one_invoice(
    step: str, when: str, org: GtmOrg, stripe_sandbox: StripeSandbox, stripe_billing: StripeBilling,
    clock: Clock, uow_factory: Callable[[], SqlUnitOfWork]
) -> None:
    org.order(1, start=START)
    with pytest.raises(Crash):
        an_invoicing(uow_factory, CrashingBilling(stripe_billing, step, when), clock).run()

    report = an_invoicing(uow_factory, stripe_billing, clock).run()

    assert report.invoiced == [order_id(1)]
    [invoice] = stripe_sandbox.invoices()
    assert (invoice["status"], invoice["total"], len(invoice["lines"]["data"])) == ("open", 840_000, 2)
    assert len(stripe_sandbox.objects("customer")) == 1
    assert len(stripe_sandbox.invoice_sends(invoice["id"])) == 1
    assert local_invoice(uow_factory, 1).stripe_invoice_id == invoice["id"]
    with uow_factory() as uow:
        assert uow.outbox.pending(ORG) == []


@pytest.mark.parametrize("step", ["customer", "invoice", "lines"])
def test_a_crash_noticed_after_stripe_forgot_the_keys_still_makes_no_duplicate(
    step: str, org: GtmOrg, stripe_sandbox: StripeSandbox, stripe_billing: StripeBilling, clock: Clock,
    uow_factory: Callable[[], SqlUnitOfWork]
) -> None:
    org.order(1, start=START)
    with pytest.raises(Crash):
        an_invoicing(uow_factory, CrashingBilling(stripe_billing, step, "after"), clock).run()
    stripe_sandbox.advance_clock(seconds=25 * 3600)  # Stripe prunes idempotency keys after 24 hours

    report = an_invoicing(uow_factory, stripe_billing, clock).run()

    assert report.invoiced == [order_id(1)] and report.resumed == 1
    [invoice] = stripe_sandbox.invoices()
    assert (invoice["status"], invoice["total"], len(invoice["lines"]["data"])) == ("open", 840_000, 2)
    assert len(stripe_sandbox.objects("customer")) == 1


def test_an_order_changed_mid_invoice_is_quarantined_not_invoiced_twice(
    org: GtmOrg, stripe_sandbox: StripeSandbox, stripe_billing: StripeBilling, clock: Clock,
    uow_factory: Callable[[], SqlUnitOfWork]
) -> None:
    org.order(1, start=START)
    with pytest.raises(Crash):
        an_invoicing(uow_factory, CrashingBilling(stripe_billing, "invoice", "after"), clock).run()
    org.change_item(1, 0, quantity=12, line_item_total=Decimal("7200.00"))
    org.change_order(1, subtotal=Decimal("9600.00"))

    report = an_invoicing(uow_factory, stripe_billing, clock).run()

    assert [code for _, code, _ in report.quarantined] == ["PLAN_CHANGED"]
    assert len(stripe_sandbox.invoices()) == 1


def test_invoices_go_to_the_configured_connected_account(
    org: GtmOrg, stripe_sandbox: StripeSandbox, clock: Clock, uow_factory: Callable[[], SqlUnitOfWork]
) -> None:
    org.order(1, start=START)
    partner = StripeBilling(build_client(stripe_sandbox.api_key, api_base=stripe_sandbox.api_base),
                            account="acct_1PartnerAAAAAAAA")

    an_invoicing(uow_factory, partner, clock).run()

    assert stripe_sandbox.invoices() == []
    assert len(live_invoices(stripe_sandbox, "acct_1PartnerAAAAAAAA")) == 1
    assert {r["account"] for r in stripe_sandbox.requests()} == {"acct_1PartnerAAAAAAAA"}


def test_keys_name_org_order_step_and_plan_version() -> None:
    key = idempotency_key(ORG, order_id(1), "send", "be5c931ee2112803")
    assert key == f"gtm-{ORG}-{order_id(1)}-send-be5c931ee2112803"
    assert len(key) <= 255


def test_customer_keys_name_org_and_email_without_the_email() -> None:
    key = customer_key(ORG, "ap@acme.example")
    assert key.startswith(f"gtm-{ORG}-customer-") and "acme" not in key
    assert key == customer_key(ORG, "ap@acme.example") != customer_key(ORG, "ar@acme.example")
    assert customer_key("00D000000000OTHERA", "ap@acme.example") != key


def test_a_stripe_refusal_quarantines_the_order_until_it_is_retried(
    org: GtmOrg, invoicing: InvoicingService, stripe_sandbox: StripeSandbox, uow_factory: Callable[[], SqlUnitOfWork]
) -> None:
    org.order(1, start=START)
    stripe_sandbox.fail_next("POST /v1/invoices", fault=400)

    first = invoicing.run()
    assert [(o, code) for o, code, _ in first.quarantined] == [(order_id(1), "STRIPE_REJECTED")]

    stripe_sandbox.reset_counters()
    again = invoicing.run()  # the refusal stands: no second call with the same key
    assert [code for _, code, _ in again.quarantined] == ["STRIPE_INVOICE_FAILED"]
    assert stripe_sandbox.counters() == {}

    invoicing.retry(order_id(1))  # the operator fixed the cause and replays the order
    assert invoicing.run().invoiced == [order_id(1)]
    assert len(stripe_sandbox.invoices()) == 1
    with uow_factory() as uow:
        assert uow.dead_letters.open(ORG, source="invoicing") == []


def test_an_unsure_customer_create_resumed_by_another_order_repeats_the_first_orders_request(
    org: GtmOrg, stripe_sandbox: StripeSandbox, stripe_billing: StripeBilling, clock: Clock,
    uow_factory: Callable[[], SqlUnitOfWork]
) -> None:
    """The create's key is the e-mail's: whichever order resumes it sends what was recorded
    with the intent (Stripe refuses a key reused with other parameters)."""
    org.order(1, start=START)
    with pytest.raises(Crash):
        an_invoicing(uow_factory, CrashingBilling(stripe_billing, "customer", "before"), clock).run()
    org.order(2, start=date(2025, 12, 31), customer_name="Acme Holdings")  # sorts first next run

    report = an_invoicing(uow_factory, stripe_billing, clock).run()

    assert report.invoiced == [order_id(2), order_id(1)]
    [customer] = stripe_sandbox.objects("customer")
    assert (customer["name"], customer["metadata"]["gtm_first_order_id"]) == ("Acme Corp", order_id(1))
    assert {i["customer"] for i in stripe_sandbox.invoices()} == {customer["id"]}


class CustomerDiscount:
    """The real Stripe adapter, with the invoices of a customer who holds a coupon in Stripe:
    Stripe takes ``off`` from every draft's total (the sandbox has no coupons)."""

    def __init__(self, billing: StripeBilling, off: Decimal) -> None:
        self._billing, self._off = billing, off

    def __getattr__(self, name: str) -> Any:
        return getattr(self._billing, name)

    def _discounted(self, invoice: Any) -> Any:
        return replace(invoice, total=invoice.total - self._off, amount_due=invoice.amount_due - self._off)

    def add_lines(self, *args: Any, **kwargs: Any) -> Any:
        return self._discounted(self._billing.add_lines(*args, **kwargs))

    def retrieve_invoice(self, invoice_id: str) -> Any:
        return self._discounted(self._billing.retrieve_invoice(invoice_id))


def test_a_draft_stripe_totals_below_the_order_is_never_sent(
    org: GtmOrg, uow_factory: Callable[[], SqlUnitOfWork], stripe_billing: StripeBilling,
    stripe_sandbox: StripeSandbox, clock: Clock,
) -> None:
    org.order(1, start=START)
    invoicing = an_invoicing(uow_factory, CustomerDiscount(stripe_billing, Decimal("840.00")), clock)

    first, again = invoicing.run(), invoicing.run()  # the rerun looks at the draft again: still not sent

    [invoice] = stripe_sandbox.invoices()
    assert invoice["status"] == "draft" and stripe_sandbox.invoice_sends(invoice["id"]) == []
    for report in (first, again):
        assert report.invoiced == []
        [(order, code, reason)] = report.quarantined
        assert (order, code) == (order_id(1), "INVOICE_TOTAL_MISMATCH")
        assert reason.endswith(f"draft {invoice['id']} totals 7,560.00, the order 8,400.00 (a discount on the "
                               "Stripe customer?): left as a draft, not sent")
