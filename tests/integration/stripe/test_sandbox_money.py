"""Payments, fees, refunds, the balance and payouts in the local Stripe server, checked with
independent arithmetic (2.9% + 30¢ by default)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
import stripe

from gtm_sandbox.stripe import StripeSandbox
from gtm_sandbox.stripe.handle import RemoteStripeSandbox
from tests.fixtures.stripe import sdk_client

DAY = 86_400


def card_fee(amount: int, percent: str = "2.9", fixed: int = 30) -> int:
    return int((Decimal(amount) * Decimal(percent) / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)) + fixed


def open_invoice(client: stripe.StripeClient, amount: int, email: str = "ap@acme.example") -> stripe.Invoice:
    customer = client.v1.customers.create(params={"email": email})
    draft = client.v1.invoices.create(params={"customer": customer.id, "collection_method": "send_invoice",
                                              "days_until_due": 30})
    client.v1.invoices.add_lines(draft.id, params={"lines": [{"amount": amount, "description": "Core App"}]})
    return client.v1.invoices.finalize_invoice(draft.id)


def test_customer_payment_books_a_charge_with_stripes_fee(stripe_client: stripe.StripeClient,
                                                          stripe_sandbox: StripeSandbox) -> None:
    invoice = open_invoice(stripe_client, 840_000)

    stripe_sandbox.pay_invoice(invoice.id)

    paid = stripe_client.v1.invoices.retrieve(invoice.id, params={"expand": ["payments"]})
    assert (paid.status, paid.amount_paid, paid.amount_remaining) == ("paid", 840_000, 0)
    payment = paid.payments.data[0]
    charge = stripe_client.v1.charges.list(params={"payment_intent": payment.payment.payment_intent}).data[0]
    txn = stripe_client.v1.balance_transactions.retrieve(charge.balance_transaction)
    assert (txn.type, txn.amount, txn.fee, txn.net) == ("charge", 840_000, card_fee(840_000), 840_000 - 24_390)
    assert txn.available_on == txn.created + 2 * DAY
    assert txn.status == "pending"
    assert txn.fee_details[0].type == "stripe_fee"


def test_partial_payments_keep_the_invoice_open_until_settled(stripe_client: stripe.StripeClient,
                                                              stripe_sandbox: StripeSandbox) -> None:
    invoice = open_invoice(stripe_client, 100_000)

    stripe_sandbox.pay_invoice(invoice.id, amount=40_000)
    halfway = stripe_client.v1.invoices.retrieve(invoice.id)
    assert (halfway.status, halfway.amount_paid, halfway.amount_remaining) == ("open", 40_000, 60_000)
    assert stripe_sandbox.events("invoice.paid") == []

    stripe_sandbox.pay_invoice(invoice.id)
    settled = stripe_client.v1.invoices.retrieve(invoice.id)
    assert (settled.status, settled.amount_paid) == ("paid", 100_000)
    assert len(stripe_sandbox.events("invoice.paid")) == 1
    assert len(stripe_sandbox.objects("charge")) == 2


def test_declined_payment_leaves_the_invoice_open_and_says_so(stripe_client: stripe.StripeClient,
                                                              stripe_sandbox: StripeSandbox) -> None:
    invoice = open_invoice(stripe_client, 5_000)
    with pytest.raises(stripe.CardError) as declined:
        stripe_client.v1.invoices.pay(invoice.id, params={"payment_method": "pm_card_chargeDeclined"})
    assert declined.value.code == "card_declined" and declined.value.http_status == 402

    after = stripe_client.v1.invoices.retrieve(invoice.id)
    assert (after.status, after.attempt_count, after.attempted) == ("open", 1, True)
    assert [e["type"] for e in stripe_sandbox.events("invoice.payment_failed")] == ["invoice.payment_failed"]
    assert stripe_client.v1.balance_transactions.list().data == []


def test_daily_payout_sweeps_available_charges_and_refunds(stripe_client: stripe.StripeClient,
                                                          stripe_sandbox: StripeSandbox) -> None:
    first, second = open_invoice(stripe_client, 840_000), open_invoice(stripe_client, 120_000, "ap@globex.example")
    stripe_sandbox.pay_invoice(first.id)
    stripe_sandbox.pay_invoice(second.id)
    assert stripe_sandbox.create_payout() is None  # nothing available yet (T+2)

    stripe_sandbox.advance_clock(days=2)
    second_charge = [c for c in stripe_sandbox.objects("charge") if c["amount"] == 120_000][0]
    stripe_sandbox.refund(second_charge["id"], amount=20_000)
    payout = stripe_sandbox.create_payout()

    assert payout is not None
    expected = (840_000 - card_fee(840_000)) + (120_000 - card_fee(120_000)) - 20_000
    assert payout["amount"] == expected and payout["currency"] == "usd" and payout["automatic"] is True
    swept = list(stripe_client.v1.balance_transactions.list(
        params={"payout": payout["id"], "expand": ["data.source"]}).auto_paging_iter())
    by_type = sorted((t.type, t.net) for t in swept)
    assert by_type == sorted([("charge", 840_000 - card_fee(840_000)), ("charge", 120_000 - card_fee(120_000)),
                              ("refund", -20_000), ("payout", -expected)])
    assert sum(t.net for t in swept if t.type != "payout") == payout["amount"]
    charge_sources = [t.source for t in swept if t.type == "charge"]
    assert {c.object for c in charge_sources} == {"charge"}
    assert stripe_sandbox.create_payout() is None  # everything was swept


def test_charge_traces_to_its_invoice_through_the_invoice_payment(stripe_client: stripe.StripeClient,
                                                                  stripe_sandbox: StripeSandbox) -> None:
    invoice = open_invoice(stripe_client, 50_000)
    stripe_sandbox.pay_invoice(invoice.id)
    stripe_sandbox.advance_clock(days=2)
    payout = stripe_sandbox.create_payout()
    assert payout is not None

    txn = [t for t in stripe_client.v1.balance_transactions.list(
        params={"payout": payout["id"], "type": "charge", "expand": ["data.source"]}).data][0]
    charge = txn.source
    payments = stripe_client.v1.invoice_payments.list(params={
        "payment": {"type": "payment_intent", "payment_intent": charge.payment_intent}})
    assert [p.invoice for p in payments.data] == [invoice.id]
    # Clients pinned to an API version before 2025-03-31 still get charge.invoice.
    legacy = sdk_client(stripe_sandbox, version="2024-06-20")
    assert legacy.v1.charges.retrieve(charge.id).invoice == invoice.id
    assert "invoice" not in stripe_client.v1.charges.retrieve(charge.id)


def test_payout_arrives_when_the_clock_reaches_its_arrival_date(stripe_client: stripe.StripeClient,
                                                                stripe_sandbox: StripeSandbox) -> None:
    stripe_sandbox.pay_invoice(open_invoice(stripe_client, 10_000).id)
    stripe_sandbox.advance_clock(days=2)
    payout = stripe_sandbox.create_payout()
    assert payout is not None and payout["status"] == "pending"
    assert payout["arrival_date"] > payout["created"] and payout["arrival_date"] % DAY == 0

    stripe_sandbox.advance_clock(days=1)

    arrived = stripe_client.v1.payouts.retrieve(payout["id"])
    assert arrived.status == "paid"
    assert [e["type"] for e in stripe_sandbox.events("payout.paid")] == ["payout.paid"]
    listed = stripe_client.v1.payouts.list(params={"arrival_date": {"lte": arrived.arrival_date}})
    assert [p.id for p in listed.data] == [payout["id"]]


def test_fee_is_configurable(stripe_sandbox: StripeSandbox) -> None:
    with StripeSandbox.start(fee_percent=Decimal("3.4"), fee_fixed_cents=0) as box:
        client = sdk_client(box)
        invoice = open_invoice(client, 10_001)
        box.pay_invoice(invoice.id)
        charge = box.objects("charge")[0]
        assert client.v1.balance_transactions.retrieve(charge["balance_transaction"]).fee == card_fee(10_001, "3.4", 0)


def test_one_payment_can_carry_its_own_fee(stripe_client: stripe.StripeClient,
                                          stripe_sandbox: StripeSandbox) -> None:
    # Seed 003: Salesforce's $1,140.00 share taken as the fee of the $8,400.00 payment.
    first, second = open_invoice(stripe_client, 840_000), open_invoice(stripe_client, 10_000)
    remote = RemoteStripeSandbox(stripe_sandbox.api_base, stripe_sandbox.api_key)
    remote.pay_invoice(first.id, fee=114_000)
    stripe_sandbox.pay_invoice(second.id)  # the account's pricing again afterwards
    fees = [(t.amount, t.fee, t.net) for t in stripe_client.v1.balance_transactions.list(params={"type": "charge"})]
    assert sorted(fees) == [(10_000, card_fee(10_000), 10_000 - card_fee(10_000)), (840_000, 114_000, 726_000)]
    with pytest.raises(ValueError, match="fee must be a non-negative"):
        stripe_sandbox.pay_invoice(open_invoice(stripe_client, 100).id, fee=-1)


def test_balance_reports_available_and_pending(stripe_client: stripe.StripeClient,
                                               stripe_sandbox: StripeSandbox) -> None:
    stripe_sandbox.pay_invoice(open_invoice(stripe_client, 10_000).id)
    before = stripe_client.v1.balance.retrieve()
    assert (before.available[0].amount, before.pending[0].amount) == (0, 10_000 - card_fee(10_000))
    stripe_sandbox.advance_clock(days=2)
    after = stripe_client.v1.balance.retrieve()
    assert (after.available[0].amount, after.pending[0].amount) == (10_000 - card_fee(10_000), 0)


def test_connected_accounts_have_their_own_money(stripe_sandbox: StripeSandbox) -> None:
    partner = sdk_client(stripe_sandbox, account="acct_1PartnerAAAAAAAA")
    invoice = open_invoice(partner, 20_000)
    stripe_sandbox.pay_invoice(invoice.id, account="acct_1PartnerAAAAAAAA")
    stripe_sandbox.advance_clock(days=2)

    assert stripe_sandbox.create_payout() is None  # the platform has nothing
    payout = stripe_sandbox.create_payout(account="acct_1PartnerAAAAAAAA")
    assert payout is not None and payout["amount"] == 20_000 - card_fee(20_000)
    assert [p.id for p in partner.v1.payouts.list().data] == [payout["id"]]


def test_a_saved_account_is_restored_with_its_money_and_clock(stripe_client: stripe.StripeClient,
                                                              stripe_sandbox: StripeSandbox, tmp_path: Path) -> None:
    from gtm_sandbox.snapshot import SnapshotError

    invoice = open_invoice(stripe_client, 840_000)
    stripe_sandbox.pay_invoice(invoice.id, fee=114_000)
    stripe_sandbox.advance_clock(days=3)
    snapshot = tmp_path / "stripe.json"
    stripe_sandbox.save(snapshot)

    with StripeSandbox.start() as later:
        later.restore(snapshot)
        client = sdk_client(later)
        again = client.v1.invoices.retrieve(invoice.id)
        assert (again.status, again.amount_paid, again.number) == ("paid", 840_000, invoice.number)
        assert client.v1.balance.retrieve().available[0].amount == 726_000
        assert abs(later.now() - stripe_sandbox.now()) <= 2
        # Search finds restored objects at once, as it would on the account they came from.
        found = client.v1.invoices.search(params={"query": f"number:'{invoice.number}'"})
        assert [i.id for i in found.data] == [invoice.id]
        (tmp_path / "empty.json").write_text("{}")
        with pytest.raises(SnapshotError, match="empty.json: not a version 1 stripe-sandbox snapshot"):
            later.restore(tmp_path / "empty.json")
        assert client.v1.invoices.retrieve(invoice.id).status == "paid"  # a refused restore changes nothing
