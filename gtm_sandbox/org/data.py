"""The sandbox org's records: per-object tables with a (SystemModstamp, Id) index.

Records are plain dicts that are never mutated once stored: an update stores a new dict.
A query therefore snapshots by keeping references (no copies), and a query locator keeps
serving the rows as they were when the query ran, however the table changes meanwhile.

Writes through the REST API are validated the way Salesforce does (types from the mapping,
required fields, restricted picklists, references, read-only objects and fields,
duplicate external ids) and fail with ``ApiError`` carrying Salesforce's error code. The
control API writes with ``validate=False`` so tests can plant malformed records.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from gtm_sandbox.org.ids import Clock, canonical_stamp, make_id, to_18
from gtm_sandbox.org.schema import NUMERIC_TYPES, TEXT_TYPES, FieldSpec, ObjectSpec, OrgSchema
from gtm_sandbox.org.soql import BoundQuery, is_index_order, sort_rows

Row = dict[str, Any]
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass
class ApiError(Exception):
    """A Salesforce error: HTTP status plus the body entry ``{message, errorCode, fields}``."""

    status: int
    error_code: str
    message: str
    fields: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # response headers (a 405's Allow)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def body(self) -> list[dict[str, Any]]:
        entry: dict[str, Any] = {"message": self.message, "errorCode": self.error_code}
        if self.fields:
            entry["fields"] = self.fields
        return [entry]

    def record_error(self) -> dict[str, Any]:
        """The per-record error shape of collections and SaveResults."""
        return {"statusCode": self.error_code, "message": self.message, "fields": self.fields}


class Table:
    def __init__(self, spec: ObjectSpec):
        self.spec = spec
        self.rows: dict[str, Row] = {}
        self.index: list[tuple[str, str]] = []  # sorted (SystemModstamp, Id), deleted rows included
        self.counter = 0
        self.external: dict[str, dict[str, str]] = {f.name: {} for f in spec.external_ids}

    def put(self, row: Row) -> Row | None:
        rid = row["Id"]
        old = self.rows.get(rid)
        if old is not None:
            i = bisect.bisect_left(self.index, (old["SystemModstamp"], rid))
            del self.index[i]
            for name, values in self.external.items():
                if old.get(name) is not None:
                    values.pop(str(old[name]).lower(), None)
        self.rows[rid] = row
        bisect.insort(self.index, (row["SystemModstamp"], rid))
        for name, values in self.external.items():
            if row.get(name) is not None and not row.get("IsDeleted"):
                values[str(row[name]).lower()] = rid
        return old

    def remove(self, rid: str) -> Row | None:
        old = self.rows.pop(rid, None)
        if old is not None:
            i = bisect.bisect_left(self.index, (old["SystemModstamp"], rid))
            del self.index[i]
            for name, values in self.external.items():
                if old.get(name) is not None:
                    values.pop(str(old[name]).lower(), None)
        return old

    def bulk_load(self, rows: Iterable[Row]) -> None:
        for row in rows:
            self.rows[row["Id"]] = row
        self.index = sorted((r["SystemModstamp"], r["Id"]) for r in self.rows.values())
        for name, values in self.external.items():
            values.clear()
            values.update({str(r[name]).lower(): r["Id"] for r in self.rows.values()
                           if r.get(name) is not None and not r.get("IsDeleted")})


class OrgData:
    """All tables of one org, guarded by one lock. Hooks (``on_write``) let the seed
    logic keep computed fields (line totals, subtotals) up to date."""

    def __init__(self, schema: OrgSchema, clock: Clock | None = None):
        self.schema = schema
        self.clock = clock or Clock()
        self.lock = threading.RLock()
        self.tables: dict[str, Table] = {name: Table(spec) for name, spec in schema.objects.items()}
        self._undo: list[tuple[str, str, Row | None]] | None = None
        self.rules: Rules = Rules()
        # Injected per-record failures: (sObject or "*", errorCode, message, remaining count).
        self.record_faults: list[list[Any]] = []
        # Told the object of every stored write (under the lock: must not block), e.g. the
        # GTM billing, which bills orders in the background when they change.
        self.on_write: Callable[[str], None] | None = None
        self.writes = 0  # stored writes so far: lets a state dir's autosave see any change cheaply

    # ------------------------------------------------------------ lookup

    def table(self, sobject: str) -> Table:
        spec = self.schema.get(sobject)
        if spec is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return self.tables[spec.name]

    def get(self, sobject: str, record_id: str, *, include_deleted: bool = False) -> Row | None:
        try:
            rid = to_18(record_id)
        except ValueError:
            return None
        row = self.table(sobject).rows.get(rid)
        if row is None or (row.get("IsDeleted") and not include_deleted):
            return None
        return row

    def lookup(self, sobject: str, record_id: str) -> Row | None:
        """A live record by object and 18-character id (a query following a relationship)."""
        table = self.tables.get(sobject)
        row = table.rows.get(record_id) if table is not None else None
        return None if row is None or row.get("IsDeleted") else row

    def find_object(self, record_id: str) -> ObjectSpec | None:
        return self.schema.by_prefix(record_id)

    def find_external(self, sobject: str, field_name: str, value: str) -> str | None:
        table = self.table(sobject)
        return table.external.get(field_name, {}).get(str(value).lower())

    # ------------------------------------------------------------ transactions

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All-or-none: on exception every row written inside is restored."""
        with self.lock:
            outer = self._undo
            self._undo = [] if outer is None else outer
            mark = len(self._undo)
            try:
                yield
            except BaseException:
                for sobject, rid, old in reversed(self._undo[mark:]):
                    table = self.tables[sobject]
                    if old is None:
                        table.remove(rid)
                    else:
                        table.put(old)
                del self._undo[mark:]
                raise
            finally:
                if outer is None:
                    self._undo = None

    def _store(self, spec: ObjectSpec, row: Row) -> None:
        old = self.tables[spec.name].put(row)
        self.writes += 1
        if self._undo is not None:
            self._undo.append((spec.name, row["Id"], old))
        if self.on_write is not None:
            self.on_write(spec.name)

    # ------------------------------------------------------------ writes

    def _injected_fault(self, spec: ObjectSpec, record_id: str | None) -> None:
        """Fail this API write if a per-record fault is armed for its object."""
        for fault in self.record_faults:
            sobject, code, message, _ = fault
            if sobject in ("*", spec.name):
                fault[3] -= 1
                if fault[3] <= 0:
                    self.record_faults.remove(fault)
                if code == "UNABLE_TO_LOCK_ROW" and message is None:
                    message = ("unable to obtain exclusive access to this record or 1 records: "
                               f"{record_id or ''}").strip()
                raise ApiError(400, code, message or "injected record failure")

    def new_id(self, spec: ObjectSpec) -> str:
        table = self.tables[spec.name]
        table.counter += 1
        return make_id(spec.key_prefix, table.counter)

    def insert(self, sobject: str, values: dict[str, Any], *, validate: bool = True, stamp: str | None = None) -> Row:
        with self.lock:
            spec = self.table(sobject).spec
            if validate:
                self._injected_fault(spec, None)
            clean = self._validate(spec, values, creating=True, current=None) if validate else self._raw(spec, values)
            now = canonical_stamp(stamp) if stamp else self.clock.now()
            row: Row = {f: None for f in spec.fields}
            row.update(clean)
            rid = to_18(values["Id"]) if (not validate and values.get("Id")) else self.new_id(spec)
            for f in spec.fields.values():
                if f.autonumber is not None and row.get(f.name) is None:
                    row[f.name] = autonumber(f.autonumber, self.tables[spec.name].counter)
            row.update(
                Id=rid,
                IsDeleted=False,
                CreatedDate=now,
                LastModifiedDate=now,
                SystemModstamp=now,
            )
            if validate:
                self.rules.check(self, spec, None, values)
                self.rules.compute(self, spec, row)
                self._check_unique(spec, row, None)
            self._store(spec, row)
            if validate:
                self.rules.after(self, spec, row, None)
            return row

    def update(
        self, sobject: str, record_id: str, values: dict[str, Any], *, validate: bool = True, stamp: str | None = None
    ) -> Row:
        with self.lock:
            spec = self.table(sobject).spec
            current = self.get(spec.name, record_id)
            if current is None:
                raise self._missing(spec, record_id)
            if validate:
                self._injected_fault(spec, current["Id"])
            if validate:
                clean = self._validate(spec, values, creating=False, current=current)
            else:
                clean = self._raw(spec, values)
            if validate:
                self.rules.check(self, spec, current, values)
            now = canonical_stamp(stamp) if stamp else self.clock.now()
            row = dict(current)
            row.update(clean)
            row.update(LastModifiedDate=now, SystemModstamp=now)
            if validate:
                self.rules.compute(self, spec, row)
                self._check_unique(spec, row, current["Id"])
            self._store(spec, row)
            if validate:
                self.rules.after(self, spec, row, current)
            return row

    def delete(self, sobject: str, record_id: str, *, validate: bool = True, stamp: str | None = None) -> Row:
        """Move a record to the recycle bin: IsDeleted = true, SystemModstamp bumped, so
        queryAll with a SystemModstamp filter finds the deletion."""
        with self.lock:
            spec = self.table(sobject).spec
            current = self.get(spec.name, record_id)
            if current is None:
                raise self._missing(spec, record_id)
            if validate and not spec.writable:
                raise ApiError(400, "INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object id")
            if validate:
                self.rules.check(self, spec, current, None)
            now = canonical_stamp(stamp) if stamp else self.clock.now()
            row = dict(current)
            row.update(IsDeleted=True, SystemModstamp=now)
            self._store(spec, row)
            if validate:
                self.rules.after(self, spec, row, current)
            return row

    def _missing(self, spec: ObjectSpec, record_id: str) -> ApiError:
        if self.get(spec.name, record_id, include_deleted=True) is not None:
            return ApiError(404, "ENTITY_IS_DELETED", "entity is deleted")
        return ApiError(404, "NOT_FOUND", "The requested resource does not exist")

    def purge(self, sobject: str, record_id: str) -> bool:
        """Hard delete (emptied recycle bin): the record disappears even from queryAll."""
        with self.lock:
            return self.table(sobject).remove(to_18(record_id)) is not None

    def set_computed(self, sobject: str, record_id: str, values: dict[str, Any]) -> None:
        """Update computed fields without touching the stamps of the parent write path."""
        with self.lock:
            spec = self.tables[sobject].spec
            current = self.tables[sobject].rows.get(record_id)
            if current is None or all(current.get(k) == v for k, v in values.items()):
                return
            row = dict(current)
            row.update(values)
            row["SystemModstamp"] = self.clock.now()
            row["LastModifiedDate"] = row["SystemModstamp"]
            self._store(spec, row)

    # ------------------------------------------------------------ validation

    def _raw(self, spec: ObjectSpec, values: dict[str, Any]) -> dict[str, Any]:
        """Control-API writes: names canonicalised, values kept as given (numbers as Decimal)."""
        out: dict[str, Any] = {}
        for name, value in values.items():
            f = spec.field(name)
            if f is None or f.name in ("Id", "IsDeleted", "CreatedDate", "LastModifiedDate", "SystemModstamp"):
                if f is None and name != "attributes":
                    raise ApiError(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {spec.name}")
                continue
            if f.type in NUMERIC_TYPES and value is not None and not isinstance(value, bool):
                try:
                    value = Decimal(str(value))
                except InvalidOperation:
                    pass
            out[f.name] = value
        return out

    def _validate(
        self, spec: ObjectSpec, values: dict[str, Any], *, creating: bool, current: Row | None
    ) -> dict[str, Any]:
        verb = "inserted" if creating else "updated"
        if not spec.writable:
            raise ApiError(400, "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY", f"entity type cannot be {verb}: {spec.label}")
        out: dict[str, Any] = {}
        readonly: list[str] = []
        for name, value in values.items():
            if name == "attributes":
                continue
            f = spec.field(name)
            if f is None:
                raise ApiError(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {spec.name}")
            if (creating and not f.createable) or (not creating and not f.updateable):
                if f.name == "Id" and not creating:
                    continue  # collections updates carry the Id in the body
                readonly.append(f.name)
                continue
            out[f.name] = self._convert(spec, f, value)
        if readonly:
            raise ApiError(
                400,
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(readonly)}. Please check the security settings of this "
                f"field and verify that it is read/write for your profile or permission set.",
                readonly,
            )
        merged = dict(current or {})
        merged.update(out)
        missing = [f.name for f in spec.fields.values() if f.required and merged.get(f.name) in (None, "")]
        if missing:
            raise ApiError(400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]",
                           missing)
        return out

    def _convert(self, spec: ObjectSpec, f: FieldSpec, value: Any) -> Any:
        """``value`` as the org stores it in field ``f``; ``ApiError`` as the org words it."""
        if value is None:
            return None
        t = f.type
        if t in TEXT_TYPES:
            return _convert_text(f, value)
        if t == "boolean":
            if not isinstance(value, bool):
                raise _parser_error("boolean", value)
            return value
        if t in NUMERIC_TYPES:
            return _convert_number(f, value)
        if t in ("date", "datetime"):
            return _convert_when(t, value)
        if t in ("reference", "id"):
            return self._convert_reference(f, value)
        return value

    def _convert_reference(self, f: FieldSpec, value: Any) -> str:
        """An 18-character id of a record of a type ``f`` may point to."""
        if not isinstance(value, str):
            raise _parser_error("string", value)
        try:
            rid = to_18(value)
        except ValueError:
            raise ApiError(400, "MALFORMED_ID", f"{f.label}: id value of incorrect type: {value}", [f.name]) from None
        target = self.find_object(rid)
        if target is None and any(self.schema.get(name) is None for name in f.reference_to):
            return rid  # a target this org does not model (Account, packages): id form checked only
        if (target is None or (f.reference_to and target.name not in f.reference_to)
                or self.get(target.name, rid) is None):
            raise ApiError(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [f.name])
        return rid

    def _check_unique(self, spec: ObjectSpec, row: Row, own_id: str | None) -> None:
        table = self.tables[spec.name]
        for f in spec.fields.values():
            if not f.unique or row.get(f.name) is None:
                continue
            holder = table.external.get(f.name, {}).get(str(row[f.name]).lower())
            if holder is not None and holder != own_id:
                raise ApiError(400, "DUPLICATE_VALUE", f"duplicate value found: {f.name} duplicates value on record "
                               f"with id: {holder}", [f.name])

    # ------------------------------------------------------------ queries

    def select(self, bound: BoundQuery, *, include_deleted: bool) -> list[Row]:
        """Rows matching a bound query, ordered, limited: a snapshot (list of references)."""
        with self.lock:
            table = self.tables[bound.spec.name]
            low, low_inc, high, high_inc = bound.stamp_range
            index = table.index
            start = 0
            end = len(index)
            if low is not None:
                start = (bisect.bisect_left(index, (low, "")) if low_inc
                         else bisect.bisect_right(index, (low, "\uffff")))
            if high is not None:
                end = (bisect.bisect_right(index, (high, "\uffff")) if high_inc
                       else bisect.bisect_left(index, (high, "")))
            rows = table.rows
            candidates = [rows[rid] for _, rid in index[start:end]]
        pred = bound.predicate
        if include_deleted:
            matched = candidates if pred is None else [r for r in candidates if pred(r)]
        elif pred is None:
            matched = [r for r in candidates if not r["IsDeleted"]]
        else:
            matched = [r for r in candidates if not r["IsDeleted"] and pred(r)]
        if not is_index_order(bound.order_by):
            sort_rows(matched, bound.order_by, bound.order_getters)
        if bound.offset:
            matched = matched[bound.offset :]
        if bound.limit is not None:
            matched = matched[: bound.limit]
        return matched


