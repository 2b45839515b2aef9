"""What people and scripts read from the CLI: output through a pipe, the one `--json`
convention, messages in the connector's own words, one vocabulary of names, log lines with
their context, and `--help`/`--version`/completion.

Real parts: the HTTPS sandbox org, the Stripe sandbox, SQLite files, closed ports for what
is unreachable, and the installed `gtm-connector` in a subprocess where a pipe matters.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs
from typer.testing import CliRunner, Result

from connector.entrypoints.cli import app
from gtm_sandbox.org import SandboxOrg
from gtm_sandbox.stripe import StripeSandbox
from tests.e2e.test_operator_errors import SF_SECRET_ENV, STRIPE_KEY, STRIPE_KEY_ENV, assert_clean, write_config
from tests.fixtures.daemon import free_port

EXE = Path(sys.executable).parent / "gtm-connector"


@pytest.fixture(autouse=True)
def secrets_in_env(monkeypatch: pytest.MonkeyPatch, sandbox_org_session: SandboxOrg) -> None:
    monkeypatch.setenv(SF_SECRET_ENV, sandbox_org_session.client_secret)
    monkeypatch.setenv(STRIPE_KEY_ENV, STRIPE_KEY)
    for name in ("GTM_CONFIG_DIR", "GTM_DEBUG", "GTM_LOG_LEVEL", "GTM_LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)


def run(*args: object, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def piped(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed command with stdout to a pipe, as in `gtm-connector … | cat`, in a
    narrow terminal's environment (COLUMNS=60)."""
    full_env = {**os.environ, "COLUMNS": "60", **(env or {})}
    return subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True, timeout=120, env=full_env)


# ------------------------------------------------------------------ 9: output through a pipe


def test_piped_sync_and_status_are_never_cut_or_wrapped(tmp_path: Path, sandbox_org: SandboxOrg) -> None:
    path = write_config(tmp_path, sandbox_org)
    out = piped("sync", "--config", path)
    assert out.returncode == 0, out.stderr
    assert "…" not in out.stdout
    for sobject in ("SfdcPartnerTermSetProduct", "SfdcPartnerProvisionProduct", "SfdcPartnerOrderItem"):
        assert sobject in out.stdout
    assert "quarantined" in out.stdout and "cursor (UTC)" in out.stdout  # headers whole
    status = piped("status", "--config", path)
    assert status.returncode == 0 and "…" not in status.stdout
    assert "SfdcPartnerTermSetProduct" in status.stdout and "last sync (UTC)" in status.stdout
    letters = piped("dead-letters", "--config", path)
    [row] = [line for line in letters.stdout.splitlines() if "SfdcPartnerOrderItem" in line]
    assert "quantity" in row  # the reason is on the record's own line, not wrapped onto the next


def test_an_error_line_through_a_pipe_stays_one_line(tmp_path: Path) -> None:
    listener = free_port()
    path = write_config(tmp_path, None, login_url=f"https://127.0.0.1:{listener}")
    out = piped("sync", "--config", path)
    assert out.returncode == 1
    [line] = [line for line in out.stdout.splitlines() if "cannot reach Salesforce" in line]
    assert line.rstrip().endswith("check [salesforce] login_url and the network")


def test_demo_tables_in_a_narrow_terminal_keep_invoice_numbers_and_amounts_whole() -> None:
    from rich.console import Console

    from connector.demo import DemoSummary
    from connector.entrypoints.cli.demo import print_summary

    summary = DemoSummary("/tmp/state", "sqlite:///demo.sqlite3", resumed=False)
    summary.invoices = [{"order_id": "a0O000000000000123AAA", "order_number": "00000123", "customer": "Acme Corp",
                         "invoice_id": "in_1NxYzABCDEFGHIJKLM", "number": "INV-2025-000123-0001", "status": "paid",
                         "due_date": "2026-01-30", "amount": "8400.00", "amount_paid": "8400.00"}]
    summary.writeback = {"target": "GTM_Order_Billing__c", "this_run": {"written": 1, "failed": 0, "unchanged": 0},
                         "records": []}
    summary.this_run = {"invoices_created": 1, "stripe_invoice_creates": 1, "writeback_records_written": 0,
                        "org_collection_upserts": 0, "org_api_calls": 3, "stripe_api_calls": 4}
    console = Console(width=50, force_terminal=True, color_system=None, record=True, markup=False)

    print_summary(summary, console)

    text = console.export_text()
    assert "INV-2025-000123-0001" in text and "8400.00" in text and "2026-01-30" in text and "00000123" in text


# ------------------------------------------------------------------ 10: one --json convention


