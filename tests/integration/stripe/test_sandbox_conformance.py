"""The local Stripe server against Stripe's documented API, as a client that has never seen
it would use it: the official SDK (``StripeClient`` and the older ``stripe.Invoice.create``
style on module globals) and raw form-encoded HTTP. Each test pins one documented rule:
idempotent replays, error bodies and codes, invoice transitions and amounts, list cursors
and limits, ``expand[]``, the search language, and webhook events and signatures."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from decimal import Decimal
from typing import Any

import pytest
import requests
import stripe

from gtm_sandbox.stripe import StripeSandbox
from tests.fixtures.stripe import WebhookSink, sdk_client

DAY = 86_400


def a_customer(client: stripe.StripeClient, email: str = "ap@acme.example", name: str = "Acme Corp",
               **metadata: str) -> stripe.Customer:
    return client.v1.customers.create(params={"email": email, "name": name, "metadata": metadata})


def a_draft(client: stripe.StripeClient, customer_id: str | None = None, *, amount: int | None = 10_000,
            **params: Any) -> stripe.Invoice:
    """A NET30 ``send_invoice`` draft, with one line of ``amount`` cents unless None."""
    customer_id = customer_id or a_customer(client).id
    draft = client.v1.invoices.create(params={"customer": customer_id, "collection_method": "send_invoice",
                                              "days_until_due": 30, **params})
    if amount is not None:
        draft = client.v1.invoices.add_lines(draft.id, params={"lines": [{"amount": amount, "description": "Core"}]})
    return draft


class Raw:
    """Form-encoded HTTP straight at the server, as curl or any HTTP library would send it."""

    def __init__(self, box: StripeSandbox) -> None:
        self.base = box.api_base
        self.auth = {"Authorization": f"Bearer {box.api_key}"}

    def post(self, path: str, data: str | dict[str, str], **headers: str) -> requests.Response:
        return requests.post(self.base + path, data=data, headers={**self.auth, **headers}, timeout=10)

    def get(self, path: str, params: Any = None, **headers: str) -> requests.Response:
        return requests.get(self.base + path, params=params, headers={**self.auth, **headers}, timeout=10)


# -- idempotency ---------------------------------------------------------------------------


def test_a_replay_is_the_stored_response_marked_idempotent_replayed(stripe_sandbox: StripeSandbox) -> None:
    raw = Raw(stripe_sandbox)
    body = "email=ap%40acme.example&metadata[org_id]=00D1"

    first = raw.post("/v1/customers", body, **{"Idempotency-Key": "k-1"})
    again = raw.post("/v1/customers", body, **{"Idempotency-Key": "k-1"})

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(stripe_sandbox.objects("customer")) == 1

    other = raw.post("/v1/customers", "email=someone-else%40acme.example", **{"Idempotency-Key": "k-1"})
    assert other.status_code == 400
    error = other.json()["error"]
    assert error["type"] == "idempotency_error" and "k-1" in error["message"]
    assert len(stripe_sandbox.objects("customer")) == 1


def test_idempotency_keys_do_not_apply_to_reads(stripe_client: stripe.StripeClient,
                                                stripe_sandbox: StripeSandbox) -> None:
    raw = Raw(stripe_sandbox)
    a_customer(stripe_client, "a@acme.example")
    a_customer(stripe_client, "b@acme.example")

    one = raw.get("/v1/customers", {"limit": "1"}, **{"Idempotency-Key": "read"})
    two = raw.get("/v1/customers", {"limit": "2"}, **{"Idempotency-Key": "read"})

    assert (one.status_code, two.status_code) == (200, 200)
    assert (len(one.json()["data"]), len(two.json()["data"])) == (1, 2)
    assert "Idempotent-Replayed" not in two.headers


def test_a_declined_payment_is_replayed_not_attempted_again(stripe_client: stripe.StripeClient,
                                                            stripe_sandbox: StripeSandbox) -> None:
    invoice = stripe_client.v1.invoices.finalize_invoice(a_draft(stripe_client).id)
    params: dict[str, Any] = {"payment_method": "pm_card_chargeDeclined"}

    with pytest.raises(stripe.CardError) as first:
        stripe_client.v1.invoices.pay(invoice.id, params=params, options={"idempotency_key": "pay-1"})
    with pytest.raises(stripe.CardError) as again:
        stripe_client.v1.invoices.pay(invoice.id, params=params, options={"idempotency_key": "pay-1"})

    assert first.value.http_status == again.value.http_status == 402
    assert (first.value.code, first.value.error.decline_code) == ("card_declined", "generic_decline")
    assert first.value.json_body == again.value.json_body
    assert again.value.headers["Idempotent-Replayed"] == "true"
    assert len(stripe_sandbox.objects("charge")) == 1  # one attempt, not two
    assert stripe_client.v1.invoices.retrieve(invoice.id).attempt_count == 1


# -- errors ---------------------------------------------------------------------------------


def test_error_bodies_and_status_codes(stripe_sandbox: StripeSandbox, stripe_client: stripe.StripeClient) -> None:
    raw = Raw(stripe_sandbox)
    base = stripe_sandbox.api_base

    no_key = requests.get(f"{base}/v1/customers", timeout=10)
    wrong_key = requests.get(f"{base}/v1/customers", headers={"Authorization": "Bearer sk_test_"}, timeout=10)
    live_key = requests.get(f"{base}/v1/customers", headers={"Authorization": "Bearer sk_live_1234567890abcd"},
                            timeout=10)
    for answer in (no_key, wrong_key, live_key):
        assert answer.status_code == 401
        assert answer.json()["error"]["type"] == "invalid_request_error"
    assert "sk_live_1234567890abcd" not in live_key.text
    basic = requests.get(f"{base}/v1/customers", auth=(stripe_sandbox.api_key, ""), timeout=10)  # curl -u key:
    assert basic.status_code == 200

    missing = raw.get("/v1/invoices/in_missing")
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "type": "invalid_request_error", "code": "resource_missing", "param": "id",
        "message": "No such invoice: 'in_missing'", "doc_url": "https://stripe.com/docs/error-codes/resource-missing"}

    required = raw.post("/v1/invoices", "collection_method=send_invoice")
    assert required.status_code == 400
    assert (required.json()["error"]["code"], required.json()["error"]["param"]) == ("parameter_missing", "customer")
    unknown = raw.post("/v1/customers", "emial=ap%40acme.example")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (400, "parameter_unknown")

    for method in ("PUT", "PATCH"):
        other_method = requests.request(method, f"{base}/v1/customers", headers=raw.auth, timeout=10)
        assert other_method.status_code == 404
        assert other_method.json()["error"]["message"].startswith(f"Unrecognized request URL ({method}: /v1/customers)")

    invoice = stripe_client.v1.invoices.finalize_invoice(a_draft(stripe_client).id)
    declined = raw.post(f"/v1/invoices/{invoice.id}/pay", "payment_method=pm_card_chargeDeclined")
    assert declined.status_code == 402
    assert declined.json()["error"]["type"] == "card_error"
    assert declined.headers["Request-Id"].startswith("req_")


# -- invoices -------------------------------------------------------------------------------


def test_send_and_pay_finalize_a_draft_first(stripe_client: stripe.StripeClient,
                                             stripe_sandbox: StripeSandbox) -> None:
    """"Stripe automatically finalizes drafts before sending and attempting payment on invoices."""
    sent = stripe_client.v1.invoices.send_invoice(a_draft(stripe_client).id)
    assert sent.status == "open" and sent.number and sent.hosted_invoice_url
    assert sent.due_date == sent.status_transitions.finalized_at + 30 * DAY
    assert len(stripe_sandbox.invoice_sends(sent.id)) == 1

    unpayable = a_draft(stripe_client)  # the customer has no payment method: nothing happens
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.invoices.pay(unpayable.id)
    assert stripe_client.v1.invoices.retrieve(unpayable.id).status == "draft"

    paid = stripe_client.v1.invoices.pay(a_draft(stripe_client, amount=2_500).id, params={"paid_out_of_band": True})
    assert (paid.status, paid.amount_paid, paid.amount_remaining) == ("paid", 2_500, 0)
    assert paid.status_transitions.finalized_at is not None and paid.status_transitions.paid_at is not None
    types = [e["type"] for e in stripe_sandbox.events() if e["data"]["object"].get("id") == paid.id]
    assert types.index("invoice.finalized") < types.index("invoice.paid")


