"""Attention flags through the real parts: the sandbox org (HTTPS), the mirror, the local
Stripe sandbox, the store, ``status``, ``report`` and the write-back object.

* An order the org moves to Error or Expired after its invoice was issued is flagged in
  ``status`` and ``report``, written back in ``Last_Error__c``, counted by ``reconcile``,
  and clears once the cause is gone (here: the invoice is voided).
* A PPP sold on an Activated order with no product license is flagged "sold but not
  provisionable", once per PPP, naming the orders; it clears when a license appears.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from connector.entrypoints.cli import app
from gtm_sandbox.org import SandboxOrg
from gtm_sandbox.stripe import StripeSandbox
from tests.fixtures.payouts import PartnerBooks, billing_records, make_books, write_config_file

ORDER = "SfdcPartnerOrder"
LICENSE = "SfdcPartnerProductLicense"


@pytest.fixture
def cli(sandbox_org: SandboxOrg, stripe_sandbox: StripeSandbox, sqlite_url: str,
        tmp_path: Path) -> Iterator[tuple[PartnerBooks, Any]]:
    books = make_books(sqlite_url, tmp_path, stripe_sandbox, org=sandbox_org)
    path, env = write_config_file(tmp_path, alias="acme", database_url=sqlite_url, stripe_box=stripe_sandbox,
                                  org=sandbox_org)
    runner = CliRunner(env={**env, "COLUMNS": "250"})

    def run(*args: str) -> Any:
        result = runner.invoke(app, [*args, "--config", str(path)])
        assert result.exit_code == 0, result.output
        return result

    yield books, run
    books.runtime.close()


def status_of(run: Any) -> dict[str, Any]:
    [doc] = json.loads(run("status", "--json").stdout)["orgs"]  # one JSON document per command
    return doc["attention"]


def test_an_order_in_error_after_its_invoice_is_flagged_written_back_and_clears_when_voided(
        cli: tuple[PartnerBooks, Any], sandbox_org: SandboxOrg) -> None:
    books, run = cli
    acme = sandbox_org.demo_ids["acme_order"]
    books.run("mirror")
    books.run("invoicing")
    with books.uow() as uow:
        invoice = uow.invoices.get(books.org_id, acme)
    assert invoice is not None and invoice.status == "open"
    assert status_of(run)["orders"] == []

    sandbox_org.update(ORDER, [{"Id": acme, "Status": "Error"}])
    books.run("mirror")

    attention = status_of(run)
    [flag] = attention["orders"]
    assert (flag["order_id"], flag["order_number"], flag["code"]) == (acme, "00000101", "ORDER_ERROR_AFTER_INVOICE")
    assert f"after invoice {invoice.number} (open) was issued" in flag["message"]
    assert attention["orders_ended_after_invoice"] == 1
    assert "attention: order 00000101 is Error" in run("status").stdout

    assert books.run("reconcile").counts["orders_ended_after_invoice"] == 1
    report = json.loads(run("report", "--json").stdout)
    [row] = [r for r in report["rows"] if r["order_id"] == acme]
    assert row["attention"] == flag["message"] and report["rows"][0]["order_id"] == acme  # flagged rows first
    assert "attention (acme): order 00000101 is Error" in run("report").stdout

    books.run("writeback")
    assert billing_records(sandbox_org)[acme]["Last_Error__c"].startswith("ORDER_ERROR_AFTER_INVOICE: order 00000101")

    # The cause goes: the partner voids the invoice; the polling fallback sees it.
    books.client.v1.invoices.void_invoice(invoice.stripe_invoice_id)
    books.now[0] += timedelta(hours=2)
    books.run("invoice_status")
    assert status_of(run)["orders"] == []
    assert books.run("reconcile").counts["orders_ended_after_invoice"] == 0
    books.run("writeback")
    assert billing_records(sandbox_org)[acme]["Last_Error__c"] is None


def test_an_order_expired_early_with_its_invoice_open_is_flagged(cli: tuple[PartnerBooks, Any],
                                                                  sandbox_org: SandboxOrg) -> None:
    books, run = cli
    acme = sandbox_org.demo_ids["acme_order"]
    books.run("mirror")
    books.run("invoicing")
    sandbox_org.update(ORDER, [{"Id": acme, "Status": "Expired"}])
    books.run("mirror")

    [flag] = status_of(run)["orders"]
    assert flag["code"] == "ORDER_EXPIRED_AFTER_INVOICE"
    assert "before its service end date" in flag["message"] and "is still open" in flag["message"]


def test_a_sold_ppp_without_a_product_license_is_flagged_once_naming_its_orders(
        cli: tuple[PartnerBooks, Any], sandbox_org: SandboxOrg) -> None:
    books, run = cli
    ids = sandbox_org.demo_ids
    books.run("mirror")
    assert status_of(run)["not_provisionable"] == []

    core_licenses = [r["Id"] for r in sandbox_org.records(LICENSE) if r["PartnerProvisionProductId"] == ids["ppp_core"]]
    sandbox_org.delete(LICENSE, core_licenses)
    books.run("mirror")

    attention = status_of(run)
    # Core App is on both Activated orders (101 and its add-on 102), flagged once; the
    # Processing order 103 has not sold anything yet.
    [flag] = attention["not_provisionable"]
    assert (flag["ppp_id"], flag["ppp_name"], flag["orders"]) == (ids["ppp_core"], "Core App", ["00000101", "00000102"])
    assert flag["message"] == (f"sold but not provisionable: PPP Core App ({ids['ppp_core']}) has no product license "
                               "(SfdcPartnerProductLicense); sold on orders 00000101, 00000102")
    assert "attention: sold but not provisionable: PPP Core App" in run("status").stdout
    report = json.loads(run("report", "--json").stdout)
    assert [(f["ppp_id"], f["orders"]) for f in report["sold_not_provisionable"]] == \
        [(ids["ppp_core"], ["00000101", "00000102"])]
    csv_rows = [line for line in run("report", "--format", "csv").stdout.splitlines()
                if line.startswith("sold_not_provisionable")]
    assert len(csv_rows) == 1 and "PPP Core App" in csv_rows[0]
    assert books.run("reconcile").counts["sold_not_provisionable"] == 1

    sandbox_org.insert(LICENSE, [{"PartnerProvisionProductId": ids["ppp_core"], "LicenseId": "0A3000000000009AAA"}])
    books.run("mirror")
    assert status_of(run)["not_provisionable"] == []
