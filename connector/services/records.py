"""Salesforce records <-> local mirror rows, through the mapping, with per-record checks.

``RecordConverter.to_row`` turns one record from a query page into the row the mirror
repository stores: ``sf_id``, ``system_modstamp`` (aware UTC), and every mapped field under
its column, typed (Decimal money, ``date``, ``int``...) and, given the table's
``StoredForms``, in the exact form the table stores it (one pass: the store does not check
the row again). Picklist values are stored as the
org spells them (``Activated``, ``Add-On``), like the rest of the local model, after
checking that the mapping's vocabulary knows them; consumers get the connector's state
with ``mapping.to_state(vocabulary, value)``. Anything wrong with one record
(unknown picklist value, a value of the wrong type, a missing required field, a domain
rule broken: not USD, term not 12, quantity not positive, unknown PPP or PPC, a value the
table cannot hold) raises ``RecordError`` naming the record, the field and the value, so
the caller quarantines that record and carries on with the page.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow
from typing import Any

from connector.domain.money import EXACT_DIGITS
from connector.domain.validation import LINE_RULES, ORDER_RULES, check_field, show
from connector.errors import RecordError
from connector.mappings import FieldMapping, MappingSet, ObjectMapping
from connector.services.ports import StoredForms

Row = dict[str, Any]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # the mirror's cursor of an object that had no records yet
SYSTEM_SELECT = ("Id", "SystemModstamp", "IsDeleted")


def vocabulary_for(mapping: MappingSet, obj: ObjectMapping, field: FieldMapping) -> str | None:
    """The vocabulary of a picklist column: the column itself (``offer_type``) or
    object + column (``order`` + ``status`` -> ``order_status``)."""
    for name in (field.column, f"{obj.name}_{field.column}"):
        vocab = mapping.vocabularies.get(name)
        if isinstance(vocab, Mapping) and all(isinstance(v, str) for v in vocab.values()):
            return name
    return None


def parse_sf_datetime(value: str) -> datetime:
    """``2025-01-31T12:00:00.000+0000`` (the REST wire format) -> aware UTC datetime."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def soql_datetime(moment: datetime) -> str:
    """A SOQL datetime literal, floored to the second (a lower bound only widens)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Whole numbers and cents the mirror computes with: exact to the money rules' width, far
# beyond any column (NUMERIC(18, x), 64-bit integers), so only absurd values are refused.
_EXACT = Context(prec=EXACT_DIGITS, traps=[InvalidOperation, Inexact, Overflow])


def _finite(value: Any) -> Decimal:
    """``value`` as a finite Decimal (text, int, float or Decimal); ``ValueError`` for text
    that is no number, NaN and infinities (JSON's non-standard tokens read as floats)."""
    try:
        number = value if value.__class__ is Decimal else Decimal(str(value))
    except InvalidOperation:
        raise ValueError("must be a number") from None
    if not number.is_finite():
        raise ValueError("must be a finite number")
    return number


def _integral(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("must be a whole number")
    if isinstance(value, int):
        return value
    number = _finite(value)
    if number != number.to_integral_value() or number.adjusted() >= EXACT_DIGITS:
        raise ValueError("must be a whole number")
    return int(number)


def _decimal(value: Any) -> Decimal:
    if value.__class__ is Decimal and value.is_finite():  # how the adapter parses JSON numbers: already exact
        return value
    if isinstance(value, bool):
        raise ValueError("must be a number")
    if isinstance(value, float):
        # The adapter parses JSON numbers as Decimal; a float means someone bypassed it.
        raise ValueError("arrived as a float; money must stay exact")
    return _finite(value)


def _cents(value: Any) -> Decimal:
    """A currency field the org keeps in cents (SfdcPartnerPayout.Amount) -> major units,
    divided by 100 here and nowhere else (exactly: not in the 28-digit default context)."""
    cents = _decimal(value)
    if cents != cents.to_integral_value():
        raise ValueError("must be a whole number of cents")
    try:
        return cents.scaleb(-2, context=_EXACT)
    except (Inexact, Overflow):
        raise ValueError("is out of range") from None


def _date(value: Any) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    return date.fromisoformat(str(value)[:10])


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be text")
    return value


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "id": _text,
    "reference": _text,
    "string": _text,
    "email": _text,
    "picklist": _text,
    "boolean": _boolean,
    "int": _integral,
    "currency": _decimal,
    "currency_cents": _cents,
    "percent": _decimal,
    "date": _date,
    "datetime": lambda v: parse_sf_datetime(_text(v)),
}


# A domain rule of one column: the problem with its (converted) value, or None.
DomainRule = Callable[[Any], str | None]


def _rule(column: str, parse: Callable[[object], object]) -> DomainRule:
    def rule(value: Any) -> str | None:
        if value is not None:
            try:
                parse(value)
                return None  # the usual case, without building check_field's answer
            except ValueError:
                pass
        return check_field(column, value, parse)[1]

    return rule


def _if_filled(rule: DomainRule) -> DomainRule:
    return lambda value: None if value is None else rule(value)


class RecordConverter:
    """Conversion and validation for one mapped object.

    ``known`` gives the ids of live local records of other objects, for reference checks
    (``known("ppp")`` -> set of PPP ids); the mirror keeps those sets current as it goes.
    ``store``: the mirror table's ``StoredForms`` (``MirrorRepository.forms``). With it,
    ``to_row`` also gives each value the form the table stores it in, and a value the
    table cannot hold makes the record's ``RecordError`` (the store's code and message),
    so its rows go to ``upsert_many(..., checked=True)`` as they are; without it, rows
    carry the converted values and ``upsert_many`` checks them."""

    def __init__(self, mapping: MappingSet, obj: ObjectMapping, known: Callable[[str], set[str]],
                 store: StoredForms | None = None):
        self.mapping = mapping
        self.obj = obj
        self.known = known
        self.store = store
        self._stamp_text, self._stamp = "", EPOCH
        self._fields = [
            (f.sf_field, f.column, _CONVERTERS[f.type],
             vocabulary_for(mapping, obj, f) if f.type == "picklist" else None, f.required)
            for f in obj.fields.values()
        ]
        # What ``to_row`` walks per record: the vocabulary itself (its labels are its keys,
        # every value a state, so ``label in vocabulary`` is ``to_state(...) is not None``).
        self._plan = tuple((sf_field, column, convert, None if vocab is None else mapping.vocabularies[vocab],
                            vocab, required) for sf_field, column, convert, vocab, required in self._fields)
        mapped = {column for _, column, _, _, _ in self._fields}
        self._rules = [(column, rule) for column, rule, always in self._domain_rules() if always or column in mapped]
        # The stored forms of the row's columns, in the row's order (the first refused is named).
        forms = store.forms if store is not None else {}
        self._forms = [(column, form) for column in ("sf_id", "system_modstamp", *(f[1] for f in self._fields))
                       if (form := forms.get(column)) is not None]

    @property
    def select_fields(self) -> list[str]:
        return list(SYSTEM_SELECT) + [f for f in self.obj.fields if f not in SYSTEM_SELECT]

    def soql(self, where: str | None = None) -> str:
        clause = f" WHERE {where}" if where else ""
        return f"SELECT {', '.join(self.select_fields)} FROM {self.obj.sobject}{clause} ORDER BY SystemModstamp, Id"

    def vocabulary(self, column: str) -> str | None:
        """The vocabulary that types a picklist column of this object, if any."""
        for _, col, _, vocab, _ in self._fields:
            if col == column:
                return vocab
        return None

    def stamp(self, record: Mapping[str, Any]) -> datetime:
        text = str(record["SystemModstamp"])
        # Records come ordered by stamp, and a load or a mass update stamps many at once:
        # the same text as the record before is the same moment, parsed once.
        if text != self._stamp_text:
            self._stamp = parse_sf_datetime(text)
            self._stamp_text = text
        return self._stamp

    def to_row(self, record: Mapping[str, Any]) -> Row:
        """The local row for a live record; ``RecordError`` if it can't be mirrored.

        What is wrong is reported in this order: the values themselves (wrong type,
        unknown picklist value, required and missing: all of them), else the domain rules
        (all of them, on the values as converted), else the first value the table cannot
        hold (with ``store``)."""
        row = self._converted(record)
        problems = [problem for column, rule in self._rules if (problem := rule(row.get(column))) is not None]
        if problems:
            raise RecordError("; ".join(problems), record_id=row["sf_id"], code=_code(problems))
        for column, form in self._forms:
            value = row[column]
            if value is not None:
                try:
                    row[column] = form(value)
                except (ValueError, TypeError) as exc:
                    assert self.store is not None
                    raise self.store.refusal(row["sf_id"], column, exc) from None
        return row

    def _converted(self, record: Mapping[str, Any]) -> Row:
        get = record.get
        rid = str(get("Id") or "")
        if not rid:
            raise RecordError("record without Id", code="MISSING_ID")
        row: Row = {"sf_id": rid, "system_modstamp": self.stamp(record)}
        problems: list[str] = []
        for sf_field, column, convert, labels, vocab, required in self._plan:
            value = get(sf_field)
            if value is None or isinstance(value, str) and not value:  # (not == "": slow for a Decimal)
                if required:
                    problems.append(f"{sf_field}: is required")
                row[column] = None
                continue
            if convert is not _text or value.__class__ is not str:  # (text as it is: the common case)
                try:
                    value = convert(value)
                except (ValueError, TypeError) as exc:
                    problems.append(f"{sf_field}: {exc}, got {show(value)}")
                    continue
            if labels is not None and value not in labels:
                problems.append(self._unknown_label(sf_field, get(sf_field), vocab))
                continue
            row[column] = value
        if problems:
            raise RecordError("; ".join(problems), record_id=rid, code=_code(problems))
        return row

    def _unknown_label(self, sf_field: str, value: Any, vocab: str | None) -> str:
        known = ", ".join(self.mapping.vocabularies[vocab or ""])
        return f"{sf_field}: unknown picklist value {show(value)} (vocabulary {vocab}: {known})"

    def _domain_rules(self) -> list[tuple[str, DomainRule, bool]]:
        """The business rules of the local model (DESIGN: USD only, term 12, positive
        quantities, known catalog references) for this object: (column, rule, whether it
        holds when the mapping leaves the column out) in the order problems are reported."""
        kind = self.obj.name
        if kind in ("order_item", "offer_item"):
            return [(c, _rule(c, LINE_RULES[c]), False) for c in ("quantity", "unit_price_per_month")] + [
                ("ppp_id", self._reference("ppp_id", "ppp", "PPP"), False)]
        if kind == "order":
            return [(c, _rule(c, ORDER_RULES[c]), False) for c in ("currency", "contract_term_months")]
        if kind == "offer":  # offers may be incomplete while Draft: check what is filled in
            return [(c, _if_filled(_rule(c, ORDER_RULES[c])), False) for c in ("currency", "contract_term_months")]
        if kind == "ppp":
            return [("ppc_id", self._reference("ppc_id", "ppc", "PPC"), False)]
        if kind == "ppc":
            column = "revenue_share_percent"
            return [(column, _rule(column, LINE_RULES[column]), True)]
        return []

    def _reference(self, column: str, target: str, label: str) -> DomainRule:
        def rule(value: Any) -> str | None:
            if value is None:
                return f"{column}: is required"
            if value not in self.known(target):
                return f"{column}: unknown {label} {value} (not in the mirrored catalog)"
            return None

        return rule


def _code(problems: list[str]) -> str:
    text = " ".join(problems)
    if "unknown picklist value" in text:
        return "UNKNOWN_PICKLIST_VALUE"
    if "unknown PPP" in text or "unknown PPC" in text:
        return "UNKNOWN_REFERENCE"
    if "is required" in text:
        return "REQUIRED_FIELD_MISSING"
    return "INVALID_RECORD"


def json_safe(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record as JSON-friendly values for a dead letter's payload (Decimal as text)."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, Decimal):
            out[key] = str(value)
        elif isinstance(value, (date, datetime)):
            out[key] = value.isoformat()
        else:
            out[key] = value
    return out
