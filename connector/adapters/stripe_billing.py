"""Stripe billing adapter: the only module that imports ``stripe``.

``StripeBilling`` implements ``BillingGateway`` with the official SDK's ``StripeClient``,
built per org (``build_billing_gateway``) with SDK retries off: the one retry policy in
``connector.retry`` retries ``TransientError`` with the same Idempotency-Key.

Error translation (nothing above this module sees a ``stripe`` exception):

==========================================  ===========================================
``RateLimitError``, ``APIConnectionError``,  ``TransientError`` (worth retrying)
``APIError`` (5xx, 409 key in use)
``AuthenticationError``, ``PermissionError`` ``AuthError``
``IdempotencyError``, ``InvalidRequestError`` ``PermanentError`` (``.code`` kept)
``CardError``                                ``RecordError`` (a payment problem is data
                                             about that record, not an outage)
==========================================  ===========================================

Money crosses here: Decimal dollars from ``connector.domain`` become integer cents with
``to_cents`` (exact or it raises), and cents come back as Decimal with ``from_cents``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import stripe

from connector.adapters.network import connection_cause
from connector.config import OrgConfig
from connector.domain import InvoiceLine, InvoicePlan, from_cents, to_cents
from connector.errors import AuthError, PermanentError, RecordError, TransientError
from connector.services.billing_port import (
    MAX_LINES_PER_CALL,
    BillingEvent,
    MalformedEvent,
    StripeCustomer,
    StripeInvoice,
)

if TYPE_CHECKING:
    from stripe import RequestOptions
    from stripe.params import (
        CustomerCreateParams,
        EventListParams,
        InvoiceAddLinesParams,
        InvoiceAddLinesParamsLine,
        InvoiceCreateParams,
        InvoiceListParams,
    )

T = TypeVar("T")

WEBHOOK_TOLERANCE_S = 300
ORG_KEY = "gtm_org_id"
ORDER_KEY = "gtm_order_id"
# Metadata naming the Salesforce order on an invoice the GTM app issued (not the connector's
# own keys above): how an order's Salesforce-issued invoice is found when no junction
# record links it yet.
SALESFORCE_ORDER_KEYS = ("sfdc_order_id",)


class StripeCallError(PermanentError):
    """A request Stripe refused for good; ``code`` is Stripe's error code (or None)."""

    def __init__(self, message: str, *, code: str | None, http_status: int | None) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status


def _describe(exc: stripe.StripeError) -> str:
    """An error line from codes and Stripe's own message (which never carries our key)."""
    error = getattr(exc, "error", None)
    message = getattr(error, "message", None) or exc.user_message or type(exc).__name__
    code = getattr(exc, "code", None)
    return f"Stripe {exc.http_status or 'no status'}{f' {code}' if code else ''}: {message}"


def _describe_connection(exc: stripe.APIConnectionError) -> str:
    """Why Stripe could not be reached (``connection_cause``), never the SDK's text: it
    quotes the underlying exception, which can carry request headers (requests'
    InvalidHeader repeats ``Bearer <key>``)."""
    cause = connection_cause(str(exc.user_message or "")) or "request failed"
    return f"cannot reach Stripe ({cause}); check [stripe] api_base and the network"


def translate(op: str, exc: stripe.StripeError) -> Exception:
    """The connector exception for a Stripe SDK exception raised by ``op``."""
    where = f"stripe {op}: "
    if isinstance(exc, stripe.APIConnectionError):
        return TransientError(where + _describe_connection(exc))
    if isinstance(exc, stripe.RateLimitError):
        return TransientError(where + _describe(exc))
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return AuthError(where + f"Stripe refused the API key or account ({exc.http_status})")
    if isinstance(exc, stripe.CardError):
        return RecordError(where + _describe(exc), code=f"STRIPE_{(exc.code or 'card_error').upper()}")
    if isinstance(exc, stripe.IdempotencyError | stripe.InvalidRequestError):
        return StripeCallError(where + _describe(exc), code=getattr(exc, "code", None), http_status=exc.http_status)
    if isinstance(exc, stripe.APIError) and (
        exc.http_status is None or exc.http_status >= 500 or exc.http_status == 409
    ):
        return TransientError(where + _describe(exc))
    return StripeCallError(where + _describe(exc), code=getattr(exc, "code", None), http_status=exc.http_status)