def test_invalid_transitions_are_refused_and_change_nothing(stripe_client: stripe.StripeClient) -> None:
    invoices = stripe_client.v1.invoices
    draft = a_draft(stripe_client)
    paid = invoices.pay(invoices.finalize_invoice(a_draft(stripe_client).id).id, params={"paid_out_of_band": True})
    void = invoices.void_invoice(invoices.finalize_invoice(a_draft(stripe_client).id).id)
    refused = [
        (draft.id, lambda i: invoices.void_invoice(i)),
        (draft.id, lambda i: invoices.mark_uncollectible(i)),
        (paid.id, lambda i: invoices.void_invoice(i)),
        (paid.id, lambda i: invoices.mark_uncollectible(i)),
        (paid.id, lambda i: invoices.pay(i, params={"paid_out_of_band": True})),
        (paid.id, lambda i: invoices.finalize_invoice(i)),
        (paid.id, lambda i: invoices.delete(i)),
        (void.id, lambda i: invoices.pay(i, params={"paid_out_of_band": True})),
        (void.id, lambda i: invoices.send_invoice(i)),
        (void.id, lambda i: invoices.mark_uncollectible(i)),
    ]
    for invoice_id, call in refused:
        before = invoices.retrieve(invoice_id).status
        with pytest.raises(stripe.InvalidRequestError) as raised:
            call(invoice_id)
        assert raised.value.http_status == 400 and raised.value.error.type == "invalid_request_error"
        assert invoices.retrieve(invoice_id).status == before


