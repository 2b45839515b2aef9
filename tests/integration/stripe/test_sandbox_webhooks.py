"""Signed webhook delivery from the local Stripe server, verified with the SDK's own
signature check, with retries on failures."""

from __future__ import annotations

import json
import socket

import stripe

from gtm_sandbox.stripe import StripeSandbox
from tests.fixtures.stripe import WebhookSink, sdk_client


def paid_invoice(client: stripe.StripeClient, box: StripeSandbox) -> stripe.Invoice:
    customer = client.v1.customers.create(params={"email": "ap@acme.example"})
    draft = client.v1.invoices.create(params={"customer": customer.id, "collection_method": "send_invoice",
                                              "days_until_due": 30})
    client.v1.invoices.add_lines(draft.id, params={"lines": [{"amount": 10_000}]})
    invoice = client.v1.invoices.finalize_invoice(draft.id)
    client.v1.invoices.send_invoice(invoice.id)
    box.pay_invoice(invoice.id)
    return invoice


def test_events_are_signed_with_the_endpoint_secret(stripe_client: stripe.StripeClient, stripe_sandbox: StripeSandbox,
                                                    webhook_sink: WebhookSink) -> None:
    endpoint = stripe_client.v1.webhook_endpoints.create(params={
        "url": webhook_sink.url, "enabled_events": ["invoice.finalized", "invoice.sent", "invoice.paid"]})
    assert endpoint.secret.startswith("whsec_")
    assert "secret" not in stripe_client.v1.webhook_endpoints.retrieve(endpoint.id)

    invoice = paid_invoice(stripe_client, stripe_sandbox)
    assert stripe_sandbox.wait_for_webhooks()

    events = [stripe.Webhook.construct_event(r.body.decode(), r.headers["Stripe-Signature"], endpoint.secret)
              for r in webhook_sink.received]
    assert sorted(e.type for e in events) == ["invoice.finalized", "invoice.paid", "invoice.sent"]
    paid = next(e for e in events if e.type == "invoice.paid")
    assert paid.data.object.id == invoice.id and paid.data.object.status == "paid"
    listed = stripe_client.v1.events.retrieve(paid.id)
    assert listed.type == "invoice.paid" and listed.pending_webhooks == 0


def test_a_wrong_secret_does_not_verify(stripe_client: stripe.StripeClient, stripe_sandbox: StripeSandbox,
                                        webhook_sink: WebhookSink) -> None:
    stripe_client.v1.webhook_endpoints.create(params={"url": webhook_sink.url, "enabled_events": ["*"]})
    paid_invoice(stripe_client, stripe_sandbox)
    assert stripe_sandbox.wait_for_webhooks()
    received = webhook_sink.received[0]
    try:
        stripe.Webhook.construct_event(received.body.decode(), received.headers["Stripe-Signature"], "whsec_wrong")
    except stripe.SignatureVerificationError:
        pass
    else:
        raise AssertionError("a signature made with another secret verified")


def test_non_2xx_answers_are_retried(stripe_client: stripe.StripeClient, stripe_sandbox: StripeSandbox,
                                     webhook_sink: WebhookSink) -> None:
    stripe_client.v1.webhook_endpoints.create(params={"url": webhook_sink.url, "enabled_events": ["invoice.paid"]})
    webhook_sink.respond_with(500, 503)

    invoice = paid_invoice(stripe_client, stripe_sandbox)
    assert stripe_sandbox.wait_for_webhooks()

    attempts = [(d["attempt"], d["status"]) for d in stripe_sandbox.webhook_deliveries()]
    assert attempts == [(1, 500), (2, 503), (3, 200)]
    assert [json.loads(r.body)["data"]["object"]["id"] for r in webhook_sink.received] == [invoice.id]


def test_unreachable_endpoints_are_retried_a_bounded_number_of_times(stripe_sandbox: StripeSandbox) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    client = sdk_client(stripe_sandbox)
    client.v1.webhook_endpoints.create(params={"url": f"http://127.0.0.1:{port}/hooks", "enabled_events": ["*"]})

    client.v1.customers.create(params={"email": "ap@acme.example"})
    assert stripe_sandbox.wait_for_webhooks()

    deliveries = stripe_sandbox.webhook_deliveries()
    assert len(deliveries) == 1 + len(stripe_sandbox.world.settings.webhook_retry_delays)
    assert all(d["status"] is None and d["error"] for d in deliveries)
    event = client.v1.events.list(params={"type": "customer.created"}).data[0]
    assert event.pending_webhooks == 0


def test_connected_account_events_reach_connect_endpoints(stripe_sandbox: StripeSandbox,
                                                          webhook_sink: WebhookSink) -> None:
    platform = sdk_client(stripe_sandbox)
    platform.v1.webhook_endpoints.create(params={"url": webhook_sink.url, "enabled_events": ["invoice.paid"],
                                                 "connect": True})
    partner = sdk_client(stripe_sandbox, account="acct_1PartnerAAAAAAAA")
    stripe_sandbox.pay_invoice(paid_invoice_draft(partner).id, account="acct_1PartnerAAAAAAAA")
    assert stripe_sandbox.wait_for_webhooks()

    [received] = webhook_sink.received
    assert json.loads(received.body)["account"] == "acct_1PartnerAAAAAAAA"


def paid_invoice_draft(client: stripe.StripeClient) -> stripe.Invoice:
    customer = client.v1.customers.create(params={"email": "ap@acme.example"})
    draft = client.v1.invoices.create(params={"customer": customer.id, "collection_method": "send_invoice",
                                              "days_until_due": 30})
    client.v1.invoices.add_lines(draft.id, params={"lines": [{"amount": 1_000}]})
    return client.v1.invoices.finalize_invoice(draft.id)


def test_events_list_filters_by_type(stripe_client: stripe.StripeClient, stripe_sandbox: StripeSandbox) -> None:
    paid_invoice(stripe_client, stripe_sandbox)
    invoice_events = [e.type for e in stripe_client.v1.events.list(params={"type": "invoice.*"}).auto_paging_iter()]
    assert invoice_events[0] == "invoice.paid"  # newest first
    assert {"invoice.created", "invoice.finalized", "invoice.sent", "invoice.paid"} <= set(invoice_events)
    assert all(t.startswith("invoice.") for t in invoice_events)


def test_resending_an_event_delivers_it_again(stripe_client: stripe.StripeClient, stripe_sandbox: StripeSandbox,
                                              webhook_sink: WebhookSink) -> None:
    stripe_client.v1.webhook_endpoints.create(params={"url": webhook_sink.url, "enabled_events": ["invoice.paid"]})
    paid_invoice(stripe_client, stripe_sandbox)
    assert stripe_sandbox.wait_for_webhooks()
    [event] = stripe_sandbox.events("invoice.paid")

    stripe_sandbox.resend_event(event["id"])
    assert stripe_sandbox.wait_for_webhooks()

    assert [json.loads(r.body)["id"] for r in webhook_sink.received] == [event["id"], event["id"]]
