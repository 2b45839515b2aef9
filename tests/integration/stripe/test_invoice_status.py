"""Invoice status from signed Stripe webhooks (the receiver as the daemon will mount it,
served alone on a free port), and polling as the fallback."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
import requests
import stripe
from structlog.testing import capture_logs

from connector.adapters.store import SqlUnitOfWork
from connector.adapters.stripe_billing import StripeBilling
from connector.entrypoints.webhook import WebhookReceiver, make_webhook_app, serve
from connector.mappings import load_mapping
from connector.services.invoice_status import InvoiceStatusService
from connector.services.invoicing import InvoicingService, InvoicingSettings
from gtm_sandbox.stripe import StripeSandbox
from gtm_sandbox.stripe.notify import sign
from tests.integration.stripe.gtm import ORG, Clock, GtmOrg, order_id

START = date(2026, 1, 1)
SECRET = "whsec_local_test_secret"
INVOICE_EVENTS = ["invoice.created", "invoice.finalized", "invoice.sent", "invoice.paid",
                  "invoice.payment_failed", "invoice.voided", "invoice.marked_uncollectible"]


@dataclass
class Receiver:
    url: str
    service: InvoiceStatusService
    receivers: list[WebhookReceiver] = field(default_factory=list)

    def listen(self, secret: str, billing: StripeBilling) -> None:
        self.receivers.append(WebhookReceiver("acme", secret, billing.verify_event, self.service))

    def post(self, payload: bytes, secret: str = SECRET, *, at: int | None = None) -> requests.Response:
        header = sign(secret, payload, at if at is not None else int(time.time()))
        return requests.post(self.url, data=payload, headers={"Stripe-Signature": header,
                                                              "Content-Type": "application/json"}, timeout=10)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2025, 12, 31, 10, 0, tzinfo=UTC))


@pytest.fixture
def status_service(uow_factory: Callable[[], SqlUnitOfWork], stripe_billing: StripeBilling,
                   clock: Clock) -> InvoiceStatusService:
    return InvoiceStatusService(uow=uow_factory, billing=stripe_billing, clock=clock, org_id=ORG)


@pytest.fixture
def receiver(status_service: InvoiceStatusService) -> Iterator[Receiver]:
    receivers: list[WebhookReceiver] = []
    server, thread = serve(make_webhook_app(receivers))
    try:
        yield Receiver(f"http://127.0.0.1:{server.server_address[1]}/stripe/webhook", status_service, receivers)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def invoiced(
    uow_factory: Callable[[], SqlUnitOfWork], stripe_billing: StripeBilling, clock: Clock
) -> Callable[[], str]:
    """Invoice the seed-003 order; returns the Stripe invoice id."""

    def run() -> str:
        GtmOrg(uow_factory).catalogue().order(1, start=START)
        InvoicingService(org_id=ORG, uow=uow_factory, billing=stripe_billing, mapping=load_mapping("gtm-v2"),
                         settings=InvoicingSettings(), clock=clock).run()
        with uow_factory() as uow:
            row = uow.invoices.get(ORG, order_id(1))
        assert row is not None and row.stripe_invoice_id
        return str(row.stripe_invoice_id)

    return run


def local(uow: Callable[[], SqlUnitOfWork]) -> Any:
    with uow() as unit:
        return unit.invoices.get(ORG, order_id(1))


def recorded(uow: Callable[[], SqlUnitOfWork], event_id: str) -> Any:
    with uow() as unit:
        return unit.stripe_events.get(event_id)


def events_of(box: StripeSandbox, invoice_id: str) -> list[dict[str, Any]]:
    return [e for e in box.events() if e["data"]["object"].get("id") == invoice_id]


def test_customer_paying_turns_the_local_invoice_paid_through_a_signed_webhook(
    receiver: Receiver, invoiced: Callable[[], str], stripe_client: stripe.StripeClient,
    stripe_sandbox: StripeSandbox, stripe_billing: StripeBilling, uow_factory: Callable[[], SqlUnitOfWork],
) -> None:
    endpoint = stripe_client.v1.webhook_endpoints.create(params={"url": receiver.url, "enabled_events": INVOICE_EVENTS})
    receiver.listen(endpoint.secret, stripe_billing)
    invoice_id = invoiced()
    assert stripe_sandbox.wait_for_webhooks()
    assert local(uow_factory).status == "open"

    stripe_sandbox.pay_invoice(invoice_id)
    assert stripe_sandbox.wait_for_webhooks()

    row = local(uow_factory)
    assert (row.status, row.status_source) == ("paid", "webhook")
    assert (row.amount_paid, row.amount_remaining) == (Decimal("8400.00"), Decimal("0.00"))
    assert row.paid_at is not None
    [paid] = stripe_sandbox.events("invoice.paid")
    assert row.last_event_id == paid["id"]
    assert recorded(uow_factory, paid["id"]).outcome == "applied"
    assert all(d["status"] == 200 for d in stripe_sandbox.webhook_deliveries())


def test_a_webhook_about_one_of_an_orders_several_invoices_is_left_to_polling(
    receiver: Receiver, invoiced: Callable[[], str], stripe_client: stripe.StripeClient,
    stripe_sandbox: StripeSandbox, stripe_billing: StripeBilling, uow_factory: Callable[[], SqlUnitOfWork],
) -> None:
    """The GTM app's junction links a second invoice to the order: the paid event of one
    is not the order's amounts (8,400.00 of the two), so it is deferred, not applied."""
    endpoint = stripe_client.v1.webhook_endpoints.create(params={"url": receiver.url, "enabled_events": INVOICE_EVENTS})
    receiver.listen(endpoint.secret, stripe_billing)
    invoice_id = invoiced()
    assert stripe_sandbox.wait_for_webhooks()
    with uow_factory() as uow:
        uow.mirror("billing_link").upsert_many(ORG, [
            {"sf_id": f"a0B00000000000{n}AAA", "system_modstamp": datetime(2025, 12, 31, tzinfo=UTC),
             "order_id": order_id(1), "stripe_invoice_id": linked}
            for n, linked in enumerate((invoice_id, "in_second_of_the_order"))])
        uow.commit()

    stripe_sandbox.pay_invoice(invoice_id)
    assert stripe_sandbox.wait_for_webhooks()

    row = local(uow_factory)
    assert (row.status, row.amount_paid, row.amount_due) == ("open", Decimal("0.00"), Decimal("8400.00"))
    [paid] = stripe_sandbox.events("invoice.paid")
    assert recorded(uow_factory, paid["id"]).outcome == "deferred"


