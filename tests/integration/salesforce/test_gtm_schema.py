"""The sandbox org's GTM objects behave as Salesforce's object reference says, through the
connector's own adapter: objects exist only from their API version, read-only objects refuse
writes with Salesforce's codes, payouts are query-only, derived totals are the org's."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connector.adapters.salesforce import SalesforceApiError, build_org_gateway
from gtm_sandbox.org import SandboxOrg
from tests.fixtures.org import sandbox_config


@pytest.fixture
def at_version(sandbox_org: SandboxOrg, tmp_path: Path) -> Any:
    made = []

    def build(version: str) -> Any:
        config = sandbox_config(sandbox_org, f"sqlite:///{tmp_path / 'unused.sqlite3'}")
        made.append(build_org_gateway(config.model_copy(update={
            "salesforce": config.salesforce.model_copy(update={"api_version": version})})))
        return made[-1]

    yield build
    for org in made:
        org.close()


@pytest.mark.parametrize(("sobject", "since"), [("SfdcPartnerOrder", 64), ("SfdcPartnerProvisionProduct", 65),
                                                ("SfdcPartnerOffer", 66), ("SfdcPartnerPayout", 66)])
def test_a_gtm_object_exists_from_the_version_that_introduced_it(at_version: Any, sobject: str, since: int) -> None:
    before, after = at_version(f"{since - 1}.0"), at_version(f"{since}.0")
    with pytest.raises(SalesforceApiError) as describe:
        before.describe(sobject)
    assert describe.value.error_code == "NOT_FOUND"
    with pytest.raises(SalesforceApiError) as query:
        before.query_all(f"SELECT Id FROM {sobject}")
    assert query.value.error_code == "INVALID_TYPE"
    assert after.describe(sobject)["name"] == sobject
    assert isinstance(after.query_all(f"SELECT Id FROM {sobject}"), list)
    assert at_version("67.0").describe(sobject)["name"] == sobject  # Summer '26 serves it too


@pytest.mark.parametrize("sobject", ["SfdcPartnerOrder", "SfdcPartnerTermSet", "SfdcPartnerTermSetProduct",
                                     "SfdcPartnerOrderBillingTrxn", "SfdcPartnerPayout"])
def test_read_only_objects_refuse_writes_through_the_adapter(gateway: Any, sobject: str) -> None:
    with pytest.raises(SalesforceApiError) as refused:
        gateway.create(sobject, {"Name": "not allowed"} if sobject != "SfdcPartnerPayout" else {"ExternalId": "po_x"})
    assert refused.value.error_code == "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY"
    assert gateway.describe(sobject)["createable"] is False


def test_payouts_are_query_only_and_their_amount_is_in_cents(gateway: Any, sandbox_org: SandboxOrg) -> None:
    [payout_id] = sandbox_org.insert("SfdcPartnerPayout", [{"ExternalId": "po_1", "Amount": Decimal(726000),
                                                            "Status": "Pending", "CurrencyIsoCode": "USD"}])
    [row] = gateway.query_all(f"SELECT Id, Amount, Status FROM SfdcPartnerPayout WHERE Id = '{payout_id}'")
    assert Decimal(str(row["Amount"])) == Decimal(726000) and row["Status"] == "Pending"
    with pytest.raises(SalesforceApiError) as retrieve:
        gateway.get("SfdcPartnerPayout", payout_id)
    assert retrieve.value.error_code == "INVALID_TYPE_FOR_OPERATION"
    describe = {f["name"]: f for f in gateway.describe("SfdcPartnerPayout")["fields"]}
    assert [v["value"] for v in describe["Status"]["picklistValues"]] == ["Pending", "In_Transit", "Failed"]
    assert describe["Status"]["restrictedPicklist"] is True


def test_line_totals_are_derived_by_the_org_from_the_parents_term(gateway: Any, sandbox_org: SandboxOrg) -> None:
    ids = sandbox_org.demo_ids
    offer = gateway.create("SfdcPartnerOffer", {"Name": "Tiny", "Status": "Draft", "OfferType": "Initial",
                                                "ContractTerm": 12})
    item = gateway.create("SfdcPartnerOfferItem", {"PartnerOfferId": offer,
                                                   "PartnerProvisionProductId": ids["ppp_core"],
                                                   "Quantity": 10, "CustomerUnitPricePerMonth": Decimal("0.125")})
    row = sandbox_org.get("SfdcPartnerOfferItem", item)
    assert row["CustomerUnitPricePerMonth"] == Decimal("0.1250")  # the field's scale (4), never rounded to cents
    assert (row["LineItemPeriodTotal"], row["LineItemTotal"]) == (Decimal("1.25"), Decimal("15.00"))
    with pytest.raises(SalesforceApiError) as derived:
        gateway.update("SfdcPartnerOfferItem", item, {"LineItemTotal": Decimal("1.00")})
    assert derived.value.error_code == "INVALID_FIELD_FOR_INSERT_UPDATE"
    describe = {f["name"]: f for f in gateway.describe("SfdcPartnerOfferItem")["fields"]}
    assert describe["LineItemTotal"]["calculated"] is True and describe["CustomerUnitPricePerMonth"]["scale"] == 4


def test_auto_numbers_follow_the_documented_formats(sandbox_org: SandboxOrg) -> None:
    licenses = sandbox_org.records("SfdcPartnerProductLicense")
    assert licenses and all(r["Name"].startswith("PPL-") and len(r["Name"]) == 12 for r in licenses)
    order = sandbox_org.demo_ids["acme_order"]
    sandbox_org.insert("SfdcPartnerOrderBillingTrxn", [{"SfdcPartnerOrderId": order,
                                                        "PartnerBillingTransactionId": "in_1"}])
    [link] = sandbox_org.records("SfdcPartnerOrderBillingTrxn")
    assert link["Name"].startswith("SPOBT-") and len(link["Name"]) == 14
