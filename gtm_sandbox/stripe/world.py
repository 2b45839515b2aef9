"""The sandbox's world: a clock that tests can move, accounts (each a separate data space,
like a Stripe account or a connected account reached with ``Stripe-Account``), their
objects, and events.

All state is guarded by one re-entrant lock held for the whole of each API request, so the
threaded HTTP server behaves like a serial API and every request sees a consistent world.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from gtm_sandbox.stripe.wire import invalid, new_id

if TYPE_CHECKING:
    from gtm_sandbox.stripe.notify import WebhookDispatcher

# The API version the sandbox renders (the stripe SDK v16 pins this one). Objects follow
# the 2025-03-31 ("basil") and later shapes: invoices have `payments`, not `charge`/`paid`.
DEFAULT_API_VERSION = "2026-10-28.endive"
# From this version on, Charge has no `invoice` field: the link is an InvoicePayment.
CHARGE_INVOICE_REMOVED = "2025-03-31"
DAY = 86_400

# id prefix -> object kind (the `object` field)
PREFIXES: dict[str, str] = {
    "cus": "customer",
    "in": "invoice",
    "ii": "invoiceitem",
    "il": "line_item",
    "ch": "charge",
    "pi": "payment_intent",
    "inpay": "invoice_payment",
    "txn": "balance_transaction",
    "po": "payout",
    "re": "refund",
    "evt": "event",
    "we": "webhook_endpoint",
    "prod": "product",
    "price": "price",
    "txr": "tax_rate",
}


# The fields Stripe marks "Expandable", per object kind, as paths inside the object
# (``invoice_settings.default_payment_method``). Another field holding an id (``id``
# itself, ``number``) is not expandable: ``expand[]=id`` is refused, not drawn as the object.
# Kinds not listed (line items, tax rates, events) take any field that names an object.
EXPANDABLE: dict[str, frozenset[str]] = {
    "customer": frozenset({"default_source", "invoice_settings.default_payment_method", "test_clock"}),
    "invoice": frozenset({"account_tax_ids", "application", "customer", "default_payment_method", "default_source",
                          "discounts", "from_invoice.invoice", "latest_revision", "on_behalf_of", "test_clock"}),
    "invoiceitem": frozenset({"customer", "discounts", "invoice", "test_clock"}),
    "charge": frozenset({"application", "application_fee", "balance_transaction", "customer",
                         "failure_balance_transaction", "invoice", "on_behalf_of", "payment_intent", "review",
                         "source_transfer", "transfer"}),
    "payment_intent": frozenset({"application", "customer", "latest_charge", "on_behalf_of", "payment_method",
                                 "review"}),
    "invoice_payment": frozenset({"invoice", "payment.charge", "payment.payment_intent", "payment.payment_record"}),
    "balance_transaction": frozenset({"source"}),
    "payout": frozenset({"application_fee", "balance_transaction", "destination", "failure_balance_transaction",
                         "original_payout", "reversed_by"}),
    "refund": frozenset({"balance_transaction", "charge", "failure_balance_transaction", "payment_intent",
                         "source_transfer_reversal", "transfer_reversal"}),
    "product": frozenset({"default_price", "tax_code"}),
    "price": frozenset({"product"}),
    "webhook_endpoint": frozenset(),
}


@dataclass(frozen=True)
class SandboxSettings:
    """How the simulated Stripe behaves. Defaults follow Stripe's US standard pricing."""

    fee_percent: Decimal = Decimal("2.9")
    fee_fixed_cents: int = 30
    available_after_days: int = 2
    payout_arrival_days: int = 1
    # An automatic payout's transactions are listed by ``balance_transactions?payout=`` once
    # its ``reconciliation_status`` is ``completed`` ("for most payouts, within a few minutes
    # of payout creation"); a positive delay keeps a new one ``in_progress`` that long.
    payout_reconciliation_delay_s: int = 0
    default_days_until_due: int = 30
    webhook_retry_delays: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    webhook_timeout_s: float = 5.0
    api_version: str = DEFAULT_API_VERSION
    account_name: str = "GTM Sandbox Partner"
    # Stripe's search is eventually consistent ("data is searchable in less than a
    # minute"); a positive lag makes fresh objects invisible to search for that long.
    search_lag_s: float = 0.0


@dataclass
class IdempotencyRecord:
    method: str
    path: str
    params: Any
    created: int
    status: int | None = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


class Account:
    """One data space: objects by kind (insertion order = creation order), keys, events."""

    def __init__(self, account_id: str, *, connected: bool) -> None:
        self.id = account_id
        self.connected = connected
        self.objects: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in PREFIXES.values()}
        self.idempotency: dict[str, IdempotencyRecord] = {}
        self.searchable_at: dict[str, float] = {}

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.objects[obj["object"]][obj["id"]] = obj
        self.searchable_at[obj["id"]] = time.monotonic()
        return obj

    def get(self, object_id: str) -> dict[str, Any] | None:
        kind = PREFIXES.get(object_id.split("_", 1)[0])
        if kind is None:
            return None
        return self.objects[kind].get(object_id)

    def all(self, kind: str) -> Iterator[dict[str, Any]]:
        """Newest first, as Stripe lists them."""
        return reversed(list(self.objects[kind].values()))


