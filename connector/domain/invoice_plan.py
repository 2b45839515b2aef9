"""The Stripe invoice for one GTM order, planned as plain data (no Stripe here).

One line per order item, upfront for the 12-month term, ``send_invoice`` with NET30.

Line shape (so every line satisfies ``amount == quantity x unit_amount`` in whole cents,
whichever way the Stripe adapter sends it, and ``sum(amounts) == total``):
- initial order: ``quantity`` = licenses, ``unit_amount`` = monthly price x 12,
  ``amount`` = the line total. If the annual unit price has sub-cent digits (a monthly
  price like 0.125 is fine, 0.1234 is not) the line is sent as quantity 1 at the rounded
  line total instead, with the license count in the description.
- add-on order (``proration`` given): quantity 1, ``unit_amount = amount`` = the prorated
  line total; the description names the licenses and the prorated span, and the license
  count is in the line metadata. A prorated total is not a whole number of cents per
  license in general, so quantity N could not be exact.

Checks against the org (a mismatch is a ``RecordError`` for that order, never absorbed):
- each item's ``line_item_total``, when the org gives one, must equal our unprorated line
  total; for an add-on the prorated amount is accepted too.
- the order ``subtotal``, when given, must equal the sum of the unprorated line totals;
  for an add-on the sum of the prorated amounts (what we invoice) is accepted too, since
  the GTM app shows add-on subtotals prorated.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from types import MappingProxyType

from connector.domain.money import format_money, round_half_up_cents, total
from connector.domain.orders import Order, OrderItem
from connector.domain.pricing import CONTRACT_TERM_MONTHS, annual_unit_price, line_total
from connector.domain.proration import Proration, check_service_date, initial_end_date
from connector.domain.validation import (
    UNSUPPORTED_CURRENCY,
    check_fields,
    parse_currency,
    parse_email,
    parse_quantity,
    parse_term,
    parse_unit_price,
    show,
)
from connector.errors import RecordError

NET_DAYS = 30


@dataclass(frozen=True)
class InvoiceLine:
    description: str
    quantity: int
    unit_amount: Decimal
    amount: Decimal
    ppp_id: str | None
    metadata: Mapping[str, str]

    def __hash__(self) -> int:  # metadata is a read-only mapping, not hashable itself
        return hash((self.description, self.quantity, self.unit_amount, self.amount, self.ppp_id,
                     tuple(sorted(self.metadata.items()))))


@dataclass(frozen=True, kw_only=True)
class InvoicePlan:
    org_id: str
    order_id: str
    order_number: str | None
    customer_email: str
    customer_name: str | None
    currency: str = "usd"
    days_until_due: int = NET_DAYS
    lines: tuple[InvoiceLine, ...]
    total: Decimal
    metadata: Mapping[str, str]
    version: str

    def __hash__(self) -> int:
        return hash((self.org_id, self.order_id, self.version))


class _Problems:
    """Collects ``(code, message)`` so one RecordError names everything wrong at once."""

    def __init__(self, order: Order) -> None:
        self.order = order
        self.items: list[tuple[str, str]] = []

    def add(self, code: str, message: str) -> None:
        self.items.append((code, message))

    def raise_if_any(self) -> None:
        if self.items:
            label = self.order.order_number or self.order.order_id
            reason = f"order {label}: " + "; ".join(message for _, message in self.items)
            raise RecordError(reason, record_id=self.order.order_id, code=self.items[0][0])


_ORDER_CHECKS = (
    ("currency", parse_currency, UNSUPPORTED_CURRENCY),
    ("contract_term_months", parse_term, "UNSUPPORTED_TERM"),
    ("billing_email", parse_email, "MISSING_BILLING_EMAIL"),
)


def _check_order(order: Order, problems: _Problems) -> None:
    for field, parse, code in _ORDER_CHECKS:
        _, found = check_fields({field: getattr(order, field)}, {field: parse})
        for message in found:
            problems.add(code, message)


def _frozen(mapping: dict[str, str | None]) -> Mapping[str, str]:
    return MappingProxyType({k: v for k, v in mapping.items() if v is not None})


def _clean_item(where: str, item: OrderItem, problems: _Problems) -> tuple[int, Decimal, str] | None:
    """(quantity, monthly price, customer-facing name), or None after noting problems."""
    clean, found = check_fields(
        {"quantity": item.quantity, "unit_price_per_month": item.unit_price_per_month},
        {"quantity": parse_quantity, "unit_price_per_month": parse_unit_price},
        prefix=f"{where}.",
    )
    name = str(item.ppp_name or "").strip()
    if not name:
        found.append(f"{where}.ppp_name: is required (it is the line the customer reads)")
    for message in found:
        problems.add("INVALID_ITEM", message)
    if found:
        return None
    return clean["quantity"], clean["unit_price_per_month"], name  # type: ignore[return-value]


def _org_total_agrees(where: str, item: OrderItem, quantity: int, monthly: Decimal,
                      full: Decimal, amount: Decimal, problems: _Problems) -> bool:
    """The org's LineItemTotal, when given, must be our full (or, for add-ons, prorated) total."""
    org_total = item.line_item_total
    if org_total is None or org_total in (full, amount):
        return True
    expected = format_money(full) if amount == full else f"{format_money(full)} (prorated {format_money(amount)})"
    problems.add(
        "LINE_TOTAL_MISMATCH",
        f"{where}.line_item_total: the org says {show(org_total)}, "
        f"{quantity} x {monthly} x {CONTRACT_TERM_MONTHS} = {expected}",
    )
    return False