def test_a_bad_signature_is_rejected_and_nothing_is_stored(
    receiver: Receiver, invoiced: Callable[[], str], stripe_sandbox: StripeSandbox, stripe_billing: StripeBilling,
    uow_factory: Callable[[], SqlUnitOfWork],
) -> None:
    receiver.listen(SECRET, stripe_billing)
    invoice_id = invoiced()
    stripe_sandbox.pay_invoice(invoice_id)
    [paid] = stripe_sandbox.events("invoice.paid")
    payload = json.dumps(paid).encode()

    assert receiver.post(payload, "whsec_someone_else").status_code == 400
    assert receiver.post(payload, at=int(time.time()) - 301).status_code == 400  # outside the 300 s tolerance
    assert requests.post(receiver.url, data=payload, timeout=10).status_code == 400  # no header at all
    assert requests.get(receiver.url, timeout=10).status_code == 405

    assert recorded(uow_factory, paid["id"]) is None
    assert local(uow_factory).status == "open"


def test_a_duplicate_delivery_is_acknowledged_and_applied_once(
    receiver: Receiver, invoiced: Callable[[], str], stripe_client: stripe.StripeClient,
    stripe_sandbox: StripeSandbox, stripe_billing: StripeBilling, uow_factory: Callable[[], SqlUnitOfWork],
) -> None:
    endpoint = stripe_client.v1.webhook_endpoints.create(
        params={"url": receiver.url, "enabled_events": ["invoice.paid"]})
    receiver.listen(endpoint.secret, stripe_billing)
    stripe_sandbox.pay_invoice(invoiced())
    assert stripe_sandbox.wait_for_webhooks()
    [paid] = stripe_sandbox.events("invoice.paid")
    before = local(uow_factory)

    stripe_sandbox.resend_event(paid["id"])
    assert stripe_sandbox.wait_for_webhooks()

    assert [d["status"] for d in stripe_sandbox.webhook_deliveries()] == [200, 200]
    assert local(uow_factory).updated_at == before.updated_at
    assert recorded(uow_factory, paid["id"]).outcome == "applied"


