"""StripePayouts at the HTTP edge (``responses``): the exact requests it makes, how it pages,
how it traces a balance transaction to an invoice, and how Stripe errors are translated."""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import responses
import stripe

from connector.adapters.stripe_payouts import StripePayouts
from connector.domain.reconciliation import StripePayout
from connector.errors import AuthError, PermanentError, TransientError

API = "https://stripe.test"
PAYOUT = StripePayout("po_1", 726_000, "usd", date(2025, 3, 6), "paid", 1_741_000_000)


def gateway(account: str | None = "acct_1Partner") -> StripePayouts:
    client = stripe.StripeClient("sk_test_unit", base_addresses={"api": API}, max_network_retries=0,
                                 http_client=stripe.RequestsClient(timeout=5))
    return StripePayouts(client, account)


def a_list(url: str, data: list[dict[str, Any]], has_more: bool = False) -> dict[str, Any]:
    return {"object": "list", "url": url, "has_more": has_more, "data": data}


def payout(pid: str, created: int) -> dict[str, Any]:
    return {"id": pid, "object": "payout", "amount": 100, "currency": "usd", "arrival_date": 1_741_219_200,
            "status": "paid", "created": created, "automatic": True}


def query(call: Any) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(call.request.url).query)


@responses.activate
def test_payouts_since_a_cursor_are_paged_and_returned_oldest_first() -> None:
    responses.get(f"{API}/v1/payouts", json=a_list("/v1/payouts", [payout("po_3", 30), payout("po_2", 20)], True))
    responses.get(f"{API}/v1/payouts", json=a_list("/v1/payouts", [payout("po_1", 10)]))
    found = gateway().list_payouts(created_since=5)
    assert [p.id for p in found] == ["po_1", "po_2", "po_3"]
    assert found[0].arrival_date == date(2025, 3, 6)
    first, second = responses.calls
    assert query(first) == [("created[gte]", "5"), ("limit", "100")]
    assert query(second) == [("created[gte]", "5"), ("limit", "100"), ("starting_after", "po_2")]
    assert first.request.headers["Stripe-Account"] == "acct_1Partner"
    assert first.request.headers["Authorization"] == "Bearer sk_test_unit"


def charge_txn(tid: str, charge: str, intent: str, amount: int, fee: int, stripe_fee: int) -> dict[str, Any]:
    details = [{"amount": fee - stripe_fee, "type": "application_fee"}, {"amount": stripe_fee, "type": "stripe_fee"}]
    return {"id": tid, "object": "balance_transaction", "type": "charge", "amount": amount, "fee": fee,
            "net": amount - fee, "fee_details": details, "description": "Payment for Invoice",
            "source": {"id": charge, "object": "charge", "payment_intent": intent}}


@responses.activate
def test_each_charge_is_traced_through_its_invoice_payment_to_the_invoice_metadata() -> None:
    responses.get(f"{API}/v1/balance_transactions", json=a_list("/v1/balance_transactions", [
        charge_txn("txn_1", "ch_1", "pi_1", 420_000, 63_330, 6_330),
        charge_txn("txn_2", "ch_2", "pi_1", 420_000, 63_330, 6_330),
        {"id": "txn_3", "type": "refund", "amount": -1_000, "fee": 0, "net": -1_000, "fee_details": [],
         "source": {"id": "re_1", "object": "refund", "charge": "ch_1", "payment_intent": "pi_1"}},
        {"id": "txn_4", "type": "adjustment", "amount": -1_500, "fee": 0, "net": -1_500, "fee_details": [],
         "source": None, "description": "Dispute fee"},
        {"id": "txn_po", "type": "payout", "amount": -837_840, "fee": 0, "net": -837_840, "fee_details": [],
         "source": {"id": "po_1", "object": "payout"}},
    ]))
    responses.get(f"{API}/v1/invoice_payments", json=a_list("/v1/invoice_payments", [
        {"id": "inpay_1", "object": "invoice_payment",
         "invoice": {"id": "in_acme", "object": "invoice",
                     "metadata": {"org_id": "00D5g000004ExAmPLE", "order_id": "a1O5g0000000AcMeAA"}}}]))
    txns = gateway().transactions(PAYOUT)

    listing, tracing = responses.calls  # one trace per payment intent, however many charges
    assert query(listing) == [("payout", "po_1"), ("expand[0]", "data.source"), ("limit", "100")]
    assert query(tracing) == [("payment[type]", "payment_intent"), ("payment[payment_intent]", "pi_1"),
                              ("expand[0]", "data.invoice"), ("limit", "100")]
    by_id = {t.id: t for t in txns}
    assert by_id["txn_1"].invoice_id == "in_acme" and by_id["txn_1"].order_id == "a1O5g0000000AcMeAA"
    assert by_id["txn_1"].org_id == "00D5g000004ExAmPLE"
    txn = by_id["txn_1"]
    assert (txn.fee_cents, txn.stripe_fee_cents, txn.net_cents) == (63_330, 6_330, 356_670)
    assert by_id["txn_3"].invoice_id == "in_acme" and by_id["txn_3"].source_id == "re_1"
    assert by_id["txn_4"].invoice_id is None and by_id["txn_4"].description == "Dispute fee"
    assert {t.payout_id for t in txns} == {"po_1"} and {t.arrival_date for t in txns} == {date(2025, 3, 6)}


@responses.activate
def test_a_charge_paid_outside_any_invoice_has_no_invoice() -> None:
    responses.get(f"{API}/v1/balance_transactions", json=a_list("/v1/balance_transactions", [
        charge_txn("txn_1", "ch_9", "pi_9", 5_000, 175, 175)]))
    responses.get(f"{API}/v1/invoice_payments", json=a_list("/v1/invoice_payments", []))
    (txn,) = gateway().transactions(PAYOUT)
    assert txn.invoice_id is None and txn.order_id is None and txn.source_id == "ch_9"


def error(status: int, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"type": kind, "message": "nope", **({"code": code} if code else {})}}


@responses.activate
def test_rate_limit_is_retried_by_our_policy_then_succeeds() -> None:
    responses.get(f"{API}/v1/payouts", status=429, json=error(429, "invalid_request_error", "rate_limit"))
    responses.get(f"{API}/v1/payouts", json=a_list("/v1/payouts", [payout("po_1", 10)]))
    assert [p.id for p in gateway().list_payouts()] == ["po_1"]
    assert len(responses.calls) == 2


@pytest.mark.parametrize(("status", "kind", "expected"), [
    (401, "invalid_request_error", AuthError),
    (400, "invalid_request_error", PermanentError),
    (404, "invalid_request_error", PermanentError),
])
@responses.activate
def test_refusals_are_translated_and_not_retried(status: int, kind: str, expected: type[Exception]) -> None:
    responses.get(f"{API}/v1/payouts", status=status, json=error(status, kind))
    with pytest.raises(expected) as caught:
        gateway().list_payouts()
    assert not isinstance(caught.value, TransientError)
    assert "sk_test_unit" not in str(caught.value)
    assert len(responses.calls) == 1