def test_amount_fields_follow_payments(stripe_client: stripe.StripeClient, stripe_sandbox: StripeSandbox) -> None:
    draft = stripe_client.v1.invoices.add_lines(a_draft(stripe_client, amount=60_000).id, params={"lines": [
        {"price_data": {"currency": "usd", "product_data": {"name": "Seats"}, "unit_amount": 12_000},
         "quantity": 2}]})
    assert (draft.subtotal, draft.total, draft.amount_due, draft.amount_paid, draft.amount_remaining) == (
        84_000, 84_000, 84_000, 0, 84_000)

    invoice = stripe_client.v1.invoices.finalize_invoice(draft.id)
    stripe_sandbox.pay_invoice(invoice.id, amount=30_000)  # a partial card payment
    partial = stripe_client.v1.invoices.retrieve(invoice.id)
    assert (partial.status, partial.amount_due, partial.amount_paid, partial.amount_remaining) == (
        "open", 84_000, 30_000, 54_000)

    paid = stripe_client.v1.invoices.pay(invoice.id, params={"paid_out_of_band": True})
    assert (paid.status, paid.total, paid.amount_paid, paid.amount_remaining) == ("paid", 84_000, 84_000, 0)
    # Since 2026-05-27.dahlia the off-Stripe amount is an includable field, absent unless asked for.
    assert "amount_paid_off_stripe" not in paid
    expanded = stripe_client.v1.invoices.retrieve(invoice.id, params={"expand": ["amount_paid_off_stripe"]})
    assert expanded.amount_paid_off_stripe == 54_000


def test_days_until_due_and_due_date(stripe_client: stripe.StripeClient, stripe_sandbox: StripeSandbox) -> None:
    customer = a_customer(stripe_client)
    net15 = stripe_client.v1.invoices.finalize_invoice(
        a_draft(stripe_client, customer.id, days_until_due=15).id)
    assert (net15.days_until_due, net15.due_date) == (15, net15.status_transitions.finalized_at + 15 * DAY)

    fixed_date = stripe_sandbox.now() + 45 * DAY
    fixed = stripe_client.v1.invoices.create(params={"customer": customer.id, "collection_method": "send_invoice",
                                                     "due_date": fixed_date})
    stripe_client.v1.invoices.add_lines(fixed.id, params={"lines": [{"amount": 100}]})
    assert stripe_client.v1.invoices.finalize_invoice(fixed.id).due_date == fixed_date

    for params in ({"collection_method": "send_invoice", "days_until_due": 30, "due_date": fixed_date},
                   {"collection_method": "charge_automatically", "days_until_due": 30}):
        with pytest.raises(stripe.InvalidRequestError) as raised:
            stripe_client.v1.invoices.create(params={"customer": customer.id, **params})  # type: ignore[typeddict-item]
        assert raised.value.http_status == 400
    automatic = stripe_client.v1.invoices.create(params={"customer": customer.id})
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.invoices.update(automatic.id, params={"days_until_due": 10})
    assert stripe_client.v1.invoices.retrieve(automatic.id).days_until_due is None


