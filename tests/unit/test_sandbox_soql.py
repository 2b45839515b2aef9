"""The sandbox org's SOQL subset: parsing, typing against the schema, evaluation order."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gtm_sandbox.org.data import OrgData
from gtm_sandbox.org.schema import load_org_schema
from gtm_sandbox.org.soql import SoqlError, compile_soql

SCHEMA = load_org_schema()


@pytest.fixture
def data() -> OrgData:
    org = OrgData(SCHEMA)
    rows = [
        {"Name": "Alpha", "Status": "Draft", "OfferType": "Initial", "Subtotal": Decimal("100.00"),
         "ServiceStartDate": "2025-01-01", "BillingEmailAddress": "a@example.com"},
        {"Name": "beta", "Status": "Sent", "OfferType": "Add-On", "Subtotal": Decimal("50.50"),
         "ServiceStartDate": "2025-06-01", "BillingEmailAddress": None},
        {"Name": "Gamma 100%", "Status": "Error", "OfferType": "Initial", "Subtotal": None,
         "ServiceStartDate": None, "BillingEmailAddress": "g@example.com"},
    ]
    for i, row in enumerate(rows):
        org.insert("SfdcPartnerOffer", row, validate=False, stamp=f"2025-01-0{i + 1}T00:00:00Z")
    return org


def names(data: OrgData, soql: str, include_deleted: bool = False) -> list[str]:
    return [r["Name"] for r in data.select(compile_soql(soql, SCHEMA), include_deleted=include_deleted)]


@pytest.mark.parametrize(("where", "expected"), [
    ("Status = 'draft'", ["Alpha"]),  # text comparisons ignore case, as in SOQL
    ("Status != 'Draft'", ["beta", "Gamma 100%"]),
    ("Status NOT IN ('Draft', 'Sent')", ["Gamma 100%"]),
    ("Subtotal > 50.5", ["Alpha"]),
    ("Subtotal >= 50.5 AND OfferType = 'Add-On'", ["beta"]),
    ("(Status = 'Draft' OR Status = 'Sent') AND NOT Name LIKE 'b%'", ["Alpha"]),
    ("Name LIKE '%100\\%'", ["Gamma 100%"]),
    ("Name LIKE '_eta'", ["beta"]),
    ("BillingEmailAddress = null", ["beta"]),
    ("ServiceStartDate < 2025-03-01", ["Alpha"]),
    ("SystemModstamp > 2025-01-01T00:00:00Z", ["beta", "Gamma 100%"]),
    ("SystemModstamp <= 2025-01-02T01:00:00+01:00", ["Alpha", "beta"]),
])
def test_where(data: OrgData, where: str, expected: list[str]) -> None:
    assert names(data, f"SELECT Name FROM SfdcPartnerOffer WHERE {where} ORDER BY Name") == expected


def test_order_by_with_nulls_limit_and_offset(data: OrgData) -> None:
    base = "SELECT Name FROM SfdcPartnerOffer ORDER BY "
    assert names(data, base + "Subtotal") == ["Gamma 100%", "beta", "Alpha"]  # ASC: nulls first
    assert names(data, base + "Subtotal DESC") == ["Alpha", "beta", "Gamma 100%"]  # DESC: nulls last
    assert names(data, base + "Subtotal DESC NULLS FIRST") == ["Gamma 100%", "Alpha", "beta"]
    assert names(data, base + "OfferType, Name DESC") == ["beta", "Gamma 100%", "Alpha"]
    assert names(data, base + "Name LIMIT 1 OFFSET 1") == ["beta"]


def test_deleted_rows_only_with_query_all(data: OrgData) -> None:
    alpha = next(r for r in data.tables["SfdcPartnerOffer"].rows.values() if r["Name"] == "Alpha")
    data.delete("SfdcPartnerOffer", alpha["Id"], validate=False)
    assert "Alpha" not in names(data, "SELECT Name FROM SfdcPartnerOffer")
    assert names(data, "SELECT Name FROM SfdcPartnerOffer WHERE IsDeleted = true", include_deleted=True) == ["Alpha"]


@pytest.mark.parametrize(("soql", "code"), [
    ("SELECT Name FROM SfdcPartnerOffer WHERE Status = 'Draft' OR Status = 'Sent' AND Name = 'x'", "MALFORMED_QUERY"),
    ("SELECT Nope FROM SfdcPartnerOffer", "INVALID_FIELD"),
    ("SELECT Id FROM Nope", "INVALID_TYPE"),
    ("SELECT Id FROM SfdcPartnerOffer WHERE ServiceStartDate = '2025-01-01'", "INVALID_FIELD"),
    ("SELECT Id FROM SfdcPartnerOffer WHERE Subtotal = '1'", "INVALID_FIELD"),
    ("SELECT Id FROM SfdcPartnerOffer WHERE SystemModstamp > 2025-01-01", "INVALID_FIELD"),
    ("SELECT Id FROM SfdcPartnerOffer LIMIT -1", "MALFORMED_QUERY"),
    ("SELECT Id FROM SfdcPartnerOffer OFFSET 2001", "NUMBER_OUTSIDE_VALID_RANGE"),
    ("SELECT Id, Id FROM SfdcPartnerOffer", "MALFORMED_QUERY"),
    ("SELECT Id FROM SfdcPartnerOffer WHERE", "MALFORMED_QUERY"),
])
def test_errors_carry_salesforce_codes(soql: str, code: str) -> None:
    with pytest.raises(SoqlError) as err:
        compile_soql(soql, SCHEMA)
    assert err.value.error_code == code


def test_count_and_date_keywords(data: OrgData) -> None:
    bound = compile_soql("SELECT COUNT() FROM SfdcPartnerOffer WHERE CreatedDate < TODAY", SCHEMA)
    assert bound.count and len(data.select(bound, include_deleted=False)) == 3
    assert names(data, "SELECT Name FROM SfdcPartnerOffer WHERE CreatedDate = LAST_N_DAYS:3") == []


def test_stamp_range_uses_the_index(data: OrgData) -> None:
    bound = compile_soql("SELECT Id FROM SfdcPartnerOffer WHERE SystemModstamp >= 2025-01-02T00:00:00Z "
                         "ORDER BY SystemModstamp, Id", SCHEMA)
    assert bound.predicate is None and bound.stamp_range[0] == "2025-01-02T00:00:00.000+0000"
    assert len(data.select(bound, include_deleted=False)) == 2
