"""`gtm-connector sandbox control`: steering a running sandbox from a shell, as a person
rehearsing an outage would (real sandboxes, real HTTP(S), the real SDKs to observe)."""

from __future__ import annotations

import json

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceGeneralError
from typer.testing import CliRunner

from connector.entrypoints.cli import app
from gtm_sandbox.org import SandboxOrg
from gtm_sandbox.stripe import StripeSandbox


def control(*args: str):
    return CliRunner().invoke(app, ["sandbox", "control", *args])


def said(result) -> str:
    """The output as one line: typer draws usage errors in a wrapped box."""
    return " ".join(result.output.replace("│", " ").split())


def test_a_fault_set_from_the_shell_reaches_the_next_query(sandbox_org: SandboxOrg, simple_sf: Salesforce) -> None:
    url, ca = sandbox_org.instance_url, str(sandbox_org.ca_file)
    set_fault = control(url, "faults", '{"endpoint": "query", "status": 503, "times": 1}', "--ca-file", ca)
    assert set_fault.exit_code == 0, set_fault.output

    with pytest.raises(SalesforceGeneralError) as failed:
        simple_sf.query("SELECT Id FROM SfdcPartnerOrder")
    assert failed.value.status == 503
    assert simple_sf.query("SELECT Id FROM SfdcPartnerOrder")["totalSize"] > 0  # only once

    counters = control(url, "counters", "--ca-file", ca)
    assert counters.exit_code == 0 and json.loads(counters.stdout)["api_calls"] >= 2
    assert control(url, "sessions/expire", "--method", "POST", "--ca-file", ca).exit_code == 0
    assert control(url, "faults", "--method", "DELETE", "--ca-file", ca).exit_code == 0


def test_the_stripe_sandbox_answers_the_same_way(stripe_sandbox: StripeSandbox) -> None:
    before = stripe_sandbox.now()
    moved = control(stripe_sandbox.api_base, "clock/advance", '{"days": 2}')
    assert moved.exit_code == 0, moved.output
    assert json.loads(moved.stdout)["now"] >= before + 2 * 86_400


def test_mistakes_are_named_with_exit_two(sandbox_org: SandboxOrg) -> None:
    ca = str(sandbox_org.ca_file)
    not_json = control(sandbox_org.instance_url, "faults", "{endpoint: query}", "--ca-file", ca)
    assert not_json.exit_code == 2 and "not JSON" in said(not_json)
    elsewhere = control("https://example.com", "counters")
    assert elsewhere.exit_code == 2 and "a sandbox runs on 127.0.0.1 or localhost" in said(elsewhere)
    unknown = control(sandbox_org.instance_url, "nonsense", "--ca-file", ca)
    assert unknown.exit_code == 2 and "HTTP 404" in said(unknown) and "no control resource" in said(unknown)
