"""Edges of the local Stripe server that a client could trip on, each pinned to one
documented rule: malformed ``Stripe-Version``s, 64-bit integers and overflowing amounts,
unreadable bodies, restricted keys, Rack's ``[]`` arrays and "Invalid array", empty
idempotency keys, refused requests having no effect (updates, expansions), enum, hash and
array parameters, invoice numbers and sequences, customer emails, webhook endpoint URLs and
the API version of the events a pinned endpoint receives."""

from __future__ import annotations

import json

import pytest
import requests
import stripe

from gtm_sandbox.stripe import StripeSandbox
from tests.fixtures.stripe import WebhookSink, sdk_client

INT64_MAX = 2**63 - 1


def auth(box: StripeSandbox, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {box.api_key}", **headers}


def a_draft(client: stripe.StripeClient) -> stripe.Invoice:
    customer = client.v1.customers.create(params={"email": "ap@acme.example"})
    return client.v1.invoices.create(params={"customer": customer.id, "collection_method": "send_invoice",
                                             "days_until_due": 30})


# -- Stripe-Version -------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2019-2-19", "latest", "2026-10-28.", "garbage"])
def test_a_malformed_stripe_version_is_refused(stripe_sandbox: StripeSandbox, version: str) -> None:
    """Stripe answers a version it cannot read with a 400 ("Invalid Stripe API version: …")
    instead of serving, and drawing objects in, a version nobody asked for."""
    answer = requests.get(f"{stripe_sandbox.api_base}/v1/customers",
                          headers=auth(stripe_sandbox, **{"Stripe-Version": version}), timeout=10)

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and version in error["message"]
    assert answer.headers["Request-Id"].startswith("req_")


@pytest.mark.parametrize("version", ["2024-06-20", "2026-10-28.endive", "2025-03-31.basil; custom_beta=v1"])
def test_well_formed_versions_are_served_and_echoed(stripe_sandbox: StripeSandbox, version: str) -> None:
    answer = requests.get(f"{stripe_sandbox.api_base}/v1/customers",
                          headers=auth(stripe_sandbox, **{"Stripe-Version": version}), timeout=10)

    assert answer.status_code == 200
    assert answer.headers["Stripe-Version"] == version


def test_a_webhook_endpoint_refuses_a_malformed_api_version(stripe_client: stripe.StripeClient,
                                                            webhook_sink: WebhookSink) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        stripe_client.v1.webhook_endpoints.create(params={"url": webhook_sink.url, "enabled_events": ["*"],
                                                          "api_version": "2024-6-20"})
    assert (raised.value.http_status, raised.value.param) == (400, "api_version")


# -- integers and amounts -------------------------------------------------------------------


def test_integers_beyond_64_bits_are_invalid_integers(stripe_client: stripe.StripeClient,
                                                      stripe_sandbox: StripeSandbox) -> None:
    draft = a_draft(stripe_client)
    too_big = str(INT64_MAX + 1)
    answer = requests.post(f"{stripe_sandbox.api_base}/v1/invoices/{draft.id}/add_lines",
                           data={"lines[0][amount]": too_big}, headers=auth(stripe_sandbox), timeout=10)

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["code"], error["param"]) == ("parameter_invalid_integer", "lines[0][amount]")


def test_a_line_whose_amount_overflows_is_amount_too_large_not_a_crash(stripe_client: stripe.StripeClient) -> None:
    """``unit_amount_decimal`` × ``quantity`` beyond what an amount can hold: Stripe's
    ``amount_too_large``, and the invoice is left as it was."""
    draft = a_draft(stripe_client)
    huge_unit, huge_quantity = "9" * 20, 10**18
    with pytest.raises(stripe.InvalidRequestError) as raised:
        stripe_client.v1.invoices.add_lines(draft.id, params={"lines": [{"amount": 100}, {
            "price_data": {"currency": "usd", "product_data": {"name": "Core"}, "unit_amount_decimal": huge_unit},
            "quantity": huge_quantity}]})
    assert (raised.value.http_status, raised.value.code, raised.value.param) == (400, "amount_too_large", "lines[1]")
    assert stripe_client.v1.invoices.retrieve(draft.id).total == 0

    item = stripe_client.v1.invoice_items.create(params={"customer": str(draft.customer), "invoice": draft.id,
                                                         "amount": 100, "currency": "usd"})
    with pytest.raises(stripe.InvalidRequestError) as raised:
        stripe_client.v1.invoice_items.update(item.id, params={"unit_amount_decimal": huge_unit,
                                                               "quantity": huge_quantity, "metadata": {"k": "v"}})
    assert (raised.value.http_status, raised.value.code) == (400, "amount_too_large")
    unchanged = stripe_client.v1.invoice_items.retrieve(item.id)
    assert (unchanged.amount, unchanged.quantity, unchanged.metadata.to_dict()) == (100, 1, {})
    assert stripe_client.v1.invoices.retrieve(draft.id).total == 100


