"""Entitlement view: add-on quantities add to what the customer already holds (seed 001)."""

from __future__ import annotations

from connector.domain import EntitlementItem, EntitlementOrder, OrderStatus, entitlements


def _order(order_id: str, status: OrderStatus, *items: tuple[str, int]) -> EntitlementOrder:
    return EntitlementOrder(order_id, status, tuple(EntitlementItem(ppp, qty) for ppp, qty in items))


def test_ten_plus_fifteen_add_on_licenses_make_25() -> None:
    initial = _order("initial", OrderStatus.ACTIVATED, ("product-a", 10))
    add_on = _order("add-on", OrderStatus.ACTIVATED, ("product-a", 15))
    assert entitlements([initial, add_on]) == {"product-a": 25}


def test_add_on_with_a_new_product_adds_a_row() -> None:
    initial = _order("initial", OrderStatus.ACTIVATED, ("core", 10), ("premium", 1))
    add_on = _order("add-on", OrderStatus.PROCESSING, ("core", 5), ("analytics", 3))
    assert entitlements([initial, add_on]) == {"core": 15, "premium": 1, "analytics": 3}


def test_orders_in_error_or_expired_are_not_counted_by_default() -> None:
    orders = [
        _order("initial", OrderStatus.ACTIVATED, ("core", 10)),
        _order("broken", OrderStatus.ERROR, ("core", 100)),
        _order("old", OrderStatus.EXPIRED, ("core", 7)),
        _order("accepted", OrderStatus.NEW, ("core", 2)),
    ]
    assert entitlements(orders) == {"core": 12}
    assert entitlements(orders, counted=frozenset(OrderStatus)) == {"core": 119}


def test_no_orders_no_licenses() -> None:
    assert entitlements([]) == {}
