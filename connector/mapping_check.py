"""A mapping set checked against the org's own describe: pure, no I/O.

``check_mapping(mapping, describes, ...)`` takes the describes as Salesforce returns them
(``/sobjects/X/describe`` bodies, keyed by sObject name; a missing key means the org has
no such object at the API version asked) and returns one ``Problem`` per field (per object
when the object itself is missing): the field is not in the org (with the closest names the
org has, their types and reference targets), its type cannot feed the mapped one, the org
keeps more decimals than the local column, a field the connector writes is not
createable/updateable, or the write-back external id cannot key an upsert. Picklist values
the vocabularies don't cover are warnings: the mirror quarantines such records anyway.

Fetching the describes (cheaply, with If-Modified-Since) is ``connector.services.mapping_guard``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from connector.errors import MappingError
from connector.mappings import (
    CURRENCY_CENTS,
    REQUIRED_OBJECTS,
    FieldMapping,
    MappingSet,
    ObjectMapping,
    WritebackTarget,
)

Describe = Mapping[str, Any]
Severity = Literal["error", "warning"]

# Mapping type -> the describe types that can feed it. Salesforce's "double" carries numbers
# a currency or percent field may be declared as on another org; an int may come as a
# number with scale 0.
_TEXT = {"string", "textarea", "picklist", "multipicklist", "combobox", "email", "phone", "url", "id", "reference",
         "encryptedstring"}
COMPATIBLE: Mapping[str, frozenset[str]] = {
    "id": frozenset({"id"}),
    "reference": frozenset({"reference", "id"}),
    "string": frozenset(_TEXT),
    "email": frozenset({"email", "string"}),
    "picklist": frozenset({"picklist", "string", "combobox"}),
    "boolean": frozenset({"boolean"}),
    "int": frozenset({"int", "double", "currency", "percent"}),  # numbers: scale 0 only (checked below)
    "currency": frozenset({"currency", "double"}),
    "currency_cents": frozenset({"currency", "double", "int"}),
    "percent": frozenset({"percent", "double"}),
    "date": frozenset({"date"}),
    "datetime": frozenset({"datetime"}),
}
# Decimals a currency_cents value gains when divided by 100 on the way in.
_CENTS_DIGITS = 2
SYSTEM_FIELDS = frozenset({"Id", "IsDeleted", "CreatedDate", "LastModifiedDate", "SystemModstamp", "CreatedById",
                           "LastModifiedById", "OwnerId", "LastViewedDate", "LastReferencedDate"})


@dataclass(frozen=True)
class Problem:
    sobject: str
    field: str | None  # None: the object itself
    message: str
    severity: Severity = "error"
    mapping_object: str = ""  # the mapping's key (``order_item``), or "writeback"

    def __str__(self) -> str:
        where = f"{self.sobject}.{self.field}" if self.field else self.sobject
        return f"{where}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"object": self.sobject, "field": self.field, "severity": self.severity,
                "mapping_object": self.mapping_object, "message": self.message}


def errors_of(problems: Iterable[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def mapping_error(mapping: MappingSet, org: str, problems: Iterable[Problem]) -> MappingError:
    """One MappingError listing one line per problem (errors only)."""
    errors = errors_of(problems)
    lines = [f"mapping {mapping.name} does not match org {org}'s describe ({len(errors)} problem(s); "
             "`gtm-connector mapping check` shows them, `mapping draft` writes a mapping from the org):"]
    lines += [f"  {p}" for p in errors]
    return MappingError("\n".join(lines))


# ------------------------------------------------------------------------ describe helpers


def fields_of(describe: Describe) -> dict[str, Mapping[str, Any]]:
    """The describe's fields by lower-cased name (Salesforce names are case-insensitive)."""
    return {str(f["name"]).lower(): f for f in describe.get("fields") or []}


def field_kind(f: Mapping[str, Any]) -> str:
    """``reference to SfdcPartnerOrder``, ``currency(18, 2)``, ``picklist``: for messages."""
    t = str(f.get("type"))
    if t == "reference":
        return "reference to " + " or ".join(f.get("referenceTo") or ["?"])
    if t in ("currency", "double", "percent"):
        return f"{t}({f.get('precision')}, {f.get('scale')})"
    return t


