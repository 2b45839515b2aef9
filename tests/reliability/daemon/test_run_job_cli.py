"""`gtm-connector run-job`: one run now, through the same run_job as the daemon."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connector.adapters.store import SqlUnitOfWork, make_engine, session_factory
from connector.entrypoints.cli import app
from gtm_sandbox.org import SandboxOrg
from tests.fixtures.daemon import new_org_id, write_configs


def test_run_job_mirrors_the_org_once_and_records_the_run(tmp_path: Path, sandbox_org: SandboxOrg) -> None:
    if importlib.util.find_spec("connector.services.mirror") is None:
        pytest.skip("connector.services.mirror is not in this build yet")
    config_dir = write_configs(
        tmp_path / "config", {"acme": new_org_id()}, data_dir=tmp_path / "data",
        salesforce={"acme": {"salesforce": {"login_url": sandbox_org.login_url, "ca_bundle": str(sandbox_org.ca_file)},
                             "salesforce.auth": {"kind": "client_credentials", "client_id": sandbox_org.client_id,
                                                 "client_secret": {"env": "ACME_SF_SECRET"}}}},
    )
    env = {"ACME_SF_SECRET": sandbox_org.client_secret, "ACME_STRIPE_KEY": "sk_test_unused"}
    runner = CliRunner()

    result = runner.invoke(app, ["run-job", "mirror", "--org", "acme", "--config-dir", str(config_dir), "--json",
                                 "--instance-id", "ops-laptop"], env=env)

    assert result.exit_code == 0, result.output
    (outcome,) = json.loads(result.stdout)["orgs"]
    assert outcome["org"] == "acme" and outcome["status"] == "ok"
    assert outcome["counts"]["order"] == len(sandbox_org.records("SfdcPartnerOrder"))
    assert outcome["api_calls"] == sandbox_org.api_calls
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'acme.sqlite3'}")
    try:
        with SqlUnitOfWork(session_factory(engine)) as uow:
            [run] = uow.job_runs.list()
    finally:
        engine.dispose()
    assert (run.job, run.status, run.instance, run.run_id) == ("mirror", "ok", "ops-laptop", outcome["run_id"])


def test_run_job_refuses_an_unknown_job(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run-job", "payroll", "--config-dir", str(tmp_path)])
    assert result.exit_code == 2 and "unknown job 'payroll'" in result.output
