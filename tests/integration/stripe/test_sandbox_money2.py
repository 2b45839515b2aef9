"""The local Stripe server's money arithmetic against Stripe's documentation, a second round:
the minimum and maximum charge amounts, the customer balance an invoice starts from, tax
rounded per line, fees rounded to the nearest cent, refunds that keep the fee. Each test
names the documented rule it pins."""

from __future__ import annotations

import pytest
import stripe

from gtm_sandbox.stripe import StripeSandbox


def a_customer(client: stripe.StripeClient, **params: object) -> stripe.Customer:
    return client.v1.customers.create(params={"email": "ap@acme.example", "name": "Acme Corp", **params})


def a_draft(client: stripe.StripeClient, customer: str, *amounts: int, **params: object) -> stripe.Invoice:
    draft = client.v1.invoices.create(params={"customer": customer, "collection_method": "send_invoice",
                                              "days_until_due": 30, **params})
    if amounts:
        client.v1.invoices.add_lines(draft.id, params={"lines": [{"amount": a, "description": f"Line {n}"}
                                                                 for n, a in enumerate(amounts)]})
    return client.v1.invoices.retrieve(draft.id)


# -- the minimum charge amount ---------------------------------------------------------------


@pytest.mark.parametrize("collection", ["send_invoice", "charge_automatically"])
def test_an_invoice_due_below_the_minimum_charge_is_paid_and_its_amount_goes_to_the_customer_balance(
        stripe_client: stripe.StripeClient, stripe_sandbox: StripeSandbox, collection: str) -> None:
    """API reference, Invoices: "If the amount due for the invoice is less than Stripe's
    minimum allowed charge per currency, the invoice is automatically marked paid, and we add
    the amount due to the customer's credit balance which is applied to the next invoice"
    (Customer invoice balance: "moved to the invoice balance as a debit"). The minimum in USD
    is $0.50 (Supported currencies, minimum and maximum charge amounts)."""
    customer = a_customer(stripe_client, payment_method="pm_card_visa")
    params = {"collection_method": collection}
    draft = stripe_client.v1.invoices.create(params={"customer": customer.id, **params,
                                                     **({"days_until_due": 30} if collection == "send_invoice"
                                                        else {})})
    stripe_client.v1.invoices.add_lines(draft.id, params={"lines": [{"amount": 30, "description": "Tiny"}]})

    invoice = stripe_client.v1.invoices.finalize_invoice(draft.id)

    assert invoice.status == "paid"
    assert (invoice.total, invoice.amount_due, invoice.amount_paid, invoice.amount_remaining) == (30, 0, 0, 0)
    assert (invoice.starting_balance, invoice.ending_balance) == (0, 30)
    assert stripe_client.v1.customers.retrieve(customer.id).balance == 30
    assert stripe_sandbox.objects("charge") == [] and stripe_client.v1.balance_transactions.list().data == []

    # The debit is applied to the next invoice.
    following = stripe_client.v1.invoices.finalize_invoice(a_draft(stripe_client, customer.id, 1_000).id)
    assert (following.starting_balance, following.amount_due, following.ending_balance) == (30, 1_030, 0)
    assert stripe_client.v1.customers.retrieve(customer.id).balance == 0


def test_an_invoice_due_at_the_minimum_charge_is_charged(stripe_client: stripe.StripeClient) -> None:
    """$0.50 is the minimum itself: an invoice due that much stays open to be paid."""
    customer = a_customer(stripe_client)
    invoice = stripe_client.v1.invoices.finalize_invoice(a_draft(stripe_client, customer.id, 50).id)
    assert (invoice.status, invoice.amount_due, invoice.ending_balance) == ("open", 50, 0)
    assert stripe_client.v1.customers.retrieve(customer.id).balance == 0


def test_a_credit_that_leaves_less_than_the_minimum_due_moves_the_rest_to_the_balance(
        stripe_client: stripe.StripeClient) -> None:
    """"Stripe applies any customer credit on the account before determining the amount due":
    a $10.00 invoice against a $9.80 credit leaves $0.20, below the minimum, so the invoice
    is paid and the $0.20 is the customer's new (debit) balance."""
    customer = a_customer(stripe_client, balance=-980)
    invoice = stripe_client.v1.invoices.finalize_invoice(a_draft(stripe_client, customer.id, 1_000).id)
    assert (invoice.status, invoice.amount_due, invoice.starting_balance, invoice.ending_balance) == \
        ("paid", 0, -980, 20)
    assert stripe_client.v1.customers.retrieve(customer.id).balance == 20


# -- the customer balance ----------------------------------------------------------------------