def test_unit_amount_decimal_times_quantity(stripe_client: stripe.StripeClient) -> None:
    customer = a_customer(stripe_client)
    draft = a_draft(stripe_client, customer.id, amount=None)
    item = stripe_client.v1.invoice_items.create(params={
        "customer": customer.id, "invoice": draft.id, "unit_amount_decimal": Decimal("1234.4"), "quantity": 3,
        "currency": "usd", "description": "Seats (prorated)", "metadata": {"order_item": "802A"}})

    assert (item.amount, item.quantity, item.invoice) == (3_703, 3, draft.id)  # 3703.2 cents
    assert Decimal(item.pricing.unit_amount_decimal) == Decimal("1234.4")
    line = stripe_client.v1.invoices.retrieve(draft.id).lines.data[0]
    assert (line.amount, line.quantity, line.description, line.metadata["order_item"]) == (
        3_703, 3, "Seats (prorated)", "802A")
    assert stripe_client.v1.invoices.retrieve(draft.id).total == 3_703

    precise = stripe_client.v1.invoice_items.create(params={
        "customer": customer.id, "invoice": draft.id, "unit_amount_decimal": Decimal("0.000000000001"),
        "quantity": 1, "currency": "usd"})
    assert precise.amount == 0  # 12 decimal places are accepted ...
    with pytest.raises(stripe.InvalidRequestError) as too_precise:
        stripe_client.v1.invoice_items.create(params={
            "customer": customer.id, "invoice": draft.id, "unit_amount_decimal": Decimal("0.0000000000001"),
            "currency": "usd"})
    assert too_precise.value.param == "unit_amount_decimal"  # ... 13 are not
    with pytest.raises(stripe.InvalidRequestError) as both:
        stripe_client.v1.invoice_items.create(params={
            "customer": customer.id, "invoice": draft.id, "amount": 100, "unit_amount_decimal": Decimal("1"),
            "currency": "usd"})
    assert both.value.http_status == 400
    with pytest.raises(stripe.InvalidRequestError) as line_currency:  # add_lines lines take the invoice's currency
        stripe_client.v1.invoices.add_lines(draft.id, params={"lines": [
            {"amount": 100, "currency": "usd"}]})  # type: ignore[typeddict-unknown-key]
    assert (line_currency.value.code, line_currency.value.param) == ("parameter_unknown", "lines[0][currency]")


