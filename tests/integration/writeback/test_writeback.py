"""Write-back into the sandbox org: results upserted on GTM_Order_Billing__c by Order_Id__c,
200 per call, only what changed; per-record failures dead-lettered, locks retried."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from gtm_sandbox.org import SandboxOrg
from gtm_sandbox.stripe import StripeSandbox
from tests.fixtures.payouts import (
    PartnerBooks,
    billing_records,
    core_app,
    invoiced_orders,
    make_books,
    validation_rule,
)


def upserts(org: SandboxOrg) -> int:
    return org.calls("collections_upsert")


def test_each_orders_results_land_on_the_billing_object(org_books: PartnerBooks, sandbox_org: SandboxOrg) -> None:
    order = org_books.an_order()
    org_books.invoice(order)
    org_books.pay_with_share_deducted(order)
    org_books.payout()
    org_books.run("reconcile")

    outcome = org_books.run("writeback")

    record = billing_records(sandbox_org)[order.order_id]
    assert record["Order_Number__c"] == order.number
    assert record["Stripe_Invoice_Id__c"] == order.invoice_id
    assert record["Invoice_Status__c"] == "paid"
    assert Decimal(str(record["Invoice_Amount__c"])) == Decimal("8400.00")
    assert Decimal(str(record["Expected_Payout__c"])) == Decimal("7260.00")
    assert Decimal(str(record["Actual_Payout__c"])) == Decimal("7260.00")
    assert record["Payout_Date__c"] is not None and record["Invoice_Due_Date__c"] is not None
    assert record["Payout_Discrepancy__c"] is None and record["Last_Error__c"] is None
    assert outcome.counts["written"] == 1 and outcome.counts["calls"] == 1


def test_an_idle_cycle_sends_nothing(org_books: PartnerBooks, sandbox_org: SandboxOrg) -> None:
    invoiced_orders(org_books, 3)
    org_books.run("writeback")
    before = upserts(sandbox_org)

    outcome = org_books.run("writeback")

    assert upserts(sandbox_org) == before
    assert outcome.counts["sent"] == 0 and outcome.counts["unchanged"] == 3


def test_only_the_changed_order_is_sent_again_and_cleared_fields_become_null(
        org_books: PartnerBooks, sandbox_org: SandboxOrg) -> None:
    first, second = invoiced_orders(org_books, 2)
    with org_books.uow() as uow:
        uow.dead_letters.add(org_books.org_id, "invoicing", "order", first.order_id, "CUSTOMER_EMAIL_MISSING",
                             "order has no billing email")
        uow.commit()
    org_books.run("writeback")
    assert billing_records(sandbox_org)[first.order_id]["Last_Error__c"] == \
        "CUSTOMER_EMAIL_MISSING: order has no billing email"
    with org_books.uow() as uow:
        uow.dead_letters.resolve_for(org_books.org_id, "invoicing", "order", first.order_id)
        uow.invoices.upsert(org_books.org_id, first.order_id, status="paid")
        uow.commit()

    outcome = org_books.run("writeback")

    assert outcome.counts["sent"] == 1 and outcome.counts["unchanged"] == 1
    record = billing_records(sandbox_org)[first.order_id]
    assert record["Invoice_Status__c"] == "paid" and record["Last_Error__c"] is None
    assert billing_records(sandbox_org)[second.order_id]["Invoice_Status__c"] == "open"


def test_one_record_rejected_199_written_and_it_waits_for_replay(
        org_books: PartnerBooks, sandbox_org: SandboxOrg) -> None:
    orders = invoiced_orders(org_books, 200)
    refused = orders[149]
    message = "Invoice amount needs finance approval above 5,000.00 for this account (rule Billing_Approval)"
    with validation_rule(sandbox_org, lambda r: r.get("Order_Number__c") == refused.number, message=message):
        outcome = org_books.run("writeback")
        again = org_books.run("writeback")

    assert outcome.counts["sent"] == 200 and outcome.counts["written"] == 199 and outcome.counts["failed"] == 1
    assert outcome.counts["calls"] == 1
    assert len(billing_records(sandbox_org)) == 199 and refused.order_id not in billing_records(sandbox_org)
    (letter,) = org_books.open_letters("writeback")
    assert (letter.record_id, letter.object_name) == (refused.order_id, "GTM_Order_Billing__c")
    assert letter.error_code == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert message in letter.reason
    assert letter.payload["Order_Id__c"] == refused.order_id
    assert again.counts["sent"] == 0 and again.counts["awaiting_replay"] == 1


def test_a_locked_row_is_retried_in_the_next_batch_of_the_same_run(
        org_books: PartnerBooks, sandbox_org: SandboxOrg) -> None:
    orders = invoiced_orders(org_books, 3)
    sandbox_org.fail_records("GTM_Order_Billing__c", times=1)  # UNABLE_TO_LOCK_ROW on the next record written

    outcome = org_books.run("writeback")

    assert outcome.counts["written"] == 3 and outcome.counts["retried"] == 1 and outcome.counts["calls"] == 2
    assert set(billing_records(sandbox_org)) == {o.order_id for o in orders}
    assert org_books.open_letters("writeback") == []


def test_a_row_that_stays_locked_is_left_for_the_next_run(org_books: PartnerBooks, sandbox_org: SandboxOrg) -> None:
    (order,) = invoiced_orders(org_books, 1)
    sandbox_org.fail_records("GTM_Order_Billing__c", times=3)

    outcome = org_books.run("writeback")

    assert outcome.counts["deferred"] == 1 and outcome.counts["calls"] == 3  # bounded: 3 sends in one run
    assert org_books.open_letters("writeback") == [] and billing_records(sandbox_org) == {}
    later = org_books.run("writeback")
    assert later.counts["written"] == 1
    assert order.order_id in billing_records(sandbox_org)


def test_dry_run_writes_nothing(org_books: PartnerBooks, sandbox_org: SandboxOrg) -> None:
    invoiced_orders(org_books, 2)
    sandbox_org.reset_counters()

    outcome = org_books.run("writeback", dry_run=True)

    assert outcome.counts["would_send"] == 2
    assert sandbox_org.counters()["calls"] == {}
    assert billing_records(sandbox_org) == {}
    with org_books.uow() as uow:
        assert uow.writeback_state.list(org_books.org_id) == []


def test_the_target_comes_from_config_and_mistakes_in_it_are_named(
        sandbox_org: SandboxOrg, stripe_sandbox: StripeSandbox, sqlite_url: str, tmp_path: Path) -> None:
    import pytest

    from connector.errors import ConfigError
    from connector.jobs import run_job

    books = make_books(sqlite_url, tmp_path, stripe_sandbox, org=sandbox_org,
                       extra={"writeback": {"external_id": "Invoice_Number__c"}})
    try:
        invoiced_orders(books, 1)
        mapped_but_not_external = run_job(books.runtime, "writeback", instance_id="test")
    finally:
        books.runtime.close()
    # a mapped field is sent as the key, and the org says it is no external id
    assert mapped_but_not_external.status == "failed"
    assert "Provided external ID field does not exist" in (mapped_but_not_external.error or "")
    # a field the mapping does not know is refused with the config (and by `config check`),
    # naming the key, before any run
    with pytest.raises(ConfigError) as refused:
        make_books(sqlite_url, tmp_path, stripe_sandbox, org=sandbox_org,
                   extra={"writeback": {"external_id": "Nope__c"}})
    [(_, key, message)] = refused.value.problems
    assert key == "writeback.external_id" and "Nope__c" in message
    assert billing_records(sandbox_org) == {}


def test_a_fixed_error_is_cleared_even_when_the_order_has_no_other_result(
        org_books: PartnerBooks, sandbox_org: SandboxOrg) -> None:
    """Issue 12.1: an order whose only result was its error used to drop out of the plan once
    the error was resolved, so ``Last_Error__c`` stayed in the org for good."""
    bad = org_books.an_order(core_app(quantity=-2))
    org_books.run("invoicing")
    (letter,) = org_books.open_letters("invoicing")
    assert letter.record_id == bad.order_id
    (fine,) = invoiced_orders(org_books, 1)
    org_books.run("writeback")
    assert billing_records(sandbox_org)[bad.order_id]["Last_Error__c"].startswith(letter.error_code)

    with org_books.uow() as uow:  # the org fixed the item, replay resolved the letter
        uow.dead_letters.resolve_for(org_books.org_id, "invoicing", letter.object_name, bad.order_id)
        uow.commit()
    outcome = org_books.run("writeback")

    assert outcome.counts["sent"] == 1 and outcome.counts["unchanged"] == 1
    record = billing_records(sandbox_org)[bad.order_id]
    assert record["Last_Error__c"] is None and record["Order_Number__c"] == bad.number
    assert billing_records(sandbox_org)[fine.order_id]["Stripe_Invoice_Id__c"] == fine.invoice_id
    assert org_books.run("writeback").counts["sent"] == 0  # and then it is settled


def test_a_never_written_order_without_results_is_not_sent(org_books: PartnerBooks, sandbox_org: SandboxOrg) -> None:
    org_books.an_order()  # mirrored, nothing to report yet: no empty record in the org
    outcome = org_books.run("writeback")
    assert outcome.counts["candidates"] == 0 and billing_records(sandbox_org) == {}
