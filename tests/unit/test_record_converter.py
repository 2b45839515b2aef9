"""One pass from a wire record to the row the store keeps: the converter checks each value,
then the domain rules, then gives each value the table's stored form (``StoredForms``, the
store's one definition of each column's rule), and reports what is wrong in that order."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from connector.adapters.store.mirror import mirror_table, stored_forms
from connector.errors import RecordError
from connector.mappings import load_mapping
from connector.services.records import RecordConverter

MAPPING = load_mapping("gtm-v2")
PPP = "a0P000000000001AAA"


def converter(key: str, *, store: bool = True) -> RecordConverter:
    known = {"ppp": {PPP}}
    forms = stored_forms(mirror_table(key)) if store else None
    return RecordConverter(MAPPING, MAPPING.objects[key], lambda target: known.get(target, set()), store=forms)


def an_order(**fields: Any) -> dict[str, Any]:
    return {"Id": "a0O000000000001AAA", "SystemModstamp": "2026-12-04T07:42:29.117+0000", "IsDeleted": False,
            "Name": "O-1", "Status": "Activated", "OrderType": "Initial", "CustomerName": "Globex",
            "ContractTerm": 12, "ServiceStartDate": "2026-01-01", "CurrencyIsoCode": "USD",
            "Subtotal": Decimal("8400.005"), **fields}


def an_item(**fields: Any) -> dict[str, Any]:
    return {"Id": "a0I000000000001AAA", "SystemModstamp": "2026-12-04T07:42:29.117+0000", "IsDeleted": False,
            "Name": "Line 1", "PartnerOrderId": "a0O000000000001AAA", "PartnerProvisionProductId": PPP,
            "Quantity": 10, "CustomerUnitPricePerMonth": Decimal("50.00"), **fields}


def error(key: str, record: dict[str, Any]) -> RecordError:
    with pytest.raises(RecordError) as caught:
        converter(key).to_row(record)
    return caught.value


def test_the_row_comes_out_in_the_form_the_store_checks_rows_into() -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from connector.adapters.store.mirror import MirrorRepository

    stored = converter("order").to_row(an_order())
    converted = converter("order", store=False).to_row(an_order())
    assert stored["subtotal"] == Decimal("8400.01") and str(stored["subtotal"]) == "8400.01"  # half up, 2 places
    assert converted["subtotal"] == Decimal("8400.005")
    with Session(create_engine("sqlite://")) as session:
        assert stored == MirrorRepository(session, "orders").check(converted)


@pytest.mark.parametrize(("fields", "code", "reason"), [
    ({"Name": "x" * 300}, "VALUE_TOO_LONG", "orders.name: 300 characters, the column holds 255"),
    ({"CustomerName": "Acme\x00Corp"}, "INVALID_VALUE",
     "orders.customer_name: contains a NUL character (at position 4)"),
    ({"Id": "a0O000000000001AAAX"}, "VALUE_TOO_LONG", "orders.sf_id: 19 characters, the column holds 18"),
    # the first value the table cannot hold, in column order
    ({"Name": "x" * 300, "CustomerName": "Acme\x00"}, "VALUE_TOO_LONG", "orders.name: 300 characters"),
    # a value problem comes first, however unstorable the rest
    ({"Name": "x" * 300, "Status": "Shipped"}, "UNKNOWN_PICKLIST_VALUE", 'Status: unknown picklist value "Shipped"'),
    # then the domain rules
    ({"Name": "x" * 300, "CurrencyIsoCode": "EUR"}, "INVALID_RECORD", "currency: must be USD"),
])
def test_what_is_wrong_is_reported_values_first_then_rules_then_storage(fields: dict[str, Any], code: str,
                                                                        reason: str) -> None:
    caught = error("order", an_order(**fields))
    assert caught.code == code and caught.reason.startswith(reason)
    assert caught.record_id == (fields.get("Id") or "a0O000000000001AAA")


def test_domain_problems_come_in_the_rules_order_not_the_mapping_order() -> None:
    caught = error("order_item", an_item(Quantity=0, PartnerProvisionProductId="a0P000000000009AAA"))
    assert caught.reason == ("quantity: must be a positive integer, got 0; "
                             "ppp_id: unknown PPP a0P000000000009AAA (not in the mirrored catalog)")
    assert caught.code == "UNKNOWN_REFERENCE"


def test_domain_rules_see_the_value_the_org_sent_not_its_rounded_stored_form() -> None:
    # -0.0000001 rounds to 0.000000 in a Price column: still a negative price
    caught = error("order_item", an_item(CustomerUnitPricePerMonth=Decimal("-0.0000001")))
    assert caught.reason.startswith("unit_price_per_month: must be an amount of 0 or more")
    assert converter("order_item").to_row(an_item(CustomerUnitPricePerMonth=Decimal("0.1234565")))[
        "unit_price_per_month"] == Decimal("0.123457")


def test_records_sharing_a_stamp_share_its_parse_and_a_new_stamp_is_parsed() -> None:
    conv = converter("order")
    first, second = conv.to_row(an_order()), conv.to_row(an_order(Id="a0O000000000002AAA"))
    third = conv.to_row(an_order(Id="a0O000000000003AAA", SystemModstamp="2026-12-04T07:42:30.000Z"))
    assert first["system_modstamp"] == second["system_modstamp"]
    assert third["system_modstamp"].isoformat() == "2026-12-04T07:42:30+00:00"


def a_payout(**fields: Any) -> dict[str, Any]:
    return {"Id": "a0Y000000000001AAA", "SystemModstamp": "2026-12-04T07:42:29.117+0000", "IsDeleted": False,
            "ExternalId": "po_1", "Amount": 726000, "ArrivalDate": "2026-12-01", "Status": "In_Transit",
            "CurrencyIsoCode": "USD", **fields}


def test_payout_amount_in_cents_is_converted_once_and_exactly() -> None:
    assert converter("payout").to_row(a_payout())["amount"] == Decimal("7260.00")
    assert converter("payout").to_row(a_payout(Amount=Decimal("726001.0")))["amount"] == Decimal("7260.01")
    caught = error("payout", a_payout(Amount=Decimal("726000.5")))
    assert "Amount: must be a whole number of cents" in caught.reason


@pytest.mark.parametrize(("key", "fields", "field"), [
    # what a JSON body can carry where the org's describe says number: text, and the
    # non-standard Infinity/NaN tokens Python's json reads as floats
    ("order_item", {"Quantity": "abc"}, "Quantity"),
    ("order_item", {"Quantity": "Infinity"}, "Quantity"),
    ("order_item", {"Quantity": float("inf")}, "Quantity"),
    ("order_item", {"Quantity": "sNaN"}, "Quantity"),
    ("order_item", {"Quantity": "1e999999"}, "Quantity"),
    ("order_item", {"Quantity": Decimal("1e999999999")}, "Quantity"),  # int() of it: a billion digits
    ("order", {"ContractTerm": "twelve"}, "ContractTerm"),
    ("order_item", {"CustomerUnitPricePerMonth": "Infinity"}, "CustomerUnitPricePerMonth"),
    ("order_item", {"CustomerUnitPricePerMonth": "sNaN"}, "CustomerUnitPricePerMonth"),
    ("order_item", {"CustomerUnitPricePerMonth": "NaN"}, "CustomerUnitPricePerMonth"),
    ("payout", {"Amount": "abc"}, "Amount"),
    ("payout", {"Amount": "Infinity"}, "Amount"),
    ("payout", {"Amount": "sNaN"}, "Amount"),
    ("payout", {"Amount": "1e999999"}, "org_payouts.amount"),  # a number, but no column holds it
])
def test_a_number_field_holding_no_usable_number_is_a_record_error_not_a_crash(
        key: str, fields: dict[str, Any], field: str) -> None:
    record = {"order_item": an_item, "order": an_order, "payout": a_payout}[key](**fields)
    caught = error(key, record)
    assert caught.reason.startswith(f"{field}: ") or f"; {field}: " in caught.reason
