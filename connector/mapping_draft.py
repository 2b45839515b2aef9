"""A mapping folder drafted from an org's describe: pure, no I/O.

``draft_files(template, describes, ...)`` starts from a shipped mapping set (gtm-v2) and
puts in the org's own names: a template field the org has (in any case) keeps the org's
spelling; one it lacks is replaced by the org's nearest field of a fitting type (and, for a
reference, pointing at the same object); one with no such field is left commented out with
the reason. Objects the connector may write follow the describe's ``createable``; fields
the org computes become ``read_only``. Vocabularies take the org's picklist spellings.
The result is meant to pass ``mapping check`` against the org it came from; the partner
reviews it (every substitution is commented) before pointing a config at it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from connector.mapping_check import Describe, closest, fields_of, type_problem
from connector.mappings import REQUIRED_OBJECTS, FieldMapping, MappingSet, ObjectMapping, WritebackTarget

# Columns whose name does not say the referenced object's mapping key.
_REFERENCE_COLUMNS = {"initial_order_id": "order"}


def _q(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(text)


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else _q(name)


def _norm(value: str) -> str:
    return re.sub(r"[^a-z0-9]", "", value.lower())


def _target(template: MappingSet, f: FieldMapping) -> str | None:
    """The sObject a reference column points at, as the template's columns say (order_id -> order)."""
    if f.type != "reference" or not f.column.endswith("_id"):
        return None
    key = _REFERENCE_COLUMNS.get(f.column, f.column[:-3])
    obj = template.objects.get(key)
    return obj.sobject if obj else None


def org_field_for(template: MappingSet, f: FieldMapping, describe: Describe,
                  taken: set[str]) -> tuple[Mapping[str, Any] | None, str]:
    """The org's field for template field ``f``, and why (for the draft's comment)."""
    found = fields_of(describe).get(f.sf_field.lower())
    if found is not None:
        wrong = type_problem(f.type, found)
        return (None, f"the org's {found['name']} does not fit: {wrong}") if wrong else (found, "")
    target = _target(template, f)
    for candidate in closest(f.sf_field, describe, limit=5, wanted=f.type):
        if str(candidate["name"]).lower() in taken or type_problem(f.type, candidate):
            continue
        refs = candidate.get("referenceTo") or []
        if target and refs and target not in refs:
            continue
        return candidate, f"the template's {f.sf_field}"
    return None, "no field with a near name and a fitting type in the org"


def _field_line(name: str, f: FieldMapping, read_only: bool) -> str:
    spec = [f"column = {_q(f.column)}", f"type = {_q(f.type)}"]
    if f.required:
        spec.append("required = true")
    if read_only:
        spec.append("read_only = true")
    return f"{_key(name)} = {{ {', '.join(spec)} }}"


def _object_lines(template: MappingSet, obj: ObjectMapping, describe: Describe | None,
                  api_version: str) -> tuple[list[str], dict[str, list[str]]]:
    """The object's TOML lines, and the org's picklist values per vocabulary it feeds."""
    from connector.services.records import vocabulary_for

    values: dict[str, list[str]] = {}
    head = f"[objects.{obj.name}]"
    if describe is None:
        why = f"# {obj.sobject}: not in the org at API v{api_version}"
        if obj.name not in REQUIRED_OBJECTS:
            return [why + "; an optional object, left out", ""], values
        describe = {"fields": []}
        writable = obj.writable
        lines = [why + " (a required object: `mapping check` will name it)", head]
    else:
        writable = bool(describe.get("createable", obj.writable))
        lines = [head]
    lines += [f"sobject = {_q(obj.sobject)}", f"table = {_q(obj.table)}"]
    if writable:
        lines.append("writable = true")
    lines += [f"order = {obj.order}", f"[objects.{obj.name}.fields]"]
    taken: set[str] = set()
    for f in obj.fields.values():
        found, why = org_field_for(template, f, describe, taken)
        if found is None:
            lines.append(f"# {_field_line(f.sf_field, f, f.read_only)}  # left out: {why}")
            continue
        name = str(found["name"])
        taken.add(name.lower())
        computed = bool(found.get("calculated") or found.get("autoNumber"))
        read_only = f.read_only or computed or (writable and found.get("createable") is False)
        line = _field_line(name, f, read_only)
        lines.append(line + (f"  # {why}" if why else ""))
        if f.type == "picklist" and (vocab := vocabulary_for(template, obj, f)):
            values.setdefault(vocab, []).extend(
                str(v["value"]) for v in found.get("picklistValues") or [] if v.get("active", True))
    return lines + [""], values