Renderer = Callable[["World", Account, dict[str, Any], str], dict[str, Any]]
Includable = Callable[["World", Account, dict[str, Any], str], Any]


def strip_private(obj: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a stored object without the sandbox's own ``_``-prefixed fields."""
    return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}


class World:
    def __init__(self, settings: SandboxSettings | None = None) -> None:
        self.settings = settings or SandboxSettings()
        self.lock = threading.RLock()
        self.offset_s = 0
        self.platform = Account(new_id("acct", 16), connected=False)
        self.accounts: dict[str, Account] = {self.platform.id: self.platform}
        self.base_url = "http://127.0.0.1"
        self.dispatcher: WebhookDispatcher | None = None
        self.renderers: dict[str, Renderer] = {}
        self.includables: dict[tuple[str, str], Includable] = {}
        # Clock listeners run (under the lock) after the clock moves: payouts arrive,
        # balance becomes available, drafts auto-finalize.
        self.tick_listeners: list[Callable[[World], None]] = []

    # -- clock -------------------------------------------------------------------------
    def now(self) -> int:
        return int(time.time()) + self.offset_s

    def advance(self, seconds: int) -> int:
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        with self.lock:
            self.offset_s += seconds
            for listener in self.tick_listeners:
                listener(self)
            return self.now()

    # -- accounts ----------------------------------------------------------------------
    def account(self, account_id: str | None) -> Account:
        """The platform account, or a connected account's separate data space (created on
        first use: any ``acct_…`` id names one)."""
        if not account_id:
            return self.platform
        found = self.accounts.get(account_id)
        if found is None:
            if not account_id.startswith("acct_"):
                raise invalid(f"The Stripe-Account header must be an account id (acct_…), got '{account_id}'.",
                              status=400)
            found = Account(account_id, connected=True)
            self.accounts[account_id] = found
        return found

    # -- rendering ---------------------------------------------------------------------
    def render(self, account: Account, obj: dict[str, Any], version: str | None = None) -> dict[str, Any]:
        version = version or self.settings.api_version
        renderer = self.renderers.get(obj["object"])
        return renderer(self, account, obj, version) if renderer else strip_private(obj)

    def expand(
        self, account: Account, response: dict[str, Any], paths: list[str], version: str | None
    ) -> dict[str, Any]:
        for path in paths:
            parts = path.split(".")
            if len(parts) > 4:
                raise invalid("You cannot expand more than 4 levels of a property.", param="expand")
            self._expand(account, response, parts, path, version)
        return response

    def _expand(self, account: Account, node: Any, parts: list[str], path: str, version: str | None,
                owner: tuple[str, ...] = ()) -> None:
        """``owner``: the kind of the nearest object up the path, then the keys from it to
        ``node`` (how ``EXPANDABLE`` names a nested field)."""
        if not parts or not isinstance(node, dict):
            return
        head, rest = parts[0], parts[1:]
        if node.get("object") in ("list", "search_result") and head == "data":
            for item in node.get("data", []):
                self._expand(account, item, rest, path, version)
            return
        if isinstance(node.get("object"), str):
            owner = (node["object"],)
        if head == "total_count" and node.get("object") == "search_result":
            node["total_count"] = node.pop("_total_count", len(node.get("data", [])))
            return
        includable = self.includables.get((str(node.get("object")), head))
        if includable is not None:
            stored = account.get(node["id"]) if isinstance(node.get("id"), str) else None
            node[head] = includable(self, account, stored or node, version or self.settings.api_version)
        elif head not in node:
            raise invalid(f"This property cannot be expanded ({path}).", param="expand")
        value = node.get(head)
        if isinstance(value, str):
            expandable = EXPANDABLE.get(owner[0]) if owner else None
            target = account.get(value)
            if target is None or (expandable is not None and ".".join((*owner[1:], head)) not in expandable):
                raise invalid(f"This property cannot be expanded ({path}).", param="expand")
            node[head] = self.render(account, target, version)
        self._expand(account, node.get(head), rest, path, version, (*owner, head))

    # -- events ------------------------------------------------------------------------
    def emit(
        self,
        account: Account,
        event_type: str,
        obj: dict[str, Any],
        *,
        previous_attributes: dict[str, Any] | None = None,
        request: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Record an event (data.object is a snapshot taken now) and queue its webhooks.
        ``previous_attributes`` is "only included in events of type ``*.updated``"."""
        data: dict[str, Any] = {"object": self.render(account, obj)}
        if previous_attributes and event_type.endswith(".updated"):
            data["previous_attributes"] = previous_attributes
        event: dict[str, Any] = {
            "id": new_id("evt"),
            "object": "event",
            "api_version": self.settings.api_version,
            "created": self.now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": 0,
            "request": request or {"id": None, "idempotency_key": None},
            "type": event_type,
        }
        if account.connected:
            event["account"] = account.id
        account.add(event)
        if self.dispatcher is not None:
            self.dispatcher.publish(self, account, event, source=obj)
        return event
