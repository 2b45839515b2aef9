"""What a customer holds: licenses per PPP across its initial and add-on orders.

Seed 001: an initial order of 10 licenses of Product A plus an add-on of 15 more leaves
the customer with 25. Pass the orders of *one* customer (one initial order and its
add-ons); the result maps PPP id -> total quantity.

Which orders count: by default those the customer has accepted and that are still
running — New, Processing and Activated. Orders in Error are left out (Salesforce or the
partner has to fix them first, and they may never provision) and Expired ones are over.
Pass ``counted`` to choose otherwise (e.g. ``frozenset(OrderStatus)`` for a history view).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from connector.domain.states import OrderStatus

ENTITLING_ORDER_STATES: frozenset[OrderStatus] = frozenset(
    {OrderStatus.NEW, OrderStatus.PROCESSING, OrderStatus.ACTIVATED}
)


@dataclass(frozen=True)
class EntitlementItem:
    ppp_id: str
    quantity: int


@dataclass(frozen=True)
class EntitlementOrder:
    order_id: str
    status: OrderStatus
    items: tuple[EntitlementItem, ...]


def entitlements(
    orders: Iterable[EntitlementOrder], *, counted: frozenset[OrderStatus] = ENTITLING_ORDER_STATES
) -> dict[str, int]:
    """Licenses per PPP: add-on quantities add to what the customer already has."""
    held: dict[str, int] = {}
    for order in orders:
        if OrderStatus(order.status) not in counted:
            continue
        for item in order.items:
            held[item.ppp_id] = held.get(item.ppp_id, 0) + item.quantity
    return held