def _metadata(obj: Any) -> dict[str, str]:
    data = obj.to_dict() if isinstance(obj, stripe.StripeObject) else dict(obj)
    return dict(data.get("metadata") or {})


def _ts(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value else None


def _day(value: int | None) -> date | None:
    return datetime.fromtimestamp(value, UTC).date() if value else None


def invoice_tax(data: dict[str, Any]) -> int:
    """The invoice's tax in cents, in any API version's shape: ``total_taxes[].amount``
    (2025-03-31 and later), ``tax`` (older), else the difference ``total -
    total_excluding_tax``, else the lines' ``taxes[].amount`` / ``tax_amounts[].amount``.
    Inclusive tax counts too: it is inside the total, and never the partner's money."""
    if isinstance(data.get("total_taxes"), list):
        return sum(int(t.get("amount") or 0) for t in data["total_taxes"])
    if data.get("tax") is not None:
        return int(data["tax"])
    if isinstance(data.get("total_tax_amounts"), list):
        return sum(int(t.get("amount") or 0) for t in data["total_tax_amounts"])
    if data.get("total") is not None and data.get("total_excluding_tax") is not None:
        return int(data["total"]) - int(data["total_excluding_tax"])
    lines = (data.get("lines") or {}).get("data") or []
    return sum(int(t.get("amount") or 0) for line in lines
               for t in (line.get("taxes") or line.get("tax_amounts") or []))


def invoice_record(inv: Any) -> StripeInvoice:
    """A ``StripeInvoice`` from an SDK invoice object or a webhook's plain dict."""
    data: dict[str, Any] = inv.to_dict() if isinstance(inv, stripe.StripeObject) else dict(inv)
    transitions = data.get("status_transitions") or {}
    lines = data.get("lines") or {}
    line_count = lines.get("total_count")
    if line_count is None:
        line_count = len(lines.get("data") or [])
    customer = data.get("customer")
    return StripeInvoice(
        id=data["id"],
        customer_id=str(customer["id"]) if isinstance(customer, dict) else str(customer or ""),
        status=data.get("status"),
        number=data.get("number"),
        hosted_url=data.get("hosted_invoice_url"),
        currency=data.get("currency") or "usd",
        total=from_cents(int(data.get("total") or 0)),
        amount_due=from_cents(int(data.get("amount_due") or 0)),
        amount_paid=from_cents(int(data.get("amount_paid") or 0)),
        amount_remaining=from_cents(int(data.get("amount_remaining") or 0)),
        tax=from_cents(invoice_tax(data)),
        line_count=int(line_count),
        created=int(data.get("created") or 0),
        due_date=_day(data.get("due_date")),
        finalized_at=_ts(transitions.get("finalized_at")),
        paid_at=_ts(transitions.get("paid_at")),
        voided_at=_ts(transitions.get("voided_at")),
        metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
        customer_email=data.get("customer_email"),
        collection_method=data.get("collection_method"),
        days_until_due=data.get("days_until_due"),
        line_amounts=tuple(from_cents(int(line.get("amount") or 0)) for line in lines.get("data") or []),
    )


def _shape(event: Any) -> tuple[str, str, int, dict[str, Any], str | None]:
    """(id, type, created, data.object, account) of an event, checked field by field."""
    if not isinstance(event, dict) or event.get("object") != "event":
        raise MalformedEvent("webhook: the body is not a Stripe event")
    event_id, kind, created, account = event.get("id"), event.get("type"), event.get("created", 0), event.get("account")
    if not isinstance(event_id, str) or not event_id or len(event_id) > 255:
        raise MalformedEvent("webhook: the event has no usable id")
    if not isinstance(kind, str) or not kind or len(kind) > 128:
        raise MalformedEvent(f"webhook: event {event_id} has no usable type")
    if isinstance(created, bool) or not isinstance(created, int) or created < 0:
        raise MalformedEvent(f"webhook: event {event_id}: created must be a Unix time, got {type(created).__name__}")
    if account is not None and not isinstance(account, str):
        raise MalformedEvent(f"webhook: event {event_id}: account must be text")
    data = event.get("data", {})
    obj = data.get("object", {}) if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise MalformedEvent(f"webhook: event {event_id}: data.object must be an object")
    return event_id, kind, created, obj, account


def _check_invoice(event_id: str, obj: dict[str, Any]) -> None:
    """The invoice fields ``invoice_record`` reads have the types Stripe sends."""
    def fail(field: str, want: str) -> MalformedEvent:
        return MalformedEvent(f"webhook: event {event_id}: invoice {field} must be {want}, "
                              f"got {type(obj.get(field)).__name__}")

    _check_invoice_fields(obj, fail)
    _check_invoice_parts(obj, fail)


def _check_invoice_fields(obj: dict[str, Any], fail: Callable[[str, str], MalformedEvent]) -> None:
    """The invoice's own scalar fields and its customer."""
    if not isinstance(obj.get("id"), str):
        raise fail("id", "text")
    for name in ("total", "amount_due", "amount_paid", "amount_remaining", "created", "due_date"):
        value = obj.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise fail(name, "an integer")
    for name in ("status", "number", "hosted_invoice_url", "currency"):
        if obj.get(name) is not None and not isinstance(obj.get(name), str):
            raise fail(name, "text")
    if not isinstance(obj.get("customer"), (str, dict, type(None))):
        raise fail("customer", "an id")
    if isinstance(obj.get("customer"), dict) and not isinstance(obj["customer"].get("id"), str):
        raise fail("customer.id", "text")


def _check_invoice_parts(obj: dict[str, Any], fail: Callable[[str, str], MalformedEvent]) -> None:
    """The invoice's objects (``lines``, ``metadata``, ``status_transitions``) and their contents."""
    for name in ("lines", "metadata", "status_transitions"):
        if obj.get(name) is not None and not isinstance(obj.get(name), dict):
            raise fail(name, "an object")
    lines = obj.get("lines") or {}
    if lines.get("total_count") is not None and not isinstance(lines.get("total_count"), int):
        raise fail("lines.total_count", "an integer")
    if lines.get("data") is not None and not isinstance(lines.get("data"), list):
        raise fail("lines.data", "a list")
    for name, value in (obj.get("status_transitions") or {}).items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise fail(f"status_transitions.{name}", "an integer")


def event_record(event: Any) -> BillingEvent:
    """A ``BillingEvent`` from an event's JSON (a dict); ``MalformedEvent`` naming the field
    when it is not shaped as Stripe sends events."""
    event_id, kind_of_event, created, obj, account = _shape(event)
    kind = obj.get("object") if isinstance(obj.get("object"), str) else None
    invoice = None
    if kind == "invoice":
        _check_invoice(event_id, obj)
        try:
            invoice = invoice_record(obj)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise MalformedEvent(f"webhook: event {event_id} carries an invoice it cannot read "
                                 f"({type(exc).__name__})") from None
    return BillingEvent(id=event_id, type=kind_of_event, created=created, object_type=kind, account=account,
                        invoice=invoice)


def line_params(line: InvoiceLine, currency: str) -> InvoiceAddLinesParamsLine:
    """One ``add_lines`` entry: quantity x unit price as an inline price, so the customer
    sees the license count and the annual unit price (the plan guarantees the product is
    exact: ``amount == quantity x unit_amount``)."""
    if to_cents(line.unit_amount) * line.quantity != to_cents(line.amount):
        raise ValueError(f"invoice line {line.description!r}: {line.quantity} x {line.unit_amount} != {line.amount}")
    return {
        "description": line.description,
        "quantity": line.quantity,
        "price_data": {
            "currency": currency,
            "unit_amount": to_cents(line.unit_amount),
            "product_data": {"name": line.description.split(":", 1)[0][:250]},
        },
        "metadata": dict(line.metadata),
    }


class StripeBilling:
    """``BillingGateway`` on Stripe. ``account`` is a connected account id (``acct_…``) sent
    as ``Stripe-Account`` on every call, or None for the key's own account."""

    def __init__(self, client: stripe.StripeClient, account: str | None = None) -> None:
        self._client = client
        self._account = account

    def _options(self, key: str | None = None) -> RequestOptions:
        options: RequestOptions = {}
        if key is not None:
            options["idempotency_key"] = key
        if self._account:
            options["stripe_account"] = self._account
        return options

    def _call(self, op: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except stripe.StripeError as exc:
            # Not chained: the SDK error's text may quote request headers (the API key).
            raise translate(op, exc) from None

    # -- customers -----------------------------------------------------------------------
    def find_customer(self, *, org_id: str, email: str) -> StripeCustomer | None:
        """The org's oldest customer with this billing email, if any. A list, not a search:
        lists are strongly consistent, search lags up to a minute, and a customer created by
        a crashed run must be found by the rerun."""
        every = self._call("customers.list", lambda: list(self._client.v1.customers.list(
            params={"email": email, "limit": 100}, options=self._options()).auto_paging_iter()))
        ours = [c for c in every if _metadata(c).get(ORG_KEY) == org_id]
        if not ours:
            return None
        oldest = min(ours, key=lambda c: (c.created, c.id))
        return StripeCustomer(id=oldest.id, email=oldest.email, created=False)

    def create_customer(
        self, *, org_id: str, email: str, name: str | None, customer_org_id: str | None, order_id: str, key: str
    ) -> StripeCustomer:
        metadata = {ORG_KEY: org_id, "gtm_customer_org_id": customer_org_id, "gtm_first_order_id": order_id}
        params: CustomerCreateParams = {"email": email, "metadata": {k: v for k, v in metadata.items() if v}}
        if name:
            params["name"] = name
        created = self._call("customers.create", lambda: self._client.v1.customers.create(
            params=params, options=self._options(key)))
        return StripeCustomer(id=created.id, email=created.email, created=True)

    def find_or_create_customer(
        self, *, org_id: str, email: str, name: str | None, customer_org_id: str | None, order_id: str, key: str
    ) -> StripeCustomer:
        """``find_customer``, else ``create_customer``: two calls for a new customer."""
        found = self.find_customer(org_id=org_id, email=email)
        if found is not None:
            return found
        return self.create_customer(org_id=org_id, email=email, name=name, customer_org_id=customer_org_id,
                                    order_id=order_id, key=key)

    # -- invoices ------------------------------------------------------------------------
    def create_invoice(self, plan: InvoicePlan, customer_id: str, key: str) -> StripeInvoice:
        params: InvoiceCreateParams = {
            "customer": customer_id,
            "collection_method": "send_invoice",
            "days_until_due": plan.days_until_due,
            "auto_advance": False,
            "currency": plan.currency,
            "pending_invoice_items_behavior": "exclude",
            "metadata": {**dict(plan.metadata), "gtm_plan_version": plan.version},
        }
        if plan.order_number:
            params["description"] = f"Order {plan.order_number}"
        invoice = self._call("invoices.create", lambda: self._client.v1.invoices.create(
            params=params, options=self._options(key)))
        return invoice_record(invoice)

    def add_lines(self, invoice_id: str, lines: Sequence[InvoiceLine], currency: str, key: str) -> StripeInvoice:
        if not lines:
            raise ValueError(f"invoice {invoice_id}: no lines to add")
        if len(lines) > MAX_LINES_PER_CALL:
            raise RecordError(f"invoice {invoice_id}: {len(lines)} lines, Stripe allows {MAX_LINES_PER_CALL}",
                              code="TOO_MANY_LINES")
        params: InvoiceAddLinesParams = {"lines": [line_params(line, currency) for line in lines]}
        invoice = self._call("invoices.add_lines", lambda: self._client.v1.invoices.add_lines(
            invoice_id, params=params, options=self._options(key)))
        return invoice_record(invoice)

    def finalize(self, invoice_id: str, key: str) -> StripeInvoice:
        try:
            invoice = self._call("invoices.finalize", lambda: self._client.v1.invoices.finalize_invoice(
                invoice_id, params={"auto_advance": False}, options=self._options(key)))
        except StripeCallError:
            # Finalized already (by an earlier run whose answer was lost after its key
            # expired): what matters is the state, so look before giving up.
            current = self.retrieve_invoice(invoice_id)
            if current.status not in (None, "draft"):
                return current
            raise
        return invoice_record(invoice)

    def send(self, invoice_id: str, key: str) -> StripeInvoice:
        invoice = self._call("invoices.send", lambda: self._client.v1.invoices.send_invoice(
            invoice_id, options=self._options(key)))
        return invoice_record(invoice)

    def was_sent(self, invoice_id: str, *, since: datetime | None = None) -> bool:
        """Whether Stripe e-mailed ``invoice_id``: an ``invoice.sent`` event for it (events
        are kept 30 days, far longer than the 24 hours of an idempotency key)."""
        params: EventListParams = {"type": "invoice.sent", "limit": 100}
        if since is not None:
            params["created"] = {"gte": int(since.timestamp())}
        page = self._call("events.list", lambda: self._client.v1.events.list(
            params=params, options=self._options()))
        iterator = iter(page.auto_paging_iter())
        while True:
            try:
                event = self._call("events.page", lambda: next(iterator))
            except StopIteration:
                return False
            data = event.to_dict() if isinstance(event, stripe.StripeObject) else dict(event)
            obj = (data.get("data") or {}).get("object") or {}
            if isinstance(obj, dict) and obj.get("id") == invoice_id:
                return True

    def retrieve_invoice(self, invoice_id: str) -> StripeInvoice:
        invoice = self._call("invoices.retrieve", lambda: self._client.v1.invoices.retrieve(
            invoice_id, options=self._options()))
        return invoice_record(invoice)

    def find_invoice_by_metadata(
        self, org_id: str, order_id: str, *, customer_id: str | None = None
    ) -> StripeInvoice | None:
        """By listing the customer's invoices when the customer is known (consistent), else
        by search (which can lag a fresh invoice by up to a minute)."""
        page: stripe.ListObject[stripe.Invoice] | stripe.SearchResultObject[stripe.Invoice]
        if customer_id is not None:
            page = self._call("invoices.list", lambda: self._client.v1.invoices.list(
                params={"customer": customer_id, "limit": 100}, options=self._options()))
        else:
            query = f"metadata['{ORDER_KEY}']:'{order_id}' AND metadata['{ORG_KEY}']:'{org_id}'"
            page = self._call("invoices.search", lambda: self._client.v1.invoices.search(
                params={"query": query, "limit": 100}, options=self._options()))
        matches = [
            invoice_record(inv) for inv in self._call("invoices.page", lambda: list(page.auto_paging_iter()))
            if _metadata(inv).get(ORDER_KEY) == order_id and _metadata(inv).get(ORG_KEY) == org_id
        ]
        live = [m for m in matches if m.status != "void"]
        if not live:
            return None
        return min(live, key=lambda m: (m.created, m.id))

    def find_salesforce_invoice(self, order_id: str) -> StripeInvoice | None:
        query = " OR ".join(f"metadata['{key}']:'{order_id}'" for key in SALESFORCE_ORDER_KEYS)
        page = self._call("invoices.search", lambda: self._client.v1.invoices.search(
            params={"query": query, "limit": 100}, options=self._options()))
        live = [invoice_record(inv) for inv in self._call("invoices.page", lambda: list(page.auto_paging_iter()))]
        live = [i for i in live
                if i.status != "void" and any(i.metadata.get(k) == order_id for k in SALESFORCE_ORDER_KEYS)]
        return min(live, key=lambda m: (m.created, m.id)) if live else None

    def list_invoices(self, org_id: str, *, status: str | None = None) -> Iterator[StripeInvoice]:
        params: InvoiceListParams = {"limit": 100}
        if status:
            params["status"] = status
        page = self._call("invoices.list", lambda: self._client.v1.invoices.list(
            params=params, options=self._options()))
        iterator = iter(page.auto_paging_iter())
        while True:
            try:
                invoice = self._call("invoices.page", lambda: next(iterator))
            except StopIteration:
                return
            if _metadata(invoice).get(ORG_KEY) == org_id:
                yield invoice_record(invoice)

    # -- webhooks ------------------------------------------------------------------------
    def verify_event(self, payload: bytes, signature_header: str | None, secret: str) -> BillingEvent:
        """Stripe's own check of ``Stripe-Signature`` (HMAC-SHA256 of ``t.body``, 300 s
        tolerance), then the event as a ``BillingEvent``."""
        if not signature_header:
            raise PermanentError("webhook: no Stripe-Signature header")
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            # Not text: refused either way, as malformed only when it was really signed.
            if _signed_bytes(payload, signature_header, secret):
                raise MalformedEvent("webhook: the body is not UTF-8 JSON") from None
            raise PermanentError("webhook: signature does not verify") from None
        try:
            stripe.WebhookSignature.verify_header(text, signature_header, secret, WEBHOOK_TOLERANCE_S)
        except stripe.SignatureVerificationError as exc:
            raise PermanentError(f"webhook: signature does not verify ({exc.user_message})") from None
        signed_at = _signed_at(signature_header)
        if signed_at is None or signed_at > time.time() + WEBHOOK_TOLERANCE_S:
            # Stripe's library only refuses old timestamps: the tolerance holds both ways.
            raise PermanentError("webhook: signature timestamp is in the future beyond the tolerance")
        try:
            event = json.loads(text)
        except json.JSONDecodeError:
            raise MalformedEvent("webhook: the body is not JSON") from None
        except RecursionError:
            raise MalformedEvent("webhook: the body is nested too deeply") from None
        return event_record(event)

    def close(self) -> None:
        http_client = getattr(self._client, "_requestor", None)
        close = getattr(getattr(http_client, "_client", None), "close", None)
        if close is not None:
            close()


def _signed_bytes(payload: bytes, header: str, secret: str) -> bool:
    """Stripe's v1 scheme over raw bytes (for a body that is not UTF-8 text)."""
    signed_at = _signed_at(header)
    if signed_at is None or abs(time.time() - signed_at) > WEBHOOK_TOLERANCE_S:
        return False
    expected = hmac.new(secret.encode(), f"{signed_at}.".encode() + payload, hashlib.sha256).hexdigest()
    given = [v for k, _, v in (p.strip().partition("=") for p in header.split(",")) if k == "v1"]
    return any(hmac.compare_digest(expected, g) for g in given)


def _signed_at(header: str) -> int | None:
    """The ``t=`` of a ``Stripe-Signature`` header."""
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def build_client(api_key: str, *, api_base: str | None = None, timeout_s: float = 60.0) -> stripe.StripeClient:
    """A client for one org: SDK retries off (``connector.retry`` is the only policy)."""
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base} if api_base else None,
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=timeout_s),
    )


def build_billing_gateway(config: OrgConfig) -> StripeBilling:
    client = build_client(config.stripe.api_key.get_secret_value(), api_base=config.stripe.api_base,
                          timeout_s=config.stripe.timeout_seconds)
    return StripeBilling(client, account=config.stripe.account)
