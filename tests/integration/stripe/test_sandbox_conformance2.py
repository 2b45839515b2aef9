"""A second round of the local Stripe server against Stripe's documented behaviour, as the
clients we don't see would meet it (raw ``requests``/curl, the SDK's two styles): request
bodies that are not form-encoded, ``expand[]`` of fields Stripe does not expand, what
events carry ``previous_attributes``, the 30 days events are kept, the 16 webhook
endpoints of an account, list filters' error params and cursor errors. Each test names the
documented rule it pins."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import stripe

from gtm_sandbox.stripe import StripeSandbox

DAY = 86_400


class Raw:
    """Form-encoded HTTP straight at the server, as curl or any HTTP library would send it."""

    def __init__(self, box: StripeSandbox) -> None:
        self.base = box.api_base
        self.auth = {"Authorization": f"Bearer {box.api_key}"}

    def post(self, path: str, data: Any = None, **headers: str) -> requests.Response:
        return requests.post(self.base + path, data=data, headers={**self.auth, **headers}, timeout=10)

    def get(self, path: str, params: Any = None, **headers: str) -> requests.Response:
        return requests.get(self.base + path, params=params, headers={**self.auth, **headers}, timeout=10)


def a_customer(client: stripe.StripeClient, email: str = "ap@acme.example") -> stripe.Customer:
    return client.v1.customers.create(params={"email": email, "name": "Acme Corp"})


def an_open_invoice(client: stripe.StripeClient, amount: int = 10_000) -> stripe.Invoice:
    draft = client.v1.invoices.create(params={"customer": a_customer(client).id, "collection_method": "send_invoice",
                                              "days_until_due": 30})
    client.v1.invoices.add_lines(draft.id, params={"lines": [{"amount": amount, "description": "Core"}]})
    return client.v1.invoices.finalize_invoice(draft.id)


# -- request bodies -------------------------------------------------------------------------


@pytest.mark.parametrize("content_type, body", [
    ("application/json", json.dumps({"email": "ap@acme.example"})),
    ("text/plain; charset=utf-8", "email=ap%40acme.example"),
])
def test_a_body_that_is_not_form_encoded_is_refused(stripe_sandbox: StripeSandbox, content_type: str,
                                                    body: str) -> None:
    """Stripe's v1 API takes form-encoded bodies only: another Content-Type is answered
    "Invalid request: unsupported Content-Type …" (an invalid_request_error), nothing created."""
    answer = Raw(stripe_sandbox).post("/v1/customers", body, **{"Content-Type": content_type,
                                                                "Idempotency-Key": "json-1"})

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(f"Invalid request: unsupported Content-Type {content_type}.")
    assert "param" not in error and "code" not in error
    assert stripe_sandbox.objects("customer") == []
    # Refused before the endpoint ran: nothing saved under the key, the corrected request runs.
    fixed = Raw(stripe_sandbox).post("/v1/customers", {"email": "ap@acme.example"}, **{"Idempotency-Key": "json-1"})
    assert fixed.status_code == 200 and "Idempotent-Replayed" not in fixed.headers


def test_form_bodies_with_a_charset_or_no_content_type_and_chunked_bodies_are_read(
        stripe_sandbox: StripeSandbox) -> None:
    raw = Raw(stripe_sandbox)
    with_charset = raw.post("/v1/customers", "email=a%40acme.example",
                            **{"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    untyped = raw.post("/v1/customers", b"email=b%40acme.example")  # requests sends no Content-Type for bytes
    assert (with_charset.json()["email"], untyped.json()["email"]) == ("a@acme.example", "b@acme.example")

    # A chunked body (Transfer-Encoding: chunked, no Content-Length), as streaming clients send it.
    chunks = iter([b"email=c%40acme.example", b"&metadata[org_id]=00D1", b"&expand[]=invoice_settings"])
    chunked = requests.post(stripe_sandbox.api_base + "/v1/customers", data=chunks,
                            headers={**raw.auth, "Content-Type": "application/x-www-form-urlencoded"}, timeout=10)
    assert chunked.status_code == 200
    assert (chunked.json()["email"], chunked.json()["metadata"]) == ("c@acme.example", {"org_id": "00D1"})


def test_a_multipart_form_body_is_read_like_a_form(stripe_sandbox: StripeSandbox) -> None:
    """A form posted as multipart/form-data (``curl -F``) carries the same parameters."""
    answer = requests.post(stripe_sandbox.api_base + "/v1/customers",
                           files={"email": (None, "ap@acme.example"), "metadata[org_id]": (None, "00D1")},
                           headers=Raw(stripe_sandbox).auth, timeout=10)

    assert answer.status_code == 200
    assert (answer.json()["email"], answer.json()["metadata"]) == ("ap@acme.example", {"org_id": "00D1"})


# -- expand ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path, expand", [
    ("/v1/customers/{customer}", "id"),
    ("/v1/customers", "data.id"),
    ("/v1/invoices/{invoice}", "customer.id"),
    ("/v1/invoices/{invoice}", "number"),
])
def test_only_expandable_fields_expand(stripe_client: stripe.StripeClient, stripe_sandbox: StripeSandbox,
                                       path: str, expand: str) -> None:
    """``expand[]`` takes the fields the API reference marks "Expandable"; an object's own
    ``id`` is not one (it was drawn as the object itself)."""
    invoice = an_open_invoice(stripe_client)
    answer = Raw(stripe_sandbox).get(path.format(customer=invoice.customer, invoice=invoice.id),
                                     {"expand[]": expand})

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "expand")
    assert error["message"] == f"This property cannot be expanded ({expand})."


def test_expandable_fields_still_expand_nested_and_in_lists(stripe_client: stripe.StripeClient,
                                                            stripe_sandbox: StripeSandbox) -> None:
    invoice = an_open_invoice(stripe_client)
    stripe_sandbox.pay_invoice(invoice.id)
    stripe_sandbox.advance_clock(days=3)
    payout = stripe_sandbox.create_payout()
    assert payout is not None

    expanded = stripe_client.v1.invoices.retrieve(
        invoice.id, params={"expand": ["customer.invoice_settings.default_payment_method", "payments"]})
    assert expanded.customer.id == invoice.customer and expanded.payments.data[0].invoice == invoice.id
    [payment] = stripe_client.v1.invoice_payments.list(
        params={"invoice": invoice.id, "expand": ["data.invoice", "data.payment.payment_intent"]})
    assert payment.invoice.id == invoice.id and payment.payment.payment_intent.object == "payment_intent"
    sources = [t.source.object for t in stripe_client.v1.balance_transactions.list(
        params={"payout": payout["id"], "expand": ["data.source"]}).data]
    assert sorted(sources) == ["charge", "payout"]
    item = stripe_client.v1.invoice_items.list(params={"expand": ["data.invoice", "data.customer"]}).data[0]
    assert (item.invoice.id, item.customer.id) == (invoice.id, invoice.customer)


# -- events -----------------------------------------------------------------------------------


def invoice_events(client: stripe.StripeClient, invoice_id: str) -> list[dict[str, Any]]:
    """The invoice's events, oldest first, as plain JSON."""
    events = [e.to_dict() for e in client.v1.events.list(params={"type": "invoice.*", "limit": 100}).auto_paging_iter()]
    return [e for e in reversed(events) if e["data"]["object"]["id"] == invoice_id]