def _plan_line(
    index: int, item: OrderItem, order: Order, proration: Proration | None, problems: _Problems
) -> tuple[InvoiceLine, Decimal] | None:
    """The invoice line and the item's unprorated total, or None after noting problems."""
    where = f"items[{index}]"
    cleaned = _clean_item(where, item, problems)
    if cleaned is None:
        return None
    quantity, monthly, name = cleaned
    try:
        full = amount = line_total(quantity, monthly)
        unit = annual_unit_price(monthly)
        if proration is not None:
            amount = proration.apply(full)
    except RecordError as exc:
        problems.add(exc.code, f"{where}: {exc.reason}")
        return None
    except (ValueError, ArithmeticError):
        # Exact arithmetic ran out of digits (absurd magnitudes): quarantine, don't crash.
        problems.add("AMOUNT_OUT_OF_RANGE",
                     f"{where}: {quantity} x {monthly} x {CONTRACT_TERM_MONTHS} has too many digits")
        return None
    if not _org_total_agrees(where, item, quantity, monthly, full, amount, problems):
        return None
    licenses = f"{quantity} license" + ("" if quantity == 1 else "s")
    metadata = _frozen(
        {
            "gtm_ppp_id": item.ppp_id,
            "gtm_order_item_id": item.item_id,
            "licenses": str(quantity),
            "unit_price_per_month": str(monthly),
        }
    )
    if proration is not None:
        description = f"{name}: {licenses} added, {proration.describe()}"
        return InvoiceLine(description, 1, amount, amount, item.ppp_id, metadata), full
    description = _term_description(name, order.service_start_date)
    if unit != round_half_up_cents(unit):
        # Sub-cent annual unit price: bill the rounded total as one unit so it stays exact.
        bundled = f"{description} ({licenses} at {monthly}/month)"
        return InvoiceLine(bundled, 1, amount, amount, item.ppp_id, metadata), full
    return InvoiceLine(description, quantity, round_half_up_cents(unit), amount, item.ppp_id, metadata), full


def _term_description(name: str, start: date | None) -> str:
    text = f"{name}: {CONTRACT_TERM_MONTHS}-month subscription"
    if start is not None:
        text += f", {start.isoformat()} to {initial_end_date(start).isoformat()}"
    return text


MAX_INVOICE_LINES = 250  # Stripe's limit of line items on one invoice


@dataclass(frozen=True)
class OrderLimits:
    """Sanity ceilings per order (``[invoicing] max_order_total`` / ``max_quantity``): an
    order over them is quarantined for a person to look at, never invoiced as it is."""

    max_total: Decimal | None = None
    max_quantity: int | None = None


def _check_before_lines(order: Order, proration: Proration | None, problems: _Problems) -> None:
    """The order-level checks made before any line is planned; raises at once when a later
    step could not compute (a bad service date, more lines than Stripe takes)."""
    items = order.items
    if order.service_start_date is not None:
        try:
            check_service_date(order.service_start_date, "service_start_date")
        except RecordError as exc:
            problems.add(exc.code, exc.reason)
            problems.raise_if_any()  # every later step computes with this date
    _check_order(order, problems)
    if proration is not None and order.service_start_date not in (None, proration.addon_start):
        problems.add(
            "ADDON_START_MISMATCH",
            f"service_start_date: the add-on starts {order.service_start_date} "
            f"but was prorated from {proration.addon_start}",
        )
    if not items:
        problems.add("NO_ITEMS", "items: an order needs at least one item to invoice")
    if len(items) > MAX_INVOICE_LINES:
        # Checked before anything is sent: Stripe would refuse the lines after the draft exists.
        problems.add("TOO_MANY_LINES", f"items: {len(items)} order items, a Stripe invoice holds at most "
                                       f"{MAX_INVOICE_LINES} lines")
        problems.raise_if_any()