def test_invoice_numbers_use_the_customers_prefix(stripe_client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as lowercase:
        stripe_client.v1.customers.create(params={"email": "ap@acme.example", "invoice_prefix": "acme"})
    assert lowercase.value.param == "invoice_prefix"  # 3-12 uppercase letters or numbers

    customer = stripe_client.v1.customers.create(params={"email": "ap@acme.example", "invoice_prefix": "ACME01"})
    first = stripe_client.v1.invoices.finalize_invoice(a_draft(stripe_client, customer.id).id)
    second = stripe_client.v1.invoices.finalize_invoice(a_draft(stripe_client, customer.id).id)
    assert (first.number, second.number) == ("ACME01-0001", "ACME01-0002")
    assert stripe_client.v1.customers.retrieve(customer.id).next_invoice_sequence == 3


def test_finalized_invoices_keep_non_monetary_fields_editable(stripe_client: stripe.StripeClient) -> None:
    invoice = stripe_client.v1.invoices.finalize_invoice(a_draft(stripe_client).id)

    updated = stripe_client.v1.invoices.update(invoice.id, params={
        "metadata": {"note": "called AP"}, "description": "Order 00000101", "footer": "Thanks",
        "default_payment_method": "pm_card_visa"})
    assert (updated.metadata["note"], updated.description, updated.footer, updated.default_payment_method) == (
        "called AP", "Order 00000101", "Thanks", "pm_card_visa")

    with pytest.raises(stripe.InvalidRequestError) as method:
        stripe_client.v1.invoices.update(invoice.id, params={"collection_method": "charge_automatically"})
    assert method.value.code == "invoice_not_editable"
    with pytest.raises(stripe.InvalidRequestError) as lines:
        stripe_client.v1.invoices.add_lines(invoice.id, params={"lines": [{"amount": 1}]})
    assert lines.value.code == "invoice_not_editable"
    assert stripe_client.v1.invoices.retrieve(invoice.id).total == 10_000

    # Automatic advancement is always off once an invoice is uncollectible, paid or void.
    advancing = stripe_client.v1.invoices.finalize_invoice(a_draft(stripe_client).id, params={"auto_advance": True})
    assert advancing.auto_advance is True
    assert stripe_client.v1.invoices.mark_uncollectible(advancing.id).auto_advance is False
    with pytest.raises(stripe.InvalidRequestError) as toggle:
        stripe_client.v1.invoices.update(advancing.id, params={"auto_advance": True})
    assert toggle.value.param == "auto_advance"


# -- lists ----------------------------------------------------------------------------------


def test_a_cursor_still_pages_after_its_object_left_the_filter(stripe_client: stripe.StripeClient) -> None:
    """A client paging ``status=open`` while invoices get paid must not lose its place:
    ``starting_after`` names an existing object, not a member of the filtered page."""
    customer = a_customer(stripe_client)
    opened = [stripe_client.v1.invoices.finalize_invoice(a_draft(stripe_client, customer.id).id).id
              for _ in range(5)]
    newest_first = opened[::-1]

    page = stripe_client.v1.invoices.list(params={"status": "open", "limit": 2})
    assert [i.id for i in page.data] == newest_first[:2] and page.has_more
    stripe_client.v1.invoices.pay(page.data[-1].id, params={"paid_out_of_band": True})  # leaves the filter

    rest = stripe_client.v1.invoices.list(params={"status": "open", "limit": 2, "starting_after": page.data[-1].id})
    assert [i.id for i in rest.data] == newest_first[2:4] and rest.has_more
    before = stripe_client.v1.invoices.list(params={"status": "open", "ending_before": page.data[-1].id})
    assert [i.id for i in before.data] == newest_first[:1] and not before.has_more

    walked = [i.id for i in stripe_client.v1.invoices.list(params={"status": "open", "limit": 2}).auto_paging_iter()]
    assert walked == [i for i in newest_first if i != page.data[-1].id]


def test_limit_bounds_and_cursor_errors(stripe_client: stripe.StripeClient, stripe_sandbox: StripeSandbox) -> None:
    raw = Raw(stripe_sandbox)
    ids = [a_customer(stripe_client, f"c{i}@acme.example").id for i in range(3)]

    for limit in ("0", "101", "ten"):
        bad = raw.get("/v1/customers", {"limit": limit})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"
    assert len(raw.get("/v1/customers", {"limit": "100"}).json()["data"]) == 3
    assert len(raw.get("/v1/customers", {"limit": "1"}).json()["data"]) == 1
    search = raw.get("/v1/customers/search", {"query": "email~'acme'", "limit": "101"})
    assert search.status_code == 400 and search.json()["error"]["param"] == "limit"

    unknown = raw.get("/v1/customers", {"starting_after": "cus_nothere"})
    assert unknown.status_code >= 400 and unknown.json()["error"]["param"] == "starting_after"
    wrong_kind = raw.get("/v1/customers", {"starting_after": stripe_client.v1.invoices.create(
        params={"customer": ids[0]}).id})
    assert wrong_kind.json()["error"]["param"] == "starting_after"
    both = raw.get("/v1/customers", {"starting_after": ids[0], "ending_before": ids[2]})
    assert both.status_code == 400


def test_ending_before_pages_towards_newer_objects(stripe_client: stripe.StripeClient) -> None:
    ids = [a_customer(stripe_client, f"c{i}@acme.example").id for i in range(7)]  # oldest first

    page = stripe_client.v1.customers.list(params={"limit": 2, "ending_before": ids[2]})
    assert [c.id for c in page.data] == [ids[4], ids[3]]  # still newest first
    assert page.has_more  # ids[5] and ids[6] are newer still
    newer = [c.id for c in stripe_client.v1.customers.list(
        params={"limit": 2, "ending_before": ids[2]}).auto_paging_iter()]
    assert newer == ids[3:]  # the SDK walks backwards, oldest of them first


# -- expand -------------------------------------------------------------------------------


def test_expand_on_retrieve_list_and_create(stripe_client: stripe.StripeClient, stripe_sandbox: StripeSandbox) -> None:
    customer = a_customer(stripe_client)
    invoice = a_draft(stripe_client, customer.id)

    retrieved = stripe_client.v1.invoices.retrieve(invoice.id, params={"expand": ["customer"]})
    assert isinstance(retrieved.customer, stripe.Customer) and retrieved.customer.email == "ap@acme.example"
    listed = stripe_client.v1.invoices.list(params={"expand": ["data.customer"]})
    assert listed.data[0].customer.id == customer.id
    created = stripe_client.v1.invoices.create(params={"customer": customer.id, "expand": ["customer"]})
    assert created.customer.id == customer.id
    assert stripe_client.v1.invoices.retrieve(invoice.id).customer == customer.id  # an id unless expanded

    raw = Raw(stripe_sandbox)
    for path in ("nothing", "customer.nothing", "status"):
        refused = raw.get(f"/v1/invoices/{invoice.id}", {"expand[]": path})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "expand"
    searched = stripe_client.v1.customers.search(params={"query": "email:'ap@acme.example'", "expand": ["total_count"]})
    assert searched.total_count == 1


# -- search ---------------------------------------------------------------------------------


def test_search_query_language_as_documented(stripe_client: stripe.StripeClient) -> None:
    acme = a_customer(stripe_client, "ap@acme.example", "Acme Corp", org_id="00D1", tier="Gold", seats="25")
    globex = a_customer(stripe_client, "billing@globex.example", "Globex Corporation", org_id="00D2")
    obrien = a_customer(stripe_client, "ap@obrien.example", "O'Brien & Sons")

    def found(query: str) -> list[str]:
        return sorted(c.id for c in stripe_client.v1.customers.search(params={"query": query}).auto_paging_iter())

    assert found("metadata['org_id']:'00D1'") == [acme.id]
    assert found('metadata["org_id"]:"00D1"') == [acme.id]
    assert found("metadata['tier']:'gold'") == [acme.id]  # exact match is case-insensitive
    assert found("metadata['seats']:25") == [acme.id]  # quotes are optional on numeric values
    assert found("email:'ap@acme.example' and metadata['org_id']:'00D1'") == [acme.id]  # keywords: any case
    assert found("email:'ap@acme.example' or email:'billing@globex.example'") == sorted([acme.id, globex.id])
    assert found("email:'ap@acme.example' metadata['org_id']:'00D2'") == []  # a space is AND
    assert found("-metadata['org_id']:null") == sorted([acme.id, globex.id])  # has the key
    assert found("metadata['tier']:NULL") == sorted([globex.id, obrien.id])  # lacks it
    assert found("name:'corp'") == [acme.id]  # a string field matches whole words
    assert found("name~'corp'") == sorted([acme.id, globex.id])  # ... and substrings with ~
    assert found("-name~'corp'") == [obrien.id]
    assert found(r"name:'o\'brien'") == [obrien.id]  # a quote escaped with a backslash
    assert found("name:\"O'Brien\"") == [obrien.id]

    for query in ("email~'ap'",  # substrings need at least 3 characters
                  "email>'a'",  # comparators are for numeric fields
                  "metadata['org_id']~'00D'",  # metadata is a token: exact matches only
                  "email:ap@acme.example",  # string values must be quoted
                  "email:'a' AND name:'b' OR phone:'c'",  # AND and OR don't mix
                  "balance>0"):  # not a query field of customers
        with pytest.raises(stripe.InvalidRequestError) as bad:
            stripe_client.v1.customers.search(params={"query": query})
        assert (bad.value.http_status, bad.value.param) == (400, "query")


def test_invoice_search_by_metadata_status_and_total(stripe_client: stripe.StripeClient) -> None:
    customer = a_customer(stripe_client)
    small = a_draft(stripe_client, customer.id, amount=500, metadata={"order_id": "801A", "org_id": "00D1"})
    big = stripe_client.v1.invoices.finalize_invoice(
        a_draft(stripe_client, customer.id, amount=840_000, metadata={"order_id": "801B", "org_id": "00D1"}).id)

    def found(query: str) -> list[str]:
        return sorted(i.id for i in stripe_client.v1.invoices.search(params={"query": query}).auto_paging_iter())

    assert found("metadata['order_id']:'801B' AND metadata['org_id']:'00D1'") == [big.id]
    assert found("status:'open'") == [big.id]
    assert found("total>1000") == [big.id]
    assert found('total>="500"') == sorted([small.id, big.id])  # quotes are optional on numbers
    assert found(f"customer:'{customer.id}' AND -status:'open'") == [small.id]
    assert found(f"number:'{big.number}'") == [big.id]


# -- webhooks -------------------------------------------------------------------------------


def test_webhook_events_have_stripes_shape_and_signature(stripe_client: stripe.StripeClient,
                                                         stripe_sandbox: StripeSandbox,
                                                         webhook_sink: WebhookSink) -> None:
    # Subscribing to event types the sandbox never emits is allowed, as on Stripe.
    endpoint = stripe_client.v1.webhook_endpoints.create(params={
        "url": webhook_sink.url,
        "enabled_events": ["invoice.finalized", "invoice.updated", "invoice.overdue", "payout.failed"]})
    draft = a_draft(stripe_client, metadata={"order_id": "801A"})
    invoice = stripe_client.v1.invoices.finalize_invoice(draft.id, options={"idempotency_key": "fin-801A"})
    stripe_client.v1.invoices.update(invoice.id, params={"metadata": {"order_id": "801B"}})
    assert stripe_sandbox.wait_for_webhooks()

    received: dict[str, list[Any]] = {}
    for delivery in webhook_sink.received:
        received.setdefault(json.loads(delivery.body)["type"], []).append(delivery)
    assert sorted(received) == ["invoice.finalized", "invoice.updated"]
    [finalized] = received["invoice.finalized"]
    header = finalized.headers["Stripe-Signature"]
    match = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", header)
    assert match is not None
    expected = hmac.new(endpoint.secret.encode(), match[1].encode() + b"." + finalized.body, hashlib.sha256)
    assert hmac.compare_digest(match[2], expected.hexdigest())
    stripe.WebhookSignature.verify_header(finalized.body.decode(), header, endpoint.secret, 300)

    event = json.loads(finalized.body)
    assert {"id", "object", "type", "data", "created", "api_version", "livemode", "pending_webhooks",
            "request"} <= set(event)
    assert (event["object"], event["livemode"], event["api_version"]) == ("event", False, stripe.api_version)
    assert event["id"].startswith("evt_") and event["pending_webhooks"] == 1
    assert event["request"] == {"id": invoice.last_response.request_id, "idempotency_key": "fin-801A"}
    assert (event["data"]["object"]["id"], event["data"]["object"]["status"]) == (invoice.id, "open")
    assert "previous_attributes" not in event["data"] or event["data"]["previous_attributes"]["status"] == "draft"

    changes = [json.loads(r.body) for r in received["invoice.updated"]]
    [lines_added] = [e for e in changes if "total" in e["data"]["previous_attributes"]]
    [updated] = [e for e in changes if "metadata" in e["data"]["previous_attributes"]]
    assert (lines_added["data"]["object"]["total"], lines_added["data"]["previous_attributes"]["total"]) == (10_000, 0)
    assert updated["data"]["object"]["metadata"] == {"order_id": "801B"}
    assert updated["data"]["previous_attributes"]["metadata"] == {"order_id": "801A"}
    assert stripe_client.v1.events.retrieve(event["id"]).pending_webhooks == 0

    with pytest.raises(stripe.InvalidRequestError) as unknown:
        stripe_client.v1.webhook_endpoints.create(params={
            "url": webhook_sink.url, "enabled_events": ["invoice.paid", "invoice.nonsense"]})  # type: ignore[list-item]
    assert unknown.value.param == "enabled_events[1]"


# -- the older SDK style and raw HTTP ------------------------------------------------------------


def test_module_level_sdk_style(stripe_sandbox: StripeSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """``stripe.api_key`` / ``stripe.api_base`` and class methods, as older integrations do."""
    monkeypatch.setattr(stripe, "api_key", stripe_sandbox.api_key)
    monkeypatch.setattr(stripe, "api_base", stripe_sandbox.api_base)
    monkeypatch.setattr(stripe, "max_network_retries", 0)

    customer = stripe.Customer.create(email="ap@acme.example", metadata={"org_id": "00D1"})
    invoice = stripe.Invoice.create(customer=customer.id, collection_method="send_invoice", days_until_due=30,
                                    metadata={"order_id": "801A"})
    stripe.InvoiceItem.create(customer=customer.id, invoice=invoice.id, unit_amount_decimal="60000", quantity=10,
                              currency="usd", description="Core App")
    finalized = stripe.Invoice.finalize_invoice(invoice.id, idempotency_key="legacy-fin")
    again = stripe.Invoice.finalize_invoice(invoice.id, idempotency_key="legacy-fin")
    assert (finalized.status, finalized.total, again.id) == ("open", 600_000, invoice.id)
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    stripe.Invoice.send_invoice(invoice.id)

    assert [i.id for i in stripe.Invoice.list(status="open", limit=1).auto_paging_iter()] == [invoice.id]
    assert [c.id for c in stripe.Customer.search(query="metadata['org_id']:'00D1'").auto_paging_iter()] == [customer.id]
    assert [i.id for i in stripe.Invoice.search(query="metadata['order_id']:'801A'").data] == [invoice.id]
    expanded = stripe.Invoice.retrieve(invoice.id, expand=["customer"])
    assert expanded.customer.email == "ap@acme.example"
    paid = stripe.Invoice.pay(invoice.id, paid_out_of_band=True)
    assert (paid.status, paid.amount_remaining) == ("paid", 0)
    with pytest.raises(stripe.InvalidRequestError):
        paid.void_invoice()  # paid invoices can't be voided


def test_raw_form_encoding_conventions(stripe_sandbox: StripeSandbox) -> None:
    raw = Raw(stripe_sandbox)
    customer = raw.post("/v1/customers", "email=ap%40acme.example&metadata[a]=1&metadata[b]=2").json()
    unset = raw.post(f"/v1/customers/{customer['id']}", "metadata[a]=").json()  # an empty value unsets a key
    assert unset["metadata"] == {"b": "2"}
    cleared = raw.post(f"/v1/customers/{customer['id']}", "metadata=").json()  # metadata= unsets them all
    assert cleared["metadata"] == {}

    draft = raw.post("/v1/invoices", {"customer": customer["id"], "collection_method": "send_invoice",
                                      "days_until_due": "30", "auto_advance": "false"}).json()
    assert (draft["auto_advance"], draft["days_until_due"]) == (False, 30)
    added = raw.post(f"/v1/invoices/{draft['id']}/add_lines",
                     "lines[0][price_data][currency]=usd&lines[0][price_data][product_data][name]=Core"
                     "&lines[0][price_data][unit_amount_decimal]=12.5&lines[0][quantity]=4"
                     "&lines[1][amount]=50&expand[]=customer&expand[]=lines.data").json()
    assert added["total"] == 100 and added["customer"]["id"] == customer["id"]
    finalized = raw.post(f"/v1/invoices/{draft['id']}/finalize", "expand[0]=customer").json()
    assert finalized["status"] == "open" and finalized["customer"]["email"] == "ap@acme.example"
    bad_bool = raw.post("/v1/invoices", {"customer": customer["id"], "auto_advance": "yes"})
    assert bad_bool.status_code == 400 and bad_bool.json()["error"]["param"] == "auto_advance"


# -- tax rates -----------------------------------------------------------------------------


def test_tax_rates_put_tax_on_lines_and_totals_as_stripe_documents(stripe_client: stripe.StripeClient,
                                                                   stripe_sandbox: StripeSandbox) -> None:
    """``POST /v1/tax_rates``; ``default_tax_rates`` on the invoice and ``tax_rates`` on a
    line: per-line ``taxes``, invoice ``total_taxes``, ``total_excluding_tax``, ``total``
    and ``amount_due`` (exclusive tax on top, inclusive tax inside the line, half-up)."""
    sales = stripe_client.v1.tax_rates.create(params={
        "display_name": "Sales Tax", "percentage": 8.875, "inclusive": False, "jurisdiction": "NY - New York",
        "country": "US", "state": "NY", "tax_type": "sales_tax"})
    vat = stripe_client.v1.tax_rates.create(params={"display_name": "VAT", "percentage": 20, "inclusive": True,
                                                     "jurisdiction": "GB"})
    assert (sales.object, sales.percentage, sales.inclusive, sales.jurisdiction, sales.active) == \
        ("tax_rate", 8.875, False, "NY - New York", True)
    assert sales.id.startswith("txr_") and stripe_client.v1.tax_rates.retrieve(vat.id).display_name == "VAT"

    draft = a_draft(stripe_client, amount=None, default_tax_rates=[sales.id])
    assert [r.id for r in draft.default_tax_rates] == [sales.id]
    draft = stripe_client.v1.invoices.add_lines(draft.id, params={"lines": [
        {"amount": 600_000, "description": "Core App"},  # the invoice's default rate: 8.875 % on top
        {"amount": 12_000, "description": "Add-on (VAT inclusive)", "tax_rates": [vat.id]},
    ]})
    core, add_on = draft.lines.data
    assert [(t.amount, t.tax_behavior, t.taxable_amount, t.tax_rate_details.tax_rate) for t in core.taxes] == \
        [(53_250, "exclusive", 600_000, sales.id)]
    # 120.00 including 20 % VAT: 100.00 taxable, 20.00 of tax inside the line
    assert [(t.amount, t.tax_behavior, t.taxable_amount) for t in add_on.taxes] == [(2_000, "inclusive", 10_000)]
    assert (draft.subtotal, draft.total_excluding_tax, draft.total, draft.amount_due) == \
        (612_000, 610_000, 665_250, 665_250)
    assert sorted((t.amount, t.tax_rate_details.tax_rate) for t in draft.total_taxes) == \
        sorted([(53_250, sales.id), (2_000, vat.id)])

    # Half-up per line: 8.875 % of 10.01 is 0.8838… -> 0.89; of 0.04 is 0.00355 -> 0.00.
    odd = stripe_client.v1.invoices.add_lines(draft.id, params={"lines": [{"amount": 1_001}, {"amount": 4}]})
    assert [t.amount for line in odd.lines.data[2:] for t in line.taxes] == [89, 0]
    final = stripe_client.v1.invoices.finalize_invoice(draft.id)
    assert (final.total, final.amount_due, final.amount_remaining) == (666_344, 666_344, 666_344)
    with pytest.raises(stripe.InvalidRequestError):  # amounts (and rates) freeze at finalization
        stripe_client.v1.invoices.update(draft.id, params={"default_tax_rates": [vat.id]})

    # Clients pinned before 2025-03-31 see `tax`, `total_tax_amounts` and lines' `tax_amounts`.
    legacy = sdk_client(stripe_sandbox, version="2024-06-20").v1.invoices.retrieve(final.id)
    assert legacy.tax == 53_250 + 2_000 + 89 and "total_taxes" not in legacy
    assert [(t.amount, t.inclusive) for t in legacy.lines.data[1].tax_amounts] == [(2_000, True)]

    # Percentage and inclusive are fixed once created; an archived rate cannot be applied.
    stripe_client.v1.tax_rates.update(sales.id, params={"active": False})
    with pytest.raises(stripe.InvalidRequestError, match="inactive"):
        a_draft(stripe_client, amount=None, default_tax_rates=[sales.id])
    refused = Raw(stripe_sandbox).post(f"/v1/tax_rates/{vat.id}", {"percentage": "5"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "percentage"
    with pytest.raises(stripe.InvalidRequestError, match="No such tax_rate"):
        a_draft(stripe_client, amount=None, default_tax_rates=["txr_missing"])
