"""Mapping sets: which Salesforce objects and fields map to which local tables and columns,
the status vocabularies, and the write-back target. Data lives in ``mappings/<name>/``.

``load_mapping`` validates a set at start-up and raises ``MappingError`` naming the file,
object and key of the first problems found. Checking columns against the store's tables
is done by ``check_against_tables`` (bootstrap calls it with the store's column catalogue),
so this module stays free of the database layer.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from connector.errors import MappingError

CURRENCY_CENTS = "currency_cents"  # an amount the org keeps in cents (SfdcPartnerPayout.Amount)
FIELD_TYPES = frozenset(
    {"id", "reference", "string", "email", "picklist", "boolean", "int", "currency", CURRENCY_CENTS, "percent",
     "date", "datetime"}
)
# The vocabularies every mapping set must define, and the states each must reach.
REQUIRED_VOCABULARIES = {
    "offer_status": {"draft", "sent", "accepted", "rejected", "expired", "error"},
    "order_status": {"new", "processing", "activated", "expired", "error"},
    "invoice_status": {"draft", "open", "paid", "void", "uncollectible"},
    "offer_type": {"initial", "add_on"},
    "order_type": {"initial", "add_on"},
}
# The results write-back can send (``connector.services.writeback.results_of`` produces
# them): a writeback.toml field naming anything else would silently stay empty, so it is
# refused at load.
WRITEBACK_RESULTS = frozenset({
    "order_id", "order_number", "stripe_invoice_id", "invoice_number", "invoice_url", "invoice_status",
    "invoice_due_date", "invoice_amount", "expected_payout", "actual_payout", "payout_date", "discrepancy",
    "last_error",
})
# The local column that holds an order's Salesforce id in every table of an order's
# children (order items, billing links): the mapping's field mapped to it is that object's
# reference to its order.
ORDER_REFERENCE_COLUMN = "order_id"
MAX_MAPPING_FILE_BYTES = 1024 * 1024
REQUIRED_OBJECTS = ("term_set", "ppc", "ppp", "product_license", "offer", "offer_item", "order", "order_item")


@dataclass(frozen=True)
class FieldMapping:
    sf_field: str
    column: str
    type: str
    required: bool = False
    read_only: bool = False  # the org computes it (formula, roll-up, auto-number): never written


@dataclass(frozen=True)
class ObjectMapping:
    name: str  # mapping key, e.g. "order"
    sobject: str  # Salesforce API name, e.g. "SfdcPartnerOrder"
    table: str  # local table, e.g. "orders"
    key: str
    cursor: str
    writable: bool
    order: int
    fields: Mapping[str, FieldMapping]

    def sf_field_for(self, column: str) -> str:
        for f in self.fields.values():
            if f.column == column:
                return f.sf_field
        raise KeyError(column)


@dataclass(frozen=True)
class WritebackTarget:
    sobject: str
    external_id: str
    fields: Mapping[str, str]  # local result name -> SF field
    types: Mapping[str, str]  # SF field -> type


@dataclass(frozen=True)
class MappingSet:
    name: str
    path: Path
    objects: Mapping[str, ObjectMapping]
    vocabularies: Mapping[str, Mapping[str, Any]]
    writeback: WritebackTarget
    _by_sobject: dict[str, ObjectMapping] = field(default_factory=dict, repr=False, compare=False)

    def by_sobject(self, sobject: str) -> ObjectMapping:
        return self._by_sobject[sobject]

    def in_sync_order(self) -> list[ObjectMapping]:
        return sorted(self.objects.values(), key=lambda o: o.order)

    def unknown_objects(self, names: Iterable[str]) -> list[str]:
        """The ``names`` that are neither an object key (``order``) nor an sObject name
        (``SfdcPartnerOrder``) of this mapping, case-insensitively."""
        known = {o.name.lower() for o in self.objects.values()} | {o.sobject.lower() for o in self.objects.values()}
        return sorted(n for n in names if n.lower() not in known)

    @cached_property
    def order_names(self) -> frozenset[str]:
        """The names of the order object: its key, sObject and table (``order``,
        ``SfdcPartnerOrder``, ``orders``)."""
        order = self.objects["order"]
        return frozenset({order.name, order.sobject, order.table})

    @cached_property
    def order_references(self) -> tuple[str, ...]:
        """The keys that name an order in a record of this mapping: each object's field
        mapped to ``ORDER_REFERENCE_COLUMN`` (``PartnerOrderId`` on an order item,
        ``SfdcPartnerOrderId`` on a billing link), in sync order, then the column itself
        (a record as the connector stores it)."""
        fields = [f.sf_field for o in self.in_sync_order() for f in o.fields.values()
                  if f.column == ORDER_REFERENCE_COLUMN and f.type == "reference"]
        return (*dict.fromkeys(fields), ORDER_REFERENCE_COLUMN)

    def describe_objects(self) -> str:
        """For messages: the object keys, in sync order."""
        return ", ".join(o.name for o in self.in_sync_order())

    def to_state(self, vocabulary: str, value: str | None) -> str | None:
        """Map an org picklist value to the connector's state name; None if unknown."""
        if value is None:
            return None
        return self.vocabularies[vocabulary].get(value)

    def to_picklist(self, vocabulary: str, state: str) -> str:
        """The org's spelling of a connector state (first match wins)."""
        for label, mapped in self.vocabularies[vocabulary].items():
            if mapped == state:
                return label
        raise KeyError(f"{vocabulary}: no picklist value for state {state!r}")


