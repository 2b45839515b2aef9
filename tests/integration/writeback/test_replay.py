"""Replay: dead letters re-sent once their cause is fixed, resolved only when they go through."""

from __future__ import annotations

from decimal import Decimal

import structlog

from connector.jobs import runner
from connector.services.replay import replay
from gtm_sandbox.org import SandboxOrg
from gtm_sandbox.stripe import StripeSandbox
from tests.fixtures.payouts import PartnerBooks, billing_records, invoiced_orders, validation_rule

LOG = structlog.get_logger("test")
RUN_JOB = runner("replay")


def test_rejected_write_back_succeeds_on_replay_once_the_rule_is_fixed(
        org_books: PartnerBooks, sandbox_org: SandboxOrg) -> None:
    orders = invoiced_orders(org_books, 200)
    refused = orders[7]
    with validation_rule(sandbox_org, lambda r: r.get("Order_Id__c") == refused.order_id):
        org_books.run("writeback")
        still = replay(org_books.runtime, log=LOG, run_job=RUN_JOB)  # cause not fixed yet
    assert [(i.record_id, i.outcome) for i in still.items] == [(refused.order_id, "still failing")]
    (letter,) = org_books.open_letters("writeback")
    assert letter.attempts == 2
    sandbox_org.reset_counters()

    report = replay(org_books.runtime, ids=[letter.id], log=LOG, run_job=RUN_JOB)

    assert [(i.record_id, i.outcome) for i in report.items] == [(refused.order_id, "resolved")]
    assert org_books.open_letters("writeback") == []
    assert len(billing_records(sandbox_org)) == 200
    assert sandbox_org.calls("collections_upsert") == 1
    assert org_books.run("writeback").counts["sent"] == 0  # and the regular job is idle again


def test_dry_run_replay_lists_and_sends_nothing(org_books: PartnerBooks, sandbox_org: SandboxOrg) -> None:
    (order,) = invoiced_orders(org_books, 1)
    with validation_rule(sandbox_org, lambda r: True):
        org_books.run("writeback")
    sandbox_org.reset_counters()

    report = replay(org_books.runtime, dry_run=True, log=LOG, run_job=RUN_JOB)

    assert [(i.record_id, i.outcome) for i in report.items] == [(order.order_id, "would replay")]
    assert sandbox_org.counters()["calls"] == {}
    assert len(org_books.open_letters("writeback")) == 1


def test_malformed_record_is_mirrored_on_replay_after_the_org_fixes_it(
        org_books: PartnerBooks, sandbox_org: SandboxOrg) -> None:
    org_books.run("mirror")
    bad_item = sandbox_org.demo_ids["malformed_order_item"]
    (letter,) = [d for d in org_books.open_letters("mirror") if d.record_id == bad_item]
    assert letter.object_name == "SfdcPartnerOrderItem"
    sandbox_org.update("SfdcPartnerOrderItem", [{"Id": bad_item, "Quantity": 2}])

    report = replay(org_books.runtime, ids=[letter.id], log=LOG, run_job=RUN_JOB)

    assert [i.outcome for i in report.items] == ["resolved"]
    with org_books.uow() as uow:
        assert uow.mirror("order_item").get(org_books.org_id, bad_item)["quantity"] == 2


def test_unknown_charge_is_traced_on_replay_once_its_invoice_is_known(org_books: PartnerBooks) -> None:
    order = org_books.an_order()
    org_books.invoice(order, record=False)  # invoiced before the connector recorded it
    org_books.pay_with_share_deducted(order)
    org_books.payout()
    with org_books.uow() as uow:  # and the invoice metadata names no order the mirror knows
        uow.mirror("order").soft_delete(org_books.org_id, [order.order_id], org_books.now[0])
        uow.commit()
    org_books.run("reconcile")
    (letter,) = org_books.open_letters("payouts")
    assert letter.error_code == "UNKNOWN_CHARGE"
    with org_books.uow() as uow:  # the invoice row arrives (e.g. invoicing recovered its outbox)
        uow.invoices.upsert(org_books.org_id, order.order_id, stripe_invoice_id=order.invoice_id, status="paid",
                            amount_due=order.subtotal, amount_paid=order.subtotal)
        uow.mirror("order").upsert_many(org_books.org_id, [{"sf_id": order.order_id,
                                                             "system_modstamp": org_books.now[0]}])
        uow.commit()

    report = replay(org_books.runtime, log=LOG, run_job=RUN_JOB)

    assert [(i.record_id, i.outcome) for i in report.items] == [(letter.record_id, "resolved")]
    row = org_books.reconciliation(order)
    assert row.actual_payout == order.expected_payout and row.discrepancy is None


def test_quarantined_order_is_invoiced_on_replay_once_the_org_fixes_it(
        org_books: PartnerBooks, sandbox_org: SandboxOrg, stripe_sandbox: StripeSandbox) -> None:
    acme = sandbox_org.demo_ids["acme_order"]
    sandbox_org.update("SfdcPartnerOrder", [{"Id": acme, "Subtotal": Decimal("8000.00")}])  # disagrees with items
    org_books.run("mirror")
    org_books.run("invoicing")
    (letter,) = [d for d in org_books.open_letters("invoicing") if d.record_id == acme]
    assert letter.error_code == "SUBTOTAL_MISMATCH"
    assert stripe_sandbox.invoices() == []
    sandbox_org.update("SfdcPartnerOrder", [{"Id": acme, "Subtotal": Decimal("8400.00")}])
    org_books.run("mirror")

    report = replay(org_books.runtime, ids=[letter.id], log=LOG, run_job=RUN_JOB)

    assert [(i.record_id, i.outcome) for i in report.items] == [(acme, "resolved")]
    (invoice,) = stripe_sandbox.invoices()
    assert invoice["amount_due"] == 840_000 and invoice["status"] == "open"
