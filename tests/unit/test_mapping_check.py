"""The pure mapping check against describes. The describes are the sandbox org's, built from
its own schema data (the public object reference), so a wrong name in a mapping fails here
as on a real org; single describe properties are then changed as another org may have them."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest

from connector.adapters.store import column_length, column_scale
from connector.mapping_check import Problem, check_mapping, closest, errors_of, mapping_error
from connector.mappings import MappingSet, load_mapping
from gtm_sandbox.org.schema import load_org_schema

API = "66.0"


@pytest.fixture(scope="module")
def mapping() -> MappingSet:
    return load_mapping("gtm-v2")


def describes(mapping: MappingSet, **variant: Any) -> dict[str, Any]:
    schema = load_org_schema(**variant)
    names = [o.sobject for o in mapping.in_sync_order()] + [mapping.writeback.sobject]
    return {n: (spec.describe(API) if (spec := schema.get(n, API)) else None) for n in names}


def field(describe: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in describe["fields"] if f["name"] == name)


def check(mapping: MappingSet, docs: dict[str, Any]) -> list[Problem]:
    return check_mapping(mapping, docs, api_version=API, column_scale=column_scale, column_length=column_length)


def lines(problems: list[Problem]) -> list[str]:
    return [str(p) for p in errors_of(problems)]


def test_the_shipped_mapping_fits_the_reference_schema(mapping: MappingSet) -> None:
    assert check(mapping, describes(mapping)) == []


def test_a_renamed_field_is_named_with_the_closest_names_the_org_has(mapping: MappingSet) -> None:
    docs = describes(mapping, renamed={"SfdcPartnerOrderItem.PartnerOrderId": "SfdcPartnerOrderId"})
    [line] = lines(check(mapping, docs))
    assert line.startswith("SfdcPartnerOrderItem.PartnerOrderId: no such field; the org has "
                           "SfdcPartnerOrderId (reference to SfdcPartnerOrder)")


def test_a_mapping_on_an_undocumented_name_is_told_the_documented_one(mapping: MappingSet) -> None:
    # The connector's old name for the order item's parent link, against the documented org.
    item = mapping.objects["order_item"]
    fields = {("SfdcPartnerOrderId" if k == "PartnerOrderId" else k):
              (replace(f, sf_field="SfdcPartnerOrderId") if k == "PartnerOrderId" else f)
              for k, f in item.fields.items()}
    old = replace(mapping, objects={**mapping.objects, "order_item": replace(item, fields=fields)})
    assert lines(check(old, describes(mapping))) == [
        "SfdcPartnerOrderItem.SfdcPartnerOrderId: no such field; "
        "the org has PartnerOrderId (reference to SfdcPartnerOrder)"]
    [near, *_] = closest("SfdcPartnerOrderId", describes(mapping)["SfdcPartnerOrderItem"], wanted="reference")
    assert near["name"] == "PartnerOrderId"


def test_a_missing_required_object_is_one_line_naming_it_and_the_api_version(mapping: MappingSet) -> None:
    docs = describes(mapping, dropped=("SfdcPartnerOffer",))
    assert lines(check(mapping, docs)) == [
        "SfdcPartnerOffer: no such object in the org at API v66.0 (mapping object offer; GTM objects exist from "
        "API v64.0-v66.0: check salesforce.api_version and the integration user's GTM app permissions)"]


def test_a_missing_optional_object_is_a_warning(mapping: MappingSet) -> None:
    problems = check(mapping, describes(mapping, dropped=("SfdcPartnerPayout",)))
    assert [(p.sobject, p.severity) for p in problems] == [("SfdcPartnerPayout", "warning")]


def test_objects_older_api_versions_do_not_have_are_missing(mapping: MappingSet) -> None:
    schema = load_org_schema()
    docs = {o.sobject: (s.describe("64.0") if (s := schema.get(o.sobject, "64.0")) else None)
            for o in mapping.in_sync_order()}
    docs[mapping.writeback.sobject] = schema.get(mapping.writeback.sobject).describe("64.0")  # type: ignore[union-attr]
    missing = {p.sobject for p in errors_of(check_mapping(mapping, docs, api_version="64.0"))}
    # v64 has orders, order items and licenses; v65 adds the PPP, v66 the rest.
    assert missing == {"SfdcPartnerTermSet", "SfdcPartnerTermSetProduct", "SfdcPartnerProvisionProduct",
                       "SfdcPartnerOffer", "SfdcPartnerOfferItem"}


@pytest.mark.parametrize(("sobject", "name", "change", "expected"), [
    ("SfdcPartnerOrderItem", "CustomerUnitPricePerMonth", {"type": "string"},
     "type currency in the mapping, but the org's field is string"),
    ("SfdcPartnerOrderItem", "Quantity", {"type": "double", "scale": 2},
     "type int in the mapping, but the org's field is double(18, 2) (decimals would be lost)"),
    ("SfdcPartnerOrderItem", "PartnerOrderId", {"type": "string"},
     "type reference in the mapping, but the org's field is string"),
    ("SfdcPartnerPayout", "Amount", {"type": "string"},
     "type currency_cents in the mapping, but the org's field is string"),
    ("SfdcPartnerOrderItem", "CustomerUnitPricePerMonth", {"scale": 8},
     "the org keeps 8 decimals (currency(18, 8)), the local column order_items.unit_price_per_month keeps 6"),
    ("SfdcPartnerOrder", "Subtotal", {"scale": 3},
     "the org keeps 3 decimals (currency(18, 3)), the local column orders.subtotal keeps 2"),
    ("SfdcPartnerPayout", "Amount", {"scale": 1},
     "the org keeps 3 decimals once divided by 100 (currency(18, 1)), the local column org_payouts.amount keeps 2"),
    ("SfdcPartnerOffer", "ContractTerm", {"createable": False},
     "not createable in the org (read-only), but the connector writes this object"),
    ("GTM_Order_Billing__c", "Invoice_Status__c", {"updateable": False},
     "not updateable for this user: write-back upserts it"),
    ("GTM_Order_Billing__c", "Order_Id__c", {"externalId": False, "idLookup": False},
     "the write-back external id must be an External ID (or idLookup) field to upsert on"),
])
def test_a_field_the_org_declares_otherwise_is_named(mapping: MappingSet, sobject: str, name: str,
                                                     change: dict[str, Any], expected: str) -> None:
    docs = copy.deepcopy(describes(mapping))
    field(docs[sobject], name).update(change)
    [line] = lines(check(mapping, docs))
    assert line.startswith(f"{sobject}.{name}: {expected}")


def test_number_types_another_org_may_use_are_accepted(mapping: MappingSet) -> None:
    docs = copy.deepcopy(describes(mapping))
    field(docs["SfdcPartnerOrderItem"], "CustomerUnitPricePerMonth").update(type="double", scale=4)
    field(docs["SfdcPartnerOrderItem"], "Quantity").update(type="double", scale=0)
    field(docs["SfdcPartnerOffer"], "Status").update(type="string")
    assert lines(check(mapping, docs)) == []


def test_read_only_fields_of_written_objects_may_be_computed(mapping: MappingSet) -> None:
    docs = describes(mapping)
    assert field(docs["SfdcPartnerOfferItem"], "LineItemTotal")["createable"] is False  # a formula, read_only mapped
    assert lines(check(mapping, docs)) == []


def test_picklist_values_the_vocabulary_lacks_are_warnings(mapping: MappingSet) -> None:
    docs = copy.deepcopy(describes(mapping))
    status = field(docs["SfdcPartnerOrder"], "Status")
    status["picklistValues"] = [*status["picklistValues"], {"active": True, "value": "Suspended", "label": "Suspended"}]
    [problem] = check(mapping, docs)
    assert problem.severity == "warning" and "Suspended" in problem.message and "order_status" in problem.message


def test_the_error_lists_one_line_per_field(mapping: MappingSet) -> None:
    docs = describes(mapping, renamed={"SfdcPartnerOrderItem.PartnerOrderId": "SfdcPartnerOrderId",
                                       "SfdcPartnerPayout.ExternalId": "StripePayoutId"},
                     dropped=("SfdcPartnerOfferItem",))
    text = str(mapping_error(mapping, "acme", check(mapping, docs)))
    head, *rest = text.splitlines()
    assert "org acme" in head and "3 problem(s)" in head
    assert sorted(r.strip().split(":")[0] for r in rest) == [
        "SfdcPartnerOfferItem", "SfdcPartnerOrderItem.PartnerOrderId", "SfdcPartnerPayout.ExternalId"]


def test_only_the_changed_objects_are_checked(mapping: MappingSet) -> None:
    docs = describes(mapping, renamed={"SfdcPartnerOrderItem.PartnerOrderId": "SfdcPartnerOrderId"})
    assert check_mapping(mapping, docs, objects=["SfdcPartnerOrder"]) == []


def test_a_text_field_longer_than_its_local_column_is_a_warning_naming_both_lengths() -> None:
    """The org's describe ``length`` against the local column (issue 15, defect 4): such
    values are quarantined per record, so the mapping still runs, but the operator is told."""
    mapping = load_mapping("gtm-v2")
    docs = describes(mapping)
    assert [p for p in check(mapping, docs) if "characters" in p.message] == []  # the shipped schema fits
    field(docs["SfdcPartnerOrder"], "CustomerName")["length"] = 1000
    [problem] = [p for p in check(mapping, docs) if "characters" in p.message]
    assert (problem.severity, problem.sobject, problem.field) == ("warning", "SfdcPartnerOrder", "CustomerName")
    assert "the org allows 1000 characters, the local column orders.customer_name holds 255" in problem.message