def test_only_updated_events_carry_previous_attributes(stripe_client: stripe.StripeClient,
                                                       stripe_sandbox: StripeSandbox) -> None:
    """``data.previous_attributes``: "only included in events of type ``*.updated``". A
    status change sends its own event (Status transitions and finalization: finalize →
    ``invoice.finalized``, pay → ``invoice.paid``, void → ``invoice.voided``,
    mark_uncollectible → ``invoice.marked_uncollectible``) and the ``invoice.updated`` that
    says what changed (hashes by the keys that changed), here just before it."""
    invoice = an_open_invoice(stripe_client)
    paid = stripe_client.v1.invoices.pay(invoice.id, params={"payment_method": "pm_card_visa"})
    uncollectible = stripe_client.v1.invoices.mark_uncollectible(an_open_invoice(stripe_client).id)
    voided = stripe_client.v1.invoices.void_invoice(uncollectible.id)

    for event in stripe_sandbox.events():
        if not event["type"].endswith(".updated"):
            assert "previous_attributes" not in event["data"], event["type"]

    types = [e["type"] for e in invoice_events(stripe_client, paid.id)]
    assert types[types.index("invoice.finalized") - 1] == "invoice.updated"
    assert types[types.index("invoice.paid") - 1] == "invoice.updated"
    finalized, paid_update = (invoice_events(stripe_client, paid.id)[types.index(t) - 1]
                              for t in ("invoice.finalized", "invoice.paid"))
    previous = finalized["data"]["previous_attributes"]
    assert (previous["status"], previous["number"], previous["status_transitions"]) == (
        "draft", None, {"finalized_at": None})
    assert finalized["data"]["object"]["status"] == "open"
    assert paid_update["data"]["previous_attributes"]["status"] == "open"
    assert (paid_update["data"]["previous_attributes"]["amount_paid"],
            paid_update["data"]["previous_attributes"]["amount_remaining"]) == (0, 10_000)
    assert paid_update["data"]["previous_attributes"]["status_transitions"] == {"paid_at": None}

    updates = [e for e in invoice_events(stripe_client, voided.id) if e["type"] == "invoice.updated"]
    statuses = [u["data"]["previous_attributes"].get("status") for u in updates]
    assert statuses[-2:] == ["open", "uncollectible"]  # mark_uncollectible, then void
    assert updates[-1]["data"]["previous_attributes"]["status_transitions"] == {"voided_at": None}


