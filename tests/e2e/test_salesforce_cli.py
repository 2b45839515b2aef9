"""The partner's day at the command line, against the HTTPS sandbox org: `sync`, `status`,
`offer create`, `offers push`, and `sandbox serve` as a separate process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner

from connector.entrypoints.cli import app
from gtm_sandbox.org import SandboxOrg

TODAY = datetime.now(UTC).date()


@pytest.fixture
def config_file(sandbox_org: SandboxOrg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ACME_SF_SECRET", sandbox_org.client_secret)
    monkeypatch.setenv("ACME_STRIPE_KEY", "sk_test_cli")
    path = tmp_path / "acme.toml"
    path.write_text(f"""
database_url = "sqlite:///{tmp_path / 'acme.sqlite3'}"

[org]
alias = "acme"
org_id = "{sandbox_org.org_id}"

[salesforce]
login_url = "{sandbox_org.login_url}"
ca_bundle = "{sandbox_org.ca_file}"

[salesforce.auth]
kind = "client_credentials"
client_id = "{sandbox_org.client_id}"
client_secret = {{ env = "ACME_SF_SECRET" }}

[invoicing]
issuer = "connector"

[stripe]
api_key = {{ env = "ACME_STRIPE_KEY" }}

[offers]
drafts_dir = "{tmp_path / 'offers'}"
""")
    return path


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def org_doc(out: str) -> dict:
    """The one org's part of a command's --json document (stdout; logs are on stderr)."""
    [doc] = [json.loads(line) for line in out.splitlines() if line.startswith('{"orgs"')]
    return doc["orgs"][0]


def test_sync_then_status(config_file: Path, sandbox_org: SandboxOrg) -> None:
    code, out = cli("sync", "--config", str(config_file))
    assert code == 0, out
    assert "SfdcPartnerOrder" in out and "Salesforce API calls" in out
    code, out = cli("status", "--config", str(config_file), "--json")
    assert code == 0, out
    doc = org_doc(out)
    rows = {o["object"]: o for o in doc["objects"]}
    assert rows["SfdcPartnerOrder"]["rows"] == 3
    assert rows["SfdcPartnerOrderItem"]["dead_letters"] == 1
    assert rows["SfdcPartnerOffer"]["cursor"] is not None and rows["SfdcPartnerOffer"]["last_status"] == "ok"
    assert doc["dead_letters"] == {"mirror": 1} and doc["last_mirror_run"]["status"] == "ok"


def test_second_sync_is_idle(config_file: Path, sandbox_org: SandboxOrg) -> None:
    cli("sync", "--config", str(config_file))
    sandbox_org.reset_counters()
    code, out = cli("sync", "--config", str(config_file), "--json")
    assert code == 0, out
    doc = org_doc(out)
    assert all(o["idle"] for o in doc["objects"])
    assert sandbox_org.api_calls <= 2


def test_sync_of_some_objects_with_dry_run(config_file: Path) -> None:
    code, out = cli("sync", "--config", str(config_file), "--objects", "ppc,ppp", "--dry-run", "--json")
    assert code == 0, out
    doc = org_doc(out)
    assert [o["object"] for o in doc["objects"]] == ["SfdcPartnerTermSetProduct", "SfdcPartnerProvisionProduct"]
    code, out = cli("status", "--config", str(config_file), "--json")
    rows = {o["object"]: o for o in org_doc(out)["objects"]}
    assert rows["SfdcPartnerProvisionProduct"]["rows"] == 0  # a dry run writes nothing


EXIT_STOPPED = 4  # README: stopped early (API budget / REQUEST_LIMIT_EXCEEDED); the next run resumes


def test_api_limit_stops_the_sync_cleanly(config_file: Path, sandbox_org: SandboxOrg) -> None:
    sandbox_org.set_limits(max=100, used=100)
    code, out = cli("sync", "--config", str(config_file))
    assert code == EXIT_STOPPED, out  # stopped, not failed (1), and not done (0): the next cycle resumes
    assert "stopped" in out and "REQUEST_LIMIT_EXCEEDED" in out


@pytest.mark.parametrize(("command", "used"), [
    (("sync", "--full"), 14_990),  # past the 80 % budget: the guard stops after the first call
    (("run-job", "mirror"), 15_000),  # an idle check is one call: Salesforce refuses it
    (("writeback",), 15_000),  # one call to make: Salesforce answers REQUEST_LIMIT_EXCEEDED
    (("offers", "push"), 15_000),
    (("run-job", "writeback"), 15_000),
    (("replay", "--all"), 15_000),  # the malformed item is fetched again by Id
])
def test_every_command_that_can_stop_early_says_so_in_its_exit_code(
        command: tuple[str, ...], used: int, config_file: Path, sandbox_org: SandboxOrg) -> None:
    """Issue 12.5: at 14,990 of 15,000 daily calls a run stops cleanly (exit 0 before), so
    cron and CI callers could not tell that nothing was done."""
    assert cli("sync", "--config", str(config_file))[0] == 0  # the demo's malformed item: a write-back to do
    code, out = cli("offer", "create", "--config", str(config_file), "--customer", "Wayne Enterprises",
                    "--customer-org-id", "00D5g0000012345ABC", "--start", str(TODAY + timedelta(days=30)),
                    "--valid-until", str(TODAY + timedelta(days=10)), "--recipient", "buyer@wayne.example.com",
                    "--item", "Core App:10:50.00", "--key", "wayne")
    assert code == 0, out
    sandbox_org.set_limits(max=15_000, used=used)

    code, out = cli(*command, "--config", str(config_file))

    assert code == EXIT_STOPPED, out
    assert "stopped" in out
    sandbox_org.set_limits(used=0)  # the rolling 24 h window frees up: the same command completes
    code, out = cli(*command, "--config", str(config_file))
    # (replay's letter is still bad in the org, so it is "still failing" once it could be fetched)
    assert code == (1 if command[0] == "replay" else 0), out


def test_offer_create_then_push(config_file: Path, sandbox_org: SandboxOrg, tmp_path: Path) -> None:
    cli("sync", "--config", str(config_file))
    code, out = cli("offer", "create", "--config", str(config_file), "--customer", "Wayne Enterprises",
                    "--customer-org-id", "00D5g0000012345ABC", "--start", str(TODAY + timedelta(days=30)),
                    "--valid-until", str(TODAY + timedelta(days=10)), "--recipient", "buyer@wayne.example.com",
                    "--item", "Core App:10:50.00", "--item", "Premium Add-On:1:200.00", "--key", "wayne", "--push")
    assert code == 0, out
    assert (tmp_path / "offers" / "wayne.toml").exists()
    [offer] = [o for o in sandbox_org.records("SfdcPartnerOffer") if o["CustomerName"] == "Wayne Enterprises"]
    assert offer["Status"] == "Draft"
    code, out = cli("offers", "push", "--config", str(config_file))
    assert code == 0 and "unchanged" in out


def test_offer_create_refuses_an_invalid_offer(config_file: Path, tmp_path: Path) -> None:
    cli("sync", "--config", str(config_file))
    code, out = cli("offer", "create", "--config", str(config_file), "--customer", "Wayne", "--customer-org-id",
                    "00D5g0000012345ABC", "--start", str(TODAY + timedelta(days=3)), "--valid-until",
                    str(TODAY - timedelta(days=1)), "--recipient", "buyer@wayne.example.com", "--item", "Gizmo:1:5")
    assert code == 1
    assert "valid_until: must be in the future" in out and 'unknown PPP "Gizmo"' in out
    assert not (tmp_path / "offers").exists() or not any((tmp_path / "offers").iterdir())


def test_sandbox_serve_runs_standalone_until_sigterm() -> None:
    exe = Path(sys.executable).parent / "gtm-connector"
    proc = subprocess.Popen([str(exe), "sandbox", "serve", "--json", "--data", "none"], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert set(info) >= {"instance_url", "login_url", "ca_file", "client_id", "client_secret", "username",
                             "password", "api_version"}
        session = requests.Session()
        session.trust_env = False
        token = session.post(info["login_url"] + "/services/oauth2/token", verify=info["ca_file"], data={
            "grant_type": "password", "client_id": info["client_id"], "client_secret": info["client_secret"],
            "username": info["username"], "password": info["password"]})
        assert token.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
