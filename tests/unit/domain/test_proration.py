"""Add-on proration: from the add-on start to the initial end date, both ends counted."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.domain import (
    ProrationPolicy,
    from_cents,
    initial_end_date,
    prorate,
    remaining_days,
    remaining_months,
    round_half_up_cents,
    term_days,
)
from connector.errors import RecordError

JAN_1 = date(2025, 1, 1)
CORE_APP_YEAR = Decimal("6000.00")


def test_term_runs_twelve_months_less_a_day() -> None:
    assert initial_end_date(JAN_1) == date(2025, 12, 31)
    assert term_days(JAN_1) == 365
    assert initial_end_date(date(2025, 3, 15)) == date(2026, 3, 14)


def test_term_spanning_29_february_has_366_days() -> None:
    assert initial_end_date(date(2024, 1, 1)) == date(2024, 12, 31)
    assert term_days(date(2024, 1, 1)) == 366
    assert term_days(date(2023, 3, 1)) == 366


def test_term_starting_31_january_ends_30_january() -> None:
    assert initial_end_date(date(2025, 1, 31)) == date(2026, 1, 30)
    assert term_days(date(2025, 1, 31)) == 365


def test_term_starting_on_leap_day_ends_27_february() -> None:
    # 29 Feb 2024 + 12 months clamps to 28 Feb 2025 (Apex Date.addMonths), minus one day.
    assert initial_end_date(date(2024, 2, 29)) == date(2025, 2, 27)
    assert term_days(date(2024, 2, 29)) == 365
    # and the renewal term tiles on from there
    assert initial_end_date(date(2025, 2, 28)) == date(2026, 2, 27)


def test_addon_on_initial_start_pays_the_full_total() -> None:
    assert prorate(CORE_APP_YEAR, JAN_1, JAN_1) == CORE_APP_YEAR
    assert prorate(CORE_APP_YEAR, JAN_1, JAN_1, ProrationPolicy.MONTHLY) == CORE_APP_YEAR


def test_addon_on_last_day_is_charged_one_day() -> None:
    assert remaining_days(date(2025, 12, 31), JAN_1) == 1
    assert prorate(CORE_APP_YEAR, date(2025, 12, 31), JAN_1) == Decimal("16.44")  # 6000/365 = 16.438...


def test_addon_from_1_march_pays_306_of_365_days() -> None:
    assert remaining_days(date(2025, 3, 1), JAN_1) == 306
    assert prorate(Decimal("9000.00"), date(2025, 3, 1), JAN_1) == Decimal("7545.21")


def test_half_cent_proration_rounds_up() -> None:
    # 0.73 x 183 / 366 = 0.365 exactly -> 0.37
    start = date(2024, 1, 1)
    addon = initial_end_date(start) - timedelta(days=182)
    assert remaining_days(addon, start) == 183
    assert prorate(Decimal("0.73"), addon, start) == Decimal("0.37")


def test_addon_before_the_initial_start_is_a_record_error() -> None:
    with pytest.raises(RecordError, match="2024-12-31 is before the initial order's start 2025-01-01") as caught:
        prorate(CORE_APP_YEAR, date(2024, 12, 31), JAN_1)
    assert caught.value.code == "ADDON_BEFORE_TERM"


def test_addon_after_the_initial_end_is_a_record_error() -> None:
    with pytest.raises(RecordError, match="2026-01-01 is after the initial order's end 2025-12-31") as caught:
        prorate(CORE_APP_YEAR, date(2026, 1, 1), JAN_1, ProrationPolicy.MONTHLY)
    assert caught.value.code == "ADDON_AFTER_TERM"


@pytest.mark.parametrize(
    ("initial", "addon", "months"),
    [
        (date(2025, 1, 15), date(2025, 1, 15), 12),
        (date(2025, 1, 15), date(2025, 2, 14), 12),  # still in the first month
        (date(2025, 1, 15), date(2025, 2, 15), 11),
        (date(2025, 1, 15), date(2025, 3, 1), 11),  # a started month counts as a whole one
        (date(2025, 1, 15), date(2026, 1, 14), 1),  # last day of the term
        (date(2025, 1, 31), date(2025, 2, 27), 12),
        (date(2025, 1, 31), date(2025, 2, 28), 11),  # month 2 starts on the clamped 28 Feb
        (date(2025, 1, 31), date(2025, 3, 30), 11),
        (date(2025, 1, 31), date(2025, 3, 31), 10),
    ],
)
def test_monthly_policy_counts_started_months(initial: date, addon: date, months: int) -> None:
    assert remaining_months(addon, initial) == months


def test_monthly_policy_charges_whole_twelfths() -> None:
    assert prorate(CORE_APP_YEAR, date(2025, 3, 1), JAN_1, "monthly") == Decimal("5000.00")
    assert prorate(Decimal("100.00"), date(2025, 12, 31), JAN_1, "monthly") == Decimal("8.33")


starts = st.dates(min_value=date(2020, 1, 1), max_value=date(2032, 12, 31))
totals = st.integers(min_value=0, max_value=10**11).map(from_cents)
policies = st.sampled_from(list(ProrationPolicy))


@settings(max_examples=150)
@given(starts, totals, policies)
def test_property_addon_on_initial_start_is_the_full_total(
    start: date, total: Decimal, policy: ProrationPolicy
) -> None:
    assert prorate(total, start, start, policy) == total


@settings(max_examples=150)
@given(starts, totals)
def test_property_addon_on_last_day_is_one_days_worth(start: date, total: Decimal) -> None:
    last = initial_end_date(start)
    assert prorate(total, last, start) == round_half_up_cents(total / term_days(start))


@settings(max_examples=150)
@given(starts, totals, policies, st.integers(0, 365), st.integers(0, 365))
def test_property_later_addon_never_costs_more(
    start: date, total: Decimal, policy: ProrationPolicy, a: int, b: int
) -> None:
    days = term_days(start)
    earlier, later = sorted((a % days, b % days))
    early = prorate(total, start + timedelta(days=earlier), start, policy)
    late = prorate(total, start + timedelta(days=later), start, policy)
    assert Decimal(0) <= late <= early <= total


@settings(max_examples=150)
@given(starts, st.integers(0, 365))
def test_property_remaining_and_elapsed_days_make_the_term(start: date, offset: int) -> None:
    days = term_days(start)
    assert days in (365, 366)
    addon = start + timedelta(days=offset % days)
    assert remaining_days(addon, start) + (addon - start).days == days
    assert 1 <= remaining_months(addon, start) <= 12
