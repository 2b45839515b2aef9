"""The operator's commands: writeback --dry-run, dead-letters, replay, reconcile, report."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connector.entrypoints.cli import app
from gtm_sandbox.org import SandboxOrg
from gtm_sandbox.stripe import StripeSandbox
from tests.fixtures.payouts import (
    PartnerBooks,
    billing_records,
    invoiced_orders,
    make_books,
    validation_rule,
    write_config_file,
)


@pytest.fixture
def cli(sandbox_org: SandboxOrg, stripe_sandbox: StripeSandbox, sqlite_url: str,
        tmp_path: Path) -> Iterator[tuple[PartnerBooks, CliRunner, list[str]]]:
    books = make_books(sqlite_url, tmp_path, stripe_sandbox, org=sandbox_org)
    path, env = write_config_file(tmp_path, alias="acme", database_url=sqlite_url, stripe_box=stripe_sandbox,
                                  org=sandbox_org)
    yield books, CliRunner(env=env), ["--config", str(path)]
    books.runtime.close()


def test_writeback_dry_run_prints_the_field_diff_and_writes_nothing(
        cli: tuple[PartnerBooks, CliRunner, list[str]], sandbox_org: SandboxOrg) -> None:
    books, runner, org = cli
    (order,) = invoiced_orders(books, 1)
    sandbox_org.reset_counters()

    result = runner.invoke(app, ["writeback", *org, "--dry-run", "--json"])

    assert result.exit_code == 0, result.output
    (line,) = json.loads(result.stdout)["orgs"]
    (row,) = line["rows"]
    changes = {c["field"]: c["new"] for c in row["changes"]}
    assert row["order_id"] == order.order_id
    assert changes["Invoice_Status__c"] == "open" and changes["Invoice_Amount__c"] == "8400.00"
    assert sandbox_org.counters()["calls"] == {}
    with books.uow() as uow:
        assert uow.writeback_state.list(books.org_id) == []

    table = runner.invoke(app, ["writeback", *org, "--dry-run"], env={"COLUMNS": "200"})
    assert "Invoice_Status__c" in table.stdout and "Nothing was written." in table.stdout


def test_dead_letters_then_replay_after_the_fix(cli: tuple[PartnerBooks, CliRunner, list[str]],
                                                sandbox_org: SandboxOrg) -> None:
    books, runner, org = cli
    (order,) = invoiced_orders(books, 1)
    with validation_rule(sandbox_org, lambda r: True, message="Billing records are locked for audit"):
        assert runner.invoke(app, ["writeback", *org]).exit_code == 0
        listed = runner.invoke(app, ["dead-letters", *org, "--json"])
        (letter,) = json.loads(listed.stdout)["dead_letters"]
        assert (letter["source"], letter["record_id"]) == ("writeback", order.order_id)
        assert letter["code"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
        assert "locked for audit" in letter["reason"]
        failing = runner.invoke(app, ["replay", *org, "--all"])
        assert failing.exit_code == 1

    assert runner.invoke(app, ["replay", *org]).exit_code == 2  # --id or --all
    result = runner.invoke(app, ["replay", *org, "--id", str(letter["id"]), "--json"])

    assert result.exit_code == 0, result.output
    (item,) = json.loads(result.stdout)["items"]
    assert item["outcome"] == "resolved"
    assert order.order_id in billing_records(sandbox_org)


def test_reconcile_then_report_in_json_and_csv(cli: tuple[PartnerBooks, CliRunner, list[str]]) -> None:
    books, runner, org = cli
    order = books.an_order()
    books.invoice(order)
    books.pay_with_share_deducted(order)
    books.payout()
    unpaid = books.an_order()
    books.invoice(unpaid)
    books.pay(unpaid, 100_000)  # 1,000.00 of 8,400.00, standard Stripe fee only
    books.payout()

    assert runner.invoke(app, ["reconcile", *org]).exit_code == 0
    as_json = runner.invoke(app, ["report", *org, "--json"])
    old_spelling = runner.invoke(app, ["report", *org, "--format", "json"])
    as_csv = runner.invoke(app, ["report", *org, "--format", "csv"])
    table = runner.invoke(app, ["report", *org], env={"COLUMNS": "220"})

    data = json.loads(as_json.stdout)
    assert json.loads(old_spelling.stdout) == data  # `--format json` still works, same document
    first, second = data["rows"]
    assert first["order_id"] == unpaid.order_id and first["discrepancy"].startswith("partial payment")
    assert second["order_id"] == order.order_id and second["discrepancy"] is None
    assert (second["expected_payout"], second["actual_payout"], second["difference"]) == ("7260.00", "7260.00", "0.00")
    (month,) = data["months"]
    assert month["expected_payout"] == "14520.00" and month["discrepancies"] == 1
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["row_type"] for r in rows] == ["order", "order", "month_total"]
    assert rows[1]["actual_payout"] == "7260.00"
    assert "partial payment" in table.stdout and "Totals per month" in table.stdout

    outside = runner.invoke(app, ["report", *org, "--json", "--to", "2000-01-01"])
    assert json.loads(outside.stdout) == {"rows": [], "months": [], "sold_not_provisionable": []}
