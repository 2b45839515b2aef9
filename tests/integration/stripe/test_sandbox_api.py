"""The local Stripe server, driven by the official SDK: idempotency, state rules, errors,
pagination and search behave as Stripe documents them."""

from __future__ import annotations

import pytest
import stripe

from gtm_sandbox.stripe import StripeSandbox
from tests.fixtures.stripe import sdk_client

NET30 = 30 * 86_400


def a_customer(client: stripe.StripeClient, email: str = "ap@acme.example", **metadata: str) -> stripe.Customer:
    return client.v1.customers.create(params={"email": email, "name": "Acme Corp", "metadata": metadata})


def a_draft(client: stripe.StripeClient, customer_id: str, **metadata: str) -> stripe.Invoice:
    return client.v1.invoices.create(params={
        "customer": customer_id, "collection_method": "send_invoice", "days_until_due": 30,
        "auto_advance": False, "metadata": metadata,
    })


def an_open_invoice(client: stripe.StripeClient, amount: int = 840_000) -> stripe.Invoice:
    draft = a_draft(client, a_customer(client).id)
    client.v1.invoices.add_lines(draft.id, params={"lines": [{"amount": amount, "description": "Core App"}]})
    return client.v1.invoices.finalize_invoice(draft.id)


# -- idempotency ---------------------------------------------------------------------------


def test_same_key_same_parameters_replays_the_first_response(stripe_client: stripe.StripeClient,
                                                             stripe_sandbox: StripeSandbox) -> None:
    params = {"email": "ap@acme.example", "metadata": {"org_id": "00D000000000001AAA"}}
    first = stripe_client.v1.customers.create(params=params, options={"idempotency_key": "cust-1"})
    again = stripe_client.v1.customers.create(params=params, options={"idempotency_key": "cust-1"})

    assert again.id == first.id
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert len(stripe_sandbox.objects("customer")) == 1


def test_same_key_other_parameters_is_an_idempotency_error(stripe_client: stripe.StripeClient) -> None:
    stripe_client.v1.customers.create(params={"email": "a@acme.example"}, options={"idempotency_key": "k"})

    with pytest.raises(stripe.IdempotencyError) as raised:
        stripe_client.v1.customers.create(params={"email": "b@acme.example"}, options={"idempotency_key": "k"})

    assert raised.value.http_status == 400
    assert raised.value.error.type == "idempotency_error"


def test_same_key_on_another_endpoint_is_an_idempotency_error(stripe_client: stripe.StripeClient) -> None:
    customer = stripe_client.v1.customers.create(params={"email": "a@acme.example"}, options={"idempotency_key": "k"})
    with pytest.raises(stripe.IdempotencyError):
        stripe_client.v1.invoices.create(params={"customer": customer.id}, options={"idempotency_key": "k"})


def test_keys_are_scoped_per_account(stripe_sandbox: StripeSandbox) -> None:
    platform = sdk_client(stripe_sandbox)
    connected = sdk_client(stripe_sandbox, account="acct_1ConnectedPartner")
    params = {"email": "ap@acme.example"}

    mine = platform.v1.customers.create(params=params, options={"idempotency_key": "same"})
    theirs = connected.v1.customers.create(params=params, options={"idempotency_key": "same"})

    assert mine.id != theirs.id
    assert [c.id for c in connected.v1.customers.list().data] == [theirs.id]
    with pytest.raises(stripe.InvalidRequestError):
        connected.v1.customers.retrieve(mine.id)