def _check_quantities(items: Sequence[OrderItem], planned: Sequence[tuple[InvoiceLine, Decimal] | None],
                      max_quantity: int, problems: _Problems) -> None:
    """``max_quantity`` for each item that planned (the others already have a problem)."""
    for index, (item, pair) in enumerate(zip(items, planned, strict=True)):
        if pair is not None and parse_quantity(item.quantity) > max_quantity:
            problems.add("QUANTITY_OVER_LIMIT", f"items[{index}].quantity: {parse_quantity(item.quantity)} "
                                                f"is above max_quantity {max_quantity}")


def _check_subtotal(order: Order, full_sum: Decimal, total: Decimal, problems: _Problems) -> None:
    """The org's subtotal must be the items' full or prorated sum; raises if it is neither."""
    if order.subtotal is not None and order.subtotal != full_sum and order.subtotal != total:
        prorated = f" (prorated {format_money(total)})" if total != full_sum else ""
        problems.add(
            "SUBTOTAL_MISMATCH",
            f"subtotal: the org says {show(order.subtotal)}, the items add up to {format_money(full_sum)}{prorated}",
        )
        problems.raise_if_any()


def plan_invoice(
    order: Order,
    *,
    days_until_due: int = NET_DAYS,
    proration: Proration | None = None,
    limits: OrderLimits | None = None,
) -> InvoicePlan:
    """Plan the one Stripe invoice for ``order`` (one line per item); ``proration`` (the
    add-on rule's, ``add_on_proration``) makes it an add-on invoice.

    Raises ``RecordError`` (``record_id`` = order id, reason naming the order number and
    each bad field) when the order cannot be invoiced as the org describes it.
    """
    if isinstance(days_until_due, bool) or not isinstance(days_until_due, int) or days_until_due < 1:
        raise ValueError(f"days_until_due must be a positive number of days, got {days_until_due!r}")
    if order.org_id is None:
        raise ValueError(f"order {order.order_id}: an invoice is planned for an org's order (org_id is None)")
    org_id = order.org_id
    items = order.items
    problems = _Problems(order)
    _check_before_lines(order, proration, problems)
    planned = [_plan_line(index, item, order, proration, problems) for index, item in enumerate(items)]
    if limits is not None and limits.max_quantity is not None:
        _check_quantities(items, planned, limits.max_quantity, problems)
    problems.raise_if_any()  # every None in `planned` came with a problem
    pairs = [pair for pair in planned if pair is not None]
    lines = tuple(line for line, _ in pairs)
    try:
        full_sum = total(full for _, full in pairs)
        invoiced = total(line.amount for line in lines)
    except ValueError:
        problems.add("AMOUNT_OUT_OF_RANGE", "total: the items add up to too many digits to compute exactly")
        problems.raise_if_any()
    _check_subtotal(order, full_sum, invoiced, problems)
    if limits is not None and limits.max_total is not None and invoiced > limits.max_total:
        problems.add("AMOUNT_OVER_LIMIT", f"total: {format_money(invoiced)} is above max_order_total "
                                          f"{format_money(limits.max_total)}")
        problems.raise_if_any()
    metadata = _frozen(
        {
            "gtm_org_id": org_id,
            "gtm_order_id": order.order_id,
            "gtm_order_number": order.order_number,
            "gtm_order_type": "add_on" if proration is not None else "initial",
            "gtm_proration": str(proration.policy) if proration is not None else None,
            "gtm_service_period": _service_period(order, proration),
        }
    )
    content = dict(
        org_id=org_id,
        order_id=order.order_id,
        order_number=order.order_number,
        customer_email=parse_email(order.billing_email),
        customer_name=order.customer_name,
        currency="usd",
        days_until_due=days_until_due,
        lines=lines,
        total=invoiced,
        metadata=metadata,
    )
    return InvoicePlan(**content, version=_version(content))  # type: ignore[arg-type]


def _service_period(order: Order, proration: Proration | None) -> str | None:
    if proration is not None:
        return f"{proration.addon_start.isoformat()}..{proration.initial_end().isoformat()}"
    if order.service_start_date is not None:
        end = initial_end_date(order.service_start_date)
        return f"{order.service_start_date.isoformat()}..{end.isoformat()}"
    return None


def _version(content: Mapping[str, object]) -> str:
    """Short stable hash of what the invoice says; changes whenever the invoice would."""

    def plain(value: object) -> object:
        if isinstance(value, Decimal):
            return format_money(value)
        if isinstance(value, InvoiceLine):
            return [value.description, value.quantity, format_money(value.unit_amount),
                    format_money(value.amount), value.ppp_id, plain(value.metadata)]
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in sorted(value.items())}
        return value

    text = json.dumps(plain(content), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
