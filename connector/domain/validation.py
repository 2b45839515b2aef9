"""Business checks on order and line values (DESIGN: USD only, term 12, NET30, upfront).

Each field has one parser in a table: it returns the clean value or raises ``ValueError``
with what is wrong. Callers get human-readable problems naming the field
(``"items[1].quantity: must be a positive integer, got -3"``), so a bad record is reported
and quarantined, never a crash. Floats are refused for money and percentages: convert at
the edge with ``parse_float=Decimal``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from types import MappingProxyType

from connector.domain.money import EXACT_DIGITS, exact_decimal
from connector.domain.pricing import CONTRACT_TERM_MONTHS

SUPPORTED_CURRENCY = "USD"
UNSUPPORTED_CURRENCY = "UNSUPPORTED_CURRENCY"  # the error code of any other currency
Parser = Callable[[object], object]


def show(value: object) -> str:
    """How a bad value is quoted in a problem: ``-3``, ``"abc"``, ``nothing``."""
    if value is None:
        return "nothing"
    if isinstance(value, str):
        text = value.replace("\x00", "\\x00")
        return f'"{text[:200]}..." ({len(value)} characters)' if len(text) > 200 else f'"{text}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _integral(value: object) -> int | None:
    """An int, or a Decimal/str holding a whole number (Salesforce sends ``10.0``).

    ``ValueError`` for a whole number of more digits than any exact product can hold:
    ``1e999999999`` is a short text, but ``int()`` of it would build a billion digits."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal | str):
        try:
            number = exact_decimal(value)
        except (TypeError, ValueError):
            return None
        if number == number.to_integral_value():
            if number.adjusted() >= EXACT_DIGITS:
                raise ValueError(f"must be a whole number of at most {EXACT_DIGITS} digits")
            return int(number)
    return None


def parse_quantity(value: object) -> int:
    number = _integral(value)
    if number is None or number <= 0:
        raise ValueError("must be a positive integer")
    return number


def _decimal(value: object, what: str) -> Decimal:
    if isinstance(value, float):
        raise ValueError(f"must be {what} given as a string or exact decimal, not a float")
    try:
        return exact_decimal(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"must be {what}") from None


def parse_unit_price(value: object) -> Decimal:
    price = _decimal(value, "an amount")
    if price < 0:
        raise ValueError("must be an amount of 0 or more")
    return price


def parse_percent(value: object) -> Decimal:
    percent = _decimal(value, "a percentage")
    if not Decimal(0) <= percent <= Decimal(100):
        raise ValueError("must be a percentage between 0 and 100")
    return percent


def parse_currency(value: object) -> str:
    if not isinstance(value, str) or value.strip().upper() != SUPPORTED_CURRENCY:
        raise ValueError(f"must be {SUPPORTED_CURRENCY} (the GTM app bills in US dollars only)")
    return SUPPORTED_CURRENCY


def parse_term(value: object) -> int:
    try:
        months = _integral(value)
    except ValueError:
        months = None  # far too many digits: not 12 either
    if months != CONTRACT_TERM_MONTHS:
        raise ValueError(f"must be {CONTRACT_TERM_MONTHS} months")
    return CONTRACT_TERM_MONTHS


def parse_email(value: object) -> str:
    if not isinstance(value, str) or "@" not in value.strip() or value.strip().startswith("@"):
        raise ValueError("must be an email address (Stripe sends the invoice there)")
    return value.strip()


def parse_org_id(value: object) -> str:
    """A Salesforce org id: ``00D`` then 12 characters (15), or 15 (the 18-character form)."""
    text = value.strip() if isinstance(value, str) else ""
    if not (text.startswith("00D") and len(text) in (15, 18) and text.isascii() and text.isalnum()):
        raise ValueError("must be a Salesforce org id (15 or 18 characters starting with 00D)")
    return text


LINE_RULES: Mapping[str, Parser] = MappingProxyType(
    {
        "quantity": parse_quantity,
        "unit_price_per_month": parse_unit_price,
        "revenue_share_percent": parse_percent,
    }
)
ORDER_RULES: Mapping[str, Parser] = MappingProxyType(
    {
        "currency": parse_currency,
        "contract_term_months": parse_term,
        "billing_email": parse_email,
    }
)


def check_fields(
    values: Mapping[str, object], rules: Mapping[str, Parser], *, prefix: str = ""
) -> tuple[dict[str, object], list[str]]:
    """Run each rule whose field is in ``values``: (clean values, problems).

    A field present with ``None`` is "required"; fields absent from ``values`` are skipped,
    so a caller checks only what it has.
    """
    clean: dict[str, object] = {}
    problems: list[str] = []
    for field, parse in rules.items():
        if field not in values:
            continue
        value, problem = check_field(field, values[field], parse, prefix=prefix)
        if problem is None:
            clean[field] = value
        else:
            problems.append(problem)
    return clean, problems


def check_field(field: str, value: object, parse: Parser, *, prefix: str = "") -> tuple[object, str | None]:
    """One field under its rule: (clean value, None) or (None, the problem naming it).
    ``None`` is "required"."""
    if value is None:
        return None, f"{prefix}{field}: is required"
    try:
        return parse(value), None
    except ValueError as exc:
        return None, f"{prefix}{field}: {exc}, got {show(value)}"


_UNSET = object()


def validate_line(
    quantity: object,
    unit_price_per_month: object,
    revenue_share_percent: object = _UNSET,
    *,
    prefix: str = "",
) -> list[str]:
    """Problems with one order line; empty when it is fine. Leave the percent out to skip it."""
    values: dict[str, object] = {"quantity": quantity, "unit_price_per_month": unit_price_per_month}
    if revenue_share_percent is not _UNSET:
        values["revenue_share_percent"] = revenue_share_percent
    return check_fields(values, LINE_RULES, prefix=prefix)[1]


def validate_order_terms(
    currency: object,
    contract_term_months: object,
    *,
    billing_email: object = _UNSET,
    items: object = _UNSET,
    prefix: str = "",
) -> list[str]:
    """Problems with an order's terms (and, if given, its items as ``(quantity, price)`` or
    ``(quantity, price, percent)`` tuples); empty when it can be invoiced."""
    values: dict[str, object] = {"currency": currency, "contract_term_months": contract_term_months}
    if billing_email is not _UNSET:
        values["billing_email"] = billing_email
    problems = check_fields(values, ORDER_RULES, prefix=prefix)[1]
    if items is not _UNSET:
        if not isinstance(items, list | tuple) or not items:
            problems.append(f"{prefix}items: an order needs at least one item")
        else:
            for index, item in enumerate(items):
                problems.extend(validate_line(*item, prefix=f"{prefix}items[{index}]."))
    return problems