def test_a_payout_paid_event_has_no_previous_attributes(stripe_client: stripe.StripeClient,
                                                        stripe_sandbox: StripeSandbox) -> None:
    stripe_sandbox.pay_invoice(an_open_invoice(stripe_client).id)
    stripe_sandbox.advance_clock(days=3)
    assert stripe_sandbox.create_payout() is not None
    stripe_sandbox.advance_clock(days=2)

    [paid] = stripe_client.v1.events.list(params={"type": "payout.paid"}).data
    assert paid.data.object.status == "paid"
    assert "previous_attributes" not in paid.data


def test_events_are_kept_thirty_days(stripe_client: stripe.StripeClient, stripe_sandbox: StripeSandbox) -> None:
    """"List events, going back up to 30 days"; "Retrieves the details of an event if it was
    created in the last 30 days"."""
    old = a_customer(stripe_client, "old@acme.example")
    [created] = stripe_client.v1.events.list(params={"type": "customer.created"}).data
    stripe_sandbox.advance_clock(days=29)
    assert stripe_client.v1.events.retrieve(created.id).id == created.id
    stripe_sandbox.advance_clock(days=1, seconds=1)
    new = a_customer(stripe_client, "new@acme.example")

    listed = stripe_client.v1.events.list(params={"type": "customer.created"}).data
    assert [e.data.object.id for e in listed] == [new.id]
    with pytest.raises(stripe.InvalidRequestError) as raised:
        stripe_client.v1.events.retrieve(created.id)
    assert (raised.value.http_status, raised.value.code) == (404, "resource_missing")
    assert stripe_client.v1.customers.retrieve(old.id).id == old.id  # the object itself stays