def autonumber(display_format: str, n: int) -> str:
    """``PPL-{00000000}`` and 7 -> ``PPL-00000007`` (Salesforce's auto-number display format)."""
    return re.sub(r"\{(0+)\}", lambda m: str(n).zfill(len(m.group(1))), display_format)


class Rules:
    """Business rules applied to API writes (not to control-API writes). The base class
    has none; ``gtm_sandbox.org.gtm.GtmRules`` adds the GTM app's."""

    def check(self, data: OrgData, spec: ObjectSpec, current: Row | None, values: dict[str, Any] | None) -> None:
        """Raise ApiError to refuse a create (current None), update or delete (values None)."""

    def compute(self, data: OrgData, spec: ObjectSpec, row: Row) -> None:
        """Fill computed fields of a row about to be stored (a fresh dict)."""

    def after(self, data: OrgData, spec: ObjectSpec, row: Row, old: Row | None) -> None:
        """Propagate a stored write (e.g. roll-up summaries on the parent)."""


def _parser_error(java_type: str, value: Any) -> ApiError:
    """The org's answer to a JSON value of the wrong type for the field."""
    if isinstance(value, str):
        kind = "VALUE_STRING"
    elif isinstance(value, (int, float, Decimal)):
        kind = "VALUE_NUMBER"
    else:
        kind = "VALUE"
    return ApiError(400, "JSON_PARSER_ERROR", f"Cannot deserialize instance of {java_type} from {kind} value "
                    f"{value} or request may be missing a required field")


