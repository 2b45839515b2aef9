"""``application_fee_amount`` on an invoice, through the official SDK: each payment's
balance transaction carries its part of the fee (``fee_details`` type ``application_fee``),
partial payments proportionally, the parts adding up to the amount; the payout is net of it.
This is how Salesforce's revenue share reaches the partner's Stripe account in GTM."""

from __future__ import annotations

import pytest
import stripe

from gtm_sandbox.stripe import StripeSandbox


def fee_invoice(client: stripe.StripeClient, amount: int, fee: int | None) -> stripe.Invoice:
    customer = client.v1.customers.create(params={"email": "ap@acme.example"})
    params = {"customer": customer.id, "collection_method": "send_invoice", "days_until_due": 30}
    if fee is not None:
        params["application_fee_amount"] = fee
    draft = client.v1.invoices.create(params=params)
    client.v1.invoices.add_lines(draft.id, params={"lines": [{"amount": amount, "description": "Core App"}]})
    return client.v1.invoices.finalize_invoice(draft.id)


def charge_txns(client: stripe.StripeClient) -> list[stripe.BalanceTransaction]:
    """Oldest first (Stripe lists newest first)."""
    return list(reversed(client.v1.balance_transactions.list(params={"type": "charge", "limit": 100}).data))


def test_a_full_payment_carries_the_whole_application_fee(stripe_client: stripe.StripeClient,
                                                         stripe_sandbox: StripeSandbox) -> None:
    invoice = fee_invoice(stripe_client, 840_000, 114_000)
    assert invoice.application_fee_amount == 114_000

    stripe_client.v1.invoices.pay(invoice.id, params={"payment_method": "pm_card_visa"})

    (txn,) = charge_txns(stripe_client)
    assert (txn.amount, txn.fee, txn.net) == (840_000, 114_000, 726_000)
    assert [(d.type, d.amount) for d in txn.fee_details] == [("application_fee", 114_000)]
    stripe_sandbox.advance_clock(days=2)
    payout = stripe_sandbox.create_payout()
    assert payout is not None and payout["amount"] == 726_000


def test_partial_payments_carry_proportional_parts_that_add_up(stripe_client: stripe.StripeClient,
                                                               stripe_sandbox: StripeSandbox) -> None:
    invoice = fee_invoice(stripe_client, 100_000, 13_333)

    stripe_sandbox.pay_invoice(invoice.id, amount=33_333)  # 13,333 x 33,333 / 100,000 = 4,444.29 -> 4,444
    stripe_sandbox.pay_invoice(invoice.id, amount=50_001)  # 6,666.73 -> 6,667
    stripe_sandbox.pay_invoice(invoice.id)  # the rest: 13,333 - 4,444 - 6,667

    fees = [t.fee for t in charge_txns(stripe_client)]
    assert fees == [4_444, 6_667, 2_222]
    assert sum(fees) == 13_333
    assert stripe_client.v1.invoices.retrieve(invoice.id).status == "paid"


def test_without_an_application_fee_payments_carry_stripes_pricing(stripe_client: stripe.StripeClient,
                                                                   stripe_sandbox: StripeSandbox) -> None:
    invoice = fee_invoice(stripe_client, 100_000, None)
    assert invoice.application_fee_amount is None

    stripe_sandbox.pay_invoice(invoice.id)

    (txn,) = charge_txns(stripe_client)
    assert (txn.fee, txn.fee_details[0].type) == (2_930, "stripe_fee")


def test_the_application_fee_is_editable_on_a_draft_only(stripe_client: stripe.StripeClient) -> None:
    customer = stripe_client.v1.customers.create(params={"email": "ap@acme.example"})
    draft = stripe_client.v1.invoices.create(params={"customer": customer.id, "collection_method": "send_invoice"})
    updated = stripe_client.v1.invoices.update(draft.id, params={"application_fee_amount": 500})
    assert updated.application_fee_amount == 500
    stripe_client.v1.invoices.add_lines(draft.id, params={"lines": [{"amount": 10_000}]})
    stripe_client.v1.invoices.finalize_invoice(draft.id)

    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.invoices.update(draft.id, params={"application_fee_amount": 600})
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.invoices.create(params={"customer": customer.id, "application_fee_amount": -1})