def test_an_account_has_at_most_sixteen_webhook_endpoints(stripe_client: stripe.StripeClient) -> None:
    """"You can register up to 16 webhook endpoints on each Stripe account.\""""
    endpoints = [stripe_client.v1.webhook_endpoints.create(
        params={"url": f"https://hooks.acme.example/{n}", "enabled_events": ["invoice.paid"]}) for n in range(16)]

    with pytest.raises(stripe.InvalidRequestError) as raised:
        stripe_client.v1.webhook_endpoints.create(params={"url": "https://hooks.acme.example/17",
                                                          "enabled_events": ["invoice.paid"]})
    assert raised.value.http_status == 400
    assert len(stripe_client.v1.webhook_endpoints.list(params={"limit": 100}).data) == 16

    stripe_client.v1.webhook_endpoints.delete(endpoints[0].id)  # a deleted one leaves room
    stripe_client.v1.webhook_endpoints.create(params={"url": "https://hooks.acme.example/17",
                                                      "enabled_events": ["invoice.paid"]})


# -- lists ------------------------------------------------------------------------------------


def test_a_filter_naming_a_missing_object_names_the_filter(stripe_sandbox: StripeSandbox) -> None:
    """``GET /v1/balance_transactions?payout=po_…`` for a payout that does not exist: a 404
    ``resource_missing`` whose ``param`` is the filter, ``payout`` (``id`` is the path's)."""
    answer = Raw(stripe_sandbox).get("/v1/balance_transactions", {"payout": "po_missing"})

    assert answer.status_code == 404
    error = answer.json()["error"]
    assert (error["code"], error["param"], error["message"]) == ("resource_missing", "payout",
                                                                 "No such payout: 'po_missing'")


def test_both_cursors_are_refused_with_stripes_message(stripe_client: stripe.StripeClient,
                                                       stripe_sandbox: StripeSandbox) -> None:
    """Stripe's answer to ``starting_after`` with ``ending_before``: a 400 "Received both
    starting_after and ending_before parameters. Please pass in only one."."""
    first, second = a_customer(stripe_client, "a@acme.example"), a_customer(stripe_client, "b@acme.example")
    answer = Raw(stripe_sandbox).get("/v1/customers", {"starting_after": second.id, "ending_before": first.id})

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["type"], error["message"]) == (
        "invalid_request_error", "Received both starting_after and ending_before parameters. Please pass in only one.")


