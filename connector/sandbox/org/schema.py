"""Object and field metadata of the sandbox org, derived from a mapping set.

The mapping says which GTM objects exist, their fields and types, which are required and
whether partners may write the object; the write-back target comes from writeback.toml.
From that the sandbox answers describe calls, validates writes and types SOQL filters.
Field names are case-insensitive in Salesforce, so lookups go through ``field()``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from connector.mappings import MappingSet, load_mapping

# Mapping type -> (describe "type", soapType)
_DESCRIBE_TYPES = {
    "id": ("id", "tns:ID"),
    "reference": ("reference", "tns:ID"),
    "string": ("string", "xsd:string"),
    "email": ("email", "xsd:string"),
    "picklist": ("picklist", "xsd:string"),
    "boolean": ("boolean", "xsd:boolean"),
    "int": ("double", "xsd:double"),
    "currency": ("currency", "xsd:double"),
    "percent": ("percent", "xsd:double"),
    "date": ("date", "xsd:date"),
    "datetime": ("datetime", "xsd:dateTime"),
}
SYSTEM_FIELD_TYPES = {
    "Id": "id",
    "IsDeleted": "boolean",
    "CreatedDate": "datetime",
    "LastModifiedDate": "datetime",
    "SystemModstamp": "datetime",
}
# Fields the GTM app computes itself (formula / roll-up): readable, never writable.
COMPUTED_FIELDS = {
    "SfdcPartnerOfferItem": {"LineItemTotal"},
    "SfdcPartnerOrderItem": {"LineItemTotal"},
    "SfdcPartnerOffer": {"Subtotal"},
    "SfdcPartnerOrder": {"Subtotal", "OrderNumber"},
}
# Key prefixes: invented but stable, so ids read alike from run to run.
KEY_PREFIXES = {
    "SfdcPartnerTermSet": "1TS",
    "SfdcPartnerTermSetProduct": "1TP",
    "SfdcPartnerProvisionProduct": "1PP",
    "SfdcPartnerProductLicense": "1PL",
    "SfdcPartnerOffer": "1OF",
    "SfdcPartnerOfferItem": "1OI",
    "SfdcPartnerOrder": "1OR",
    "SfdcPartnerOrderItem": "1OT",
    "SfdcPartnerPayout": "1PY",
}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str  # mapping type name (string, currency, ...)
    label: str
    required: bool = False
    createable: bool = True
    updateable: bool = True
    external_id: bool = False
    unique: bool = False
    reference_to: tuple[str, ...] = ()
    picklist: tuple[str, ...] = ()

    @property
    def system(self) -> bool:
        return self.name in SYSTEM_FIELD_TYPES

    def describe(self) -> dict[str, object]:
        sf_type, soap = _DESCRIBE_TYPES[self.type]
        numeric = self.type in ("int", "currency", "percent")
        return {
            "name": self.name,
            "label": self.label,
            "type": sf_type,
            "soapType": soap,
            "length": 255 if self.type in ("string", "picklist") else (80 if self.type == "email" else (18 if self.type in ("id", "reference") else 0)),
            "precision": 18 if numeric else 0,
            "scale": 0 if self.type == "int" else (2 if numeric else 0),
            "nillable": not self.required and not self.system and self.type != "boolean",
            "createable": self.createable,
            "updateable": self.updateable,
            "defaultedOnCreate": self.system or self.type == "boolean",
            "externalId": self.external_id,
            "idLookup": self.name == "Id" or self.external_id,
            "unique": self.unique,
            "custom": self.name.endswith("__c"),
            "calculated": False,
            "filterable": True,
            "sortable": True,
            "groupable": self.type not in ("currency", "percent", "datetime"),
            "referenceTo": list(self.reference_to),
            "relationshipName": (self.name[:-2] if self.name.endswith("Id") else None) if self.reference_to else None,
            "picklistValues": [
                {"active": True, "defaultValue": False, "label": v, "validFor": None, "value": v} for v in self.picklist
            ],
            "restrictedPicklist": bool(self.picklist),
        }


@dataclass(frozen=True)
class ObjectSpec:
    name: str
    label: str
    key_prefix: str
    writable: bool
    fields: Mapping[str, FieldSpec]
    custom: bool = False
    _lower: dict[str, FieldSpec] = field(default_factory=dict, repr=False, compare=False)

    def field(self, name: str) -> FieldSpec | None:
        return self._lower.get(name.lower())

    @property
    def external_ids(self) -> list[FieldSpec]:
        return [f for f in self.fields.values() if f.external_id]

    def describe(self, api_version: str) -> dict[str, object]:
        base = f"/services/data/v{api_version}/sobjects/{self.name}"
        return {
            **self.basic(api_version),
            "fields": [f.describe() for f in self.fields.values()],
            "childRelationships": [],
            "recordTypeInfos": [],
            "urls": {
                "sobject": base,
                "describe": f"{base}/describe",
                "rowTemplate": f"{base}/{{ID}}",
            },
        }

    def basic(self, api_version: str) -> dict[str, object]:
        base = f"/services/data/v{api_version}/sobjects/{self.name}"
        return {
            "name": self.name,
            "label": self.label,
            "labelPlural": self.label + "s",
            "keyPrefix": self.key_prefix,
            "custom": self.custom,
            "createable": self.writable,
            "updateable": self.writable,
            "deletable": self.writable,
            "queryable": True,
            "retrieveable": True,
            "searchable": True,
            "undeletable": self.writable,
            "replicateable": True,
            "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"},
        }


def _label(name: str) -> str:
    name = name.removesuffix("__c").replace("_", " ")
    name = name.removeprefix("Sfdc")
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).strip()


def _vocabulary_for(mapping: MappingSet, object_key: str, column: str) -> str | None:
    """Which vocabulary types a picklist column: the column itself (offer_type) or
    object + column (offer + status -> offer_status)."""
    for name in (column, f"{object_key}_{column}"):
        if name in mapping.vocabularies and isinstance(mapping.vocabularies[name], Mapping):
            return name
    return None


def _reference_target(field_name: str, sobjects: list[str]) -> tuple[str, ...]:
    stem = field_name.removesuffix("Id")
    if stem in sobjects:
        return (stem,)
    last_word = re.findall(r"[A-Z][a-z]*", stem)[-1:] or [stem]
    return tuple(s for s in sobjects if s.endswith(last_word[0]))[:1]


@dataclass(frozen=True)
class OrgSchema:
    objects: Mapping[str, ObjectSpec]
    _lower: dict[str, ObjectSpec] = field(default_factory=dict, repr=False, compare=False)
    _by_prefix: dict[str, ObjectSpec] = field(default_factory=dict, repr=False, compare=False)

    def get(self, name: str) -> ObjectSpec | None:
        return self._lower.get(name.lower())

    def by_prefix(self, record_id: str) -> ObjectSpec | None:
        return self._by_prefix.get(record_id[:3])


def _spec(name: str, fields: list[FieldSpec], writable: bool, prefix: str, custom: bool = False) -> ObjectSpec:
    by_name = {f.name: f for f in fields}
    return ObjectSpec(name, _label(name), prefix, writable, by_name, custom, {f.name.lower(): f for f in fields})


def _system_fields() -> list[FieldSpec]:
    return [
        FieldSpec(n, t, _label(n), createable=False, updateable=False) for n, t in SYSTEM_FIELD_TYPES.items()
    ]


def schema_from_mapping(mapping: MappingSet | str = "gtm-v1") -> OrgSchema:
    """The org's objects: every mapped GTM object plus the write-back target object."""
    if isinstance(mapping, str):
        mapping = load_mapping(mapping)
    sobjects = [o.sobject for o in mapping.objects.values()]
    specs: dict[str, ObjectSpec] = {}
    for n, obj in enumerate(mapping.in_sync_order()):
        computed = COMPUTED_FIELDS.get(obj.sobject, set())
        fields = _system_fields()
        for f in obj.fields.values():
            vocab = _vocabulary_for(mapping, obj.name, f.column) if f.type == "picklist" else None
            writable = obj.writable and f.sf_field not in computed
            fields.append(
                FieldSpec(
                    name=f.sf_field,
                    type=f.type,
                    label=_label(f.sf_field),
                    required=f.required and f.sf_field not in computed,
                    createable=writable,
                    updateable=writable,
                    reference_to=_reference_target(f.sf_field, sobjects) if f.type == "reference" else (),
                    picklist=tuple(mapping.vocabularies[vocab]) if vocab else (),
                )
            )
        prefix = KEY_PREFIXES.get(obj.sobject, f"1X{n}")
        specs[obj.sobject] = _spec(obj.sobject, fields, obj.writable, prefix)
    wb = mapping.writeback
    wb_fields = _system_fields() + [FieldSpec("Name", "string", "Name")]
    for sf_field in wb.fields.values():
        is_key = sf_field == wb.external_id
        wb_fields.append(
            FieldSpec(
                sf_field, wb.types.get(sf_field, "string"), _label(sf_field),
                required=is_key, external_id=is_key, unique=is_key,
            )
        )
    specs[wb.sobject] = _spec(wb.sobject, wb_fields, True, "a0B", custom=True)
    lower = {name.lower(): spec for name, spec in specs.items()}
    by_prefix = {spec.key_prefix: spec for spec in specs.values()}
    return OrgSchema(specs, lower, by_prefix)