def closest(name: str, describe: Describe, *, limit: int = 3, wanted: str | None = None) -> list[Mapping[str, Any]]:
    """The org's fields whose names are nearest ``name``; those whose type fits ``wanted``
    (a mapping type) first. System fields are never suggested."""
    candidates = {str(f["name"]): f for f in describe.get("fields") or [] if f["name"] not in SYSTEM_FIELDS}

    def score(field_name: str) -> float:
        a, b = name.lower(), field_name.lower()
        ratio = difflib.SequenceMatcher(None, a, b).ratio()
        # A prefix/suffix added or removed (SfdcPartnerOrderId vs PartnerOrderId) is the
        # usual rename: count containment as near.
        if a in b or b in a:
            ratio = max(ratio, 0.8)
        return ratio

    scored = sorted(((score(n), n) for n in candidates), key=lambda s: (-s[0], s[1]))
    best = scored[0][0] if scored else 0.0
    # Only names about as near as the nearest: a long list of vaguely similar names hides the answer.
    near = [(s, n) for s, n in scored if s >= 0.6 and s >= best - 0.2][: limit * 2]
    if wanted is not None:
        near.sort(key=lambda s: (str(candidates[s[1]].get("type")) not in COMPATIBLE.get(wanted, ()), -s[0], s[1]))
    return [candidates[n] for _, n in near[:limit]]


def _suggest(name: str, describe: Describe, wanted: str | None) -> str:
    near = closest(name, describe, wanted=wanted)
    if not near:
        return "no such field; the org has no field with a similar name"
    return "no such field; the org has " + ", ".join(f"{f['name']} ({field_kind(f)})" for f in near)


def type_problem(mapped: str, f: Mapping[str, Any]) -> str | None:
    """Why the org's field ``f`` cannot feed mapping type ``mapped`` (None if it can)."""
    actual = str(f.get("type"))
    if actual not in COMPATIBLE.get(mapped, frozenset()):
        return f"type {mapped} in the mapping, but the org's field is {field_kind(f)}"
    if mapped == "int" and actual != "int" and int(f.get("scale") or 0) != 0:
        return f"type int in the mapping, but the org's field is {field_kind(f)} (decimals would be lost)"
    return None


# ------------------------------------------------------------------------ the check


def check_mapping(
    mapping: MappingSet,
    describes: Mapping[str, Describe | None],
    *,
    api_version: str = "",
    column_scale: Callable[[str, str], int | None] = lambda table, column: None,
    column_length: Callable[[str, str], int | None] = lambda table, column: None,
    objects: Iterable[str] | None = None,
    writeback: WritebackTarget | None | Literal["mapping"] = "mapping",
) -> list[Problem]:
    """Every problem of ``mapping`` against the org's ``describes`` (sObject name -> describe
    body, or None / absent when the org has no such object). ``column_scale(table, column)``
    is the number of decimals a local column keeps (None: not a decimal column).
    ``objects``: check only these sObjects (those whose describe changed); default all.
    ``writeback``: the write-back target as configured (the mapping's by default; None when
    write-back is disabled)."""
    only = set(objects) if objects is not None else None
    problems: list[Problem] = []
    for obj in mapping.in_sync_order():
        if only is not None and obj.sobject not in only:
            continue
        problems += _check_object(mapping, obj, describes.get(obj.sobject), api_version, column_scale, column_length)
    target = mapping.writeback if writeback == "mapping" else writeback
    if target is not None and (only is None or target.sobject in only):
        problems += _check_writeback(target, describes.get(target.sobject), api_version)
    return problems


def _missing_object(sobject: str, api_version: str, what: str, severity: Severity, key: str) -> Problem:
    at = f" at API v{api_version}" if api_version else ""
    return Problem(sobject, None, f"no such object in the org{at} ({what}; GTM objects exist from API v64.0-v66.0: "
                                  f"check salesforce.api_version and the integration user's GTM app permissions)",
                   severity, key)