# -- keys and request bodies --------------------------------------------------------------------


def test_a_restricted_test_key_is_a_key(stripe_sandbox: StripeSandbox) -> None:
    """Restricted keys (``rk_test_…``) authenticate like secret keys; a publishable key does not."""
    client = stripe.StripeClient("rk_test_" + "r" * 24, base_addresses={"api": stripe_sandbox.api_base},
                                 max_network_retries=0)
    assert client.v1.customers.create(params={"email": "ap@acme.example"}).email == "ap@acme.example"
    publishable = requests.get(f"{stripe_sandbox.api_base}/v1/customers",
                               headers={"Authorization": "Bearer pk_test_" + "p" * 24}, timeout=10)
    assert publishable.status_code == 401


def test_arrays_of_hashes_with_empty_brackets_group_as_rack_does(stripe_client: stripe.StripeClient,
                                                                 stripe_sandbox: StripeSandbox) -> None:
    """``lines[][amount]=…&lines[][description]=…`` (Rack/Faraday style): keys fill the last
    hash until one it already has starts the next."""
    draft = a_draft(stripe_client)
    body = ("lines[][amount]=100&lines[][description]=Core&lines[][metadata][sku]=c"
            "&lines[][amount]=250&lines[][description]=Seats&expand[]=customer&expand[]=lines")
    answer = requests.post(f"{stripe_sandbox.api_base}/v1/invoices/{draft.id}/add_lines", data=body,
                           headers=auth(stripe_sandbox, **{"Content-Type": "application/x-www-form-urlencoded"}),
                           timeout=10)

    assert answer.status_code == 200, answer.text
    invoice = answer.json()
    assert [(line["amount"], line["description"], line["metadata"]) for line in invoice["lines"]["data"]] == [
        (100, "Core", {"sku": "c"}), (250, "Seats", {})]
    assert invoice["customer"]["id"] == draft.customer




def test_an_unreadable_body_is_a_400_with_a_request_id(stripe_sandbox: StripeSandbox) -> None:
    """Every answer carries ``Request-Id``, errors found before routing included."""
    answer = requests.post(f"{stripe_sandbox.api_base}/v1/customers", data=b"email=\xff\xfe",
                           headers=auth(stripe_sandbox, **{"Content-Type": "application/x-www-form-urlencoded"}),
                           timeout=10)

    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert answer.headers["Request-Id"].startswith("req_")


# -- webhook endpoints ------------------------------------------------------------------------


def test_an_endpoint_cannot_be_moved_to_a_url_that_is_not_one(stripe_client: stripe.StripeClient,
                                                              stripe_sandbox: StripeSandbox,
                                                              webhook_sink: WebhookSink) -> None:
    """Update validates ``url`` as create does (``url_invalid``), so delivery never meets one
    it cannot send to and events keep flowing."""
    endpoint = stripe_client.v1.webhook_endpoints.create(params={"url": webhook_sink.url,
                                                                 "enabled_events": ["customer.created"]})
    with pytest.raises(stripe.InvalidRequestError) as raised:
        stripe_client.v1.webhook_endpoints.update(endpoint.id, params={"url": "12345"})
    assert (raised.value.http_status, raised.value.code, raised.value.param) == (400, "url_invalid", "url")
    assert stripe_client.v1.webhook_endpoints.retrieve(endpoint.id).url == webhook_sink.url

    customer = stripe_client.v1.customers.create(params={"email": "ap@acme.example"})
    assert stripe_sandbox.wait_for_webhooks()
    assert [json.loads(r.body)["data"]["object"]["id"] for r in webhook_sink.received] == [customer.id]


