"""Object and field metadata of the sandbox org, read from ``gtm_schema.toml``.

The schema is the org's own data, written from Salesforce's public object reference; it is
never derived from the connector's mapping (so a wrong name in a mapping fails against it,
as on a real org). From it the sandbox answers describe calls, validates writes, computes
derived fields and types SOQL filters. Objects exist from the API version that introduced
them (``since``): asked for at an older version they are unknown, as on a real org.
Field names are case-insensitive in Salesforce, so lookups go through ``field()``.

A test can start an org whose schema differs from the reference (``renamed``): that is how
the suite proves a wrong mapping is caught.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).with_name("gtm_schema.toml")
# Schema type -> (describe "type", soapType)
_DESCRIBE_TYPES = {
    "id": ("id", "tns:ID"),
    "reference": ("reference", "tns:ID"),
    "string": ("string", "xsd:string"),
    "textarea": ("textarea", "xsd:string"),
    "email": ("email", "xsd:string"),
    "picklist": ("picklist", "xsd:string"),
    "boolean": ("boolean", "xsd:boolean"),
    "int": ("int", "xsd:int"),
    "double": ("double", "xsd:double"),
    "currency": ("currency", "xsd:double"),
    "percent": ("percent", "xsd:double"),
    "date": ("date", "xsd:date"),
    "datetime": ("datetime", "xsd:dateTime"),
}
NUMERIC_TYPES = frozenset({"int", "double", "currency", "percent"})
TEXT_TYPES = frozenset({"string", "textarea", "email", "picklist"})
SYSTEM_FIELD_TYPES = {
    "Id": "id",
    "IsDeleted": "boolean",
    "CreatedDate": "datetime",
    "LastModifiedDate": "datetime",
    "SystemModstamp": "datetime",
}
ACCESS = ("writable", "read_only", "query_only")
_FIELD_KEYS = {"type", "length", "precision", "scale", "to", "master_detail", "relationship", "values", "restricted",
               "autonumber", "formula", "unconfirmed", "nillable", "createable", "updateable", "external_id", "unique"}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str  # schema type (string, currency, ...)
    label: str
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    external_id: bool = False
    unique: bool = False
    reference_to: tuple[str, ...] = ()
    relationship: str | None = None
    master_detail: bool = False
    picklist: tuple[str, ...] = ()
    restricted: bool = False
    length: int = 0
    precision: int = 0
    scale: int = 0
    autonumber: str | None = None
    formula: str | None = None
    unconfirmed: bool = False

    @property
    def system(self) -> bool:
        return self.name in SYSTEM_FIELD_TYPES

    @property
    def calculated(self) -> bool:
        return self.formula is not None

    @property
    def required(self) -> bool:
        """Must be given on create (Salesforce: not nillable, createable, not defaulted)."""
        return not self.nillable and self.createable and not self.system

    @property
    def relationship_name(self) -> str | None:
        """Describe's relationshipName: the schema's, else a reference's name without "Id"."""
        if self.relationship is None and self.reference_to:
            return self.name[:-2] if self.name.endswith("Id") else None
        return self.relationship

    def describe(self) -> dict[str, object]:
        sf_type, soap = _DESCRIBE_TYPES[self.type]
        relationship = self.relationship_name
        return {
            "name": self.name,
            "label": self.label,
            "type": sf_type,
            "soapType": soap,
            "length": self.length,
            "precision": self.precision,
            "scale": self.scale,
            "digits": 0,
            "nillable": self.nillable,
            "createable": self.createable,
            "updateable": self.updateable,
            "defaultedOnCreate": self.system or self.type == "boolean" or self.autonumber is not None,
            "externalId": self.external_id,
            "idLookup": self.name == "Id" or self.external_id or self.autonumber is not None,
            "unique": self.unique,
            "custom": self.name.endswith("__c"),
            "calculated": self.calculated,
            "calculatedFormula": self.formula,
            "autoNumber": self.autonumber is not None,
            "displayFormat": self.autonumber,
            "filterable": True,
            "sortable": self.type != "textarea",
            "groupable": self.type not in ("currency", "percent", "double", "datetime", "textarea"),
            "cascadeDelete": self.master_detail,
            "relationshipOrder": 0 if self.master_detail else None,
            "referenceTo": list(self.reference_to),
            "relationshipName": relationship,
            "polymorphicForeignKey": len(self.reference_to) > 1,
            "picklistValues": [
                {"active": True, "defaultValue": False, "label": v, "validFor": None, "value": v} for v in self.picklist
            ],
            "restrictedPicklist": self.restricted,
        }


