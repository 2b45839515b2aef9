"""Money: ``Decimal`` everywhere, half-up to the cent, integer cents only at the Stripe edge.

Floats are refused on purpose: ``0.1 + 0.2`` must never reach an invoice. Amounts arrive
as strings (JSON text, SOQL results parsed with ``parse_float=Decimal``), ints or Decimals.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow
from typing import TypeAlias

Money: TypeAlias = Decimal
CENT = Decimal("0.01")

# Wide enough that every product we form (quantity x price x term x percent) is exact;
# rounding happens only where a money rule says so, never by running out of digits.
EXACT_DIGITS = 60
_WIDE = Context(prec=EXACT_DIGITS, rounding=ROUND_HALF_UP)
# Same width, but any rounding at all raises: products must be exact.
_EXACT = Context(prec=EXACT_DIGITS, rounding=ROUND_HALF_UP, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])


# Exponents a number may carry: the default context's. Past them ``1e999999999`` is short
# text whose digits (``int()``, ``format(x, "f")``, a JSON body) run to a billion.
_ADJUSTED = range(-999_999, 1_000_000)


def _as_decimal(value: object, what: str = "amount") -> Decimal:
    """Turn a str/int/Decimal into a finite Decimal of a usable size; refuse floats and bools."""
    if type(value) is Decimal and value.is_finite() and value.adjusted() in _ADJUSTED:
        return value  # the common case, kept cheap: this runs for every amount
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError(f"{what} must be a str, int or Decimal, not {type(value).__name__} ({value!r})")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{what} is not a number: {value!r}") from None
    else:
        raise TypeError(f"{what} must be a str, int or Decimal, not {type(value).__name__}")
    if not number.is_finite():
        raise ValueError(f"{what} must be finite, got {value!r}")
    if number.adjusted() not in _ADJUSTED:
        raise ValueError(f"{what} is out of range, got {number}")
    return number


def round_half_up_cents(amount: Decimal) -> Decimal:
    """Round to the cent, half away from zero (``ROUND_HALF_UP``): 0.005 -> 0.01."""
    try:
        return amount.quantize(CENT, rounding=ROUND_HALF_UP, context=_WIDE)
    except InvalidOperation:
        raise ValueError(f"amount out of range: {amount!r}") from None


def to_money(value: str | int | Decimal) -> Decimal:
    """Parse an amount and round it half-up to cents. Floats raise ``TypeError``."""
    return round_half_up_cents(_as_decimal(value))


def exact_decimal(value: str | int | Decimal, what: str = "amount") -> Decimal:
    """Parse without rounding (unit prices may carry sub-cent digits; totals are rounded)."""
    return _as_decimal(value, what)


def multiply(*factors: Decimal | int) -> Decimal:
    """Exact product; ``ValueError`` rather than a silently rounded one (>60 digits)."""
    result = Decimal(1)
    try:
        for factor in factors:
            result = _EXACT.multiply(result, factor)
    except (Inexact, Overflow):
        raise ValueError(f"product of {', '.join(map(str, factors))} has too many digits to be exact") from None
    return result


def total(amounts: Iterable[Decimal]) -> Decimal:
    """Exact sum (``0.00`` for none); ``ValueError`` rather than a rounded one (>60 digits).

    Not ``sum()``: that adds in the thread's default context (28 digits), so a subtotal of
    huge lines would come out silently rounded instead of refused."""
    result = Decimal("0.00")
    try:
        for amount in amounts:
            result = _EXACT.add(result, amount)
    except (Inexact, Overflow):
        raise ValueError("sum has too many digits to be exact") from None
    return result


def difference(minuend: Decimal, subtrahend: Decimal) -> Decimal:
    """Exact ``minuend - subtrahend``; ``ValueError`` rather than a rounded one (>60 digits)."""
    try:
        return _EXACT.subtract(minuend, subtrahend)
    except (Inexact, Overflow):
        raise ValueError(f"{minuend} - {subtrahend} has too many digits to be exact") from None


def percent_of(amount: Decimal, percent: Decimal) -> Decimal:
    """``amount x percent / 100``, exact (rounding is the caller's money rule)."""
    return multiply(amount, percent).scaleb(-2, context=_EXACT)


def ratio_half_up_cents(cents: int, numerator: int, denominator: int) -> Decimal:
    """``cents x numerator / denominator`` rounded half-up to a cent, in exact integer maths.

    Used for proration so no intermediate decimal rounding (28 digits) can tip a half-cent.
    """
    if denominator <= 0:
        raise ValueError(f"denominator must be positive, got {denominator}")
    product = cents * numerator
    magnitude = (2 * abs(product) + denominator) // (2 * denominator)
    return from_cents(magnitude if product >= 0 else -magnitude)


def to_cents(amount: Decimal) -> int:
    """Exact integer cents for Stripe. Raises ``ValueError`` if ``amount`` has sub-cent digits."""
    if isinstance(amount, bool) or not isinstance(amount, Decimal):
        raise TypeError(f"to_cents needs a Decimal, not {type(amount).__name__}")
    if not amount.is_finite():
        raise ValueError(f"amount must be finite, got {amount!r}")
    scaled = amount.scaleb(2, context=_WIDE)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"amount {amount} is not a whole number of cents")
    return int(scaled)


def from_cents(cents: int) -> Decimal:
    """``726000`` -> ``Decimal("7260.00")``."""
    if isinstance(cents, bool) or not isinstance(cents, int):
        raise TypeError(f"from_cents needs an int, not {type(cents).__name__}")
    return Decimal(cents).scaleb(-2, context=_WIDE)


def format_money(amount: Decimal) -> str:
    """Plain two-decimal text, no sign for zero: ``Decimal("7260")`` -> ``"7260.00"``."""
    rounded = round_half_up_cents(amount)
    if rounded.is_zero():
        rounded = abs(rounded)  # never print "-0.00"
    return f"{rounded:f}"
