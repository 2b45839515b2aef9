"""Invoices Salesforce issued (``invoicing.issuer``): the GTM app has Stripe issue the
invoice of an accepted order and links it through ``SfdcPartnerOrderBillingTrxn``. The
connector must never make a second one: it finds Salesforce's invoice, checks it against the
order, and tracks it like its own; with no invoice past the grace it says so."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from connector.metrics import DaemonMetrics
from connector.services.report import build_report
from tests.fixtures.payouts import PartnerBooks

WRITES = "POST /v1/*"  # every Stripe create, finalize or send is a POST


def salesforce_issues(books: PartnerBooks, order_id: str, amounts_cents: list[int], *,
                      email: str = "acme.billing@example.com", days_until_due: int = 30,
                      tax_rates: list[str] | None = None) -> str:
    """What the GTM app does on activation: a NET30 invoice on the partner's Stripe account,
    a line per item, finalized and sent, naming the Salesforce order in its metadata."""
    client = books.client
    customer = client.v1.customers.create(params={"email": email, "name": "Acme Corp"})
    draft = client.v1.invoices.create(params={
        "customer": customer.id, "collection_method": "send_invoice", "days_until_due": days_until_due,
        "metadata": {"sfdc_order_id": order_id}, **({"default_tax_rates": tax_rates} if tax_rates else {})})
    for n, amount in enumerate(amounts_cents):
        client.v1.invoice_items.create(params={"customer": customer.id, "invoice": draft.id, "amount": amount,
                                               "currency": "usd", "description": f"Line {n + 1}"})
    invoice = client.v1.invoices.finalize_invoice(draft.id)
    client.v1.invoices.send_invoice(invoice.id)
    return str(invoice.id)


def link(sandbox_org: Any, order_id: str, invoice_id: str) -> None:
    """The junction record the GTM app keeps (read-only to API clients: planted by control)."""
    sandbox_org.insert("SfdcPartnerOrderBillingTrxn",
                       [{"SfdcPartnerOrderId": order_id, "PartnerBillingTransactionId": invoice_id}])


@pytest.fixture
def sf_books(sandbox_org: Any, books_on: Any, sqlite_url: str) -> PartnerBooks:
    return books_on(sqlite_url, org=sandbox_org, extra={"invoicing": {"issuer": "salesforce"}})


def letters(books: PartnerBooks, order_id: str) -> list[Any]:
    return [d for d in books.open_letters("invoicing") if d.record_id == order_id]


def test_salesforce_issuer_adopts_the_linked_invoice_and_creates_nothing(sf_books: PartnerBooks,
                                                                         sandbox_org: Any) -> None:
    acme = sandbox_org.demo_ids["acme_order"]
    invoice_id = salesforce_issues(sf_books, acme, [600_000, 240_000])
    link(sandbox_org, acme, invoice_id)
    sf_books.run("mirror")
    sf_books.stripe_box.reset_counters()

    outcome = sf_books.run("invoicing")

    assert sf_books.stripe_box.calls(WRITES) == 0  # nothing created, finalized or sent by us
    assert outcome.counts["invoices_created"] == 0 and outcome.counts["invoices_adopted"] == 1
    assert len(sf_books.stripe_box.invoices()) == 1
    with sf_books.uow() as uow:
        row = uow.invoices.get(sf_books.org_id, acme)
    assert (row.stripe_invoice_id, row.issued_by, row.status, row.amount_due) == (invoice_id, "salesforce", "open",
                                                                                  Decimal("8400.00"))
    assert row.sent_at is not None and letters(sf_books, acme) == []
    # Adopted once: the next run neither looks again nor writes.
    sf_books.stripe_box.reset_counters()
    assert sf_books.run("invoicing").counts["invoices_adopted"] == 0
    assert sf_books.stripe_box.calls("*") == 0


def test_a_salesforce_invoice_that_differs_from_the_order_is_reported_with_its_reason(
    sf_books: PartnerBooks, sandbox_org: Any
) -> None:
    acme = sandbox_org.demo_ids["acme_order"]
    link(sandbox_org, acme, salesforce_issues(sf_books, acme, [610_000, 240_000], days_until_due=15))
    sf_books.run("mirror")
    sf_books.stripe_box.reset_counters()

    outcome = sf_books.run("invoicing")

    assert outcome.counts["invoices_mismatched"] == 1 and sf_books.stripe_box.calls(WRITES) == 0
    [letter] = letters(sf_books, acme)
    assert letter.error_code == "INVOICE_MISMATCH"
    assert "invoice total 8,500.00 ≠ order subtotal 8,400.00" in letter.reason
    assert "NET15, not NET30" in letter.reason
    with sf_books.uow() as uow:
        assert uow.invoices.get(sf_books.org_id, acme).issued_by == "salesforce"  # tracked all the same


def test_no_salesforce_invoice_after_the_grace_is_invoice_missing(sf_books: PartnerBooks, sandbox_org: Any) -> None:
    acme = sandbox_org.demo_ids["acme_order"]
    sf_books.run("mirror")
    sf_books.stripe_box.reset_counters()
    assert sf_books.run("invoicing").counts["awaiting_salesforce"] == 1  # start today: within the grace
    assert letters(sf_books, acme) == []

    sf_books.now[0] += timedelta(days=3)  # grace: 2 days after the service start
    outcome = sf_books.run("invoicing")

    assert outcome.counts["invoices_missing"] == 1 and sf_books.stripe_box.calls(WRITES) == 0
    [letter] = letters(sf_books, acme)
    assert letter.error_code == "INVOICE_MISSING" and "no invoice from Salesforce 3 day(s) after" in letter.reason
    with sf_books.uow() as uow:  # what the daemon's /metrics reads for invoices_missing{org}
        missing = uow.dead_letters.count_open(sf_books.org_id, "invoicing", error_code="INVOICE_MISSING")
    metrics = DaemonMetrics()
    metrics.set_store_figures("acme", dead_letters_open=None, discrepancies=None, invoices_missing=missing)
    assert 'gtm_connector_invoices_missing{org="acme"} 1.0' in metrics.render().decode()
    [row] = [r for r in build_report([sf_books.runtime]).rows if r.order_id == acme]  # flagged first in `report`
    assert row.invoice_number is None and row.invoice_issue.startswith("invoice missing: no invoice from Salesforce")
    # Issued late after all: adopted, and the flag clears.
    link(sandbox_org, acme, salesforce_issues(sf_books, acme, [600_000, 240_000]))
    sf_books.run("mirror")
    assert sf_books.run("invoicing").counts["invoices_adopted"] == 1
    assert letters(sf_books, acme) == []


def test_an_order_linked_to_two_invoices_is_adopted_whole(sf_books: PartnerBooks, sandbox_org: Any) -> None:
    acme = sandbox_org.demo_ids["acme_order"]
    first = salesforce_issues(sf_books, acme, [600_000])
    second = salesforce_issues(sf_books, acme, [240_000])
    link(sandbox_org, acme, first)
    link(sandbox_org, acme, second)
    sf_books.run("mirror")

    assert sf_books.run("invoicing").counts["invoices_adopted"] == 1
    with sf_books.uow() as uow:
        row = uow.invoices.get(sf_books.org_id, acme)
    assert row.amount_due == Decimal("8400.00") and row.stripe_invoice_id in (first, second)
    assert letters(sf_books, acme) == []


def test_connector_issuer_adopts_what_salesforce_already_issued_instead_of_a_second(
    org_books: PartnerBooks, sandbox_org: Any
) -> None:
    """No junction record mirrored yet, but Stripe holds Salesforce's invoice for the order:
    found by its metadata and adopted. One invoice in Stripe, not two."""
    acme = sandbox_org.demo_ids["acme_order"]
    invoice_id = salesforce_issues(org_books, acme, [600_000, 240_000])
    org_books.run("mirror")

    outcome = org_books.run("invoicing")

    acme_invoices = [i for i in org_books.stripe_box.invoices() if i["id"] == invoice_id
                     or i["metadata"].get("gtm_order_id") == acme]
    assert [i["id"] for i in acme_invoices] == [invoice_id]
    assert outcome.counts["invoices_adopted"] == 1
    with org_books.uow() as uow:
        assert uow.invoices.get(org_books.org_id, acme).issued_by == "salesforce"


def test_payments_on_every_linked_invoice_reconcile_to_the_order(sf_books: PartnerBooks, sandbox_org: Any) -> None:
    """Seed 003 billed by Salesforce as two invoices; both paid with Salesforce's share taken
    as the fee; the payout reconciles to 7,260.00 for the one order."""
    acme = sandbox_org.demo_ids["acme_order"]
    invoices = [salesforce_issues(sf_books, acme, [600_000]), salesforce_issues(sf_books, acme, [240_000])]
    for invoice_id in invoices:
        link(sandbox_org, acme, invoice_id)
    sf_books.run("mirror")
    sf_books.run("invoicing")
    for invoice_id, fee in zip(invoices, (90_000, 24_000), strict=True):  # 15 % of 6,000; 10 % of 2,400
        sf_books.stripe_box.pay_invoice(invoice_id, fee=fee)
    sf_books.payout()

    sf_books.run("reconcile")

    with sf_books.uow() as uow:
        row = uow.reconciliation.get(sf_books.org_id, acme)
    assert (row.expected_payout, row.actual_payout, row.discrepancy) == (Decimal("7260.00"), Decimal("7260.00"), None)


def test_an_order_billed_as_two_taxed_invoices_stays_whole_after_polling_and_its_tax_is_no_difference(
    sf_books: PartnerBooks, sandbox_org: Any
) -> None:
    """Seed 003 billed as two invoices with 10 % tax on each (6,600.00 and 2,640.00). Polling
    their status keeps the order's figures those of both invoices (9,240.00 due, 840.00
    tax), and the payout of both reconciles to 7,260.00: tax is never a payout difference
    (DESIGN). Polling the first invoice alone made the row 6,600.00 with 600.00 tax, and
    the 240.00 tax of the second became "amount differs"."""
    acme = sandbox_org.demo_ids["acme_order"]
    rate = sf_books.client.v1.tax_rates.create(params={"display_name": "Sales Tax", "percentage": 10,
                                                       "inclusive": False})
    invoices = [salesforce_issues(sf_books, acme, [600_000], tax_rates=[rate.id]),
                salesforce_issues(sf_books, acme, [240_000], tax_rates=[rate.id])]
    for invoice_id in invoices:
        link(sandbox_org, acme, invoice_id)
    sf_books.run("mirror")
    sf_books.run("invoicing")
    sf_books.stripe_box.pay_invoice(invoices[0], fee=90_000)  # 15 % of 6,000 (Salesforce's share as the fee)
    sf_books.now[0] += timedelta(minutes=90)

    sf_books.run("invoice_status")

    with sf_books.uow() as uow:
        row = uow.invoices.get(sf_books.org_id, acme)
    # One of two paid: the order is as far as its least advanced invoice.
    assert (row.status, row.amount_due, row.amount_paid, row.tax) == (
        "open", Decimal("9240.00"), Decimal("6600.00"), Decimal("840.00"))
    assert row.paid_at is None

    sf_books.stripe_box.pay_invoice(invoices[1], fee=24_000)  # 10 % of 2,400
    sf_books.now[0] += timedelta(minutes=90)
    sf_books.run("invoice_status")
    with sf_books.uow() as uow:
        row = uow.invoices.get(sf_books.org_id, acme)
    assert (row.status, row.amount_due, row.amount_paid, row.tax) == (
        "paid", Decimal("9240.00"), Decimal("9240.00"), Decimal("840.00"))
    assert row.paid_at is not None
    sf_books.payout()

    sf_books.run("reconcile")

    with sf_books.uow() as uow:
        rec = uow.reconciliation.get(sf_books.org_id, acme)
    assert (rec.expected_payout, rec.actual_payout, rec.tax, rec.discrepancy) == (
        Decimal("7260.00"), Decimal("7260.00"), Decimal("840.00"), None)


@pytest.mark.parametrize("when", ["retrieve", "before-commit", "after-commit"])
def test_adopting_dies_anywhere_and_the_rerun_adopts_once_creating_nothing(
    when: str, sf_books: PartnerBooks, sandbox_org: Any
) -> None:
    from connector.services.invoicing import InvoicingService, InvoicingSettings
    from tests.reliability.test_crash_points import Crash, DiesAt, DiesAtCommit

    acme = sandbox_org.demo_ids["acme_order"]
    invoice_id = salesforce_issues(sf_books, acme, [600_000, 240_000])
    link(sandbox_org, acme, invoice_id)
    sf_books.run("mirror")
    runtime = sf_books.runtime
    settings = InvoicingSettings(issuer="salesforce")

    def service(uow: Any, billing: Any) -> InvoicingService:
        return InvoicingService(org_id=runtime.org_id, uow=uow, billing=billing, mapping=runtime.mapping,
                                settings=settings, clock=runtime.clock)

    def adopted() -> bool:
        with runtime.uow() as uow:
            row = uow.invoices.get(runtime.org_id, acme)
        return row is not None and row.issued_by == "salesforce"

    if when == "retrieve":
        dying = service(runtime.uow, DiesAt(runtime.billing(), "retrieve_invoice", when="before"))
    else:
        dying = service(DiesAtCommit(runtime.uow, lambda: True, when=when.removesuffix("-commit")), runtime.billing())
    sf_books.stripe_box.reset_counters()
    with pytest.raises(Crash):
        dying.run()
    assert adopted() == (when == "after-commit")

    report = service(runtime.uow, runtime.billing()).run()

    assert report.adopted == ([] if when == "after-commit" else [acme]) and report.invoiced == []
    assert adopted() and sf_books.stripe_box.calls(WRITES) == 0 and len(sf_books.stripe_box.invoices()) == 1


def test_tax_on_a_salesforce_invoice_is_not_a_mismatch_and_is_kept_apart(sf_books: PartnerBooks,
                                                                        sandbox_org: Any) -> None:
    """Stripe adds the tax on top of the order's lines: the invoice still matches the
    order (compared ex tax), and its tax is stored with the local invoice."""
    acme = sandbox_org.demo_ids["acme_order"]
    rate = sf_books.client.v1.tax_rates.create(params={"display_name": "Sales Tax", "percentage": 8.875,
                                                       "inclusive": False})
    link(sandbox_org, acme, salesforce_issues(sf_books, acme, [600_000, 240_000], tax_rates=[rate.id]))
    sf_books.run("mirror")

    assert sf_books.run("invoicing").counts["invoices_adopted"] == 1

    with sf_books.uow() as uow:
        row = uow.invoices.get(sf_books.org_id, acme)
    assert (row.amount_due, row.tax) == (Decimal("9145.50"), Decimal("745.50"))
    assert letters(sf_books, acme) == []  # no INVOICE_MISMATCH


# -- with the sandbox org playing the GTM app's billing -----------------------------------


def test_a_full_cycle_with_salesforce_billing_creates_nothing_and_reconciles_against_its_fee(
    sf_books: PartnerBooks, sandbox_org: Any
) -> None:
    """The org issues seed 003's invoice (Salesforce's share as its application fee); the
    connector creates no invoice, and the payout reconciles to 7,260.00 against that fee."""
    acme = sandbox_org.demo_ids["acme_order"]
    sf_books.stripe_box.reset_counters()
    sandbox_org.link_stripe(sf_books.stripe_box.api_base, sf_books.stripe_box.api_key)
    gtm_posts = sf_books.stripe_box.calls(WRITES)
    sf_books.run("mirror")
    outcome = sf_books.run("invoicing")
    assert outcome.counts["invoices_created"] == 0 and outcome.counts["invoices_adopted"] == 1
    assert sf_books.stripe_box.calls(WRITES) == gtm_posts  # the connector posted nothing
    with sf_books.uow() as uow:
        invoice_id = uow.invoices.get(sf_books.org_id, acme).stripe_invoice_id
    sf_books.stripe_box.pay_invoice(invoice_id)  # its application fee carries the share
    sf_books.payout()
    sf_books.run("reconcile")
    with sf_books.uow() as uow:
        row = uow.reconciliation.get(sf_books.org_id, acme)
    assert (row.actual_payout, row.discrepancy) == (Decimal("7260.00"), None)


@pytest.mark.parametrize(("kind", "code", "reason"), [
    ("wrong_amount", "INVOICE_MISMATCH", "invoice total 8,500.00 ≠ order subtotal 8,400.00"),
    ("skip", "INVOICE_MISSING", "no invoice from Salesforce 3 day(s) after"),
])
def test_salesforce_billing_faults_are_reported_with_their_reason(sf_books: PartnerBooks, sandbox_org: Any,
                                                                  kind: str, code: str, reason: str) -> None:
    acme = sandbox_org.demo_ids["acme_order"]
    sandbox_org.billing_fault(kind, order_id=acme)
    sandbox_org.link_stripe(sf_books.stripe_box.api_base, sf_books.stripe_box.api_key)
    sf_books.now[0] += timedelta(days=3)
    sf_books.run("mirror")
    sf_books.run("invoicing")
    [letter] = letters(sf_books, acme)
    assert letter.error_code == code and reason in letter.reason


def test_leap_day_term_and_its_add_ons_invoice_and_reconcile_end_to_end(sf_books: PartnerBooks,
                                                                       sandbox_org: Any) -> None:
    """An initial order starting 29 Feb 2024 (term to 27 Feb 2025: 365 days) and add-ons on
    its first day, on 31 Aug 2024 and on its last day, issued by the org's GTM billing on
    the Stripe sandbox: the connector adopts each without a mismatch and each payout, net of
    the share Salesforce deducts, reconciles to the expected payout worked out here."""
    ids = sandbox_org.demo_ids
    common = {"Status": "Activated", "CustomerName": "Leap Co", "BillingCustomerOrg": "00D5g0000029LEAPAA",
              "ContractTerm": 12, "BillingEmailAddress": "ap@leap.example", "CurrencyIsoCode": "USD"}
    [initial] = sandbox_org.insert("SfdcPartnerOrder", [{
        **common, "Name": "Leap initial", "OrderNumber": "00002900", "OrderType": "Initial",
        "ServiceStartDate": "2024-02-29", "ServiceEndDate": "2025-02-27"}])
    add_ons = {start: sandbox_org.insert("SfdcPartnerOrder", [{
        **common, "Name": f"Leap add-on {start}", "OrderNumber": f"000029{n:02d}", "OrderType": "Add-On",
        "InitialOrderId": initial, "ServiceStartDate": start, "ServiceEndDate": "2025-02-27"}])[0]
        for n, start in enumerate(("2024-02-29", "2024-08-31", "2025-02-27"), start=1)}
    for order_id in (initial, *add_ons.values()):
        sandbox_org.insert("SfdcPartnerOrderItem", [{
            "Name": "Core App x7", "PartnerOrderId": order_id, "PartnerProvisionProductId": ids["ppp_core"],
            "Quantity": 7, "CustomerUnitPricePerMonth": Decimal("3.33"), "LineItemTotal": Decimal("279.72")}])
    sandbox_org.link_stripe(sf_books.stripe_box.api_base, sf_books.stripe_box.api_key)
    sf_books.run("mirror")

    outcome = sf_books.run("invoicing")

    assert outcome.counts["invoices_created"] == 0
    term = (date(2025, 2, 27) - date(2024, 2, 29)).days + 1
    assert term == 365
    expected = {initial: Decimal("279.72")}  # 7 x 3.33 x 12
    for start, order_id in add_ons.items():
        left = (date(2025, 2, 27) - date.fromisoformat(start)).days + 1
        expected[order_id] = (Decimal("279.72") * left / term).quantize(Decimal("0.01"), ROUND_HALF_UP)
    assert list(expected.values()) == [Decimal("279.72"), Decimal("279.72"), Decimal("138.71"), Decimal("0.77")]
    with sf_books.uow() as uow:
        rows = {order_id: uow.invoices.get(sf_books.org_id, order_id) for order_id in expected}
    assert {o: r.amount_due for o, r in rows.items()} == expected
    assert all(letters(sf_books, order_id) == [] for order_id in expected)  # no INVOICE_MISMATCH
    for row in rows.values():
        sf_books.stripe_box.pay_invoice(row.stripe_invoice_id)  # its application fee is Salesforce's share
    sf_books.payout()

    sf_books.run("reconcile")

    with sf_books.uow() as uow:
        got = {o: uow.reconciliation.get(sf_books.org_id, o) for o in expected}
    for order_id, subtotal in expected.items():
        share = (subtotal * Decimal("0.15")).quantize(Decimal("0.01"), ROUND_HALF_UP)
        row = got[order_id]
        assert (row.subtotal, row.revenue_share, row.expected_payout) == (subtotal, share, subtotal - share)
        assert (row.actual_payout, row.discrepancy) == (subtotal - share, None)
