"""Money is Decimal, rounded half-up to the cent; integer cents only at the Stripe edge."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.domain import CENT, format_money, from_cents, round_half_up_cents, to_cents, to_money
from connector.domain.money import exact_decimal, multiply, percent_of


def test_amounts_from_the_wire_become_cents() -> None:
    assert to_money("7260") == Decimal("7260.00")
    assert to_money("7260").as_tuple().exponent == -2
    assert to_money(50) == Decimal("50.00")
    assert to_money(Decimal("0.005")) == CENT
    assert to_money(" 12.345 ") == Decimal("12.35")


@pytest.mark.parametrize("value", [0.1, 50.0, True])
def test_floats_and_bools_are_refused_as_money(value: object) -> None:
    with pytest.raises(TypeError):
        to_money(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-inf", "abc", "$50", "", Decimal("NaN"), "1e100"])
def test_unusable_amounts_are_refused(value: object) -> None:
    with pytest.raises(ValueError):
        to_money(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["1e999999999", Decimal("1e1000000"), Decimal("-1e-999999999"), "0e-1000000"])
def test_exponents_past_the_default_contexts_are_refused_not_expanded(value: object) -> None:
    # short text, a billion digits once expanded (int(), format(x, "f"), a JSON body)
    with pytest.raises(ValueError, match="out of range"):
        exact_decimal(value)  # type: ignore[arg-type]
    assert exact_decimal(Decimal("1e999999")) == Decimal("1e999999")  # the largest exponent kept


@pytest.mark.parametrize(
    ("amount", "rounded"),
    [
        ("0.005", "0.01"),
        ("0.015", "0.02"),
        ("2.625", "2.63"),  # banker's rounding would give 2.62
        ("179.982", "179.98"),
        ("-0.005", "-0.01"),  # half away from zero
        ("7260", "7260.00"),
    ],
)
def test_rounding_is_half_up_to_the_cent(amount: str, rounded: str) -> None:
    assert round_half_up_cents(Decimal(amount)) == Decimal(rounded)


def test_stripe_gets_exact_integer_cents() -> None:
    assert to_cents(Decimal("7260.00")) == 726000
    assert to_cents(Decimal("7260")) == 726000
    assert to_cents(Decimal("0.01")) == 1
    assert from_cents(726000) == Decimal("7260.00")
    assert str(from_cents(726000)) == "7260.00"
    assert str(from_cents(5)) == "0.05"


def test_sub_cent_amount_never_reaches_stripe() -> None:
    with pytest.raises(ValueError, match="not a whole number of cents"):
        to_cents(Decimal("12.345"))
    with pytest.raises(TypeError):
        to_cents(12.34)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        from_cents(Decimal("12"))  # type: ignore[arg-type]


def test_money_prints_with_two_decimals() -> None:
    assert format_money(Decimal("7260")) == "7260.00"
    assert format_money(Decimal("1234567.891")) == "1234567.89"
    assert format_money(Decimal("-0.004")) == "0.00"
    assert format_money(Decimal("-12.5")) == "-12.50"


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_cents_round_trip(cents: int) -> None:
    assert to_cents(from_cents(cents)) == cents
    assert to_money(format_money(from_cents(cents))) == from_cents(cents)


def test_products_are_exact_or_refused() -> None:
    assert multiply(10, Decimal("50.00"), 12) == Decimal("6000.00")
    assert percent_of(Decimal("6000.00"), Decimal("12.345")) == Decimal("740.7000")
    with pytest.raises(ValueError, match="too many digits"):
        multiply(Decimal("1." + "1" * 40), Decimal("1." + "1" * 40))
