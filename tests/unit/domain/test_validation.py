"""Order and line checks name the field and what is wrong with it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from connector.domain import validate_line, validate_order_terms


def test_a_good_seed_003_order_has_no_problems() -> None:
    assert validate_order_terms("USD", 12, billing_email="ap@acme.example",
                                items=[(10, Decimal("50"), Decimal("15")), (1, Decimal("200"), Decimal("10"))]) == []


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ((-3, Decimal("50")), "quantity: must be a positive integer, got -3"),
        ((0, Decimal("50")), "quantity: must be a positive integer, got 0"),
        ((Decimal("2.5"), Decimal("50")), "quantity: must be a positive integer, got 2.5"),
        # short texts, a million and a billion digits as an int: refused before int() builds them
        ((Decimal("1e999999"), Decimal("50")), "quantity: must be a whole number of at most 60 digits, got 1E+999999"),
        ((Decimal("1e999999999"), Decimal("50")), "quantity: must be a positive integer, got 1E+999999999"),
        (("1e999999999", Decimal("50")), 'quantity: must be a positive integer, got "1e999999999"'),
        ((1, Decimal("1e-999999999")), "unit_price_per_month: must be an amount, got 1E-999999999"),
        ((True, Decimal("50")), "quantity: must be a positive integer, got true"),
        ((None, Decimal("50")), "quantity: is required"),
        ((1, Decimal("-0.01")), "unit_price_per_month: must be an amount of 0 or more, got -0.01"),
        ((1, "fifty"), 'unit_price_per_month: must be an amount, got "fifty"'),
        ((1, 50.0),
         "unit_price_per_month: must be an amount given as a string or exact decimal, not a float, got 50.0"),
        ((1, Decimal("NaN")), "unit_price_per_month: must be an amount, got NaN"),
        ((1, Decimal("50"), Decimal("100.01")),
         "revenue_share_percent: must be a percentage between 0 and 100, got 100.01"),
        ((1, Decimal("50"), Decimal("-1")), "revenue_share_percent: must be a percentage between 0 and 100, got -1"),
    ],
)
def test_bad_line_values_are_named(line: tuple, problem: str) -> None:
    assert validate_line(*line, prefix="items[1].") == [f"items[1].{problem}"]


def test_salesforce_style_whole_number_quantity_is_accepted() -> None:
    assert validate_line(Decimal("10.0"), "50.00", Decimal("15")) == []


@pytest.mark.parametrize(
    ("terms", "problem"),
    [
        (("EUR", 12), 'currency: must be USD (the GTM app bills in US dollars only), got "EUR"'),
        (("USD", 24), "contract_term_months: must be 12 months, got 24"),
        (("USD", Decimal("1e999999999")), "contract_term_months: must be 12 months, got 1E+999999999"),
        (("USD", None), "contract_term_months: is required"),
        ((None, 12), "currency: is required"),
    ],
)
def test_order_terms_outside_usd_and_12_months_are_problems(terms: tuple, problem: str) -> None:
    assert validate_order_terms(*terms) == [problem]


def test_lowercase_usd_and_a_decimal_12_are_fine() -> None:
    assert validate_order_terms("usd", Decimal("12.0")) == []


def test_every_problem_is_listed_at_once() -> None:
    problems = validate_order_terms("GBP", 6, billing_email="", items=[(1, "10"), (-1, "-5")])
    assert problems == [
        'currency: must be USD (the GTM app bills in US dollars only), got "GBP"',
        "contract_term_months: must be 12 months, got 6",
        'billing_email: must be an email address (Stripe sends the invoice there), got ""',
        "items[1].quantity: must be a positive integer, got -1",
        'items[1].unit_price_per_month: must be an amount of 0 or more, got "-5"',
    ]


def test_an_order_without_items_is_a_problem() -> None:
    assert validate_order_terms("USD", 12, items=[]) == ["items: an order needs at least one item"]
