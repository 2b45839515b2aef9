"""The exact requests the Stripe adapter sends, and how it translates Stripe's answers,
pinned at the HTTP level with ``responses`` (the SDK's requests client underneath)."""

from __future__ import annotations

import json
import time
from datetime import date
from decimal import Decimal
from urllib.parse import parse_qsl

import pytest
import requests
import responses

from connector.adapters.stripe_billing import StripeBilling, StripeCallError, build_client
from connector.domain import Order, OrderItem, plan_invoice
from connector.errors import AuthError, PermanentError, RecordError, TransientError

API = "https://api.stripe.test"
ORG = "00D5g000004ExAmPLE"
ORDER = "a0B5g00000ORDER1AA"
ACCOUNT = "acct_1PartnerAAAAAAAA"


def seed_003_plan():  # type: ignore[no-untyped-def]
    items = (OrderItem(10, Decimal("50.00"), ppp_id="ppp-core", ppp_name="Core App", item_id="item-1"),
             OrderItem(1, Decimal("200.00"), ppp_id="ppp-premium", ppp_name="Premium Add-On", item_id="item-2"))
    order = Order(org_id=ORG, order_id=ORDER, order_number="00000101", billing_email="ap@acme.example",
                  customer_name="Acme Corp", currency="USD", contract_term_months=12,
                  subtotal=Decimal("8400.00"), service_start_date=date(2025, 1, 1), items=items)
    return plan_invoice(order)


def an_invoice(**fields: object) -> dict[str, object]:
    return {"id": "in_1", "object": "invoice", "customer": "cus_1", "status": "draft", "number": None,
            "hosted_invoice_url": None, "currency": "usd", "total": 0, "amount_due": 0, "amount_paid": 0,
            "amount_remaining": 0, "created": 1735689600, "due_date": None, "metadata": {},
            "status_transitions": {"finalized_at": None, "paid_at": None, "voided_at": None},
            "lines": {"object": "list", "data": [], "has_more": False, "total_count": 0,
                      "url": "/v1/invoices/in_1/lines"}, **fields}


def form(call: responses.Call) -> dict[str, str]:
    body = call.request.body
    return dict(parse_qsl(body.decode() if isinstance(body, bytes) else (body or ""), keep_blank_values=True))


@pytest.fixture
def billing() -> StripeBilling:
    return StripeBilling(build_client("sk_test_unit", api_base=API, timeout_s=5), account=ACCOUNT)


@responses.activate
def test_create_invoice_sends_a_net30_send_invoice_draft_with_the_key(billing: StripeBilling) -> None:
    plan = seed_003_plan()
    responses.post(f"{API}/v1/invoices", json=an_invoice())

    billing.create_invoice(plan, "cus_1", key="gtm-key-invoice")

    call = responses.calls[0]
    assert form(call) == {
        "customer": "cus_1",
        "collection_method": "send_invoice",
        "days_until_due": "30",
        "auto_advance": "false",
        "currency": "usd",
        "pending_invoice_items_behavior": "exclude",
        "description": "Order 00000101",
        "metadata[gtm_org_id]": ORG,
        "metadata[gtm_order_id]": ORDER,
        "metadata[gtm_order_number]": "00000101",
        "metadata[gtm_order_type]": "initial",
        "metadata[gtm_service_period]": "2025-01-01..2025-12-31",
        "metadata[gtm_plan_version]": plan.version,
    }
    assert call.request.headers["Idempotency-Key"] == "gtm-key-invoice"
    assert call.request.headers["Stripe-Account"] == ACCOUNT
    assert call.request.headers["Authorization"] == "Bearer sk_test_unit"


@responses.activate
def test_add_lines_sends_every_line_in_one_call_as_quantity_times_annual_price(billing: StripeBilling) -> None:
    plan = seed_003_plan()
    responses.post(f"{API}/v1/invoices/in_1/add_lines", json=an_invoice(total=840_000))

    result = billing.add_lines("in_1", plan.lines, "usd", key="gtm-key-lines")

    assert len(responses.calls) == 1
    sent = form(responses.calls[0])
    assert {k: v for k, v in sent.items() if k.startswith("lines[0]")} == {
        "lines[0][description]": "Core App: 12-month subscription, 2025-01-01 to 2025-12-31",
        "lines[0][quantity]": "10",
        "lines[0][price_data][currency]": "usd",
        "lines[0][price_data][unit_amount]": "60000",
        "lines[0][price_data][product_data][name]": "Core App",
        "lines[0][metadata][gtm_ppp_id]": "ppp-core",
        "lines[0][metadata][gtm_order_item_id]": "item-1",
        "lines[0][metadata][licenses]": "10",
        "lines[0][metadata][unit_price_per_month]": "50.00",
    }
    assert (sent["lines[1][quantity]"], sent["lines[1][price_data][unit_amount]"]) == ("1", "240000")
    assert responses.calls[0].request.headers["Idempotency-Key"] == "gtm-key-lines"
    assert result.total == Decimal("8400.00")