def mappings_root() -> Path:
    """Where mapping sets live: $GTM_MAPPINGS_DIR, else the checkout's ``mappings/``, else
    the copy an installed wheel carries (``connector.resources``)."""
    from connector.resources import shipped

    env = os.environ.get("GTM_MAPPINGS_DIR")
    if env:
        return Path(env)
    return shipped("mappings")


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_MAPPING_FILE_BYTES + 1)
        if len(raw) > MAX_MAPPING_FILE_BYTES:
            raise MappingError(f"{path}: larger than {MAX_MAPPING_FILE_BYTES // 1024} KiB; not a mapping file")
        return tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise MappingError(f"{path}: file missing from the mapping set") from None
    except UnicodeDecodeError:
        raise MappingError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{path}: not valid TOML: {exc}") from None


def _parse_objects(path: Path, doc: dict[str, Any]) -> dict[str, ObjectMapping]:
    problems: list[str] = []
    objects: dict[str, ObjectMapping] = {}
    raw_objects = doc.get("objects")
    if not isinstance(raw_objects, dict) or not raw_objects:
        raise MappingError(f"{path}: objects: at least one object is required")
    for name, raw in raw_objects.items():
        where = f"{path}: objects.{name}"
        missing = [k for k in ("sobject", "table", "fields") if k not in raw]
        if missing:
            problems.append(f"{where}: missing key(s) {', '.join(missing)}")
            continue
        unknown = set(raw) - {"sobject", "table", "key", "cursor", "writable", "order", "fields"}
        if unknown:
            problems.append(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        # The mirror's correctness rests on Salesforce's Id and SystemModstamp (every record
        # has them, SystemModstamp moves on any change incl. system ones): say so rather than
        # accept another value and ignore it.
        for setting, supported in (("key", "Id"), ("cursor", "SystemModstamp")):
            if raw.get(setting, supported) != supported:
                problems.append(f"{where}.{setting}: only {supported!r} is supported, got {raw[setting]!r}")
        fields = _parse_fields(where, raw["fields"], problems)
        objects[name] = ObjectMapping(
            name=name,
            sobject=raw["sobject"],
            table=raw["table"],
            key=raw.get("key", "Id"),
            cursor=raw.get("cursor", "SystemModstamp"),
            writable=bool(raw.get("writable", False)),
            order=int(raw.get("order", 100)),
            fields=fields,
        )
    for name in REQUIRED_OBJECTS:
        if name not in raw_objects:
            problems.append(f"{path}: objects.{name}: required object is not mapped")
    if problems:
        raise MappingError("\n".join(problems))
    return objects


def _parse_fields(where: str, raw_fields: dict[str, Any], problems: list[str]) -> dict[str, FieldMapping]:
    """One object's ``fields`` table; what is wrong with it goes to ``problems``."""
    fields: dict[str, FieldMapping] = {}
    columns: set[str] = set()
    for sf_field, spec in raw_fields.items():
        fwhere = f"{where}.fields.{sf_field}"
        if not isinstance(spec, dict) or "column" not in spec or "type" not in spec:
            problems.append(f"{fwhere}: needs column and type")
            continue
        if spec["type"] not in FIELD_TYPES:
            problems.append(f"{fwhere}: unknown type {spec['type']!r} (known: {', '.join(sorted(FIELD_TYPES))})")
            continue
        if spec["column"] in columns:
            problems.append(f"{fwhere}: column {spec['column']!r} is mapped twice")
        columns.add(spec["column"])
        unknown_keys = set(spec) - {"column", "type", "required", "read_only"}
        if unknown_keys:
            problems.append(f"{fwhere}: unknown key(s) {', '.join(sorted(unknown_keys))}")
        fields[sf_field] = FieldMapping(sf_field, spec["column"], spec["type"], bool(spec.get("required", False)),
                                        bool(spec.get("read_only", False)))
    return fields


def _parse_vocabularies(path: Path, doc: dict[str, Any]) -> dict[str, Mapping[str, Any]]:
    problems = []
    for name, value in doc.items():
        if not isinstance(value, dict):
            problems.append(f"{path}: {name}: must be a table ([{name}] with picklist value = state), "
                            f"got {type(value).__name__}")
        elif name == "invoicing":
            problems += _check_invoicing_vocabulary(path, value)
        else:
            odd = sorted(k for k, v in value.items() if not isinstance(v, str))
            if odd:
                problems.append(f"{path}: {name}: state of {', '.join(map(repr, odd))} must be text")
    for vocab, states in REQUIRED_VOCABULARIES.items():
        values = doc.get(vocab)
        if not isinstance(values, dict):
            problems.append(f"{path}: {vocab}: vocabulary missing")
            continue
        bad = {v for v in values.values() if v not in states}
        if bad:
            problems.append(f"{path}: {vocab}: unknown state(s) {sorted(bad)} (known: {sorted(states)})")
        unmapped = states - set(values.values())
        if unmapped:
            problems.append(f"{path}: {vocab}: no picklist value maps to {sorted(unmapped)}")
    if problems:
        raise MappingError("\n".join(problems))
    return doc


def _check_invoicing_vocabulary(path: Path, table: dict[str, Any]) -> list[str]:
    problems = [f"{path}: invoicing.{k}: unknown key (known: billable_order_states)"
                for k in sorted(set(table) - {"billable_order_states"})]
    states = table.get("billable_order_states", [])
    known = REQUIRED_VOCABULARIES["order_status"]
    if not isinstance(states, list) or not all(isinstance(s, str) and s in known for s in states):
        problems.append(f"{path}: invoicing.billable_order_states: must be a list of order states "
                        f"(known: {sorted(known)}), got {states!r}")
    return problems


def _parse_writeback(path: Path, doc: dict[str, Any]) -> WritebackTarget:
    try:
        target = WritebackTarget(
            sobject=doc["sobject"], external_id=doc["external_id"], fields=doc["fields"], types=doc.get("types", {})
        )
    except KeyError as exc:
        raise MappingError(f"{path}: {exc.args[0]}: key required") from None
    if not isinstance(target.fields, dict) or not all(isinstance(v, str) for v in target.fields.values()):
        raise MappingError(f"{path}: fields: must be a table of result name = Salesforce field name")
    unknown = sorted(set(target.fields) - WRITEBACK_RESULTS)
    if unknown:
        raise MappingError(f"{path}: fields.{unknown[0]}: unknown write-back result"
                           f"{'s ' + ', '.join(unknown) if len(unknown) > 1 else ''} "
                           f"(known: {', '.join(sorted(WRITEBACK_RESULTS))})")
    if target.external_id not in target.fields.values():
        raise MappingError(f"{path}: external_id: {target.external_id!r} is not one of the mapped fields")
    bad = {t for t in target.types.values() if t not in FIELD_TYPES}
    if bad:
        raise MappingError(f"{path}: types: unknown type(s) {sorted(bad)}")
    return target


def load_mapping(name_or_path: str | Path = "gtm-v2") -> MappingSet:
    """Load and validate a mapping set by name (under ``mappings_root()``) or by path."""
    path = Path(name_or_path)
    if not path.is_dir():
        path = mappings_root() / str(name_or_path)
    if not path.is_dir():
        raise MappingError(f"mapping set {name_or_path!r} not found (looked in {path})")
    objects = _parse_objects(path / "mapping.toml", _read(path / "mapping.toml"))
    vocabularies = _parse_vocabularies(path / "vocabularies.toml", _read(path / "vocabularies.toml"))
    writeback = _parse_writeback(path / "writeback.toml", _read(path / "writeback.toml"))
    mapping = MappingSet(path.name, path, objects, vocabularies, writeback)
    mapping._by_sobject.update({o.sobject: o for o in objects.values()})
    return mapping


# Which local column types can hold which mapping types (store type name -> mapping types).
_COMPATIBLE = {
    "string": {"id", "reference", "string", "email", "picklist"},
    "int": {"int"},
    "money": {"currency", "currency_cents"},
    "price": {"currency"},
    "percent": {"percent"},
    "date": {"date"},
    "datetime": {"datetime"},
    "boolean": {"boolean"},
}


def check_against_tables(mapping: MappingSet, columns_of: Callable[[str], Mapping[str, str]]) -> None:
    """Fail with MappingError if a mapped table or column does not exist in the local model,
    or its type cannot hold the field. ``columns_of(table)`` returns {column: store type name}
    and raises KeyError for an unknown table."""
    problems = []
    where = mapping.path / "mapping.toml"
    for obj in mapping.objects.values():
        try:
            columns = columns_of(obj.table)
        except KeyError:
            problems.append(f"{where}: objects.{obj.name}.table: unknown local table {obj.table!r}")
            continue
        for f in obj.fields.values():
            if f.column not in columns:
                problems.append(f"{where}: objects.{obj.name}.fields.{f.sf_field}: unknown column {f.column!r} "
                                f"in table {obj.table!r}")
            elif f.type not in _COMPATIBLE.get(columns[f.column], {columns[f.column]}):
                problems.append(f"{where}: objects.{obj.name}.fields.{f.sf_field}: type {f.type!r} does not fit "
                                f"column {obj.table}.{f.column} ({columns[f.column]})")
    if problems:
        raise MappingError("\n".join(problems))
