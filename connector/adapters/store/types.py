"""Column types that behave the same on SQLite and PostgreSQL.

* ``ExactDecimal`` (``Money()``, ``Price()``, ``Percent()``): ``Decimal`` in, ``Decimal`` out, exact.
  PostgreSQL stores ``NUMERIC(p, s)``. SQLite has no exact decimal (its NUMERIC affinity
  turns 12345678901234.56 into a float), so there the value is stored as an INTEGER of
  minor units (cents for money, 1/10000 for percent): exact, sortable, and ``SUM`` stays
  exact. Values are quantized half-up to the scale on both backends (what PostgreSQL does
  on insert anyway); floats are refused, money never passes through a float.
* ``UtcDateTime``: timezone-aware datetimes only, stored as UTC, returned aware in UTC.
  SQLite has no time zone, so the UTC wall time is stored and UTC attached on the way out.
* ``Json()``: JSON, JSONB on PostgreSQL; Python ``None`` is SQL NULL. The engine's
  serializer (see ``engine.json_dumps``) writes Decimal as a string, dates as ISO 8601.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, Numeric
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine


class ExactDecimal(TypeDecorator[Decimal]):
    """An exact decimal of ``precision`` digits, ``scale`` of them after the point."""

    impl = Numeric
    cache_ok = True

    def __init__(self, precision: int = 18, scale: int = 2) -> None:
        super().__init__(precision=precision, scale=scale, asdecimal=True)
        self.precision = precision
        self.scale = scale
        self._quantum = Decimal(1).scaleb(-scale)
        self._limit = Decimal(10) ** (precision - scale)

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(self.precision, self.scale, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        exact = self.coerce(value)
        if dialect.name == "sqlite":
            return int(exact.scaleb(self.scale))
        return exact

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            if isinstance(value, float):  # AVG() and friends: not a stored value
                return Decimal(repr(value)).scaleb(-self.scale).quantize(self._quantum, ROUND_HALF_UP)
            return Decimal(int(value)).scaleb(-self.scale)
        return Decimal(value).quantize(self._quantum, ROUND_HALF_UP)

    def coerce(self, value: Any) -> Decimal:
        """The exact stored form of ``value`` (Decimal, int or numeric string; never float)."""
        if value.__class__ is Decimal and value.is_finite():  # the usual case, in short
            try:
                exact = value.quantize(self._quantum, ROUND_HALF_UP)
            except InvalidOperation:
                raise TypeError(f"exact decimal column got {value!r}") from None
            if abs(exact) >= self._limit:
                raise ValueError(f"{exact} does not fit NUMERIC({self.precision}, {self.scale})")
            return exact
        if isinstance(value, bool) or isinstance(value, float):
            raise TypeError(f"exact decimal column got {type(value).__name__} {value!r}: pass a Decimal")
        try:
            exact = Decimal(value) if isinstance(value, (int, str)) else value
            if not isinstance(exact, Decimal) or not exact.is_finite():
                raise TypeError(f"exact decimal column got {value!r}")
            exact = exact.quantize(self._quantum, ROUND_HALF_UP)
        except InvalidOperation:
            raise TypeError(f"exact decimal column got {value!r}") from None
        if abs(exact) >= self._limit:
            raise ValueError(f"{exact} does not fit NUMERIC({self.precision}, {self.scale})")
        return exact


def Money() -> ExactDecimal:  # noqa: N802 - reads like a type in table definitions
    """NUMERIC(18, 2): amounts in the currency's major unit, exact to the cent."""
    return ExactDecimal(18, 2)


def Price() -> ExactDecimal:  # noqa: N802
    """NUMERIC(18, 6): unit prices as the org gives them (a price of 0.125 per month stays
    0.125; DESIGN rounds only line totals and shares). Six digits hold any currency field
    scale a mapping check accepts; 10^12 x 10^6 minor units still fit SQLite's 64-bit INTEGER."""
    return ExactDecimal(18, 6)


def Percent() -> ExactDecimal:  # noqa: N802
    """NUMERIC(9, 4): percentages such as a 15.0000 % revenue share."""
    return ExactDecimal(9, 4)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime, stored in UTC; naive datetimes are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = self.coerce(value)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite expressions that bypass the DATETIME processor
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    @staticmethod
    def coerce(value: Any) -> datetime:
        """``value`` in UTC; raises for anything but an aware datetime."""
        if value.__class__ is datetime and value.tzinfo is UTC:
            return value  # already in UTC (how the mirror parses every stamp): nothing to convert
        if not isinstance(value, datetime):
            raise TypeError(f"datetime column got {type(value).__name__} {value!r}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given: pass a timezone-aware datetime")
        return value.astimezone(UTC)


def Json() -> TypeEngine[Any]:  # noqa: N802
    """JSON (JSONB on PostgreSQL); ``None`` is stored as SQL NULL, not JSON null."""
    return JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
