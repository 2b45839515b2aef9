"""`gtm-connector invoice`: the dry run shows the plans and calls nothing (asserted from the
Stripe server's own counters); the real run sends what is due."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connector.adapters.store import SqlUnitOfWork
from connector.entrypoints.cli import app
from gtm_sandbox.stripe import StripeSandbox
from tests.integration.stripe.gtm import ORG, GtmOrg, order_id


@pytest.fixture
def org_config(tmp_path: Path, migrated_url: str, stripe_sandbox: StripeSandbox,
               monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ACME_STRIPE_KEY", stripe_sandbox.api_key)
    monkeypatch.setenv("ACME_SF_SECRET", "not-used-here")
    monkeypatch.setenv("COLUMNS", "220")  # rich wraps tables to the terminal width
    path = tmp_path / "acme.toml"
    path.write_text(f"""
database_url = "{migrated_url}"
[org]
alias = "acme"
org_id = "{ORG}"
[salesforce]
login_url = "https://127.0.0.1"
[salesforce.auth]
kind = "client_credentials"
client_id = "cli-test"
client_secret = {{ env = "ACME_SF_SECRET" }}
[invoicing]
issuer = "connector"

[stripe]
api_key = {{ env = "ACME_STRIPE_KEY" }}
api_base = "{stripe_sandbox.api_base}"
""")
    return path


def test_dry_run_shows_every_plan_and_calls_nothing(org_config: Path, stripe_sandbox: StripeSandbox,
                                                    uow_factory: Callable[[], SqlUnitOfWork]) -> None:
    today = datetime.now(UTC).date()
    org = GtmOrg(uow_factory).catalogue()
    org.order(1, start=today)
    org.order(2, start=today + timedelta(days=10))
    org.order(3, start=today, subtotal="9000.00")

    result = CliRunner().invoke(app, ["invoice", "--config", str(org_config), "--dry-run"])

    assert result.exit_code == 0, result.output
    assert "8400.00" in result.output and "Core App" in result.output and "10 x 600.00" in result.output
    assert f"from {today + timedelta(days=9)}" in result.output
    assert "SUBTOTAL_MISMATCH" in result.output
    assert stripe_sandbox.counters() == {}
    with uow_factory() as uow:
        assert uow.invoices.list(ORG) == [] and uow.outbox.pending(ORG) == []
        assert uow.dead_letters.open(ORG) == []


def test_invoice_command_sends_what_is_due(org_config: Path, stripe_sandbox: StripeSandbox,
                                          uow_factory: Callable[[], SqlUnitOfWork]) -> None:
    today = datetime.now(UTC).date()
    org = GtmOrg(uow_factory).catalogue()
    org.order(1, start=today + timedelta(days=1))
    org.order(2, start=today + timedelta(days=10))

    result = CliRunner().invoke(app, ["invoice", "--config", str(org_config)])

    assert result.exit_code == 0, result.output
    assert "invoices_created=1" in result.output
    [invoice] = stripe_sandbox.invoices()
    assert invoice["metadata"]["gtm_order_id"] == order_id(1) and invoice["status"] == "open"
    with uow_factory() as uow:
        [run] = uow.job_runs.list(ORG, job="invoicing")
    assert run.status == "ok"


def test_invoice_status_command_polls_nothing_fresh(org_config: Path, stripe_sandbox: StripeSandbox,
                                                     uow_factory: Callable[[], SqlUnitOfWork]) -> None:
    GtmOrg(uow_factory).catalogue().order(1, start=datetime.now(UTC).date())
    assert CliRunner().invoke(app, ["invoice", "--config", str(org_config)]).exit_code == 0
    stripe_sandbox.reset_counters()

    result = CliRunner().invoke(app, ["invoice-status", "--config", str(org_config)])

    assert result.exit_code == 0, result.output
    assert "invoice-status ok (checked=0, changed=0, anomalies=0)" in result.output
    assert stripe_sandbox.counters() == {}  # updated a moment ago: within poll_after_minutes


def test_invoice_prints_each_invoice_it_sent(org_config: Path, stripe_sandbox: StripeSandbox,
                                             uow_factory: Callable[[], SqlUnitOfWork]) -> None:
    today = datetime.now(UTC).date()
    GtmOrg(uow_factory).catalogue().order(1, start=today)

    result = CliRunner().invoke(app, ["invoice", "--config", str(org_config)])

    assert result.exit_code == 0, result.output
    [invoice] = stripe_sandbox.invoices()
    due = datetime.fromtimestamp(invoice["due_date"], UTC).date().isoformat()
    [row] = [line for line in result.stdout.splitlines() if invoice["number"] in line]
    assert "00000001" in row and "8400.00" in row and due in row  # order, number, amount, due date

    again = CliRunner().invoke(app, ["invoice", "--config", str(org_config), "--json"])
    [org] = json.loads(again.stdout)["orgs"]
    assert org["invoices"] == [] and org["counts"]["invoices_created"] == 0  # nothing twice


def test_invoice_status_checks_now_with_all_or_order(org_config: Path, stripe_sandbox: StripeSandbox,
                                                     uow_factory: Callable[[], SqlUnitOfWork]) -> None:
    today = datetime.now(UTC).date()
    org = GtmOrg(uow_factory).catalogue()
    org.order(1, start=today)
    org.order(2, start=today)
    assert CliRunner().invoke(app, ["invoice", "--config", str(org_config)]).exit_code == 0
    first, second = sorted(stripe_sandbox.invoices(), key=lambda i: i["metadata"]["gtm_order_id"])
    stripe_sandbox.pay_invoice(first["id"])
    stripe_sandbox.pay_invoice(second["id"])  # paid on Stripe; no webhook reaches the connector

    def status(*args: str) -> dict:
        result = CliRunner().invoke(app, ["invoice-status", "--config", str(org_config), "--json", *args])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)["orgs"][0]["counts"]

    assert status()["checked"] == 0  # updated minutes ago: the poll waits poll_after_minutes
    assert status("--order", order_id(1)) == {"checked": 1, "changed": 1, "anomalies": 0}
    assert status("--all") == {"checked": 1, "changed": 1, "anomalies": 0}  # the other one, still open
    with uow_factory() as uow:
        assert {i.status for i in uow.invoices.list(ORG)} == {"paid"}
