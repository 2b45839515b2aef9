"""Mapping sets are data; a wrong one is a clear MappingError naming file, object and key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from connector.errors import MappingError
from connector.mappings import check_against_tables, load_mapping, mappings_root


@pytest.fixture
def mapping_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "acme-v1"
    shutil.copytree(mappings_root() / "gtm-v2", dest)
    return dest


def test_default_mapping_names_the_gtm_objects():
    mapping = load_mapping("gtm-v2")
    assert {o.sobject for o in mapping.objects.values()} == {
        "SfdcPartnerTermSet", "SfdcPartnerTermSetProduct", "SfdcPartnerProvisionProduct",
        "SfdcPartnerProductLicense", "SfdcPartnerOffer", "SfdcPartnerOfferItem", "SfdcPartnerOrder",
        "SfdcPartnerOrderItem", "SfdcPartnerPayout", "SfdcCustomerForPartner", "SfdcPartnerOrderBillingTrxn",
    }
    assert mapping.objects["ppc"].fields["RevenueSharePercentage"].column == "revenue_share_percent"
    # The object reference's names for the links, and the payout amount in cents.
    assert mapping.objects["order_item"].sf_field_for("order_id") == "PartnerOrderId"
    assert mapping.objects["order_item"].sf_field_for("ppp_id") == "PartnerProvisionProductId"
    assert mapping.objects["ppc"].sf_field_for("term_set_id") == "PartnerTermSetId"
    assert mapping.objects["product_license"].sf_field_for("license_id") == "LicenseId"
    assert mapping.objects["payout"].sf_field_for("stripe_payout_id") == "ExternalId"
    assert mapping.objects["payout"].fields["Amount"].type == "currency_cents"
    assert mapping.objects["billing_link"].sf_field_for("stripe_invoice_id") == "PartnerBillingTransactionId"
    assert mapping.objects["order"].writable is False
    assert mapping.writeback.sobject == "GTM_Order_Billing__c"
    assert mapping.writeback.external_id == "Order_Id__c"


def test_parents_sync_before_children():
    order = [o.name for o in load_mapping().in_sync_order()]
    assert order.index("ppc") < order.index("ppp") < order.index("order_item")
    assert order.index("order") < order.index("order_item")


def test_vocabularies_map_picklists_to_states():
    mapping = load_mapping()
    assert mapping.to_state("order_status", "Activated") == "activated"
    assert mapping.to_state("order_status", "Shipped") is None
    assert mapping.to_picklist("offer_status", "draft") == "Draft"


def test_unknown_type_is_named(mapping_copy):
    path = mapping_copy / "mapping.toml"
    path.write_text(path.read_text().replace('type = "currency", required = true }', 'type = "money" }', 1))
    with pytest.raises(MappingError, match=r"mapping.toml: objects\.offer_item\.fields\.CustomerUnitPricePerMonth: "
                                           r"unknown type 'money'"):
        load_mapping(mapping_copy)


def test_a_cursor_the_mirror_cannot_honour_is_refused(mapping_copy):
    path = mapping_copy / "mapping.toml"
    path.write_text(path.read_text().replace('sobject = "SfdcPartnerOrder"\n',
                                             'sobject = "SfdcPartnerOrder"\ncursor = "LastModifiedDate"\n', 1))
    with pytest.raises(MappingError, match=r"mapping.toml: objects\.\w+\.cursor: only 'SystemModstamp' is supported, "
                                           r"got 'LastModifiedDate'"):
        load_mapping(mapping_copy)


def test_unknown_column_is_named(mapping_copy):
    columns = {"orders": {"name": "string"}}
    with pytest.raises(MappingError, match=r"objects\.order\.fields\.OrderNumber: unknown column 'order_number'"):
        check_against_tables(load_mapping(mapping_copy), lambda t: columns[t])


def test_vocabulary_missing_a_state(mapping_copy):
    path = mapping_copy / "vocabularies.toml"
    path.write_text(path.read_text().replace('"Activated" = "activated"\n', ""))
    with pytest.raises(MappingError, match=r"order_status: no picklist value maps to \['activated'\]"):
        load_mapping(mapping_copy)


def test_missing_mapping_set():
    with pytest.raises(MappingError, match="not found"):
        load_mapping("no-such-set")


def test_the_order_and_the_references_to_it_come_from_the_mapping() -> None:
    mapping = load_mapping("gtm-v2")
    assert mapping.order_names == {"order", "SfdcPartnerOrder", "orders"}
    # the order item's and the billing link's field mapped to order_id, then the column itself
    assert mapping.order_references == ("PartnerOrderId", "SfdcPartnerOrderId", "order_id")
