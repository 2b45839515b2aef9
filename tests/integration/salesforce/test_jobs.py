"""The mirror and offers-push jobs as the daemon runs them: bootstrap wires the adapter from
the config, run_job takes the org lock, records the run and translates outcomes."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from connector.adapters.salesforce import build_org_gateway
from connector.bootstrap import bootstrap
from connector.jobs import run_job
from gtm_sandbox.org import SandboxOrg
from tests.fixtures.org import sandbox_config


def test_mirror_job_runs_then_idles(sandbox_org: SandboxOrg, database_url: str, tmp_path: Path) -> None:
    runtime = bootstrap(sandbox_config(sandbox_org, database_url, data_dir=tmp_path))
    try:
        first = run_job(runtime, "mirror", instance_id="test")
        assert first.status == "ok" and first.counts["order"] == 3 and first.counts["quarantined"] == 1
        second = run_job(runtime, "mirror", instance_id="test")
        assert second.status == "ok" and second.counts["written"] == 0
        assert second.api_calls is not None and second.api_calls <= 2
        with runtime.uow() as uow:
            runs = uow.job_runs.list(runtime.org_id, job="mirror")
        assert [r.status for r in runs] == ["ok", "ok"]
    finally:
        runtime.close()


def test_api_limit_stops_the_mirror_job_until_the_org_has_requests_again(
    sandbox_org: SandboxOrg, database_url: str, tmp_path: Path
) -> None:
    config = sandbox_config(sandbox_org, database_url, data_dir=tmp_path)
    gateway = build_org_gateway(config)
    # The blocked run below must come within the recheck interval of the usage the first run
    # read: 0.5 s was not enough on a loaded machine (over 0.69 s between them once: the blocked
    # run asked the org and went through).
    recheck_s = 3.0
    gateway.settings = replace(gateway.settings, budget_recheck_seconds=recheck_s)
    runtime = bootstrap(config, salesforce=gateway)
    try:
        sandbox_org.set_limits(max=100, used=100)
        outcome = run_job(runtime, "mirror", instance_id="test")
        assert outcome.status == "stopped" and "REQUEST_LIMIT_EXCEEDED" in (outcome.error or "")
        sandbox_org.set_limits(used=0)  # the rolling 24 h window frees up
        sandbox_org.reset_counters()
        blocked = run_job(runtime, "mirror", instance_id="test")
        assert blocked.status == "stopped" and "budget" in (blocked.error or "")
        assert sandbox_org.api_calls == 0  # the guard refused without asking the org
        time.sleep(recheck_s + 0.1)
        assert run_job(runtime, "mirror", instance_id="test").status == "ok"  # one call re-read the usage
    finally:
        runtime.close()


def test_offers_push_job_without_drafts_does_nothing(
        sandbox_org: SandboxOrg, database_url: str, tmp_path: Path) -> None:
    runtime = bootstrap(sandbox_config(sandbox_org, database_url, data_dir=tmp_path,
                                       offers={"drafts_dir": str(tmp_path / "none")}))
    try:
        outcome = run_job(runtime, "offers_push", instance_id="test")
        assert outcome.status == "ok" and dict(outcome.counts) == {}
        assert sandbox_org.api_calls == 0
    finally:
        runtime.close()