def _vocabularies(template: MappingSet, org_values: Mapping[str, list[str]]) -> str:
    out = ["# Status vocabularies drafted from the org's picklist values (see mappings/gtm-v2/vocabularies.toml",
           "# for what each table means). An org value the template did not know is listed commented out:",
           "# map it to one of the table's states, or records carrying it are quarantined.", ""]
    for name, table in template.vocabularies.items():
        out.append(f"[{_key(name)}]")
        if not isinstance(table, Mapping):
            continue
        org = org_values.get(name, [])
        by_norm = {_norm(v): v for v in org}
        used: set[str] = set()
        for label, state in table.items():
            if isinstance(state, list):
                out.append(f"{_key(label)} = [{', '.join(_q(str(s)) for s in state)}]")
                continue
            if not isinstance(state, str):
                continue
            spelled = label if label in org else by_norm.get(_norm(label), label)
            used.add(spelled)
            note = f"  # the template's {label!r}" if spelled != label else ""
            out.append(f"{_q(spelled)} = {_q(state)}{note}")
        out += [f"# {_q(v)} = \"\"  # in the org, not in the template: which state?" for v in org if v not in used]
        out.append("")
    return "\n".join(out)


def _writeback(target: WritebackTarget, describe: Describe | None) -> str:
    names: dict[str, str] = {}
    if describe:
        for sf_field in dict.fromkeys(target.fields.values()):
            found = fields_of(describe).get(sf_field.lower())
            if found is None:
                near = [c for c in closest(sf_field, describe, wanted=target.types.get(sf_field))
                        if not type_problem(target.types.get(sf_field, "string"), c)]
                found = near[0] if near else None
            if found is not None:
                names[sf_field] = str(found["name"])
    out = ["# Write-back target drafted from the org's describe" + ("" if describe else
           f" (the org has no {target.sobject}: create it, or name your own object here)"),
           f"sobject = {_q(target.sobject)}", f"external_id = {_q(names.get(target.external_id, target.external_id))}",
           "", "[fields]"]
    out += [f"{_key(local)} = {_q(names.get(sf, sf))}" for local, sf in target.fields.items()]
    out += ["", "[types]"]
    out += [f"{_key(names.get(sf, sf))} = {_q(kind)}" for sf, kind in target.types.items()]
    return "\n".join(out) + "\n"


def draft_files(template: MappingSet, describes: Mapping[str, Describe | None], *, org: str, api_version: str,
                version: str) -> dict[str, str]:
    """``{file name: TOML text}`` of a mapping folder for the org whose describes are given."""
    head = [f"# Mapping set {version}: drafted by `gtm-connector mapping draft` from org {org}'s describe",
            f"# at API v{api_version}, starting from mapping set {template.name}. Every name below is the org's;",
            "# a comment says where the org's name differs from the template's or why a field was left out.",
            "# Review it, then run `gtm-connector mapping check` with this folder as the config's `mapping`.",
            "# (The meaning of each key is explained in mappings/gtm-v2/mapping.toml.)", "",
            f"version = {_q(version)}", ""]
    lines = list(head)
    org_values: dict[str, list[str]] = {}
    for obj in template.in_sync_order():
        obj_lines, values = _object_lines(template, obj, describes.get(obj.sobject), api_version)
        lines += obj_lines
        for vocab, vals in values.items():
            org_values.setdefault(vocab, []).extend(v for v in vals if v not in org_values.get(vocab, []))
    return {
        "mapping.toml": "\n".join(lines),
        "vocabularies.toml": _vocabularies(template, org_values),
        "writeback.toml": _writeback(template.writeback, describes.get(template.writeback.sobject)),
    }
