"""Add-on proration (DESIGN "Money rules").

An add-on bought mid-contract is charged from its start date to the *initial* order's end
date. The term runs ``initial_start .. initial_start + 12 months - 1 day``, both ends
counted. Month arithmetic clamps the day like Salesforce's ``Date.addMonths``: a term
starting 31 Jan ends 30 Jan next year; one starting 29 Feb 2024 ends 27 Feb 2025 (29 Feb
+ 12 months = 28 Feb 2025, minus a day), so the renewal starts 28 Feb 2025 and terms tile
without gaps or overlaps.

Policies:
- ``daily``  : line total x remaining days / term days, half-up to the cent.
- ``monthly``: line total x remaining months / 12, half-up to the cent. The term is cut into
  12 periods starting on ``initial_start + k months`` (k = 0..11, clamped as above); the
  period the add-on starts in counts as a whole month, so an add-on starting anywhere in
  the last period pays 1/12 and one starting on the initial start pays everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum

from connector.domain.money import ratio_half_up_cents, to_cents
from connector.domain.pricing import CONTRACT_TERM_MONTHS
from connector.errors import RecordError

# The service dates the connector computes with: terms, lead windows and proration add and
# subtract months and days, which must stay far inside ``date``'s range. A date outside is a
# bad record (0001-01-01 and 9999-12-31 are typing errors or placeholders), never a crash.
SERVICE_DATE_MIN = date(1900, 1, 1)
SERVICE_DATE_MAX = date(2999, 12, 31)


def check_service_date(value: date, field: str, *, record_id: str | None = None) -> date:
    """``value`` if it is a service date the connector can compute with, else a
    ``RecordError`` (code ``INVALID_DATE``) naming ``field`` and the value."""
    if not SERVICE_DATE_MIN <= value <= SERVICE_DATE_MAX:
        raise RecordError(f"{field}: {value.isoformat()} is outside the supported range "
                          f"{SERVICE_DATE_MIN.isoformat()} .. {SERVICE_DATE_MAX.isoformat()}",
                          record_id=record_id, code="INVALID_DATE")
    return value


class ProrationPolicy(StrEnum):
    DAILY = "daily"
    MONTHLY = "monthly"


def _days_in_month(year: int, month: int) -> int:
    following = date(year + month // 12, month % 12 + 1, 1)
    return (following - timedelta(days=1)).day


def add_months(start: date, months: int) -> date:
    """``start`` moved by whole months, clamping the day to the target month's length."""
    index = start.year * 12 + (start.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(start.day, _days_in_month(year, month)))


def initial_end_date(initial_start: date, term_months: int = CONTRACT_TERM_MONTHS) -> date:
    """Last day of the initial term: start + ``term_months`` months - 1 day."""
    return add_months(initial_start, term_months) - timedelta(days=1)


def initial_start_for_end(initial_end: date, term_months: int = CONTRACT_TERM_MONTHS) -> date | None:
    """The start of the term that ends on ``initial_end``, or None if no term ends that day.

    The earliest such start: a term ending 27 Feb 2025 started 28 Feb 2024 (29 Feb 2024
    would end there too, clamped). No term ends on 28 Feb of a leap year (28 Feb 2023 + 12
    months - 1 day is 27 Feb 2024; 1 Mar 2023 gives 29 Feb 2024).
    """
    start = add_months(initial_end + timedelta(days=1), -term_months)
    return start if initial_end_date(start, term_months) == initial_end else None


def term_days(initial_start: date, term_months: int = CONTRACT_TERM_MONTHS) -> int:
    """Days in the initial term, both ends counted (365, or 366 across a 29 Feb)."""
    return (initial_end_date(initial_start, term_months) - initial_start).days + 1


def _check_within_term(addon_start: date, initial_start: date, term_months: int) -> date:
    end = initial_end_date(initial_start, term_months)
    if addon_start < initial_start:
        raise RecordError(
            f"addon_start_date {addon_start.isoformat()} is before the initial order's start "
            f"{initial_start.isoformat()}",
            code="ADDON_BEFORE_TERM",
        )
    if addon_start > end:
        raise RecordError(
            f"addon_start_date {addon_start.isoformat()} is after the initial order's end "
            f"{end.isoformat()}",
            code="ADDON_AFTER_TERM",
        )
    return end


def remaining_days(addon_start: date, initial_start: date, term_months: int = CONTRACT_TERM_MONTHS) -> int:
    """Days from ``addon_start`` to the initial end date, both ends counted."""
    end = _check_within_term(addon_start, initial_start, term_months)
    return (end - addon_start).days + 1


def remaining_months(addon_start: date, initial_start: date, term_months: int = CONTRACT_TERM_MONTHS) -> int:
    """Term periods left, the one ``addon_start`` falls in counting as a whole month."""
    _check_within_term(addon_start, initial_start, term_months)
    elapsed = 0
    # Periods are anchored on the initial start (not chained) so clamping never drifts.
    while elapsed + 1 < term_months and add_months(initial_start, elapsed + 1) <= addon_start:
        elapsed += 1
    return term_months - elapsed


def prorate(
    line_total: Decimal,
    addon_start: date,
    initial_start: date,
    policy: ProrationPolicy | str = ProrationPolicy.DAILY,
    term_months: int = CONTRACT_TERM_MONTHS,
) -> Decimal:
    """The share of ``line_total`` an add-on starting on ``addon_start`` pays.

    Raises ``RecordError`` when the add-on starts outside the initial term.
    """
    policy = ProrationPolicy(policy)
    cents = to_cents(line_total)
    if policy is ProrationPolicy.DAILY:
        return ratio_half_up_cents(
            cents, remaining_days(addon_start, initial_start, term_months), term_days(initial_start, term_months)
        )
    return ratio_half_up_cents(cents, remaining_months(addon_start, initial_start, term_months), term_months)


@dataclass(frozen=True)
class Proration:
    """How an add-on order is prorated: its start, its initial order's start, the policy."""

    initial_start: date
    addon_start: date
    policy: ProrationPolicy = ProrationPolicy.DAILY

    def __post_init__(self) -> None:
        object.__setattr__(self, "policy", ProrationPolicy(self.policy))
        check_service_date(self.initial_start, "initial order service_start_date")
        check_service_date(self.addon_start, "add-on service_start_date")

    def apply(self, line_total: Decimal, term_months: int = CONTRACT_TERM_MONTHS) -> Decimal:
        return prorate(line_total, self.addon_start, self.initial_start, self.policy, term_months)

    def initial_end(self, term_months: int = CONTRACT_TERM_MONTHS) -> date:
        return initial_end_date(self.initial_start, term_months)

    def describe(self, term_months: int = CONTRACT_TERM_MONTHS) -> str:
        """Customer-facing: ``"prorated 2025-03-01 to 2025-12-31 (306 of 365 days)"``."""
        span = f"prorated {self.addon_start.isoformat()} to {self.initial_end(term_months).isoformat()}"
        if self.policy is ProrationPolicy.DAILY:
            left = remaining_days(self.addon_start, self.initial_start, term_months)
            return f"{span} ({left} of {term_days(self.initial_start, term_months)} days)"
        left = remaining_months(self.addon_start, self.initial_start, term_months)
        return f"{span} ({left} of {term_months} months)"