def test_a_pinned_endpoint_receives_events_in_its_api_version(stripe_sandbox: StripeSandbox,
                                                              webhook_sink: WebhookSink) -> None:
    """"Webhook events use the API version that's set during your webhook's endpoint
    creation", otherwise the account's default: the event's ``api_version`` and the shape of
    ``data.object`` follow the endpoint (here: an invoice before 2025-03-31 has
    ``total_tax_amounts``, after it ``total_taxes``)."""
    client = sdk_client(stripe_sandbox)
    secrets = {}
    for path, version in (("/old", "2024-06-20"), ("/default", None)):
        params = {"url": webhook_sink.url + path, "enabled_events": ["invoice.created"]}
        if version:
            params["api_version"] = version
        secrets[path] = client.v1.webhook_endpoints.create(params=params).secret  # type: ignore[arg-type]

    draft = a_draft(client)
    assert stripe_sandbox.wait_for_webhooks()

    received = {r.path.removeprefix("/hooks"): r for r in webhook_sink.received}
    old = stripe.Webhook.construct_event(received["/old"].body.decode(), received["/old"].headers["Stripe-Signature"],
                                         secrets["/old"])
    new = stripe.Webhook.construct_event(received["/default"].body.decode(),
                                         received["/default"].headers["Stripe-Signature"], secrets["/default"])
    assert old.id == new.id and old.data.object.id == new.data.object.id == draft.id
    assert (old.api_version, new.api_version) == ("2024-06-20", stripe_sandbox.world.settings.api_version)
    assert "total_tax_amounts" in old.data.object and "total_taxes" not in old.data.object
    assert "total_taxes" in new.data.object and "total_tax_amounts" not in new.data.object


# -- a request is all or nothing ------------------------------------------------------------


def test_a_refused_update_changes_nothing(stripe_client: stripe.StripeClient, stripe_sandbox: StripeSandbox) -> None:
    """A request Stripe refuses has no effect: no field of it is applied, no event is sent."""
    draft = a_draft(stripe_client)
    customer_id = str(draft.customer)
    events_before = len(stripe_sandbox.events())

    with pytest.raises(stripe.InvalidRequestError) as raised:
        stripe_client.v1.customers.update(customer_id, params={
            "name": "Renamed", "invoice_settings": {"bogus": "1"}})  # type: ignore[typeddict-unknown-key]
    assert raised.value.code == "parameter_unknown"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        stripe_client.v1.invoices.update(draft.id, params={"description": "Renamed", "metadata": {"k": "v"},
                                                           "default_tax_rates": ["txr_missing"]})
    assert (raised.value.http_status, raised.value.code) == (404, "resource_missing")

    assert stripe_client.v1.customers.retrieve(customer_id).name is None
    invoice = stripe_client.v1.invoices.retrieve(draft.id)
    assert (invoice.description, invoice.metadata.to_dict()) == (None, {})
    assert len(stripe_sandbox.events()) == events_before


@pytest.mark.parametrize("query", ["expand=customer", "expand[a]=customer"])
def test_a_single_value_where_an_array_belongs_is_invalid_array(stripe_client: stripe.StripeClient,
                                                                stripe_sandbox: StripeSandbox, query: str) -> None:
    """``expand=customer`` is not ``expand[]=customer``: Stripe answers "Invalid array"."""
    draft = a_draft(stripe_client)
    answer = requests.get(f"{stripe_sandbox.api_base}/v1/invoices/{draft.id}?{query}", headers=auth(stripe_sandbox),
                          timeout=10)

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["message"], error["param"]) == ("Invalid array", "expand")
    listed = requests.get(f"{stripe_sandbox.api_base}/v1/invoices/{draft.id}?expand[]=customer",
                          headers=auth(stripe_sandbox), timeout=10)
    assert listed.json()["customer"]["id"] == draft.customer

    created = requests.post(f"{stripe_sandbox.api_base}/v1/customers", data=f"email=b%40acme.example&{query}",
                            headers=auth(stripe_sandbox), timeout=10)
    assert created.status_code == 400
    assert [c["email"] for c in stripe_sandbox.objects("customer")] == ["ap@acme.example"]  # nothing was created


def test_an_empty_idempotency_key_is_no_key(stripe_sandbox: StripeSandbox) -> None:
    """A client that sends the header empty makes ordinary requests, not replays of one key."""
    for email in ("a%40acme.example", "b%40acme.example"):
        answer = requests.post(f"{stripe_sandbox.api_base}/v1/customers", data=f"email={email}",
                               headers=auth(stripe_sandbox, **{"Idempotency-Key": ""}), timeout=10)
        assert answer.status_code == 200, answer.text
        assert "Idempotent-Replayed" not in answer.headers
    assert [c["email"] for c in stripe_sandbox.objects("customer")] == ["a@acme.example", "b@acme.example"]


# -- money ------------------------------------------------------------------------------------


