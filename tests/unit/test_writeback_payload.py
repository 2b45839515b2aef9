"""What write-back sends per field: major units as the local model keeps them, or whole
cents where the partner's writeback.toml types the target field ``currency_cents`` (an org
that keeps that amount in cents, as SfdcPartnerPayout.Amount is kept): converted once."""

from __future__ import annotations

import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

from connector.mappings import load_mapping, mappings_root
from connector.services.writeback import Target, build_payload, payload_hash, target_of

RESULTS = {"order_id": "801000000000001AAA", "expected_payout": Decimal("7260.00"),
           "actual_payout": Decimal("7259.99"), "invoice_amount": Decimal("8400.00"), "payout_date": date(2026, 1, 5)}


def cents_mapping(tmp_path: Path) -> Path:
    """gtm-v2 with the payout fields of the write-back object kept in cents."""
    copy = tmp_path / "cents-v1"
    shutil.copytree(mappings_root() / "gtm-v2", copy)
    text = (copy / "writeback.toml").read_text()
    for sf_field in ("Expected_Payout__c", "Actual_Payout__c"):
        assert text.count(f'{sf_field} = "currency"') == 1
        text = text.replace(f'{sf_field} = "currency"', f'{sf_field} = "currency_cents"')
    (copy / "writeback.toml").write_text(text)
    return copy


def runtime_on(mapping_path: Path | str) -> SimpleNamespace:
    """What ``target_of`` reads: the mapping set and the org's [writeback] section."""
    section = SimpleNamespace(sobject=None, external_id=None)
    return SimpleNamespace(mapping=load_mapping(mapping_path), config=SimpleNamespace(writeback=section))


def test_amounts_go_in_major_units_to_currency_fields() -> None:
    payload = build_payload(target_of(runtime_on("gtm-v2")), RESULTS)  # type: ignore[arg-type]
    assert payload["Expected_Payout__c"] == Decimal("7260.00")
    assert payload["Actual_Payout__c"] == Decimal("7259.99")
    assert payload["Payout_Date__c"] == "2026-01-05"


def test_a_target_field_kept_in_cents_gets_whole_cents_once(tmp_path: Path) -> None:
    target = target_of(runtime_on(cents_mapping(tmp_path)))  # type: ignore[arg-type]
    payload = build_payload(target, RESULTS)
    assert payload["Expected_Payout__c"] == 726000 and type(payload["Expected_Payout__c"]) is int
    assert payload["Actual_Payout__c"] == 725999
    assert payload["Invoice_Amount__c"] == Decimal("8400.00")  # still "currency": major units
    assert payload["Order_Id__c"] == "801000000000001AAA"
    # a cleared result clears the field, whatever its type
    assert build_payload(target, {**RESULTS, "actual_payout": None})["Actual_Payout__c"] is None
    # the hash follows what is sent: switching a field to cents resends it
    assert payload_hash(payload) != payload_hash(build_payload(target_of(runtime_on("gtm-v2")), RESULTS))  # type: ignore[arg-type]


def test_types_default_to_none_for_a_target_built_by_hand() -> None:
    target = Target("GTM_Order_Billing__c", "Order_Id__c", {"expected_payout": "Expected_Payout__c"})
    assert build_payload(target, RESULTS) == {"Expected_Payout__c": Decimal("7260.00")}
