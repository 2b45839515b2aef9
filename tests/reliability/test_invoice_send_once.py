"""Issue 15, defect 1: an invoice is e-mailed once, even when the answer to ``send`` was lost
and Stripe has since forgotten the idempotency key (24 hours)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest

from connector.adapters.store import SqlUnitOfWork
from connector.adapters.stripe_billing import StripeBilling
from connector.errors import TransientError
from connector.mappings import load_mapping
from connector.services.invoicing import InvoicingService, InvoicingSettings
from gtm_sandbox.stripe import StripeSandbox
from tests.integration.stripe.gtm import ORG, Clock, GtmOrg, order_id

START = date(2026, 1, 1)
SEND = "POST /v1/invoices/{id}/send"


def an_invoicing(uow: Callable[[], SqlUnitOfWork], billing: StripeBilling) -> InvoicingService:
    return InvoicingService(org_id=ORG, uow=uow, billing=billing, mapping=load_mapping("gtm-v2"),
                            settings=InvoicingSettings(), clock=Clock(datetime(2025, 12, 31, 10, tzinfo=UTC)))


@pytest.mark.parametrize("paid_meanwhile", [False, True])
def test_a_send_applied_but_unanswered_is_not_repeated_after_the_key_expired(
    paid_meanwhile: bool, stripe_sandbox: StripeSandbox, stripe_billing: StripeBilling,
    uow_factory: Callable[[], SqlUnitOfWork],
) -> None:
    GtmOrg(uow_factory).catalogue().order(1, start=START)
    # Every attempt at the send is applied by Stripe and its answer lost: the run gives up.
    stripe_sandbox.fail_next(SEND, times=50, fault="reset")
    with pytest.raises(TransientError):
        an_invoicing(uow_factory, stripe_billing).run()
    stripe_sandbox.clear_faults()
    [invoice] = stripe_sandbox.invoices()
    sends_before = len(stripe_sandbox.invoice_sends(invoice["id"]))
    assert sends_before >= 1
    if paid_meanwhile:
        stripe_sandbox.pay_invoice(invoice["id"])
    stripe_sandbox.advance_clock(seconds=25 * 3600)  # Stripe prunes idempotency keys after 24 hours
    stripe_sandbox.reset_counters()

    report = an_invoicing(uow_factory, stripe_billing).run()

    assert report.invoiced == [order_id(1)] and report.resumed == 1
    assert len(stripe_sandbox.invoice_sends(invoice["id"])) == sends_before  # no second e-mail
    assert stripe_sandbox.calls(SEND) == 0
    with uow_factory() as uow:
        row = uow.invoices.get(ORG, order_id(1))
        assert row.sent_at is not None
        assert uow.outbox.pending(ORG) == []


def test_a_send_that_never_reached_stripe_is_sent_by_the_rerun(
    stripe_sandbox: StripeSandbox, stripe_billing: StripeBilling, uow_factory: Callable[[], SqlUnitOfWork],
) -> None:
    GtmOrg(uow_factory).catalogue().order(1, start=START)
    stripe_sandbox.fail_next(SEND, times=50, fault="reset_before")
    with pytest.raises(TransientError):
        an_invoicing(uow_factory, stripe_billing).run()
    stripe_sandbox.clear_faults()
    stripe_sandbox.advance_clock(seconds=25 * 3600)

    assert an_invoicing(uow_factory, stripe_billing).run().invoiced == [order_id(1)]

    [invoice] = stripe_sandbox.invoices()
    assert len(stripe_sandbox.invoice_sends(invoice["id"])) == 1
