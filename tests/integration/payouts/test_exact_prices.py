"""A price the org gives with sub-cent digits is kept exactly, from the org's record to the
write-back: 10 licenses at 0.125 a month for 12 months invoice 15.00 (not 15.60, as they did
when the mirror rounded the price to 0.13), and every figure derived from it agrees."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tests.fixtures.payouts import PartnerBooks, billing_records


def test_a_sub_cent_price_invoices_and_pays_out_to_the_cent(org_books: PartnerBooks, sandbox_org: Any) -> None:
    ids = sandbox_org.demo_ids
    today = datetime.now(UTC).date()
    [order_id] = sandbox_org.insert("SfdcPartnerOrder", [{
        "Name": "Tiny order", "OrderNumber": "00000777", "Status": "Activated", "OrderType": "Initial",
        "CustomerName": "Tiny Co", "BillingCustomerOrg": "00D5g0000077777AAA", "ContractTerm": 12,
        "ServiceStartDate": today.isoformat(), "BillingEmailAddress": "ap@tiny.example", "CurrencyIsoCode": "USD",
        "Subtotal": Decimal("15.00")}])
    sandbox_org.insert("SfdcPartnerOrderItem", [{
        "Name": "Core App x10", "PartnerOrderId": order_id, "PartnerProvisionProductId": ids["ppp_core"],
        "Quantity": 10, "CustomerUnitPricePerMonth": Decimal("0.125"), "LineItemTotal": Decimal("15.00")}])

    org_books.run("mirror")
    with org_books.uow() as uow:
        [item] = uow.mirror("order_item").list(org_books.org_id, order_id=order_id)
    assert item["unit_price_per_month"] == Decimal("0.125")

    org_books.run("invoicing")
    [invoice] = [i for i in org_books.stripe_box.invoices() if i["metadata"].get("gtm_order_id") == order_id]
    assert invoice["total"] == 1500
    assert [(line["quantity"], line["amount"]) for line in invoice["lines"]["data"]] == [(10, 1500)]

    org_books.run("reconcile")
    with org_books.uow() as uow:
        row = uow.reconciliation.get(org_books.org_id, order_id)
    # Seed 003's rule: share 15 % of 15.00 = 2.25, expected payout 12.75.
    assert (row.subtotal, row.revenue_share, row.expected_payout) == (Decimal("15.00"), Decimal("2.25"),
                                                                      Decimal("12.75"))

    estimate = subprocess.run(
        [sys.executable, "-m", "connector.entrypoints.cli", "payout-estimate"], capture_output=True, text=True,
        input=json.dumps({"id": "tiny", "contract_term_months": 12, "items": [
            {"quantity": 10, "unit_price_per_month": 0.125, "revenue_share_percent": 15}]}), timeout=60)
    assert estimate.returncode == 0, estimate.stderr
    out = json.loads(estimate.stdout.splitlines()[0])
    assert (out["subtotal"], out["expected_payout"]) == ("15.00", "12.75")

    org_books.run("writeback")
    record = billing_records(sandbox_org)[order_id]
    assert (record["Invoice_Amount__c"], record["Expected_Payout__c"]) == (Decimal("15.00"), Decimal("12.75"))
