"""Attention flags: conditions a partner's operations engineer must act on, which no job
can resolve by itself. Pure: the store hands in plain rows, these functions say what is
flagged and why, in the partner's words. A flag is computed from the current local model
every time it is asked for, so it clears as soon as its cause is gone.

* **Order ended after invoicing** — an order the org moved to Error or Expired while its
  invoice stands (issued, not void): the customer has been billed for an order that is not
  running. Error always needs a look. Expired is the normal end of a term, so it is flagged
  only when the term was cut short (expired before its service end date) or the invoice
  still asks the customer for money (open or uncollectible). It clears when the order
  moves on, the invoice is voided, or (Expired) the invoice is paid and the term is over.
* **Sold but not provisionable** — a PPP on an item of an Activated order that has no
  product-license record (``SfdcPartnerProductLicense``): Salesforce cannot provision what
  the customer bought. Once per PPP, naming the orders. Clears when a license appears.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from connector.domain.states import InvoiceStatus, OrderStatus

ORDER_ERROR_AFTER_INVOICE = "ORDER_ERROR_AFTER_INVOICE"
ORDER_EXPIRED_AFTER_INVOICE = "ORDER_EXPIRED_AFTER_INVOICE"
SOLD_NOT_PROVISIONABLE = "SOLD_NOT_PROVISIONABLE"

# The order states that end an order's life; see the module docstring for when each is flagged.
ENDED_ORDER_STATES = frozenset({OrderStatus.ERROR, OrderStatus.EXPIRED})
UNSETTLED_INVOICE_STATES = frozenset({InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE})


@dataclass(frozen=True)
class InvoicedOrder:
    """An order with a local invoice, as the store reads it (``state``: the connector's
    order state; ``label``: the org's own status picklist value)."""

    order_id: str
    order_number: str | None
    state: str | None
    label: str | None
    service_end_date: date | None
    invoice_id: str | None  # Stripe invoice id
    invoice_number: str | None
    invoice_status: str | None


@dataclass(frozen=True)
class OrderAttention:
    order_id: str
    order_number: str | None
    code: str
    message: str

    def as_json(self) -> dict[str, str | None]:
        return {"order_id": self.order_id, "order_number": self.order_number, "code": self.code,
                "message": self.message}


@dataclass(frozen=True)
class SoldItem:
    """A PPP on an item of an Activated order."""

    ppp_id: str
    ppp_name: str | None
    order_id: str
    order_number: str | None


@dataclass(frozen=True)
class Unprovisionable:
    ppp_id: str
    ppp_name: str | None
    orders: tuple[str, ...]  # order numbers (ids where the number is unknown), sorted
    code: str = SOLD_NOT_PROVISIONABLE

    @property
    def message(self) -> str:
        name = f"{self.ppp_name} ({self.ppp_id})" if self.ppp_name else self.ppp_id
        which = "order" if len(self.orders) == 1 else "orders"
        return (f"sold but not provisionable: PPP {name} has no product license (SfdcPartnerProductLicense); "
                f"sold on {which} {', '.join(self.orders)}")

    def as_json(self) -> dict[str, object]:
        return {"ppp_id": self.ppp_id, "ppp_name": self.ppp_name, "orders": list(self.orders), "code": self.code,
                "message": self.message}


def order_attention(order: InvoicedOrder, *, today: date) -> OrderAttention | None:
    """The flag of one invoiced order, or None when its life after invoicing is in order."""
    if order.state not in ENDED_ORDER_STATES or order.invoice_id is None:
        return None
    if order.invoice_status in (InvoiceStatus.VOID, None, InvoiceStatus.DRAFT):
        return None  # nothing was issued, or the invoice is gone: nothing left to act on
    name = order.order_number or order.order_id
    invoice = order.invoice_number or order.invoice_id
    label = order.label or order.state
    if order.state == OrderStatus.ERROR:
        return OrderAttention(order.order_id, order.order_number, ORDER_ERROR_AFTER_INVOICE,
                              f"order {name} is {label} in the org after invoice {invoice} ({order.invoice_status}) "
                              "was issued: void or credit the invoice, or fix the order")
    cut_short = order.service_end_date is None or today < order.service_end_date
    unsettled = order.invoice_status in UNSETTLED_INVOICE_STATES
    if not (cut_short or unsettled):
        return None  # the term ran its course and the invoice is paid: the normal end
    reasons = []
    if cut_short:
        reasons.append(f"before its service end date {order.service_end_date.isoformat()}" if order.service_end_date
                       else "with no service end date")
    if unsettled:
        reasons.append(f"while invoice {invoice} is still {order.invoice_status}")
    return OrderAttention(order.order_id, order.order_number, ORDER_EXPIRED_AFTER_INVOICE,
                          f"order {name} is {label} after invoice {invoice} was issued, {' and '.join(reasons)}: "
                          "void or credit the invoice, or correct the order")


def orders_needing_attention(orders: Iterable[InvoicedOrder], *, today: date) -> list[OrderAttention]:
    """Every flagged order, by order number."""
    flagged = (order_attention(o, today=today) for o in orders)
    return sorted((f for f in flagged if f is not None), key=lambda f: (f.order_number or "", f.order_id))


def unprovisionable(sold: Iterable[SoldItem], licensed_ppps: Iterable[str] = ()) -> list[Unprovisionable]:
    """One flag per sold PPP without a product license, naming its orders; by PPP id."""
    licensed = set(licensed_ppps)
    by_ppp: dict[str, tuple[str | None, set[str]]] = {}
    for item in sold:
        if item.ppp_id in licensed:
            continue
        name, orders = by_ppp.setdefault(item.ppp_id, (item.ppp_name, set()))
        orders.add(item.order_number or item.order_id)
        if name is None and item.ppp_name:
            by_ppp[item.ppp_id] = (item.ppp_name, orders)
    return [Unprovisionable(ppp, name, tuple(sorted(orders))) for ppp, (name, orders) in sorted(by_ppp.items())]