def test_a_refund_reason_outside_stripes_list_is_refused(stripe_client: stripe.StripeClient,
                                                         stripe_sandbox: StripeSandbox) -> None:
    """``reason`` is one of duplicate, fraudulent, requested_by_customer; anything else is a
    400 on ``reason`` and nothing is refunded."""
    draft = a_draft(stripe_client)
    stripe_client.v1.invoices.add_lines(draft.id, params={"lines": [{"amount": 1_000}]})
    stripe_sandbox.pay_invoice(stripe_client.v1.invoices.finalize_invoice(draft.id).id)
    [charge] = stripe_client.v1.charges.list().data

    with pytest.raises(stripe.InvalidRequestError) as raised:
        stripe_client.v1.refunds.create(params={"charge": charge.id, "reason": "changed_mind"})  # type: ignore[typeddict-item]
    assert (raised.value.http_status, raised.value.param) == (400, "reason")
    assert stripe_client.v1.charges.retrieve(charge.id).amount_refunded == 0

    refund = stripe_client.v1.refunds.create(params={"charge": charge.id, "reason": "requested_by_customer"})
    assert (refund.reason, refund.amount) == ("requested_by_customer", 1_000)


def test_enum_parameters_take_only_their_values(stripe_client: stripe.StripeClient) -> None:
    """``tax_exempt`` is none/exempt/reverse (empty unsets it back to none, never null);
    ``invoice_payments?status=`` is canceled/open/paid."""
    with pytest.raises(stripe.InvalidRequestError) as raised:
        stripe_client.v1.customers.create(params={"email": "ap@acme.example", "tax_exempt": "exmept"})
    assert raised.value.param == "tax_exempt"
    customer = stripe_client.v1.customers.create(params={"email": "ap@acme.example", "tax_exempt": "exempt"})
    assert customer.tax_exempt == "exempt"
    assert stripe_client.v1.customers.update(customer.id, params={"tax_exempt": ""}).tax_exempt == "none"

    with pytest.raises(stripe.InvalidRequestError) as raised:
        stripe_client.v1.invoice_payments.list(params={"status": "settled"})
    assert raised.value.param == "status"
    assert stripe_client.v1.invoice_payments.list(params={"status": "paid"}).data == []


def test_hash_and_array_parameters_are_checked_and_applied(stripe_client: stripe.StripeClient,
                                                           stripe_sandbox: StripeSandbox) -> None:
    """``address`` is a hash of address fields, ``custom_fields`` an array of up to four
    ``{name, value}``; an invoice update applies ``custom_fields`` (it was accepted and
    dropped). Enumerated filters and parameters (``collection_method`` on the invoice list,
    ``tax_behavior``, a payout's ``method``) take only their values."""
    raw = auth(stripe_sandbox)
    base = stripe_sandbox.api_base
    not_a_hash = requests.post(f"{base}/v1/customers", data={"address": "1 Main St"}, headers=raw, timeout=10)
    assert (not_a_hash.status_code, not_a_hash.json()["error"]["param"]) == (400, "address")
    customer = stripe_client.v1.customers.create(params={"email": "ap@acme.example",
                                                         "address": {"line1": "1 Main St", "country": "US"}})
    assert customer.address is not None and customer.address.to_dict() == {
        "city": None, "country": "US", "line1": "1 Main St", "line2": None, "postal_code": None, "state": None}
    assert stripe_client.v1.customers.update(customer.id, params={"address": ""}).address is None

    draft = a_draft(stripe_client)
    not_an_array = requests.post(f"{base}/v1/invoices/{draft.id}", data={"custom_fields": "PO 1"}, headers=raw,
                                 timeout=10)
    assert (not_an_array.status_code, not_an_array.json()["error"]["param"]) == (400, "custom_fields")
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.invoices.update(draft.id, params={"custom_fields": [{"name": "PO", "value": str(n)}
                                                                             for n in range(5)]})
    updated = stripe_client.v1.invoices.update(draft.id, params={"custom_fields": [{"name": "PO", "value": "4711"}]})
    assert [f.to_dict() for f in updated.custom_fields or []] == [{"name": "PO", "value": "4711"}]

    refused = [
        requests.get(f"{base}/v1/invoices", params={"collection_method": "send"}, headers=raw, timeout=10),
        requests.post(f"{base}/v1/invoiceitems", data={"customer": customer.id, "amount": "100", "currency": "usd",
                                                       "tax_behavior": "included"}, headers=raw, timeout=10),
        requests.post(f"{base}/v1/payouts", data={"amount": "100", "currency": "usd", "method": "fast"}, headers=raw,
                      timeout=10),
    ]
    assert [(r.status_code, r.json()["error"]["param"]) for r in refused] == [
        (400, "collection_method"), (400, "tax_behavior"), (400, "method")]