# -- metadata ---------------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["metadata[a[b]]=1", "metadata[a]b]]=1", "metadata[x%5By]=1"])
def test_metadata_keys_cannot_hold_square_brackets(stripe_sandbox: StripeSandbox, body: str) -> None:
    """Metadata "keys and values are stored as strings and can contain any characters with
    one exception: you can't use square brackets ([ and ]) in keys"."""
    answer = Raw(stripe_sandbox).post("/v1/customers", "email=ap%40acme.example&" + body)

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"].startswith("metadata[")
    assert stripe_sandbox.objects("customer") == []


def test_metadata_keys_take_any_other_characters(stripe_client: stripe.StripeClient) -> None:
    metadata = {"order id": "801A", "sf.org-id/2": "00D1", "clé": "ü", "k" * 40: "v" * 500}
    customer = stripe_client.v1.customers.create(params={"metadata": metadata})

    assert customer.metadata.to_dict() == metadata


# -- errors -----------------------------------------------------------------------------------


def test_a_card_error_names_the_failed_charge_and_its_payment_intent(stripe_client: stripe.StripeClient,
                                                                     stripe_sandbox: StripeSandbox) -> None:
    """The error object's ``charge`` ("for card errors, the ID of the failed charge") and
    ``payment_intent`` ("the PaymentIntent object for errors returned on a request involving
    a PaymentIntent"), on the decline as on its idempotent replay."""
    invoice = an_open_invoice(stripe_client)
    params: dict[str, Any] = {"payment_method": "pm_card_chargeDeclined"}

    with pytest.raises(stripe.CardError) as first:
        stripe_client.v1.invoices.pay(invoice.id, params=params, options={"idempotency_key": "pay-1"})
    with pytest.raises(stripe.CardError) as again:
        stripe_client.v1.invoices.pay(invoice.id, params=params, options={"idempotency_key": "pay-1"})

    [charge] = stripe_sandbox.objects("charge")
    error = first.value.json_body["error"]
    assert (error["type"], error["code"], error["decline_code"]) == ("card_error", "card_declined", "generic_decline")
    assert error["charge"] == charge["id"] and charge["status"] == "failed"
    assert error["payment_intent"]["id"] == charge["payment_intent"]
    assert error["payment_intent"]["object"] == "payment_intent"
    assert again.value.json_body == first.value.json_body


# -- pending invoice items --------------------------------------------------------------------


def test_an_invoice_pulls_in_pending_items_of_its_currency_only(stripe_client: stripe.StripeClient) -> None:
    """Multi-currency customers: "The currency parameter dictates which invoice items get
    pulled into the invoice"."""
    customer = a_customer(stripe_client)
    usd = stripe_client.v1.invoice_items.create(params={"customer": customer.id, "amount": 1_000, "currency": "usd"})
    eur = stripe_client.v1.invoice_items.create(params={"customer": customer.id, "amount": 700, "currency": "eur"})

    dollars = stripe_client.v1.invoices.create(params={"customer": customer.id, "currency": "usd",
                                                       "pending_invoice_items_behavior": "include"})
    assert ([line.parent.invoice_item_details.invoice_item for line in dollars.lines.data], dollars.total) == (
        [usd.id], 1_000)
    assert stripe_client.v1.invoice_items.retrieve(eur.id).invoice is None  # still pending
    euros = stripe_client.v1.invoices.create(params={"customer": customer.id, "currency": "eur",
                                                     "pending_invoice_items_behavior": "include"})
    assert (euros.total, euros.currency) == (700, "eur")


def test_an_invoice_pulls_in_at_most_250_pending_items(stripe_client: stripe.StripeClient,
                                                       stripe_sandbox: StripeSandbox) -> None:
    """"Creating an invoice adds up to 250 pending invoice items with the remainder to be
    added on the next invoice"."""
    customer = a_customer(stripe_client)
    raw = Raw(stripe_sandbox)
    for n in range(251):
        raw.post("/v1/invoiceitems", {"customer": customer.id, "amount": str(n + 1), "currency": "usd"})

    first = stripe_client.v1.invoices.create(params={"customer": customer.id,
                                                     "pending_invoice_items_behavior": "include"})
    assert (first.lines.total_count, first.total) == (250, sum(range(1, 251)))
    second = stripe_client.v1.invoices.create(params={"customer": customer.id,
                                                      "pending_invoice_items_behavior": "include"})
    assert (second.lines.total_count, second.total) == (1, 251)


def test_a_cursor_is_checked_against_the_listed_kind_even_when_the_list_is_empty(
        stripe_client: stripe.StripeClient, stripe_sandbox: StripeSandbox) -> None:
    """A cursor must name an object of the kind listed: ``No such invoice: 'in_…'`` with the
    cursor's param, whether or not the list (or the filtered list) has anything in it."""
    raw = Raw(stripe_sandbox)
    customer = a_customer(stripe_client)

    missing = raw.get("/v1/invoices", {"ending_before": "in_missing"})
    other_kind = raw.get("/v1/invoices", {"customer": customer.id, "starting_after": customer.id})

    for answer, param, cursor in ((missing, "ending_before", "in_missing"),
                                  (other_kind, "starting_after", customer.id)):
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert (error["code"], error["param"], error["message"]) == (
            "resource_missing", param, f"No such invoice: '{cursor}'")


def test_a_pair_without_a_name_is_skipped_as_rack_skips_it(stripe_sandbox: StripeSandbox) -> None:
    """Stripe reads form bodies as Rack does: ``=value`` (a form builder's empty field, a
    stray ``&=``) names no parameter and is skipped, not refused as an unknown parameter."""
    answer = Raw(stripe_sandbox).post("/v1/customers", "email=ap%40acme.example&=stray&&metadata[a]=1&=")

    assert answer.status_code == 200
    assert (answer.json()["email"], answer.json()["metadata"]) == ("ap@acme.example", {"a": "1"})


def updates(stripe_sandbox: StripeSandbox, event_type: str, object_id: str) -> list[dict[str, Any]]:
    return [e["data"].get("previous_attributes") for e in stripe_sandbox.events(event_type)
            if e["data"]["object"]["id"] == object_id]


def test_updated_events_name_only_what_changed(stripe_client: stripe.StripeClient,
                                               stripe_sandbox: StripeSandbox) -> None:
    """``previous_attributes``: "the names of the updated attributes and their values prior
    to the event"; ``customer.updated`` "occurs whenever any property of a customer
    changes", so a request that changes nothing sends none."""
    customer = a_customer(stripe_client)

    stripe_client.v1.customers.update(customer.id, params={"name": "Acme Corp", "email": "ap@acme.example"})
    assert updates(stripe_sandbox, "customer.updated", customer.id) == []
    stripe_client.v1.customers.update(customer.id, params={"name": "Acme Inc", "email": "ap@acme.example",
                                                           "invoice_settings": {"default_payment_method": "pm_1"}})
    assert updates(stripe_sandbox, "customer.updated", customer.id) == [
        {"name": "Acme Corp", "invoice_settings": {"default_payment_method": None}}]

    draft = stripe_client.v1.invoices.create(params={"customer": customer.id, "collection_method": "send_invoice",
                                                     "days_until_due": 30, "description": "Q1"})
    stripe_client.v1.invoices.update(draft.id, params={"description": "Q1", "days_until_due": 10})
    assert updates(stripe_sandbox, "invoice.updated", draft.id) == [{"days_until_due": 30}]
    stripe_client.v1.invoices.update(draft.id, params={"description": "Q1"})
    assert len(updates(stripe_sandbox, "invoice.updated", draft.id)) == 1


# -- documented lengths and counts ------------------------------------------------------------


def test_documented_lengths_and_counts_are_enforced(stripe_client: stripe.StripeClient,
                                                    stripe_sandbox: StripeSandbox) -> None:
    """A customer's ``email`` "may be up to 512 characters"; an invoice custom field's
    ``name`` "may be up to 40 characters" and its ``value`` up to 140; ``GET /v1/events``
    takes "an array of up to 20" ``types``. Each limit is reached, then passed."""
    raw = Raw(stripe_sandbox)
    longest = "a" * 500 + "@acme.example"[:12]
    assert len(longest) == 512 and raw.post("/v1/customers", {"email": longest}).status_code == 200
    too_long = raw.post("/v1/customers", {"email": "a" + longest})
    assert (too_long.status_code, too_long.json()["error"]["param"]) == (400, "email")

    customer = a_customer(stripe_client)
    fields = {"customer": customer.id, "custom_fields[0][name]": "n" * 40, "custom_fields[0][value]": "v" * 140}
    assert raw.post("/v1/invoices", fields).status_code == 200
    for key, text in (("name", "n" * 41), ("value", "v" * 141)):
        refused = raw.post("/v1/invoices", {**fields, f"custom_fields[0][{key}]": text})
        assert (refused.status_code, refused.json()["error"]["param"]) == (400, f"custom_fields[0][{key}]")

    types = [f"invoice.{n}" for n in range(21)]
    assert raw.get("/v1/events", {"types[]": types[:20]}).status_code == 200
    refused = raw.get("/v1/events", {"types[]": types})
    assert (refused.status_code, refused.json()["error"]["param"]) == (400, "types")


# -- scheduled finalization -------------------------------------------------------------------


def test_a_draft_can_be_scheduled_to_finalize(stripe_client: stripe.StripeClient,
                                              stripe_sandbox: StripeSandbox) -> None:
    """Schedule invoice finalization: ``automatically_finalizes_at`` on create or update,
    "up to 5 years in the future", with automatic advancement on; the draft finalizes then."""
    customer = a_customer(stripe_client)
    at = stripe_sandbox.now() + 3 * DAY
    draft = stripe_client.v1.invoices.create(params={"customer": customer.id, "collection_method": "send_invoice",
                                                     "auto_advance": True, "automatically_finalizes_at": at})
    assert draft.automatically_finalizes_at == at

    later = stripe_client.v1.invoices.create(params={"customer": customer.id, "collection_method": "send_invoice"})
    assert later.automatically_finalizes_at is None  # no auto-advance: nothing scheduled
    later = stripe_client.v1.invoices.update(later.id, params={"auto_advance": True})
    assert later.automatically_finalizes_at == pytest.approx(stripe_sandbox.now() + 3600, abs=60)
    later = stripe_client.v1.invoices.update(later.id, params={"automatically_finalizes_at": at + DAY})

    for refused in ({"automatically_finalizes_at": stripe_sandbox.now() - 1},
                    {"automatically_finalizes_at": stripe_sandbox.now() + 6 * 365 * DAY},
                    {"automatically_finalizes_at": at, "auto_advance": False}):
        with pytest.raises(stripe.InvalidRequestError) as raised:
            stripe_client.v1.invoices.update(later.id, params=refused)
        assert raised.value.param == "automatically_finalizes_at"

    for invoice in (draft, later):  # something to pay: a zero total would be paid at finalization
        stripe_client.v1.invoices.add_lines(invoice.id, params={"lines": [{"amount": 5_000}]})
    stripe_sandbox.advance_clock(days=3)
    assert stripe_client.v1.invoices.retrieve(draft.id).status == "open"
    assert stripe_client.v1.invoices.retrieve(later.id).status == "draft"
    stripe_sandbox.advance_clock(days=1)
    assert stripe_client.v1.invoices.retrieve(later.id).status == "open"


# -- customer balance -------------------------------------------------------------------------


def test_a_credit_goes_to_the_customer_balance_and_lowers_the_next_invoice(stripe_client: stripe.StripeClient,
                                                                           stripe_sandbox: StripeSandbox) -> None:
    """``amount_due`` is never negative ("if there is account credit that can be applied to
    the invoice, the amount_due may be 0"); "Stripe applies any customer credit on the
    account before determining the amount due", from ``starting_balance`` to
    ``ending_balance``; voiding an invoice gives back the balance it took."""
    customer = a_customer(stripe_client)

    def finalized(amount: int) -> stripe.Invoice:
        draft = stripe_client.v1.invoices.create(params={"customer": customer.id, "collection_method": "send_invoice"})
        stripe_client.v1.invoices.add_lines(draft.id, params={"lines": [{"amount": amount, "description": "x"}]})
        return stripe_client.v1.invoices.finalize_invoice(draft.id)

    credit = finalized(-500)
    assert (credit.total, credit.amount_due, credit.amount_remaining, credit.status) == (-500, 0, 0, "paid")
    assert (credit.starting_balance, credit.ending_balance) == (0, -500)
    assert stripe_client.v1.customers.retrieve(customer.id).balance == -500

    next_one = finalized(2_000)
    assert (next_one.total, next_one.amount_due, next_one.amount_remaining) == (2_000, 1_500, 1_500)
    assert (next_one.starting_balance, next_one.ending_balance) == (-500, 0)
    assert stripe_client.v1.customers.retrieve(customer.id).balance == 0
    assert [e["data"]["previous_attributes"] for e in stripe_sandbox.events("customer.updated")] == [
        {"balance": 0}, {"balance": -500}]

    stripe_client.v1.invoices.void_invoice(next_one.id)
    assert stripe_client.v1.customers.retrieve(customer.id).balance == -500
    paid = stripe_client.v1.invoices.pay(finalized(700).id, params={"paid_out_of_band": True})
    assert (paid.amount_due, paid.amount_paid, paid.status) == (200, 200, "paid")