def test_every_json_command_prints_one_json_document(tmp_path: Path, sandbox_org: SandboxOrg,
                                                     stripe_sandbox: StripeSandbox) -> None:
    path = write_config(tmp_path, sandbox_org, stripe_base=stripe_sandbox.api_base)
    commands = {
        ("sync",): "orgs", ("status",): "orgs", ("invoice", "--dry-run"): "orgs",
        ("offers", "push", "--dry-run"): "orgs", ("run-job", "mirror"): "orgs", ("reconcile", "--dry-run"): "orgs",
        ("writeback", "--dry-run"): "orgs",
        ("invoice-status",): "orgs", ("dead-letters",): "dead_letters", ("replay", "--all", "--dry-run"): "items",
        ("report",): "rows",
    }
    for args, key in commands.items():
        result = run(*args, "--config", path, "--json")
        assert result.exit_code == 0, (args, result.output)
        doc = json.loads(result.stdout)  # the whole of stdout is one document
        assert len(result.stdout.strip().splitlines()) == 1, args
        assert key in doc, (args, doc)
        if key == "orgs":
            assert [o["org"] for o in doc["orgs"]] == ["acme"], args


def test_report_takes_json_like_every_command_and_keeps_the_old_spelling(tmp_path: Path) -> None:
    path = write_config(tmp_path, None)
    new, old = run("report", "--config", path, "--json"), run("report", "--config", path, "--format", "json")
    assert new.exit_code == old.exit_code == 0, new.output
    assert json.loads(new.stdout) == json.loads(old.stdout) == {"rows": [], "months": [], "sold_not_provisionable": []}
    both = run("report", "--config", path, "--json", "--format", "csv")
    assert both.exit_code == 2 and "not both" in both.output


def test_payout_estimate_follows_the_json_convention(tmp_path: Path) -> None:
    orders = tmp_path / "orders.jsonl"
    orders.write_text('{"id": "o-1", "contract_term_months": 12, "items": [{"quantity": 10, '
                      '"unit_price_per_month": "50.00", "revenue_share_percent": 15}]}\n')
    result = run("payout-estimate", "--input", orders, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["expected_payout"] == "5100.00"
    assert run("payout-estimate", "--input", orders, "--json", "--table").exit_code == 2


# ------------------------------------------------------------------ 12: messages


def test_unreachable_salesforce_says_why(tmp_path: Path) -> None:
    refused = write_config(tmp_path / "a", None, login_url=f"https://127.0.0.1:{free_port()}")
    unknown = write_config(tmp_path / "b", None, login_url="https://no-such-host.invalid")
    for path, cause in ((refused, "connection refused"), (unknown, "host not found (DNS)")):
        result = run("sync", "--config", path)
        assert result.exit_code == 1
        assert f"cannot reach Salesforce ({cause}); check [salesforce] login_url" in result.output, result.output
        assert "ConnectionError" not in result.stdout and "TransientError" not in result.stdout
        assert_clean(result)


def test_failed_runs_say_what_failed_without_class_names_or_dashes(tmp_path: Path) -> None:
    path = write_config(tmp_path, None, stripe_base=f"http://127.0.0.1:{free_port()}")
    result = run("invoice", "--config", path)
    assert result.exit_code == 0, result.output  # nothing is due: no order in the empty model
    assert "(-)" not in result.output and "invoicing ok (" in result.output
    unreachable = write_config(tmp_path / "r", None, login_url=f"https://127.0.0.1:{free_port()}")
    result = run("run-job", "mirror", "--config", unreachable)
    assert result.exit_code == 1
    assert "cannot reach Salesforce (connection refused)" in result.stdout
    assert "Error:" not in result.stdout and "Error " not in result.stdout, result.stdout


def test_usage_and_config_errors_use_plain_words(tmp_path: Path) -> None:
    path = write_config(tmp_path, None)
    result = run("report", "--config", path, "--format", "xml")
    assert result.exit_code == 2 and "Value error" not in result.output
    assert "'xml' is not one of: table, csv, json" in " ".join(result.output.replace("│", " ").split())
    result = run("sandbox", "stripe", "--port", "abc")
    assert result.exit_code == 2 and "must be a whole number" in result.output and "Input should" not in result.output
    bad = write_config(tmp_path / "bad", None, alias="Acme Corp")
    result = run("config", "check", bad, "--skip-secrets")
    assert result.exit_code == 2
    assert "org.alias: must be 1-40 lowercase letters, digits" in result.stderr and "^[a-z" not in result.stderr


def test_empty_tables_say_none_and_replay_of_an_unknown_id_prints_the_error_only(tmp_path: Path) -> None:
    path = write_config(tmp_path, None)
    letters = run("dead-letters", "--config", path)
    assert letters.exit_code == 0 and "open dead letters: none" in letters.stdout and "┏" not in letters.stdout
    replay = run("replay", "--config", path, "--id", "99")
    assert replay.exit_code == 2
    assert replay.stdout == ""
    assert "dead letter 99: no such letter in the selected org" in replay.stderr


# ------------------------------------------------------------------ 13: one vocabulary


def test_commands_jobs_and_sources_have_one_vocabulary_with_aliases(tmp_path: Path, sandbox_org: SandboxOrg) -> None:
    path = write_config(tmp_path, sandbox_org)
    for args in (("offers", "create", "--help"), ("offer", "create", "--help"), ("sandbox", "org", "--help"),
                 ("sandbox", "serve", "--help"), ("sandbox", "stripe", "--help")):
        assert run(*args).exit_code == 0, args
    help_text = run("--help").stdout + run("sandbox", "--help").stdout + run("offers", "--help").stdout
    assert not re.search(r"│ (offer|serve) ", help_text)  # the old names work; the help shows one name

    synced = run("run-job", "sync", "--config", path, "--json")
    assert synced.exit_code == 0, synced.output
    assert json.loads(synced.stdout)["orgs"][0]["job"] == "mirror"
    unknown = run("run-job", "synch", "--config", path)
    assert unknown.exit_code == 2 and "valid jobs: mirror (sync), offers_push" in unknown.output

    listed = run("dead-letters", "--config", path, "--source", "reconcile")
    assert listed.exit_code == 0, listed.output
    assert run("dead-letters", "--config", path, "--source", "sync", "--json").exit_code == 0
    [letter] = json.loads(run("dead-letters", "--config", path, "--source", "sync", "--json").stdout)["dead_letters"]
    assert letter["source"] == "mirror"


# ------------------------------------------------------------------ 14: logs


def test_every_line_of_a_run_carries_org_alias_job_and_run_id(tmp_path: Path, sandbox_org: SandboxOrg) -> None:
    from connector.config import load_config
    from connector.entrypoints.cli._common import open_runtime
    from connector.jobs import run_job

    runtime = open_runtime(load_config(write_config(tmp_path, sandbox_org)))
    sandbox_org.fail("oauth_token", status=503, times=1)
    try:
        # merge_contextvars as in connector.logging.configure: the run's binding reaches
        # lines logged by code that holds no bound logger (the retry policy here)
        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            outcome = run_job(runtime, "mirror", instance_id="test")
    finally:
        runtime.close()
    assert outcome.status == "ok", outcome.error
    run_id = outcome.run_id
    retrying = [e for e in logs if e["event"] == "call.retrying"]
    assert retrying and all((e["org"], e["job"], e["run_id"]) == ("acme", "mirror", run_id) for e in retrying)
    assert all(e.get("org") == "acme" for e in logs if "org" in e)  # the alias, never the org id


def test_log_level_and_format_are_settings(tmp_path: Path, sandbox_org: SandboxOrg) -> None:
    path = write_config(tmp_path, sandbox_org)
    out = piped("--log-level", "info", "--log-format", "json", "sync", "--config", path)
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stderr.splitlines()]
    assert {"job.started", "job.finished"} <= {e["event"] for e in events}
    assert all(e["org"] == "acme" for e in events if e["event"].startswith("job."))
    quiet = piped("sync", "--config", path, env={"GTM_LOG_LEVEL": "error"})
    assert quiet.returncode == 0 and quiet.stderr == ""
    console = piped("--log-level", "info", "--log-format", "console", "sync", "--config", path)
    assert "job.started" in console.stderr and not console.stderr.lstrip().startswith("{")


