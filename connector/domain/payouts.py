"""Expected payout per order (seed 003).

line total = quantity x unit price per month x 12 (prorated first for an add-on);
revenue share per line = line total x PPC revenue share % / 100, half-up to the cent *per
line*; order share = sum of line shares; expected payout = subtotal - order share.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from connector.domain.money import difference, percent_of, round_half_up_cents, total
from connector.domain.orders import NO_REVENUE_SHARE, ORDER_WITHOUT_ITEMS, Order, OrderItem, add_on_proration
from connector.domain.pricing import CONTRACT_TERM_MONTHS, line_total
from connector.domain.proration import Proration, ProrationPolicy
from connector.domain.validation import (
    LINE_RULES,
    UNSUPPORTED_CURRENCY,
    check_fields,
    parse_currency,
    parse_term,
    show,
)
from connector.errors import RecordError


@dataclass(frozen=True)
class LineEstimate:
    line_total: Decimal
    revenue_share: Decimal


@dataclass(frozen=True)
class PayoutEstimate:
    lines: tuple[LineEstimate, ...]
    subtotal: Decimal
    revenue_share: Decimal
    expected_payout: Decimal


def revenue_share(line_amount: Decimal, percent: Decimal) -> Decimal:
    """Salesforce's share of one line: ``6000.00 x 15% = 900.00``, half-up to the cent."""
    return round_half_up_cents(percent_of(line_amount, percent))


def order_payout(order: Order, policy: ProrationPolicy | str = ProrationPolicy.DAILY) -> PayoutEstimate:
    """The expected payout of ``order``: its items, prorated by the add-on rule under
    ``policy``, on its contract term (12 when the org gives none; any other is refused).

    ``RecordError`` (``record_id`` = the order id): ``ORDER_WITHOUT_ITEMS``,
    ``UNSUPPORTED_CURRENCY`` (a currency given and not USD), ``NO_REVENUE_SHARE`` (an item
    whose PPP leads to no PPC share), the add-on rule's codes (``add_on_proration``) and
    ``expected_payout``'s, naming ``items[i].<field>``."""
    if not order.items:
        raise RecordError("order has no items", record_id=order.order_id, code=ORDER_WITHOUT_ITEMS)
    if order.currency is not None:
        # DESIGN: USD only. Its prices are not dollars, so no payout in dollars is expected of
        # it; no currency at all is computed (an org without multi-currency keeps none).
        _, problems = check_fields({"currency": order.currency}, {"currency": parse_currency})
        if problems:
            raise RecordError("; ".join(problems), record_id=order.order_id, code=UNSUPPORTED_CURRENCY)
    for item in order.items:
        if item.revenue_share_percent is None:
            raise RecordError(f"item {item.item_id}: no revenue share (PPP {item.ppp_id} -> PPC {item.ppc_id})",
                              record_id=order.order_id, code=NO_REVENUE_SHARE)
    proration = add_on_proration(order, policy)
    term = CONTRACT_TERM_MONTHS if order.contract_term_months is None else order.contract_term_months
    try:
        return expected_payout(order.items, term, proration, where="items")
    except RecordError as exc:
        raise RecordError(exc.reason, record_id=order.order_id, code=exc.code) from None


def expected_payout(
    lines: Iterable[OrderItem],
    term_months: int | Decimal = CONTRACT_TERM_MONTHS,
    proration: Proration | None = None,
    *,
    where: str = "lines",
) -> PayoutEstimate:
    """Subtotal, Salesforce's share and the partner's payout for one order.

    With ``proration`` every line total is prorated first and its share is taken on the
    prorated total. A bad line raises ``RecordError`` naming ``<where>[i].<field>``; a term
    other than 12 months is a ``RecordError`` too (DESIGN: a validation error on the record).
    """
    try:
        term = parse_term(term_months)
    except ValueError as exc:
        raise RecordError(f"contract_term_months: {exc}, got {show(term_months)}", code="UNSUPPORTED_TERM") from None
    estimates: list[LineEstimate] = []
    for index, line in enumerate(lines):
        quantity, monthly, percent = _clean_line(index, line, where)
        try:
            amount = line_total(quantity, monthly, term)
            if proration is not None:
                amount = proration.apply(amount, term)
            share = revenue_share(amount, percent)
        except (ValueError, ArithmeticError):
            # Exact arithmetic ran out of digits (absurd magnitudes): this order, not a crash.
            raise RecordError(
                f"{where}[{index}]: quantity x unit_price_per_month x {term} x revenue_share_percent "
                "has too many digits to compute exactly",
                code="AMOUNT_OUT_OF_RANGE",
            ) from None
        estimates.append(LineEstimate(amount, share))
    try:
        subtotal = total(e.line_total for e in estimates)
        share = total(e.revenue_share for e in estimates)
        return PayoutEstimate(tuple(estimates), subtotal, share, difference(subtotal, share))
    except ValueError:
        raise RecordError(f"{where}: the subtotal has too many digits to compute exactly",
                          code="AMOUNT_OUT_OF_RANGE") from None


def _clean_line(index: int, line: OrderItem, where: str = "lines") -> tuple[int, Decimal, Decimal]:
    """The line's values, checked by the validation table (``RecordError`` naming the field)."""
    quantity, monthly, percent = line.quantity, line.unit_price_per_month, line.revenue_share_percent
    # Fast path for lines that are already typed and in range (the usual case, and the
    # CLI's hot loop); anything else goes through the table for a precise message.
    if (
        type(quantity) is int
        and quantity > 0
        and type(monthly) is Decimal
        and monthly.is_finite()
        and monthly >= 0
        and type(percent) is Decimal
        and percent.is_finite()
        and 0 <= percent <= 100
    ):
        return quantity, monthly, percent
    values = {"quantity": quantity, "unit_price_per_month": monthly, "revenue_share_percent": percent}
    clean, problems = check_fields(values, LINE_RULES, prefix=f"{where}[{index}].")
    if problems:
        raise RecordError("; ".join(problems), code="INVALID_LINE")
    return clean["quantity"], clean["unit_price_per_month"], clean["revenue_share_percent"]  # type: ignore[return-value]