def test_a_number_and_effective_date_set_on_the_draft_are_kept(stripe_client: stripe.StripeClient) -> None:
    """``number`` ("if no number is present then a number will be assigned automatically
    when the invoice is finalized") and ``effective_at`` ("same as finalized_at unless
    overwritten"), on create and on a draft's update; neither takes from the customer's
    sequence, and both are frozen once finalized."""
    created = a_draft(stripe_client)
    customer_id = str(created.customer)
    numbered = stripe_client.v1.invoices.create(params={"customer": customer_id, "number": "ACME-2026-001",
                                                        "effective_at": 1_767_225_600})
    updated = stripe_client.v1.invoices.update(created.id, params={"number": "ACME-2026-002",
                                                                   "effective_at": 1_767_312_000})
    plain = stripe_client.v1.invoices.create(params={"customer": customer_id})

    finals = [stripe_client.v1.invoices.finalize_invoice(i.id) for i in (numbered, updated, plain)]

    assert [(f.number, f.effective_at) for f in finals[:2]] == [("ACME-2026-001", 1_767_225_600),
                                                                ("ACME-2026-002", 1_767_312_000)]
    assert finals[2].number == f"{stripe_client.v1.customers.retrieve(customer_id).invoice_prefix}-0001"
    assert finals[2].effective_at == finals[2].status_transitions.finalized_at
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.invoices.update(finals[0].id, params={"number": "ACME-2026-003"})


def test_a_customers_next_invoice_sequence_numbers_its_next_invoice(stripe_client: stripe.StripeClient) -> None:
    customer = stripe_client.v1.customers.create(params={"email": "ap@acme.example", "invoice_prefix": "ACME",
                                                         "next_invoice_sequence": 42})
    first = stripe_client.v1.invoices.finalize_invoice(
        stripe_client.v1.invoices.create(params={"customer": customer.id}).id)
    stripe_client.v1.customers.update(customer.id, params={"next_invoice_sequence": 100})
    second = stripe_client.v1.invoices.finalize_invoice(
        stripe_client.v1.invoices.create(params={"customer": customer.id}).id)

    assert (first.number, second.number) == ("ACME-0042", "ACME-0100")
    assert stripe_client.v1.customers.retrieve(customer.id).next_invoice_sequence == 101
    item = stripe_client.v1.invoice_items.create(params={"customer": customer.id, "amount": 100, "currency": "usd"})
    assert stripe_client.v1.invoice_items.update(item.id, params={"tax_behavior": "exclusive"}).amount == 100


def test_a_customer_email_must_have_the_shape_of_one(stripe_client: stripe.StripeClient) -> None:
    """Stripe validates the shape of a customer's email on create and update (``email_invalid``)."""
    for bad in ("ap acme.example", "ap at acme", "@acme.example"):
        with pytest.raises(stripe.InvalidRequestError) as raised:
            stripe_client.v1.customers.create(params={"email": bad})
        assert (raised.value.code, raised.value.param) == ("email_invalid", "email")
    customer = stripe_client.v1.customers.create(params={"email": "ap@acme.example"})
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.customers.update(customer.id, params={"email": "ap at acme"})
    assert stripe_client.v1.customers.retrieve(customer.id).email == "ap@acme.example"


def test_an_expansion_the_answer_cannot_take_changes_nothing(stripe_client: stripe.StripeClient,
                                                            stripe_sandbox: StripeSandbox) -> None:
    """``finalize`` with an ``expand`` the invoice cannot take is refused without finalizing,
    and not saved under its key: the same key with a valid request then runs."""
    draft = stripe_client.v1.invoices.add_lines(a_draft(stripe_client).id, params={"lines": [{"amount": 1_000}]})
    with pytest.raises(stripe.InvalidRequestError) as raised:
        stripe_client.v1.invoices.finalize_invoice(draft.id, params={"expand": ["charge"]},
                                                   options={"idempotency_key": "fin-1"})
    assert (raised.value.http_status, raised.value.param) == (400, "expand")
    assert stripe_client.v1.invoices.retrieve(draft.id).status == "draft"
    assert stripe_sandbox.events("invoice.finalized") == []

    final = stripe_client.v1.invoices.finalize_invoice(draft.id, params={"expand": ["customer"]},
                                                       options={"idempotency_key": "fin-2"})
    assert final.status == "open" and isinstance(final.customer, stripe.Customer)
