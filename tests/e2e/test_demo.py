"""The end-to-end demo as a partner runs it: `gtm-connector demo` in a fresh process, no
accounts, no network — and a second run on the same data directory that changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def demo(data_dir: Path, *extra: str) -> dict[str, Any]:
    """Run the demo in its own process (as `make demo` does) and parse its JSON summary."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
    result = subprocess.run(
        [sys.executable, "-m", "connector.entrypoints.cli", "demo", "--json", "--data-dir", str(data_dir), *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, f"demo failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)


def test_the_demo_runs_one_full_cycle_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    first = demo(tmp_path / "state")

    assert first["ok"] and not first["second_run"]
    assert [s["step"] for s in first["steps"]] == ["mirror", "offers_push", "invoicing", "payment", "webhooks",
                                                   "payout", "reconcile", "writeback"]
    steps = {s["step"]: s for s in first["steps"]}
    assert steps["offers_push"]["counts"] == {"created": 1}  # the partner's draft offer, now in the org
    assert steps["webhooks"]["counts"]["accepted"] >= 1
    assert first["mirrored"]["SfdcPartnerOrder"] == 3 and first["mirrored"]["SfdcPartnerTermSetProduct"] == 2
    (invoice,) = first["invoices"]
    assert invoice["customer"] == "Acme Corp" and invoice["status"] == "paid" and invoice["amount"] == "8400.00"
    assert invoice["due_date"] == (datetime.now(UTC).date() + timedelta(days=30)).isoformat()  # NET30
    seed = first["seed_003"]
    assert (seed["subtotal"], seed["revenue_share"], seed["expected_payout"]) == ("8400.00", "1140.00", "7260.00")
    assert (seed["actual_payout"], seed["difference"], seed["discrepancy"]) == ("7260.00", "0.00", None)
    # The primary org's GTM app issued seed 003's invoice; the connector adopted it. The
    # second org's connector issued its own: two invoices created in Stripe in all, one each.
    assert first["this_run"]["invoices_created"] == 0 and first["this_run"]["stripe_invoice_creates"] == 2
    orgs = {o["alias"]: o for o in first["orgs"]}
    primary = orgs["demo"]
    assert (primary["issuer"], primary["invoices_created_by_connector"], primary["invoices_adopted"]) == (
        "salesforce", 0, 1)
    assert (orgs["demo-direct"]["issuer"], orgs["demo-direct"]["invoices_created_by_connector"]) == ("connector", 1)
    assert [o["seed_003_actual_payout"] for o in first["orgs"]] == ["7260.00", "7260.00"]
    assert [o["invoices_issued_by"] for o in first["orgs"]] == [["salesforce"], ["connector"]]
    written = {r["order_id"]: r for r in first["writeback"]["records"]}
    assert written[seed["order_id"]]["actual_payout"] == "7260.00"
    assert written[seed["order_id"]]["invoice_status"] == "paid"
    (malformed,) = [d for d in first["dead_letters"] if d["source"] == "mirror"]
    assert malformed["object"] == "SfdcPartnerOrderItem" and "quantity" in malformed["reason"]
    assert any(r["last_error"] and "quantity" in r["last_error"] for r in written.values())

    second = demo(tmp_path / "state")

    assert second["ok"] and second["second_run"]
    assert {s["step"]: s for s in second["steps"]}["offers_push"]["counts"] == {"unchanged": 1}
    assert second["this_run"]["invoices_created"] == 0 and second["this_run"]["stripe_invoice_creates"] == 0
    assert second["this_run"]["writeback_records_written"] == 0 and second["this_run"]["org_collection_upserts"] == 0
    assert second["invoices"] == first["invoices"]  # the same one invoice, nothing new
    assert [o["invoices_created_by_connector"] + o["invoices_adopted"] for o in second["orgs"]] == [0, 0]
    assert second["seed_003"] == seed
    assert second["writeback"]["records"] == first["writeback"]["records"]
    assert "no invoice created and nothing written back" in second["message"]


@pytest.mark.postgres
@pytest.mark.slow
def test_the_demo_runs_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    first = demo(tmp_path / "state", "--database-url", pg_url)
    second = demo(tmp_path / "state", "--database-url", pg_url)

    assert first["seed_003"]["actual_payout"] == "7260.00" and first["database"].startswith("postgresql")
    assert second["this_run"]["invoices_created"] == 0 and second["this_run"]["org_collection_upserts"] == 0


def test_the_demo_prints_the_command_that_inspects_what_it_left(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}  # no demo secrets set afterwards
    shown = subprocess.run(
        [sys.executable, "-m", "connector.entrypoints.cli", "demo", "--data-dir", str(tmp_path / "state")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    [line] = [line for line in shown.stdout.splitlines() if line.startswith("Inspect what it left: ")]
    command = line.removeprefix("Inspect what it left: ").split()
    assert command[:2] == ["gtm-connector", "status"]

    exe = Path(sys.executable).parent / command[0]
    elsewhere = tmp_path / "elsewhere"  # works from any directory, with no secret set
    elsewhere.mkdir()
    status = subprocess.run([str(exe), *command[1:]], cwd=elsewhere, env=env, capture_output=True, text=True,
                            timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "SfdcPartnerOrder" in status.stdout
    as_json = subprocess.run([str(exe), *command[1:], "--json"], cwd=elsewhere, env=env, capture_output=True,
                             text=True, timeout=60)
    [org] = json.loads(as_json.stdout)["orgs"]
    rows = {o["object"]: o["rows"] for o in org["objects"]}
    assert org["org"] == "demo" and rows["SfdcPartnerOrder"] == 3 and org["dead_letters"] == {"mirror": 1}
    letters = subprocess.run([str(exe), "dead-letters", *command[2:]], cwd=elsewhere, env=env, capture_output=True,
                             text=True, timeout=60)
    assert letters.returncode == 0 and "quantity" in letters.stdout
