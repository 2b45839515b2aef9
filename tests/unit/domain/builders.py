"""Builders for domain tests: read like the partner's catalogue (seed 003)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import Decimal

from connector.domain import Order, OrderItem

ORG_ID = "00D5g000004ExAmPLE"


def core_app(quantity: int = 10, price: str = "50.00", share: str = "15") -> OrderItem:
    return OrderItem(quantity, Decimal(price), Decimal(share), ppp_id="ppp-core", ppp_name="Core App")


def premium_add_on(quantity: int = 1, price: str = "200.00", share: str = "10") -> OrderItem:
    return OrderItem(quantity, Decimal(price), Decimal(share), ppp_id="ppp-premium", ppp_name="Premium Add-On")


def an_order(
    *,
    order_id: str = "a0B5g00000ORDER1",
    number: str = "00000101",
    email: str | None = "ap@acme.example",
    currency: str | None = "USD",
    term: int | Decimal | None = 12,
    subtotal: str | None = None,
    start: date | None = date(2025, 1, 1),
    items: Iterable[OrderItem] = (),
    add_on_to: date | None = None,
) -> Order:
    """An order of Acme Corp; ``add_on_to``: an add-on to an initial order starting that day."""
    return Order(
        org_id=ORG_ID,
        order_id=order_id,
        order_number=number,
        billing_email=email,
        customer_name="Acme Corp",
        currency=currency,
        contract_term_months=term,
        subtotal=None if subtotal is None else Decimal(subtotal),
        service_start_date=start,
        items=tuple(items),
        is_add_on=add_on_to is not None,
        initial_order_id="a0B5g00000INITIAL" if add_on_to is not None else None,
        initial_start_date=add_on_to,
    )


def item(
    name: str = "Core App",
    quantity: int = 10,
    price: str = "50.00",
    *,
    ppp_id: str = "ppp-core",
    org_total: str | None = None,
    item_id: str | None = None,
) -> OrderItem:
    return OrderItem(
        quantity,
        Decimal(price),
        ppp_id=ppp_id,
        ppp_name=name,
        line_item_total=None if org_total is None else Decimal(org_total),
        item_id=item_id,
    )