@dataclass(frozen=True)
class ObjectSpec:
    name: str
    label: str
    key_prefix: str
    access: str
    fields: Mapping[str, FieldSpec]
    since: float = 40.0
    custom: bool = False
    searchable: bool = True  # found by SOSL (Organization is not)
    _lower: dict[str, FieldSpec] = field(default_factory=dict, repr=False, compare=False)

    @property
    def writable(self) -> bool:
        return self.access == "writable"

    @property
    def retrieveable(self) -> bool:
        return self.access != "query_only"

    def field(self, name: str) -> FieldSpec | None:
        return self._lower.get(name.lower())

    def exists_at(self, api_version: str | float) -> bool:
        return float(api_version) >= self.since

    @property
    def external_ids(self) -> list[FieldSpec]:
        return [f for f in self.fields.values() if f.external_id or f.autonumber is not None]

    def describe(self, api_version: str) -> dict[str, object]:
        return {
            **self.basic(api_version),
            "fields": [f.describe() for f in self.fields.values()],
            "childRelationships": [],
            "recordTypeInfos": [],
        }

    def basic(self, api_version: str) -> dict[str, object]:
        base = f"/services/data/v{api_version}/sobjects/{self.name}"
        return {
            "name": self.name,
            "label": self.label,
            "labelPlural": self.label + "s",
            "keyPrefix": self.key_prefix,
            "custom": self.custom,
            "customSetting": False,  # tap-salesforce skips custom settings by this flag
            "createable": self.writable,
            "updateable": self.writable,
            "deletable": self.writable,
            "queryable": True,
            "retrieveable": self.retrieveable,
            "searchable": self.retrieveable and self.searchable,
            "undeletable": self.writable,
            "replicateable": self.retrieveable,
            "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"},
        }


def _label(name: str) -> str:
    name = name.removesuffix("__c").replace("_", " ")
    name = name.removeprefix("Sfdc")
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).strip()


@dataclass(frozen=True)
class OrgSchema:
    objects: Mapping[str, ObjectSpec]
    # When the schema last changed (describe answers 304 to If-Modified-Since after it).
    last_modified: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    _lower: dict[str, ObjectSpec] = field(default_factory=dict, repr=False, compare=False)
    _by_prefix: dict[str, ObjectSpec] = field(default_factory=dict, repr=False, compare=False)

    def get(self, name: str, api_version: str | float | None = None) -> ObjectSpec | None:
        """The object called ``name`` (any case); None if unknown, or not yet introduced at
        ``api_version``."""
        spec = self._lower.get(name.lower())
        if spec is None or (api_version is not None and not spec.exists_at(api_version)):
            return None
        return spec

    def at(self, api_version: str | float) -> list[ObjectSpec]:
        return [s for s in self.objects.values() if s.exists_at(api_version)]

    def by_prefix(self, record_id: str) -> ObjectSpec | None:
        return self._by_prefix.get(record_id[:3])

    def with_field_renamed(self, sobject: str, old: str, new: str) -> OrgSchema:
        """This schema with one field renamed, modified now (at least a second after this
        one, so an If-Modified-Since of the old Last-Modified sees the change)."""
        spec = self.get(sobject)
        if spec is None or spec.field(old) is None:
            raise ValueError(f"renamed: no such field {sobject}.{old}")
        fields = {(new if f.name == spec.field(old).name else f.name):  # type: ignore[union-attr]
                  (replace(f, name=new, label=_label(new)) if f.name == spec.field(old).name else f)  # type: ignore[union-attr]
                  for f in spec.fields.values()}
        changed = replace(spec, fields=fields, _lower={f.name.lower(): f for f in fields.values()})
        objects = {name: (changed if name == spec.name else s) for name, s in self.objects.items()}
        now = max(datetime.now(UTC).replace(microsecond=0), self.last_modified + timedelta(seconds=1))
        return OrgSchema(objects, now, _lower={n.lower(): s for n, s in objects.items()},
                         _by_prefix={s.key_prefix: s for s in objects.values()})


