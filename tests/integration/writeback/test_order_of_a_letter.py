"""Which order a dead letter is about comes from the mapping set, not from a list in code:
a partner's copy that names the order item's reference field otherwise still gets each
letter's error onto the right order's write-back row (real store, SQLite and PostgreSQL)."""

from __future__ import annotations

import shutil
from pathlib import Path

from connector.bootstrap import OrgRuntime
from connector.mappings import load_mapping, mappings_root
from connector.services.writeback import results_of


def partner_mapping(tmp_path: Path) -> Path:
    copy = tmp_path / "partner-v1"
    shutil.copytree(mappings_root() / "gtm-v2", copy)
    text = (copy / "mapping.toml").read_text()
    original = '\nPartnerOrderId = { column = "order_id"'
    assert text.count(original) == 1  # the order item's reference to its order
    (copy / "mapping.toml").write_text(text.replace(original, original.replace("PartnerOrderId", "ParentOrder__c")))
    return copy


def test_a_letter_is_the_order_its_record_references_as_the_mapping_names_it(org_runtime: OrgRuntime,
                                                                              tmp_path: Path) -> None:
    org_id = org_runtime.org_id
    with org_runtime.uow() as uow:
        uow.dead_letters.add(org_id, "mirror", "SfdcPartnerOrderItem", "802000000000001AAA", "REQUIRED_MISSING",
                             "Quantity is required", payload={"record": {"Id": "802000000000001AAA",
                                                                         "ParentOrder__c": "801000000000001AAA"}})
        uow.dead_letters.add(org_id, "mirror", "SfdcPartnerOrderBillingTrxn", "a0B000000000001AAA", "BAD_VALUE",
                             "no invoice id", payload={"record": {"SfdcPartnerOrderId": "801000000000002AAA"}})
        uow.dead_letters.add(org_id, "invoicing", "order", "801000000000003AAA", "NO_PRICE", "no unit price")
        uow.commit()

    partner = load_mapping(partner_mapping(tmp_path))
    with org_runtime.uow() as uow:
        results = results_of(uow, org_id, mapping=partner)
        default = results_of(uow, org_id, mapping=load_mapping("gtm-v2"))
    assert {o: r["last_error"] for o, r in results.items()} == {
        "801000000000001AAA": "REQUIRED_MISSING: Quantity is required",
        "801000000000002AAA": "BAD_VALUE: no invoice id",
        "801000000000003AAA": "NO_PRICE: no unit price",
    }
    # The default set knows no ParentOrder__c: that letter names no order there.
    assert set(default) == {"801000000000002AAA", "801000000000003AAA"}
    assert partner.order_references == ("ParentOrder__c", "SfdcPartnerOrderId", "order_id")
