"""Line totals: quantity x unit price per month x contract term (seed 003)."""

from __future__ import annotations

from decimal import Decimal

from connector.domain.money import exact_decimal, multiply, round_half_up_cents

CONTRACT_TERM_MONTHS = 12


def line_total(
    quantity: int, unit_price_per_month: Decimal | str | int, term_months: int = CONTRACT_TERM_MONTHS
) -> Decimal:
    """``10 x 50.00 x 12 = 6000.00``: exact product, then half-up to the cent.

    Only a sub-cent unit price can make the rounding matter; the product itself is exact.
    """
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise TypeError(f"quantity must be an int, not {type(quantity).__name__}")
    if isinstance(term_months, bool) or not isinstance(term_months, int):
        raise TypeError(f"term_months must be an int, not {type(term_months).__name__}")
    price = exact_decimal(unit_price_per_month, "unit_price_per_month")
    return round_half_up_cents(multiply(quantity, price, term_months))


def annual_unit_price(unit_price_per_month: Decimal | str | int, term_months: int = CONTRACT_TERM_MONTHS) -> Decimal:
    """Price of one license for the whole term, unrounded (``50.00 x 12 = 600.00``)."""
    return multiply(exact_decimal(unit_price_per_month, "unit_price_per_month"), term_months)