def _system_fields(recycle_bin: bool = True) -> list[FieldSpec]:
    """The system fields; without IsDeleted for an object whose records never go to the
    recycle bin (Organization, User: their rows still carry it, false, for the engine)."""
    return [
        FieldSpec(n, t, _label(n), nillable=n not in ("Id", "IsDeleted"), createable=False, updateable=False)
        for n, t in SYSTEM_FIELD_TYPES.items() if recycle_bin or n != "IsDeleted"
    ]


def _field_spec(where: str, name: str, raw: Mapping[str, Any], writable: bool) -> FieldSpec:
    unknown = set(raw) - _FIELD_KEYS
    if unknown:
        raise ValueError(f"{where}.{name}: unknown key(s) {sorted(unknown)}")
    if raw.get("type") not in _DESCRIBE_TYPES:
        raise ValueError(f"{where}.{name}: unknown type {raw.get('type')!r}")
    derived = raw.get("autonumber") is not None or raw.get("formula") is not None
    t = raw["type"]
    default_length = {"id": 18, "reference": 18, "email": 80}.get(t, 255 if t in TEXT_TYPES else 0)
    precision = int(raw.get("precision", 18 if t in ("currency", "double", "percent") else (9 if t == "int" else 0)))
    return FieldSpec(
        name=name, type=t, label=_label(name),
        # A master-detail link is always required (a detail record cannot exist alone).
        nillable=(bool(raw.get("nillable", True)) and not raw.get("master_detail", False)) or derived,
        createable=bool(raw.get("createable", writable)) and not derived,
        updateable=bool(raw.get("updateable", writable and not raw.get("master_detail", False))) and not derived,
        external_id=bool(raw.get("external_id", False)), unique=bool(raw.get("unique", False)),
        reference_to=tuple(raw.get("to", ())), relationship=raw.get("relationship"),
        master_detail=bool(raw.get("master_detail", False)),
        picklist=tuple(raw.get("values", ())), restricted=bool(raw.get("restricted", False)),
        length=int(raw.get("length", default_length)), precision=precision,
        scale=int(raw.get("scale", 0 if t in ("int", "double") else (2 if t in NUMERIC_TYPES else 0))),
        autonumber=raw.get("autonumber"), formula=raw.get("formula"), unconfirmed=bool(raw.get("unconfirmed", False)),
    )


def load_org_schema(path: Path = SCHEMA_FILE, *, renamed: Mapping[str, str] | None = None,
                    dropped: tuple[str, ...] = (), version_gate: bool = True) -> OrgSchema:
    """The org's schema from ``path``. ``renamed`` ({"Object.Field": "NewName"}) and
    ``dropped`` ("Object.Field", or "Object" for a whole object) make a test-only variant
    that differs from the reference. ``version_gate=False`` (benchmarks against clients
    pinned to older API versions only) makes every object exist at every version, which no
    real org does: there GTM objects are unknown before the version that introduced them."""
    doc = tomllib.loads(path.read_text("utf-8"))
    renamed = dict(renamed or {})
    specs: dict[str, ObjectSpec] = {}
    for name, raw in doc["objects"].items():
        if name in dropped:
            continue
        access = raw.get("access", "writable")
        if access not in ACCESS:
            raise ValueError(f"{path}: objects.{name}.access: {access!r} is not one of {ACCESS}")
        fields = _system_fields(bool(raw.get("recycle_bin", True)))
        for fname, fraw in raw["fields"].items():
            key = f"{name}.{fname}"
            if key in dropped:
                continue
            spec = _field_spec(f"{path}: objects.{name}.fields", fname, fraw, access == "writable")
            if key in renamed:
                new_name = renamed.pop(key)
                spec = replace(spec, name=new_name, label=_label(new_name))
            fields.append(spec)
        specs[name] = ObjectSpec(
            name=name, label=raw.get("label", _label(name)), key_prefix=raw["prefix"], access=access,
            fields={f.name: f for f in fields}, since=float(raw.get("since", 40.0)) if version_gate else 0.0,
            custom=bool(raw.get("custom")), searchable=bool(raw.get("searchable", True)),
            _lower={f.name.lower(): f for f in fields},
        )
    if renamed:
        raise ValueError(f"renamed: no such field(s) {sorted(renamed)}")
    lower = {name.lower(): spec for name, spec in specs.items()}
    by_prefix = {spec.key_prefix: spec for spec in specs.values()}
    return OrgSchema(specs, _lower=lower, _by_prefix=by_prefix)