@responses.activate
def test_customer_is_looked_up_by_email_then_created_with_org_metadata(billing: StripeBilling) -> None:
    responses.get(f"{API}/v1/customers", json={"object": "list", "data": [
        {"id": "cus_other", "object": "customer", "email": "ap@acme.example", "created": 1,
         "metadata": {"gtm_org_id": "00D5g000004OTHERAA"}}], "has_more": False, "url": "/v1/customers"})
    responses.post(f"{API}/v1/customers", json={"id": "cus_new", "object": "customer", "email": "ap@acme.example"})

    customer = billing.find_or_create_customer(org_id=ORG, email="ap@acme.example", name="Acme Corp",
                                               customer_org_id="00D5g000004CUSTAA", order_id=ORDER, key="gtm-key-cus")

    assert customer.id == "cus_new" and customer.created
    lookup, create = responses.calls
    assert dict(parse_qsl(lookup.request.url.split("?", 1)[1])) == {"email": "ap@acme.example", "limit": "100"}
    assert form(create) == {"email": "ap@acme.example", "name": "Acme Corp", "metadata[gtm_org_id]": ORG,
                            "metadata[gtm_customer_org_id]": "00D5g000004CUSTAA", "metadata[gtm_first_order_id]": ORDER}
    assert create.request.headers["Idempotency-Key"] == "gtm-key-cus"


@responses.activate
def test_finalize_turns_auto_advance_off_and_send_posts_nothing_else(billing: StripeBilling) -> None:
    responses.post(f"{API}/v1/invoices/in_1/finalize", json=an_invoice(status="open", due_date=1738368000))
    responses.post(f"{API}/v1/invoices/in_1/send", json=an_invoice(status="open"))

    opened = billing.finalize("in_1", key="k-fin")
    billing.send("in_1", key="k-send")

    assert form(responses.calls[0]) == {"auto_advance": "false"}
    assert form(responses.calls[1]) == {}
    assert [c.request.headers["Idempotency-Key"] for c in responses.calls] == ["k-fin", "k-send"]
    assert opened.due_date == date(2025, 2, 1)


def stripe_error(status: int, type_: str, code: str | None = None) -> dict[str, object]:
    return {"error": {"type": type_, "code": code, "message": f"{type_} {code}"}} if code else {
        "error": {"type": type_, "message": type_}}


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (429, stripe_error(429, "invalid_request_error", "rate_limit"), TransientError),
        (500, stripe_error(500, "api_error"), TransientError),
        (503, stripe_error(503, "api_error"), TransientError),
        (409, stripe_error(409, "invalid_request_error", "idempotency_key_in_use"), TransientError),
        (400, stripe_error(400, "idempotency_error"), PermanentError),
        (400, stripe_error(400, "invalid_request_error", "invoice_not_editable"), StripeCallError),
        (401, stripe_error(401, "invalid_request_error"), AuthError),
        (402, stripe_error(402, "card_error", "card_declined"), RecordError),
    ],
)
@responses.activate
def test_stripe_errors_become_connector_errors(billing: StripeBilling, status: int, body: dict[str, object],
                                               expected: type[Exception]) -> None:
    responses.post(f"{API}/v1/invoices/in_1/send", status=status, json=body)
    with pytest.raises(expected) as raised:
        billing.send("in_1", key="k")
    assert "sk_test_unit" not in str(raised.value)


@responses.activate
def test_a_dropped_connection_is_transient(billing: StripeBilling) -> None:
    responses.post(f"{API}/v1/invoices/in_1/send", body=requests.ConnectionError("connection reset by peer"))
    with pytest.raises(TransientError):
        billing.send("in_1", key="k")


@responses.activate
def test_finalizing_an_already_open_invoice_returns_it(billing: StripeBilling) -> None:
    responses.post(f"{API}/v1/invoices/in_1/finalize", status=400,
                   json=stripe_error(400, "invalid_request_error", "invoice_not_editable"))
    responses.get(f"{API}/v1/invoices/in_1", json=an_invoice(status="open", number="ABC-0001"))

    assert billing.finalize("in_1", key="k").number == "ABC-0001"


def signed(payload: bytes, secret: str, at: int) -> str:
    import hashlib
    import hmac

    return f"t={at},v1=" + hmac.new(secret.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()


def test_webhook_signatures_are_checked_with_a_300_second_tolerance(billing: StripeBilling) -> None:
    payload = json.dumps({"id": "evt_1", "object": "event", "type": "invoice.paid"}).encode()
    now = int(time.time())

    assert billing.verify_event(payload, signed(payload, "whsec_a", now), "whsec_a").id == "evt_1"
    for header in (signed(payload, "whsec_b", now), signed(payload, "whsec_a", now - 301), None, "garbage"):
        with pytest.raises(PermanentError):
            billing.verify_event(payload, header, "whsec_a")
    with pytest.raises(PermanentError):
        billing.verify_event(payload + b" ", signed(payload, "whsec_a", now), "whsec_a")