def test_a_customer_is_created_and_updated_with_a_balance(stripe_client: stripe.StripeClient,
                                                          stripe_sandbox: StripeSandbox) -> None:
    """Customers API: ``balance`` — "An integer amount in cents that represents the customer's
    current balance, which affect the customer's future invoices. A negative amount represents
    a credit that decreases the amount due on an invoice; a positive amount increases the
    amount due on an invoice." It can be set on create and on update."""
    customer = a_customer(stripe_client, balance=-2_500)
    assert customer.balance == -2_500
    updated = stripe_client.v1.customers.update(customer.id, params={"balance": 700})
    assert updated.balance == 700
    assert stripe_sandbox.events("customer.updated")[-1]["data"]["previous_attributes"] == {"balance": -2_500}

    invoice = stripe_client.v1.invoices.finalize_invoice(a_draft(stripe_client, customer.id, 10_000).id)
    assert (invoice.starting_balance, invoice.amount_due, invoice.ending_balance) == (700, 10_700, 0)


def test_a_drafts_starting_balance_is_the_customers_current_balance(stripe_client: stripe.StripeClient) -> None:
    """Invoice object, ``starting_balance``: "Starting customer balance before the invoice is
    finalized. If the invoice has not been finalized yet, this will be the current customer
    balance." ``ending_balance`` is null until finalization."""
    customer = a_customer(stripe_client, balance=-1_200)
    draft = a_draft(stripe_client, customer.id, 5_000)
    assert (draft.starting_balance, draft.ending_balance) == (-1_200, None)
    stripe_client.v1.customers.update(customer.id, params={"balance": -300})
    assert stripe_client.v1.invoices.retrieve(draft.id).starting_balance == -300


# -- the maximum charge amount -----------------------------------------------------------------


def test_a_payment_above_the_maximum_charge_amount_is_refused(stripe_client: stripe.StripeClient,
                                                              stripe_sandbox: StripeSandbox) -> None:
    """Supported currencies: "The amount value supports up to eight digits (for example, a
    value of 99999999 for a USD charge of $999,999.99)"; a larger amount is the
    ``amount_too_large`` error ("The specified amount is greater than the maximum amount
    allowed"). No charge is made and the invoice stays open."""
    customer = a_customer(stripe_client, payment_method="pm_card_visa")
    invoice = stripe_client.v1.invoices.finalize_invoice(
        a_draft(stripe_client, customer.id, 60_000_000, 40_000_000).id)
    assert invoice.amount_due == 100_000_000

    with pytest.raises(stripe.InvalidRequestError) as refused:
        stripe_client.v1.invoices.pay(invoice.id)
    assert refused.value.code == "amount_too_large"
    assert stripe_client.v1.invoices.retrieve(invoice.id).status == "open"
    assert stripe_sandbox.objects("charge") == []


def test_a_payment_of_the_maximum_charge_amount_goes_through(stripe_client: stripe.StripeClient) -> None:
    customer = a_customer(stripe_client, payment_method="pm_card_visa")
    invoice = stripe_client.v1.invoices.finalize_invoice(a_draft(stripe_client, customer.id, 99_999_999).id)
    assert stripe_client.v1.invoices.pay(invoice.id).status == "paid"


# -- discounts -------------------------------------------------------------------------------


def test_a_line_discount_naming_a_coupon_that_does_not_exist_is_refused(stripe_client: stripe.StripeClient) -> None:
    """``lines[].discounts[].coupon`` names a coupon; the server has none, so any coupon is
    Stripe's "No such coupon" — not a discount silently dropped from the totals."""
    customer = a_customer(stripe_client)
    draft = a_draft(stripe_client, customer.id)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        stripe_client.v1.invoices.add_lines(draft.id, params={"lines": [
            {"amount": 10_000, "description": "Core", "discounts": [{"coupon": "TENOFF"}]}]})
    assert refused.value.code == "resource_missing"
    assert refused.value.param == "lines[0][discounts][0][coupon]"
    assert stripe_client.v1.invoices.retrieve(draft.id).total == 0


# -- documented arithmetic the server already follows ----------------------------------------


def test_tax_is_rounded_per_line_then_summed(stripe_client: stripe.StripeClient) -> None:
    """Stripe support, "Rounding rules for Stripe fees", worked example: lines of $0.43 and
    $4.84 at 15% carry $0.0645 → $0.06 and $0.7265 → $0.73 of tax, $0.79 in all (not
    round($0.791) on the subtotal); total $6.06."""
    customer = a_customer(stripe_client)
    rate = stripe_client.v1.tax_rates.create(params={"display_name": "Tax", "percentage": 15, "inclusive": False})
    draft = a_draft(stripe_client, customer.id, 43, 484, default_tax_rates=[rate.id])
    assert (draft.subtotal, draft.total, draft.total_excluding_tax) == (527, 606, 527)
    assert [t.amount for t in draft.total_taxes] == [79]
    assert [line.taxes[0].amount for line in draft.lines.data] == [6, 73]