def test_parameter_errors_are_not_saved_under_the_key(stripe_client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        stripe_client.v1.invoices.create(params={}, options={"idempotency_key": "fix-me"})
    assert raised.value.code == "parameter_missing" and raised.value.param == "customer"

    customer = a_customer(stripe_client)
    fixed = stripe_client.v1.invoices.create(params={"customer": customer.id}, options={"idempotency_key": "fix-me"})
    assert fixed.status == "draft"


def test_injected_500_is_not_saved_so_a_retry_with_the_key_executes(stripe_client: stripe.StripeClient,
                                                                     stripe_sandbox: StripeSandbox) -> None:
    stripe_sandbox.fail_next("POST /v1/customers", fault=500)
    with pytest.raises(stripe.APIError):
        stripe_client.v1.customers.create(params={"email": "a@acme.example"}, options={"idempotency_key": "k5"})

    created = stripe_client.v1.customers.create(params={"email": "a@acme.example"}, options={"idempotency_key": "k5"})

    assert created.last_response.headers.get("Idempotent-Replayed") is None
    assert stripe_sandbox.idempotency_keys("POST /v1/customers") == ["k5", "k5"]
    assert len(stripe_sandbox.objects("customer")) == 1


def test_reset_after_applying_then_retry_replays_the_applied_result(stripe_client: stripe.StripeClient,
                                                                      stripe_sandbox: StripeSandbox) -> None:
    invoice = a_draft(stripe_client, a_customer(stripe_client).id)
    stripe_client.v1.invoices.add_lines(invoice.id, params={"lines": [{"amount": 1000}]})
    stripe_sandbox.fail_next("POST /v1/invoices/{id}/finalize", fault="reset")

    with pytest.raises(stripe.APIConnectionError):
        stripe_client.v1.invoices.finalize_invoice(invoice.id, options={"idempotency_key": "fin-1"})
    assert stripe_sandbox.invoice(invoice.id)["status"] == "open"  # applied, though the client never heard

    replay = stripe_client.v1.invoices.finalize_invoice(invoice.id, options={"idempotency_key": "fin-1"})
    assert replay.status == "open"
    assert replay.last_response.headers["Idempotent-Replayed"] == "true"


def test_rate_limit_and_server_errors_map_to_the_sdk_exceptions(stripe_client: stripe.StripeClient,
                                                               stripe_sandbox: StripeSandbox) -> None:
    stripe_sandbox.fail_next("GET /v1/customers", fault=429)
    stripe_sandbox.fail_next("GET /v1/customers", fault=503)
    with pytest.raises(stripe.RateLimitError):
        stripe_client.v1.customers.list()
    with pytest.raises(stripe.APIError):
        stripe_client.v1.customers.list()
    assert stripe_client.v1.customers.list().data == []
    assert stripe_sandbox.counters()["GET /v1/customers"] == 3


# -- authentication, unknown parameters, 404s ---------------------------------------------------


def test_requests_need_a_test_secret_key(stripe_sandbox: StripeSandbox) -> None:
    live = stripe.StripeClient("sk_live_123456789012", base_addresses={"api": stripe_sandbox.api_base},
                               max_network_retries=0)
    with pytest.raises(stripe.AuthenticationError) as raised:
        live.v1.customers.list()
    assert raised.value.http_status == 401
    assert "sk_live_123456789012" not in str(raised.value)  # the key is masked


def test_unknown_parameters_and_unknown_ids_fail_like_stripe(stripe_client: stripe.StripeClient) -> None:
    customer = a_customer(stripe_client)
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        stripe_client.v1.invoices.create(params={"customer": customer.id, "net_terms": 30})  # type: ignore[typeddict-unknown-key]
    assert (unknown.value.code, unknown.value.param, unknown.value.http_status) == (
        "parameter_unknown", "net_terms", 400)

    with pytest.raises(stripe.InvalidRequestError) as missing:
        stripe_client.v1.invoices.retrieve("in_doesnotexist")
    assert (missing.value.code, missing.value.http_status) == ("resource_missing", 404)
    assert missing.value.json_body["error"]["message"] == "No such invoice: 'in_doesnotexist'"

    with pytest.raises(stripe.InvalidRequestError) as not_int:
        stripe_client.v1.invoices.create(params={"customer": customer.id, "collection_method": "send_invoice",
                                                 "days_until_due": "thirty"})  # type: ignore[typeddict-item]
    assert (not_int.value.code, not_int.value.param) == ("parameter_invalid_integer", "days_until_due")


# -- invoices -------------------------------------------------------------------------------


def test_net30_invoice_is_numbered_and_due_thirty_days_after_finalization(stripe_client: stripe.StripeClient,
                                                                          stripe_sandbox: StripeSandbox) -> None:
    customer = a_customer(stripe_client)
    draft = a_draft(stripe_client, customer.id, order_id="801000000000001AAA")
    assert (draft.status, draft.number, draft.due_date, draft.total) == ("draft", None, None, 0)

    stripe_client.v1.invoices.add_lines(draft.id, params={"lines": [
        {"price_data": {"currency": "usd", "product_data": {"name": "Core App"}, "unit_amount": 60_000},
         "quantity": 10, "description": "Core App"},
        {"amount": 240_000, "description": "Premium Add-On"},
    ]})
    stripe_sandbox.advance_clock(seconds=120)
    invoice = stripe_client.v1.invoices.finalize_invoice(draft.id)

    assert invoice.status == "open"
    assert invoice.number == f"{customer.invoice_prefix}-0001"
    assert invoice.due_date == invoice.status_transitions.finalized_at + NET30
    assert (invoice.subtotal, invoice.total, invoice.amount_due, invoice.amount_remaining) == (840_000,) * 4
    assert [(line.quantity, line.amount) for line in invoice.lines.data] == [(10, 600_000), (1, 240_000)]
    assert invoice.hosted_invoice_url.startswith(stripe_sandbox.api_base + "/i/")


def test_unit_amount_decimal_lines_round_half_up_to_the_cent(stripe_client: stripe.StripeClient) -> None:
    customer = a_customer(stripe_client)
    draft = a_draft(stripe_client, customer.id)
    item = stripe_client.v1.invoice_items.create(params={
        "customer": customer.id, "invoice": draft.id, "unit_amount_decimal": "32876.7123",  # type: ignore[typeddict-item]
        "quantity": 5, "description": "Premium Add-On (prorated)", "currency": "usd",
    })
    assert item.amount == 164_384  # 164383.5615 cents
    assert stripe_client.v1.invoices.retrieve(draft.id).total == 164_384


def test_only_drafts_are_editable_and_finalizable(stripe_client: stripe.StripeClient) -> None:
    invoice = an_open_invoice(stripe_client)

    with pytest.raises(stripe.InvalidRequestError) as add:
        stripe_client.v1.invoices.add_lines(invoice.id, params={"lines": [{"amount": 100}]})
    assert add.value.code == "invoice_not_editable"
    with pytest.raises(stripe.InvalidRequestError) as item:
        stripe_client.v1.invoice_items.create(params={"customer": invoice.customer, "invoice": invoice.id,
                                                      "amount": 100, "currency": "usd"})
    assert item.value.code == "invoice_not_editable"
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.invoices.finalize_invoice(invoice.id)
    # metadata stays editable on finalized invoices, as on Stripe
    updated = stripe_client.v1.invoices.update(invoice.id, params={"metadata": {"note": "called AP"}})
    assert updated.metadata["note"] == "called AP"


def test_pay_void_and_uncollectible_follow_stripes_transitions(stripe_client: stripe.StripeClient) -> None:
    customer = a_customer(stripe_client)
    draft = a_draft(stripe_client, customer.id)
    stripe_client.v1.invoices.add_lines(draft.id, params={"lines": [{"amount": 5000}]})
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.invoices.void_invoice(draft.id)  # drafts are deleted, not voided

    stripe_client.v1.invoices.finalize_invoice(draft.id)
    uncollectible = stripe_client.v1.invoices.mark_uncollectible(draft.id)
    assert uncollectible.status == "uncollectible"
    paid = stripe_client.v1.invoices.pay(draft.id, params={"paid_out_of_band": True})
    assert (paid.status, paid.amount_paid, paid.amount_remaining) == ("paid", 5000, 0)
    assert paid.status_transitions.paid_at is not None
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.invoices.pay(draft.id, params={"paid_out_of_band": True})
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.invoices.void_invoice(draft.id)

    other = an_open_invoice(stripe_client)
    voided = stripe_client.v1.invoices.void_invoice(other.id)
    assert (voided.status, voided.status_transitions.voided_at is not None) == ("void", True)


def test_send_requires_a_finalized_send_invoice(stripe_client: stripe.StripeClient,
                                                stripe_sandbox: StripeSandbox) -> None:
    customer = a_customer(stripe_client)
    automatic = stripe_client.v1.invoices.create(params={"customer": customer.id})  # charge_automatically
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.invoices.send_invoice(automatic.id)
    draft = a_draft(stripe_client, customer.id)
    stripe_client.v1.invoices.add_lines(draft.id, params={"lines": [{"amount": 5000}]})
    stripe_client.v1.invoices.finalize_invoice(draft.id)

    stripe_client.v1.invoices.send_invoice(draft.id)

    assert [s["to"] for s in stripe_sandbox.invoice_sends(draft.id)] == ["ap@acme.example"]
    assert [e["data"]["object"]["id"] for e in stripe_sandbox.events("invoice.sent")] == [draft.id]


def test_add_lines_is_all_or_nothing_and_capped_at_250_lines(stripe_client: stripe.StripeClient) -> None:
    draft = a_draft(stripe_client, a_customer(stripe_client).id)
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.invoices.add_lines(draft.id, params={"lines": [
            {"amount": 100}, {"price_data": {"currency": "usd", "unit_amount": 5}}]})  # no product_data
    assert stripe_client.v1.invoices.retrieve(draft.id).lines.data == []

    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.invoices.add_lines(draft.id, params={"lines": [{"amount": 1}] * 251})
    full = stripe_client.v1.invoices.add_lines(draft.id, params={"lines": [{"amount": 1}] * 250})
    assert full.total == 250 and full.lines.has_more is True
    assert len(list(stripe_client.v1.invoices.line_items.list(draft.id).auto_paging_iter())) == 250


# -- lists and search ------------------------------------------------------------------------


def test_lists_page_newest_first_with_cursors(stripe_client: stripe.StripeClient) -> None:
    created = [a_customer(stripe_client, f"c{i}@acme.example").id for i in range(23)]

    page = stripe_client.v1.customers.list(params={"limit": 5})
    assert [c.id for c in page.data] == created[::-1][:5] and page.has_more
    assert page.url == "/v1/customers"
    every = [c.id for c in stripe_client.v1.customers.list(params={"limit": 5}).auto_paging_iter()]
    assert every == created[::-1]
    before = stripe_client.v1.customers.list(params={"limit": 3, "ending_before": created[10]})
    assert [c.id for c in before.data] == [created[13], created[12], created[11]]
    with pytest.raises(stripe.InvalidRequestError) as too_many:
        stripe_client.v1.customers.list(params={"limit": 101})
    assert too_many.value.param == "limit"


def test_invoice_list_filters_by_customer_status_and_created(stripe_client: stripe.StripeClient,
                                                             stripe_sandbox: StripeSandbox) -> None:
    first = an_open_invoice(stripe_client)
    stripe_sandbox.advance_clock(days=2)
    second = an_open_invoice(stripe_client)
    stripe_client.v1.invoices.void_invoice(second.id)

    open_ids = [i.id for i in stripe_client.v1.invoices.list(params={"status": "open"}).auto_paging_iter()]
    assert open_ids == [first.id]
    mine = stripe_client.v1.invoices.list(params={"customer": second.customer})
    assert [i.id for i in mine.data] == [second.id]
    recent = stripe_client.v1.invoices.list(params={"created": {"gt": first.created}})
    assert [i.id for i in recent.data] == [second.id]


def test_search_by_metadata_and_email(stripe_client: stripe.StripeClient) -> None:
    org = "00D000000000001AAA"
    a_customer(stripe_client, "ap@acme.example", org_id=org)
    a_customer(stripe_client, "ap@globex.example", org_id="00D000000000002AAA")
    draft = a_draft(stripe_client, a_customer(stripe_client, "x@initech.example").id, org_id=org,
                    order_id="801000000000001AAA")

    query = f"email:'ap@acme.example' AND metadata['org_id']:'{org}'"
    by_email = stripe_client.v1.customers.search(params={"query": query})
    assert [c.email for c in by_email.data] == ["ap@acme.example"]
    assert by_email.object == "search_result" and by_email.next_page is None
    either = stripe_client.v1.customers.search(params={"query": "email:'ap@acme.example' OR email:'ap@globex.example'"})
    assert len(either.data) == 2
    found = stripe_client.v1.invoices.search(params={"query": "metadata['order_id']:'801000000000001AAA'"})
    assert [i.id for i in found.data] == [draft.id]
    assert stripe_client.v1.invoices.search(params={"query": "status:'open'"}).data == []


def test_search_pages_with_next_page_and_rejects_bad_queries(stripe_client: stripe.StripeClient) -> None:
    for i in range(7):
        a_customer(stripe_client, f"c{i}@acme.example", batch="b1")
    first = stripe_client.v1.customers.search(params={"query": "metadata['batch']:'b1'", "limit": 3})
    assert first.has_more and first.next_page
    assert len(list(first.auto_paging_iter())) == 7

    for query in ("metadata['batch']:'b1' AND", "email:'a' AND name:'b' OR phone:'c'", "balance:'x'"):
        with pytest.raises(stripe.InvalidRequestError) as bad:
            stripe_client.v1.customers.search(params={"query": query})
        assert bad.value.param == "query"


def test_counters_name_endpoints_by_template_and_reset(stripe_client: stripe.StripeClient,
                                                       stripe_sandbox: StripeSandbox) -> None:
    invoice = an_open_invoice(stripe_client)
    stripe_client.v1.invoices.retrieve(invoice.id)

    counters = stripe_sandbox.counters()
    assert counters["POST /v1/invoices/{id}/finalize"] == 1
    assert counters["POST /v1/invoices/{id}/add_lines"] == 1
    assert counters["GET /v1/invoices/{id}"] == 1
    stripe_sandbox.reset_counters()
    assert stripe_sandbox.counters() == {}


def test_injected_latency_delays_the_answer(stripe_client: stripe.StripeClient, stripe_sandbox: StripeSandbox) -> None:
    import time

    stripe_sandbox.add_latency("GET /v1/balance", 0.3, times=1)
    started = time.monotonic()
    stripe_client.v1.balance.retrieve()
    assert time.monotonic() - started >= 0.3


def test_raw_form_bodies_with_bracket_notation(stripe_sandbox: StripeSandbox) -> None:
    """What any HTTP client (curl, not just the SDK) sends: `expand[]=` and nested brackets."""
    import requests

    auth = {"Authorization": f"Bearer {stripe_sandbox.api_key}"}
    customer = requests.post(f"{stripe_sandbox.api_base}/v1/customers", headers=auth, timeout=10,
                             data="email=ap%40acme.example&metadata[order_id]=801&metadata[org_id]=00D").json()
    assert (customer["object"], customer["livemode"], customer["metadata"]) == (
        "customer", False, {"order_id": "801", "org_id": "00D"})
    draft = requests.post(f"{stripe_sandbox.api_base}/v1/invoices", headers=auth, timeout=10,
                          data=f"customer={customer['id']}&collection_method=send_invoice&days_until_due=30").json()
    added = requests.post(f"{stripe_sandbox.api_base}/v1/invoices/{draft['id']}/add_lines", headers=auth, timeout=10,
                          data="lines[0][amount]=7500&lines[1][amount]=2500"
                               "&lines[1][description]=Setup&expand[]=customer").json()
    assert added["total"] == 10_000 and added["customer"]["id"] == customer["id"]
    listed = requests.get(f"{stripe_sandbox.api_base}/v1/invoices", headers=auth, timeout=10,
                          params={"expand[]": "data.customer", "limit": "1"}).json()
    assert listed["object"] == "list" and listed["data"][0]["customer"]["email"] == "ap@acme.example"
    unauthenticated = requests.get(f"{stripe_sandbox.api_base}/v1/invoices", timeout=10)
    assert unauthenticated.status_code == 401 and unauthenticated.json()["error"]["type"] == "invalid_request_error"
    missing_route = requests.get(f"{stripe_sandbox.api_base}/v1/nothing_here", headers=auth, timeout=10)
    assert missing_route.status_code == 404