def test_events_arriving_out_of_order_never_move_an_invoice_back(
    receiver: Receiver, invoiced: Callable[[], str], stripe_sandbox: StripeSandbox, stripe_billing: StripeBilling,
    uow_factory: Callable[[], SqlUnitOfWork],
) -> None:
    receiver.listen(SECRET, stripe_billing)
    invoice_id = invoiced()
    stripe_sandbox.pay_invoice(invoice_id)
    history = events_of(stripe_sandbox, invoice_id)  # oldest first
    milestones = [e["type"] for e in history if e["type"] in ("invoice.created", "invoice.finalized",
                                                             "invoice.sent", "invoice.paid")]
    assert milestones == ["invoice.created", "invoice.finalized", "invoice.sent", "invoice.paid"]

    outcomes = [receiver.post(json.dumps(e).encode()).json()["outcome"] for e in reversed(history)]

    assert outcomes[0] == "applied"  # invoice.paid, delivered first
    assert set(outcomes[1:]) <= {"stale", "refreshed"}
    row = local(uow_factory)
    assert (row.status, row.amount_remaining) == ("paid", Decimal("0.00"))


def test_an_impossible_jump_is_recorded_as_an_anomaly_not_applied(
    receiver: Receiver, invoiced: Callable[[], str], stripe_sandbox: StripeSandbox, stripe_billing: StripeBilling,
    uow_factory: Callable[[], SqlUnitOfWork],
) -> None:
    receiver.listen(SECRET, stripe_billing)
    invoice_id = invoiced()
    stripe_sandbox.pay_invoice(invoice_id)
    [paid] = stripe_sandbox.events("invoice.paid")
    assert receiver.post(json.dumps(paid).encode()).json()["outcome"] == "applied"
    forged = {**paid, "id": "evt_void_after_paid", "type": "invoice.voided", "created": paid["created"] + 60,
              "data": {"object": {**paid["data"]["object"], "status": "void"}}}

    assert receiver.post(json.dumps(forged).encode()).json()["outcome"] == "anomaly"

    assert local(uow_factory).status == "paid"
    with uow_factory() as uow:
        [anomaly] = uow.anomalies.list(ORG)
    assert (anomaly.from_state, anomaly.to_state, anomaly.record_id) == ("paid", "void", order_id(1))


def test_other_event_types_are_acknowledged_and_ignored(
    receiver: Receiver, stripe_client: stripe.StripeClient, stripe_sandbox: StripeSandbox,
    stripe_billing: StripeBilling, uow_factory: Callable[[], SqlUnitOfWork],
) -> None:
    receiver.listen(SECRET, stripe_billing)
    stripe_client.v1.customers.create(params={"email": "ap@acme.example"})
    [created] = stripe_sandbox.events("customer.created")

    answer = receiver.post(json.dumps(created).encode())

    assert answer.status_code == 200 and answer.json()["outcome"] == "ignored"
    assert recorded(uow_factory, created["id"]).type == "customer.created"


def test_polling_catches_up_when_no_webhook_arrived(
    invoiced: Callable[[], str], status_service: InvoiceStatusService, stripe_sandbox: StripeSandbox,
    clock: Clock, uow_factory: Callable[[], SqlUnitOfWork],
) -> None:
    invoice_id = invoiced()
    stripe_sandbox.pay_invoice(invoice_id)  # no endpoint: the webhook never comes
    stripe_sandbox.reset_counters()

    # The row was just written by the invoicing run: nothing to poll yet.
    assert status_service.poll().checked == 0
    assert stripe_sandbox.counters() == {}

    clock.now = datetime.now(UTC) + status_service.poll_after
    report = status_service.poll()

    assert (report.checked, report.changed) == (1, 1)
    assert stripe_sandbox.counters() == {"GET /v1/invoices/{id}": 1}
    row = local(uow_factory)
    assert (row.status, row.status_source, row.amount_paid) == ("paid", "poll", Decimal("8400.00"))
    assert status_service.poll().checked == 0  # paid is final: never polled again