def _check_object(mapping: MappingSet, obj: ObjectMapping, describe: Describe | None, api_version: str,
                  column_scale: Callable[[str, str], int | None],
                  column_length: Callable[[str, str], int | None]) -> list[Problem]:
    if not describe:
        required = obj.name in REQUIRED_OBJECTS
        # An optional object the org lacks is mirrored as "not in this org", as the mirror does.
        return [_missing_object(obj.sobject, api_version, f"mapping object {obj.name}",
                                "error" if required else "warning", obj.name)]
    problems: list[Problem] = []

    def add(field: str | None, message: str, severity: Severity = "error") -> None:
        problems.append(Problem(obj.sobject, field, message, severity, obj.name))

    if describe.get("queryable") is False:
        add(None, "the org does not let this user query it (queryable = false)")
    if obj.writable and describe.get("createable") is False:
        add(None, "the mapping marks it writable, but the org does not let this user create it (createable = false)")
    fields = fields_of(describe)
    for f in obj.fields.values():
        found = fields.get(f.sf_field.lower())
        if found is None:
            add(f.sf_field, _suggest(f.sf_field, describe, f.type))
            continue
        wrong = type_problem(f.type, found)
        if wrong:
            add(f.sf_field, wrong)
            continue
        problems += [Problem(obj.sobject, f.sf_field, m, "error", obj.name)
                     for m in _scale_problem(obj, f, found, column_scale)]
        holds = column_length(obj.table, f.column)
        if holds is not None and int(found.get("length") or 0) > holds:
            # Not fatal: a longer value is quarantined per record by the mirror, the rest lands.
            add(f.sf_field, f"the org allows {found['length']} characters, the local column {obj.table}.{f.column} "
                            f"holds {holds}: longer values will be quarantined", "warning")
        if obj.writable and not f.read_only and found.get("createable") is False:
            why = ("a formula" if found.get("calculated")
                   else "an auto-number" if found.get("autoNumber") else "read-only")
            add(f.sf_field, f"not createable in the org ({why}), but the connector writes this object: mark it "
                            "read_only = true in the mapping if the org computes it")
        if f.type == "picklist":
            problems += _picklist_warnings(mapping, obj, f, found)
    return problems


def _scale_problem(obj: ObjectMapping, f: FieldMapping, found: Mapping[str, Any],
                   column_scale: Callable[[str, str], int | None]) -> list[str]:
    if str(found.get("type")) not in ("currency", "double", "percent"):
        return []
    keeps = column_scale(obj.table, f.column)
    if keeps is None:
        return []
    scale = int(found.get("scale") or 0) + (_CENTS_DIGITS if f.type == CURRENCY_CENTS else 0)
    if scale <= keeps:
        return []
    cents = " once divided by 100" if f.type == CURRENCY_CENTS else ""
    return [f"the org keeps {scale} decimals{cents} ({field_kind(found)}), the local column {obj.table}.{f.column} "
            f"keeps {keeps}: values would be rounded"]


def _picklist_warnings(
    mapping: MappingSet, obj: ObjectMapping, f: FieldMapping, found: Mapping[str, Any]
) -> list[Problem]:
    from connector.services.records import vocabulary_for  # pure; imported late to keep start-up light

    vocab = vocabulary_for(mapping, obj, f)
    values = [str(v.get("value")) for v in found.get("picklistValues") or [] if v.get("active", True)]
    if vocab is None or not values:
        return []
    known = set(mapping.vocabularies[vocab])
    unknown = [v for v in values if v not in known]
    if not unknown:
        return []
    return [Problem(obj.sobject, f.sf_field, f"picklist value(s) {', '.join(unknown)} are not in vocabulary {vocab} "
                                             f"(records carrying them will be quarantined)", "warning", obj.name)]


def _check_writeback(target: WritebackTarget, describe: Describe | None, api_version: str) -> list[Problem]:
    if not describe:
        return [_missing_object(target.sobject, api_version, "the write-back target in writeback.toml", "error",
                                "writeback")]
    problems: list[Problem] = []

    def add(field: str | None, message: str) -> None:
        problems.append(Problem(target.sobject, field, message, "error", "writeback"))

    fields = fields_of(describe)
    for sf_field in dict.fromkeys(target.fields.values()):
        found = fields.get(sf_field.lower())
        wanted = target.types.get(sf_field)
        if found is None:
            add(sf_field, _suggest(sf_field, describe, wanted))
            continue
        if wanted is not None and (wrong := type_problem(wanted, found)):
            add(sf_field, wrong)
        refused = [p for p in ("createable", "updateable") if found.get(p) is False]
        if refused:
            add(sf_field, f"not {' or '.join(refused)} for this user: write-back upserts it")
        if sf_field == target.external_id and not (found.get("externalId") or found.get("idLookup")):
            add(sf_field, "the write-back external id must be an External ID (or idLookup) field to upsert on")
    return problems