def test_refunds_keep_stripes_fee_and_a_partial_refund_is_netted_in_full(
        stripe_client: stripe.StripeClient, stripe_sandbox: StripeSandbox) -> None:
    """Stripe support, "Understanding fees for refunded payments": "Stripe's processing fees
    from the original transaction won't be returned". A refund's balance transaction is
    −amount with no fee; the charge's fee is rounded to the nearest cent (2.9% of $12.50 is
    36.25¢ → 36¢, plus 30¢)."""
    customer = a_customer(stripe_client)
    invoice = stripe_client.v1.invoices.finalize_invoice(a_draft(stripe_client, customer.id, 1_250).id)
    charge = stripe_sandbox.pay_invoice(invoice.id)
    charge_id = charge["id"] if charge.get("object") == "charge" else stripe_sandbox.objects("charge")[0]["id"]
    txn = stripe_client.v1.balance_transactions.retrieve(
        stripe_client.v1.charges.retrieve(charge_id).balance_transaction)
    assert (txn.amount, txn.fee, txn.net) == (1_250, 66, 1_184)

    refund = stripe_client.v1.refunds.create(params={"charge": charge_id, "amount": 500})
    back = stripe_client.v1.balance_transactions.retrieve(refund.balance_transaction)
    assert (back.type, back.amount, back.fee, back.net, back.fee_details) == ("refund", -500, 0, -500, [])
    after = stripe_client.v1.charges.retrieve(charge_id)
    assert (after.amount_refunded, after.refunded) == (500, False)


# -- manual tax amounts and line defaults ------------------------------------------------------


def manual_tax(amount: int, taxable: int, *, inclusive: bool = False, percentage: str = "8.25") -> dict[str, object]:
    return {"amount": amount, "taxable_amount": taxable,
            "tax_rate_data": {"display_name": "Sales tax", "inclusive": inclusive, "percentage": percentage,
                              "country": "US", "state": "CA"}}


def test_manual_tax_amounts_on_a_line_count_in_the_totals(stripe_client: stripe.StripeClient) -> None:
    """Manual tax amounts: add_lines' ``lines[].tax_amounts`` (up to 10) set a line's tax as
    calculated elsewhere; "Stripe automatically creates or reuses an existing tax rate based
    on tax_rate_data" and "calculates tax amounts on the invoice based only on the amount
    parameter". Exclusive tax is added to the total; inclusive tax is inside it."""
    customer = a_customer(stripe_client)
    draft = a_draft(stripe_client, customer.id)
    invoice = stripe_client.v1.invoices.add_lines(draft.id, params={"lines": [
        {"amount": 10_000, "description": "Core", "tax_amounts": [manual_tax(826, 10_000)]},
        {"amount": 5_000, "description": "Seats", "tax_amounts": [manual_tax(413, 5_000)]},
        {"amount": 2_200, "description": "VAT incl.",
         "tax_amounts": [manual_tax(367, 1_833, inclusive=True, percentage="20")]},
    ]})
    assert (invoice.subtotal, invoice.total, invoice.total_excluding_tax) == (17_200, 18_439, 16_833)
    assert sorted(t.amount for t in invoice.total_taxes) == [367, 1_239]
    rates = {t.tax_rate_details.tax_rate for t in invoice.total_taxes}
    assert len(rates) == 2  # the two identical tax_rate_data share one TaxRate
    made = [stripe_client.v1.tax_rates.retrieve(r) for r in rates]
    assert sorted((r.percentage, r.inclusive) for r in made) == [(8.25, False), (20.0, True)]


def test_manual_tax_amounts_are_refused_beside_tax_rates(stripe_client: stripe.StripeClient) -> None:
    """"You cannot set tax amounts if any line item has tax_rates or if the invoice has
    default_tax_rates or uses automatic tax.\""""
    customer = a_customer(stripe_client)
    rate = stripe_client.v1.tax_rates.create(params={"display_name": "Tax", "percentage": 10, "inclusive": False})
    draft = a_draft(stripe_client, customer.id, default_tax_rates=[rate.id])
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.invoices.add_lines(draft.id, params={"lines": [
            {"amount": 10_000, "description": "Core", "tax_amounts": [manual_tax(826, 10_000)]}]})
    assert stripe_client.v1.invoices.retrieve(draft.id).lines.data == []


def test_a_negative_line_is_not_discountable_by_default(stripe_client: stripe.StripeClient) -> None:
    """``discountable``: "Defaults to false for prorations or negative line items, and true
    for all other line items.\""""
    customer = a_customer(stripe_client)
    draft = a_draft(stripe_client, customer.id, 10_000, -2_500)
    assert [line.discountable for line in draft.lines.data] == [True, False]
    assert (draft.subtotal, draft.total, draft.amount_due) == (7_500, 7_500, 7_500)