def _convert_text(f: FieldSpec, value: Any) -> str:
    """A text field's value: within its length, a valid email or picklist value where asked."""
    if not isinstance(value, str):
        raise _parser_error("string", value)
    if f.length and len(value) > f.length:
        raise ApiError(400, "STRING_TOO_LONG", f"{f.label}: data value too large: {value[:40]}... "
                       f"(max length={f.length})", [f.name])
    if f.type == "email" and value and not _EMAIL_RE.match(value):
        raise ApiError(400, "INVALID_EMAIL_ADDRESS", f"{f.label}: invalid email address: {value}", [f.name])
    if f.type == "picklist" and f.picklist and value not in f.picklist:
        raise ApiError(400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                       f"{f.label}: bad value for restricted picklist field: {value}", [f.name])
    return value


def _convert_number(f: FieldSpec, value: Any) -> int | Decimal:
    """An int field's whole number, or a number kept to the field's scale and precision."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise _parser_error("double", value)
    number = Decimal(str(value))
    if f.type == "int":
        if number != number.to_integral_value():
            raise ApiError(400, "NUMBER_OUTSIDE_VALID_RANGE", f"{f.label}: value not of required type: {value}",
                           [f.name])
        return int(number)
    # The org keeps a number to its field's scale (describe: scale), rounding half-up.
    number = number.quantize(Decimal(1).scaleb(-f.scale), rounding=ROUND_HALF_UP)
    if f.precision and abs(number) >= Decimal(10) ** (f.precision - f.scale):
        raise ApiError(400, "NUMBER_OUTSIDE_VALID_RANGE", f"{f.label}: value outside of valid range on "
                       f"numeric field: {value}", [f.name])
    return number


def _convert_when(field_type: str, value: Any) -> str:
    """A ``date`` (ISO day) or ``datetime`` (the org's canonical stamp) from a string."""
    if not isinstance(value, str):
        raise _parser_error(field_type, value)
    try:
        return date.fromisoformat(value[:10]).isoformat() if field_type == "date" else canonical_stamp(value)
    except (ValueError, TypeError):
        raise _parser_error(field_type, value) from None
