"""Issue 15, "also": a killed run's ``running`` row is closed by the next run of that job
(SQLite included), and two processes never run one (org, job) at once on SQLite either."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from connector.bootstrap import OrgRuntime, bootstrap
from connector.jobs import RunLedger, run_job
from tests.fixtures.daemon import org_config


def rows(runtime: OrgRuntime, job: str) -> list[Any]:
    with runtime.uow() as uow:
        return list(reversed(uow.job_runs.list(runtime.org_id, job)))


def quick(runtime: OrgRuntime, *, log: Any, dry_run: bool = False) -> Mapping[str, int]:
    return {"done": 1}


def test_a_killed_runs_row_is_closed_by_the_next_run_of_that_job(org_runtime: OrgRuntime) -> None:
    ledger = RunLedger(org_runtime)
    ledger.start("invoicing", "killed-1", "cli-123")  # a CLI run SIGKILLed mid-way leaves this
    ledger.start("mirror", "killed-2", "cli-124")

    outcome = run_job(org_runtime, "invoicing", instance_id="cli-125", registry={"invoicing": quick})

    assert outcome.status == "ok"
    statuses = [(r.run_id, r.status) for r in rows(org_runtime, "invoicing")]
    assert statuses == [("killed-1", "failed"), (outcome.run_id, "ok")]
    assert "abandoned" in (rows(org_runtime, "invoicing")[0].error or "")
    assert [r.status for r in rows(org_runtime, "mirror")] == ["running"]  # another job: its own next run


def test_a_second_process_on_the_same_sqlite_file_skips_a_running_job(sqlite_url: str, tmp_path: Any) -> None:
    from tests.fixtures.daemon import new_org_id

    org_id = new_org_id()
    first = bootstrap(org_config("acme", org_id, sqlite_url, tmp_path))
    second = bootstrap(org_config("acme", org_id, sqlite_url, tmp_path))  # its own engine, as another process
    inside, release = threading.Event(), threading.Event()

    def slow(runtime: OrgRuntime, *, log: Any, dry_run: bool = False) -> Mapping[str, int]:
        inside.set()
        assert release.wait(10)
        return {"done": 1}

    try:
        results: list[Any] = []
        worker = threading.Thread(target=lambda: results.append(
            run_job(first, "invoicing", instance_id="cli-a", registry={"invoicing": slow})))
        worker.start()
        assert inside.wait(10)
        skipped = run_job(second, "invoicing", instance_id="cli-b", registry={"invoicing": quick})
        other_job = run_job(second, "mirror", instance_id="cli-b", registry={"mirror": quick})
        release.set()
        worker.join(10)

        assert skipped.status == "skipped" and skipped.error == "locked by another instance"
        assert other_job.status == "ok" and results[0].status == "ok"
        assert [r.status for r in rows(first, "invoicing")] == ["ok"]  # the running row was not closed
    finally:
        release.set()
        first.close()
        second.close()
