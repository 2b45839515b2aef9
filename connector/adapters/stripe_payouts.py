"""Stripe payouts, read side: the payouts of an account and what each one carried.

``StripePayouts`` lists payouts created since a cursor (following ``has_more`` page by
page) and the balance transactions of a payout with ``expand[]=data.source``, then traces
every charge and refund to its invoice the way Stripe's current API links them::

    balance transaction --source--> charge --payment_intent--> InvoicePayment --> invoice
    balance transaction --source--> refund --payment_intent--> (same)

(``charge.invoice`` no longer exists from API version 2025-03-31; the InvoicePayment list,
filtered by ``payment[payment_intent]``, is the link.) The invoice's metadata names the
org and the order (written there by invoicing). Results are the domain's ``BalanceTxn``.

Every call goes through the one retry policy with the SDK's own retries off; Stripe errors
are translated with ``stripe_billing.translate`` (connection problems, 429 and 5xx ->
``TransientError``, refused key -> ``AuthError``, other 4xx -> ``PermanentError``), and
the client is built the same way as billing's, so services never see ``stripe``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import stripe

from connector.adapters.stripe_billing import build_client, translate
from connector.domain.reconciliation import CHARGE_TYPES, REFUND_TYPES, BalanceTxn, StripePayout
from connector.retry import call_with_retry

if TYPE_CHECKING:
    from stripe import RequestOptions
    from stripe.params import BalanceTransactionListParams, InvoicePaymentListParams, PayoutListParams

    from connector.config import OrgConfig

T = TypeVar("T")
# The list endpoints ``_pages`` walks: each takes ``limit`` and ``starting_after``.
ListParams = TypeVar("ListParams", "PayoutListParams", "BalanceTransactionListParams", "InvoicePaymentListParams")
PAGE_LIMIT = 100
# Invoice metadata keys naming the org and the order (first present wins).
ORG_KEYS = ("org_id", "gtm_org_id", "sf_org_id")
ORDER_KEYS = ("order_id", "gtm_order_id", "sf_order_id")


@dataclass(frozen=True)
class InvoiceRef:
    invoice_id: str
    org_id: str | None
    order_id: str | None


def _day(timestamp: int | None) -> date:
    return datetime.fromtimestamp(int(timestamp or 0), UTC).date()


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if obj is None or isinstance(obj, str):
        return default
    try:
        value = obj[key]
    except (KeyError, TypeError):
        return default
    return default if value is None else value


def _id(obj: Any) -> str | None:
    if obj is None:
        return None
    return obj if isinstance(obj, str) else _get(obj, "id")


class StripePayouts:
    """Read payouts and trace their money to invoices, for one Stripe account."""

    def __init__(self, client: stripe.StripeClient, account: str | None = None) -> None:
        self._client = client
        self._account = account
        self._invoice_of_intent: dict[str, InvoiceRef | None] = {}
        self.calls = 0

    def _options(self) -> RequestOptions:
        return {"stripe_account": self._account} if self._account else {}

    def _call(self, op: str, fn: Callable[[], T]) -> T:
        def attempt() -> T:
            self.calls += 1
            try:
                return fn()
            except stripe.StripeError as exc:
                raise translate(op, exc) from None

        return call_with_retry(op, attempt)

    def _pages(self, op: str, fetch: Callable[[ListParams], Any], params: ListParams) -> Iterator[Any]:
        """Every object of a list endpoint, following ``has_more`` with ``starting_after``."""
        cursor: str | None = None
        while True:
            page_params = params.copy()
            page_params["limit"] = PAGE_LIMIT
            if cursor:
                page_params["starting_after"] = cursor
            page = self._call(op, partial(fetch, page_params))
            data = list(_get(page, "data", []))
            yield from data
            if not _get(page, "has_more", False) or not data:
                return
            cursor = _id(data[-1])

    # ------------------------------------------------------------------ payouts
    def list_payouts(self, created_since: int | None = None) -> list[StripePayout]:
        """Payouts created at or after ``created_since`` (unix seconds), oldest first."""
        params: PayoutListParams = {}
        if created_since is not None:
            params["created"] = {"gte": int(created_since)}
        payouts = self._client.v1.payouts
        found = [_payout(p) for p in self._pages("payouts.list",
                                                 lambda q: payouts.list(params=q, options=self._options()), params)]
        return sorted(found, key=lambda p: (p.created, p.id))

    def transactions(self, payout: StripePayout) -> list[BalanceTxn]:
        """The balance transactions the payout swept, each traced to its invoice."""
        txns = self._client.v1.balance_transactions
        params: BalanceTransactionListParams = {"payout": payout.id, "expand": ["data.source"]}
        return [
            self._traced(t, payout)
            for t in self._pages("balance_transactions.list",
                                 lambda q: txns.list(params=q, options=self._options()), params)
        ]

    def _traced(self, txn: Any, payout: StripePayout) -> BalanceTxn:
        kind = str(txn["type"])
        source = _get(txn, "source")
        ref = None
        if kind in CHARGE_TYPES or kind in REFUND_TYPES:
            ref = self._invoice_for_source(source)
        fee_details = _get(txn, "fee_details", [])
        stripe_fee = sum(int(d["amount"]) for d in fee_details if _get(d, "type") == "stripe_fee")
        return BalanceTxn(
            id=str(txn["id"]),
            type=kind,
            amount_cents=int(txn["amount"]),
            fee_cents=int(_get(txn, "fee", 0)),
            net_cents=int(txn["net"]),
            payout_id=payout.id,
            arrival_date=payout.arrival_date,
            stripe_fee_cents=stripe_fee,
            source_id=_id(source),
            invoice_id=ref.invoice_id if ref else None,
            order_id=ref.order_id if ref else None,
            org_id=ref.org_id if ref else None,
            description=_get(txn, "description"),
        )

    # ------------------------------------------------------------------ tracing
    def _invoice_for_source(self, source: Any) -> InvoiceRef | None:
        if isinstance(source, str):  # not expanded (e.g. an older object): fetch it
            source = self._retrieve_source(source)
        if source is None:
            return None
        intent = _id(_get(source, "payment_intent"))
        if intent is None and _get(source, "object") == "refund":
            charge = _get(source, "charge")
            charge = self._retrieve_source(charge) if isinstance(charge, str) else charge
            intent = _id(_get(charge, "payment_intent"))
        legacy_invoice = _id(_get(source, "invoice"))  # clients pinned before 2025-03-31
        if intent is None:
            return self.invoice_ref(legacy_invoice) if legacy_invoice else None
        if intent not in self._invoice_of_intent:
            self._invoice_of_intent[intent] = self._invoice_for_intent(intent)
        return self._invoice_of_intent[intent]

    def _retrieve_source(self, source_id: str) -> Any:
        if source_id.startswith("ch_"):
            return self._call("charges.retrieve", lambda: self._client.v1.charges.retrieve(
                source_id, options=self._options()))
        if source_id.startswith(("re_", "pyr_")):
            return self._call("refunds.retrieve", lambda: self._client.v1.refunds.retrieve(
                source_id, options=self._options()))
        return None

    def _invoice_for_intent(self, intent: str) -> InvoiceRef | None:
        payments = self._client.v1.invoice_payments
        params: InvoicePaymentListParams = {
            "payment": {"type": "payment_intent", "payment_intent": intent}, "expand": ["data.invoice"]}
        for payment in self._pages("invoice_payments.list",
                                   lambda q: payments.list(params=q, options=self._options()), params):
            invoice = _get(payment, "invoice")
            if isinstance(invoice, str):
                return self.invoice_ref(invoice)
            if invoice is not None:
                return _ref(invoice)
        return None

    def invoice_ref(self, invoice_id: str) -> InvoiceRef:
        invoice = self._call("invoices.retrieve", lambda: self._client.v1.invoices.retrieve(
            invoice_id, options=self._options()))
        return _ref(invoice)

    def close(self) -> None:
        self._invoice_of_intent.clear()


def _payout(p: Any) -> StripePayout:
    automatic = bool(_get(p, "automatic", True))
    return StripePayout(
        id=str(p["id"]),
        amount_cents=int(p["amount"]),
        currency=str(p["currency"]),
        arrival_date=_day(p["arrival_date"]),
        status=str(p["status"]),
        created=int(p["created"]),
        automatic=automatic,
        # An answer without the field (an older API version): an automatic payout is read whole.
        reconciliation_status=str(_get(p, "reconciliation_status", None)
                                  or ("completed" if automatic else "not_applicable")),
    )


def _ref(invoice: Any) -> InvoiceRef:
    metadata: Mapping[str, Any] = _get(invoice, "metadata", {}) or {}
    org = next((str(metadata[k]) for k in ORG_KEYS if _get(metadata, k)), None)
    order = next((str(metadata[k]) for k in ORDER_KEYS if _get(metadata, k)), None)
    return InvoiceRef(str(invoice["id"]), org, order)


def build_payouts_gateway(config: OrgConfig) -> StripePayouts:
    """The org's payouts gateway from its config (the reconcile job calls this)."""
    client = build_client(config.stripe.api_key.get_secret_value(), api_base=config.stripe.api_base,
                          timeout_s=config.stripe.timeout_seconds)
    return StripePayouts(client, config.stripe.account)