def test_a_line_takes_up_to_ten_tax_rates(stripe_client: stripe.StripeClient) -> None:
    """Tax rates and IDs: "You can add up to ten tax rates to each line item.\""""
    customer = a_customer(stripe_client)
    rates = [stripe_client.v1.tax_rates.create(params={"display_name": f"T{n}", "percentage": 1, "inclusive": False})
             for n in range(11)]
    draft = a_draft(stripe_client, customer.id)
    invoice = stripe_client.v1.invoices.add_lines(draft.id, params={"lines": [
        {"amount": 10_000, "description": "Core", "tax_rates": [r.id for r in rates[:10]]}]})
    assert invoice.total == 11_000
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.invoices.add_lines(draft.id, params={"lines": [
            {"amount": 10_000, "description": "More", "tax_rates": [r.id for r in rates]}]})


# -- amount or quantity ----------------------------------------------------------------------


def test_amount_and_quantity_together_are_refused(stripe_client: stripe.StripeClient) -> None:
    """``amount`` is the whole item's amount; quantity goes with a unit price instead. Stripe
    answers both together with "You may only specify one of these parameters: amount,
    quantity." (stripe/stripe-php#777, Stripe's answer: "you can't pass quantity and amount
    together. amount is for the total amount of the invoice item.")."""
    customer = a_customer(stripe_client)
    draft = a_draft(stripe_client, customer.id)
    with pytest.raises(stripe.InvalidRequestError) as item:
        stripe_client.v1.invoice_items.create(params={"customer": customer.id, "invoice": draft.id, "amount": 3_000,
                                                      "quantity": 3, "currency": "usd"})
    assert "amount, quantity" in str(item.value.user_message)
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.invoices.add_lines(draft.id, params={"lines": [{"amount": 3_000, "quantity": 3}]})
    assert stripe_client.v1.invoices.retrieve(draft.id).lines.data == []

    # A unit amount and a quantity make the item; its amount then follows an update of either.
    made = stripe_client.v1.invoice_items.create(params={
        "customer": customer.id, "invoice": draft.id, "unit_amount_decimal": "1000",  # type: ignore[typeddict-item]
        "quantity": 3, "currency": "usd"})
    assert (made.amount, made.quantity) == (3_000, 3)
    assert stripe_client.v1.invoice_items.update(made.id, params={"quantity": 4}).amount == 4_000
    whole = stripe_client.v1.invoice_items.update(made.id, params={"amount": 2_500})
    assert (whole.amount, whole.quantity) == (2_500, 1)


def test_a_decimal_unit_amount_is_rounded_per_line_before_the_lines_are_summed(
        stripe_client: stripe.StripeClient) -> None:
    """Decimal amounts for pricing: "Rounding occurs on the line item level of your invoices
    … 0.05 * 30 = 1.5, which is then rounded up to 2 cents. If you have multiple line items,
    each will be rounded before summing up the total amount for the invoice."""
    customer = a_customer(stripe_client)
    draft = a_draft(stripe_client, customer.id)
    line = {"quantity": 30, "price_data": {"currency": "usd", "product_data": {"name": "MB"},
                                           "unit_amount_decimal": "0.05"}}
    invoice = stripe_client.v1.invoices.add_lines(draft.id, params={"lines": [line, line]})
    assert [item.amount for item in invoice.lines.data] == [2, 2]
    assert invoice.subtotal == 4  # not round(3.0)


def test_lines_that_take_the_invoice_past_64_bit_amounts_are_refused(stripe_client: stripe.StripeClient) -> None:
    """Amounts are 64-bit integers in Stripe's API: two lines of the largest amount each would
    make a subtotal no client can read; the second is ``amount_too_large`` and the invoice
    keeps the first."""
    largest = 2**63 - 1
    customer = a_customer(stripe_client)
    draft = a_draft(stripe_client, customer.id)
    with pytest.raises(stripe.InvalidRequestError) as lines:
        stripe_client.v1.invoices.add_lines(draft.id, params={"lines": [{"amount": largest}, {"amount": largest}]})
    assert lines.value.code == "amount_too_large"
    assert stripe_client.v1.invoices.retrieve(draft.id).total == 0

    stripe_client.v1.invoices.add_lines(draft.id, params={"lines": [{"amount": largest}]})
    with pytest.raises(stripe.InvalidRequestError) as item:
        stripe_client.v1.invoice_items.create(params={"customer": customer.id, "invoice": draft.id, "amount": 1,
                                                      "currency": "usd"})
    assert item.value.code == "amount_too_large"
    after = stripe_client.v1.invoices.retrieve(draft.id)
    assert (after.total, len(after.lines.data)) == (largest, 1)
    assert stripe_client.v1.invoice_items.list(params={"invoice": draft.id}).data[0].amount == largest