def test_db_upgrade_logs_like_every_other_command(tmp_path: Path) -> None:
    out = piped("--log-level", "info", "db", "upgrade", "--database-url", f"sqlite:///{tmp_path / 'x.sqlite3'}")
    assert out.returncode == 0, out.stderr
    [event] = [json.loads(line) for line in out.stderr.splitlines()]  # JSON off a terminal, as everywhere
    assert event["event"] == "schema.upgraded"


# ------------------------------------------------------------------ 16: --version, completion, help


def test_version_completion_and_readable_help() -> None:
    from importlib.metadata import version

    result = run("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"gtm-connector {version('gtm-connector')}"
    root = run("--help").stdout
    assert "--install-completion" in root and "--show-completion" in root
    assert "--log-level" in root and "--log-format" in root

    def helps(command: object, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], str]]:
        found = [(path, run(*path, "--help", env={"COLUMNS": "200"}).stdout)]
        for name, sub in (getattr(command, "commands", None) or {}).items():
            found += helps(sub, (*path, name))
        return found

    from typer.main import get_command

    for path, text in helps(get_command(app), ()):
        assert "<bool>" not in text and "<list[" not in text and "<str>" not in text, (path, text)
    sync_help = run("sync", "--help", env={"COLUMNS": "200"}).stdout
    assert "PATH…" in sync_help and "TEXT…" in sync_help
    estimate = run("payout-estimate", "--help", env={"COLUMNS": "200"}).stdout
    for field in ("contract_term_months", "quantity", "unit_price_per_month", "revenue_share_percent",
                  "addon_start_date"):
        assert field in estimate, field