def test_the_receiver_wired_from_org_config_applies_payments(
    tmp_path: Any, migrated_url: str, stripe_sandbox: StripeSandbox, stripe_client: stripe.StripeClient,
    uow_factory: Callable[[], SqlUnitOfWork], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from connector.bootstrap import bootstrap
    from connector.config import load_config
    from connector.entrypoints.webhook import make_app_for_runtimes

    late: dict[str, Any] = {}
    server, thread = serve(lambda environ, start: late["app"](environ, start))
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/stripe/webhook"
        endpoint = stripe_client.v1.webhook_endpoints.create(params={"url": url, "enabled_events": ["invoice.paid"]})
        monkeypatch.setenv("ACME_STRIPE_KEY", stripe_sandbox.api_key)
        monkeypatch.setenv("ACME_WHSEC", endpoint.secret)
        monkeypatch.setenv("ACME_SF_SECRET", "unused")
        (tmp_path / "acme.toml").write_text(
            f'database_url = "{migrated_url}"\n[org]\nalias = "acme"\norg_id = "{ORG}"\n'
            '[salesforce]\nlogin_url = "https://127.0.0.1"\n[salesforce.auth]\nkind = "client_credentials"\n'
            'client_id = "x"\nclient_secret = { env = "ACME_SF_SECRET" }\n'
            '[invoicing]\nissuer = "connector"\n'
            f'[stripe]\napi_key = {{ env = "ACME_STRIPE_KEY" }}\napi_base = "{stripe_sandbox.api_base}"\n'
            'webhook_secret = { env = "ACME_WHSEC" }\n')
        runtime = bootstrap(load_config(tmp_path / "acme.toml"), clock=Clock(datetime(2025, 12, 31, 10, tzinfo=UTC)))
        late["app"] = make_app_for_runtimes([runtime])
        GtmOrg(uow_factory).catalogue().order(1, start=START)
        from connector.services.invoicing import build_invoicing

        build_invoicing(runtime).run()
        with capture_logs() as logs:
            stripe_sandbox.pay_invoice(local(uow_factory).stripe_invoice_id)
            assert stripe_sandbox.wait_for_webhooks()

        assert local(uow_factory).status == "paid"
        processed = [e for e in logs if e["event"] == "webhook.processed"]
        assert processed and {e["org"] for e in processed} == {"acme"}  # the alias, as on every other line
        runtime.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_webhook_carries_the_invoice_tax_to_the_local_invoice(
    receiver: Receiver, stripe_client: stripe.StripeClient, stripe_sandbox: StripeSandbox,
    stripe_billing: StripeBilling, uow_factory: Callable[[], SqlUnitOfWork],
) -> None:
    """An invoice with tax (here one Salesforce's GTM app issued, linked to the order):
    the signed ``invoice.paid`` event's ``total_taxes`` land in ``invoices.tax``."""
    receiver.listen(SECRET, stripe_billing)
    rate = stripe_client.v1.tax_rates.create(params={"display_name": "Sales Tax", "percentage": 8.875,
                                                     "inclusive": False})
    customer = stripe_client.v1.customers.create(params={"email": "billing@acme.example.com"})
    draft = stripe_client.v1.invoices.create(params={
        "customer": customer.id, "collection_method": "send_invoice", "days_until_due": 30,
        "default_tax_rates": [rate.id], "metadata": {"gtm_org_id": ORG, "gtm_order_id": order_id(1)}})
    stripe_client.v1.invoices.add_lines(draft.id, params={"lines": [{"amount": 840_000, "description": "Core"}]})
    stripe_client.v1.invoices.finalize_invoice(draft.id)
    with uow_factory() as uow:
        uow.invoices.upsert(ORG, order_id(1), stripe_invoice_id=draft.id, status="open", status_source="create")
        uow.commit()
    stripe_sandbox.pay_invoice(draft.id)
    [paid] = stripe_sandbox.events("invoice.paid")

    assert receiver.post(json.dumps(paid).encode()).json()["outcome"] == "applied"

    row = local(uow_factory)
    assert (row.status, row.amount_due, row.amount_paid, row.tax) == (
        "paid", Decimal("9145.50"), Decimal("9145.50"), Decimal("745.50"))
