"""run_job: the one way a job runs (daemon, CLI, demo), on a real store (SQLite and PostgreSQL).

Job functions here are small fakes registered through ``registry=``; what is asserted is
what an operator sees: the job_runs rows, the two log lines, the outcome and the metrics.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from connector.bootstrap import OrgRuntime
from connector.errors import ApiLimitReached, AuthError
from connector.jobs import JOB_NAMES, JOBS, Job, RunLedger, job_of, run_job
from connector.metrics import DaemonMetrics


def mirror_three_orders(runtime: OrgRuntime, *, log: Any, dry_run: bool = False) -> Mapping[str, int]:
    log.info("page.committed", records=3)
    return {"order": 3, "order_item": 5, "deleted": 1}


def refused_by_salesforce(runtime: OrgRuntime, *, log: Any, dry_run: bool = False) -> Mapping[str, int]:
    raise AuthError("acme: invalid_client (client credentials refused)")


def daily_limit_reached(runtime: OrgRuntime, *, log: Any, dry_run: bool = False) -> Mapping[str, int]:
    raise ApiLimitReached("acme: 80% of the daily API limit used (80000/100000)")


def bug_in_service(runtime: OrgRuntime, *, log: Any, dry_run: bool = False) -> Mapping[str, int]:
    return {"x": 1 // 0}


def rows(runtime: OrgRuntime, job: str | None = None) -> list[Any]:
    with runtime.uow() as uow:
        return list(reversed(uow.job_runs.list(runtime.org_id, job)))


def run(runtime: OrgRuntime, job: str, fn: Any, **kwargs: Any) -> Any:
    return run_job(runtime, job, instance_id="test-1", registry={job: fn}, **kwargs)


def test_a_successful_run_is_recorded_logged_and_counted(org_runtime: OrgRuntime) -> None:
    metrics = DaemonMetrics()
    with capture_logs() as logs:
        outcome = run(org_runtime, "mirror", mirror_three_orders, metrics=metrics)

    assert outcome.status == "ok" and outcome.counts == {"order": 3, "order_item": 5, "deleted": 1}
    [row] = rows(org_runtime)
    assert (row.job, row.status, row.instance, row.run_id) == ("mirror", "ok", "test-1", outcome.run_id)
    assert row.counts == {"order": 3, "order_item": 5, "deleted": 1} and row.finished_at is not None
    events = [e for e in logs if e["event"].startswith("job.")]
    assert [e["event"] for e in events] == ["job.started", "job.finished"]
    finished = events[1]
    assert finished["org"] == "acme" and finished["run_id"] == outcome.run_id
    assert finished["counts"] == outcome.counts and finished["duration_s"] >= 0
    assert "api_calls" in finished
    # The job's own lines carry the same context.
    assert any(e["event"] == "page.committed" and e["run_id"] == outcome.run_id for e in logs)
    sample = metrics.registry.get_sample_value
    assert sample("gtm_connector_job_runs_total", {"org": "acme", "task": "mirror", "status": "ok"}) == 1
    assert sample("gtm_connector_records_mirrored_total", {"org": "acme", "object": "order"}) == 3
    assert sample("gtm_connector_records_mirrored_total", {"org": "acme", "object": "order_item"}) == 5
    assert sample("gtm_connector_job_duration_seconds_count", {"org": "acme", "task": "mirror"}) == 1


def test_refused_credentials_fail_the_run_with_the_message(org_runtime: OrgRuntime) -> None:
    metrics = DaemonMetrics()
    outcome = run(org_runtime, "mirror", refused_by_salesforce, metrics=metrics)

    assert outcome.status == "failed"
    assert outcome.error == "acme: invalid_client (client credentials refused)"  # no exception class name
    [row] = rows(org_runtime)
    assert row.status == "failed" and row.error == outcome.error
    assert metrics.registry.get_sample_value("gtm_connector_job_failures_total", {"org": "acme", "task": "mirror"}) == 1


def test_api_limit_stops_the_cycle_cleanly(org_runtime: OrgRuntime) -> None:
    with capture_logs() as logs:
        outcome = run(org_runtime, "mirror", daily_limit_reached)

    assert outcome.status == "stopped" and "80% of the daily API limit" in (outcome.error or "")
    [row] = rows(org_runtime)
    assert row.status == "stopped" and row.error.startswith("Salesforce API limit reached: ")
    assert [e["status"] for e in logs if e["event"] == "job.finished"] == ["stopped"]


def test_an_unexpected_exception_is_contained_and_logged_with_traceback(org_runtime: OrgRuntime) -> None:
    with capture_logs() as logs:
        outcome = run(org_runtime, "invoicing", bug_in_service)

    assert outcome.status == "failed" and outcome.error is not None
    assert outcome.error == "unexpected error (a bug; the log has the traceback)"  # the class is in the log
    crashed = [e for e in logs if e["event"] == "job.crashed"]
    assert crashed and crashed[0]["exc_info"] is True
    assert rows(org_runtime, "invoicing")[0].status == "failed"


def test_the_job_table_holds_the_service_functions_themselves() -> None:
    from connector.services.mirror import run_mirror_job
    from connector.services.payouts import run_reconcile_job

    assert list(JOBS) == ["mirror", "offers_push", "invoicing", "invoice_status", "reconcile", "writeback"]
    assert tuple(JOBS) == JOB_NAMES  # the vocabulary the CLI's help and [schedules] use
    assert JOBS["reconcile"] == Job(run_reconcile_job, stoppable=True)
    assert JOBS["mirror"].fn is run_mirror_job
    assert all(isinstance(job, Job) and callable(job.fn) for job in JOBS.values())
    assert job_of("mirror", {"mirror": mirror_three_orders}) == Job(mirror_three_orders)  # a bare function
    with pytest.raises(ValueError, match="unknown job 'payroll'"):
        job_of("payroll")


def test_every_job_function_takes_what_run_job_passes() -> None:
    """The table names its functions as strings (imported on first use), so mypy no longer
    checks them against the call in ``jobs._call``: this does. Each takes the runtime, then
    ``log=`` and ``dry_run=`` by keyword, and ``stop=`` exactly when the table says so; any
    other parameter has a default."""
    for name, job in JOBS.items():
        params = inspect.signature(job.fn).parameters
        first, *rest = params.values()
        assert first.kind in (first.POSITIONAL_ONLY, first.POSITIONAL_OR_KEYWORD), name
        keywords = {p.name: p for p in rest}
        assert {"log", "dry_run"} <= set(keywords), name
        assert keywords["dry_run"].default is False, name
        assert ("stop" in keywords) is job.stoppable, name
        for param in rest:
            assert param.kind is param.KEYWORD_ONLY or param.default is not param.empty, (name, param.name)
            assert param.name in ("log", "dry_run", "stop") or param.default is not param.empty, (name, param.name)


def test_a_tick_already_served_by_any_instance_is_skipped(org_runtime: OrgRuntime) -> None:
    calls: list[int] = []

    def counted(runtime: OrgRuntime, *, log: Any, dry_run: bool = False) -> Mapping[str, int]:
        calls.append(1)
        return {"order": 0}

    tick = datetime.now(UTC) - timedelta(seconds=1)
    first = run(org_runtime, "mirror", counted, tick=tick)
    second = run(org_runtime, "mirror", counted, tick=tick)
    next_tick = run(org_runtime, "mirror", counted, tick=datetime.now(UTC))
    manual = run(org_runtime, "mirror", counted)  # run-job from the CLI: no tick, always runs

    assert [first.status, second.status, next_tick.status, manual.status] == ["ok", "skipped", "ok", "ok"]
    assert second.error == "already ran this tick"
    assert len(calls) == 3 and len(rows(org_runtime)) == 3


def test_a_dry_run_does_not_serve_the_tick(org_runtime: OrgRuntime) -> None:
    """A ``run-job --dry-run`` during a tick did none of the job's work: the daemon's run of
    that tick still happens."""
    tick = datetime.now(UTC) - timedelta(seconds=1)
    assert run(org_runtime, "mirror", mirror_three_orders, dry_run=True).status == "ok"
    served = run(org_runtime, "mirror", mirror_three_orders, tick=tick)
    assert served.status == "ok"
    assert [r.dry_run for r in rows(org_runtime)] == [True, False]


def test_stop_event_reaches_only_jobs_that_say_they_take_it(org_runtime: OrgRuntime) -> None:
    seen: dict[str, Any] = {}
    stop = threading.Event()

    def stoppable(runtime: OrgRuntime, *, log: Any, dry_run: bool = False,
                  stop: threading.Event | None = None) -> Mapping[str, int]:
        seen["stop"] = stop
        assert stop is not None
        stop.set()  # as if SIGTERM arrived during the first page
        return {"order": 2000}

    def plain(runtime: OrgRuntime, *, log: Any, dry_run: bool = False) -> Mapping[str, int]:
        return {"order": 1}

    interrupted = run(org_runtime, "mirror", Job(stoppable, stoppable=True), stop=stop)
    assert seen["stop"] is stop
    assert interrupted.status == "stopped" and interrupted.counts == {"order": 2000}
    assert run(org_runtime, "mirror", plain, stop=threading.Event()).status == "ok"


def test_dry_run_is_passed_to_the_job(org_runtime: OrgRuntime) -> None:
    seen: list[bool] = []

    def invoicing(runtime: OrgRuntime, *, log: Any, dry_run: bool = False) -> Mapping[str, int]:
        seen.append(dry_run)
        return {"invoices_created": 0 if dry_run else 2}

    metrics = DaemonMetrics()
    run(org_runtime, "invoicing", invoicing, dry_run=True, metrics=metrics)
    run(org_runtime, "invoicing", invoicing, metrics=metrics)
    assert seen == [True, False]
    assert metrics.registry.get_sample_value("gtm_connector_invoices_created_total", {"org": "acme"}) == 2


@pytest.mark.postgres
def test_run_held_by_another_instance_is_skipped_not_failed(pg_url: str, tmp_path: Any) -> None:
    from connector.adapters.store import advisory_lock
    from connector.bootstrap import bootstrap
    from tests.fixtures.daemon import new_org_id, org_config

    org_id = new_org_id()
    runtime = bootstrap(org_config("acme", org_id, pg_url, tmp_path))
    other = bootstrap(org_config("acme", org_id, pg_url, tmp_path))  # another daemon's connection pool
    try:
        metrics = DaemonMetrics()
        with advisory_lock(other.engine, org_id, "mirror") as held:
            assert held
            outcome = run(runtime, "mirror", mirror_three_orders, metrics=metrics)
        assert outcome.status == "skipped" and outcome.error == "locked by another instance"
        assert rows(runtime) == []
        assert metrics.registry.get_sample_value("gtm_connector_job_runs_total",
                                                 {"org": "acme", "task": "mirror", "status": "skipped"}) == 1
        assert run(runtime, "mirror", mirror_three_orders).status == "ok"
    finally:
        runtime.close()
        other.close()


@pytest.mark.postgres
def test_a_dead_holders_running_row_is_closed_by_the_next_holder(pg_url: str, tmp_path: Any) -> None:
    from connector.bootstrap import bootstrap
    from tests.fixtures.daemon import new_org_id, org_config

    runtime = bootstrap(org_config("acme", new_org_id(), pg_url, tmp_path))
    try:
        RunLedger(runtime).start("mirror", "deadbeef0001", "killed-instance")  # SIGKILLed mid-run
        assert run(runtime, "mirror", mirror_three_orders).status == "ok"
        dead, new = rows(runtime)
        assert dead.status == "failed" and dead.error.startswith("abandoned")
        assert new.status == "ok"
    finally:
        runtime.close()


def test_store_failure_is_an_outcome_not_an_exception(org_runtime: OrgRuntime) -> None:
    org_runtime.engine.dispose()
    broken = OrgRuntime(config=org_runtime.config, mapping=org_runtime.mapping, engine=org_runtime.engine,
                        uow=_raising_uow)
    with capture_logs() as logs:
        outcome = run(broken, "mirror", mirror_three_orders)
    assert outcome.status == "failed" and "database is gone" in (outcome.error or "")
    assert any(e["event"] == "job.failed" and e.get("stage") == "bookkeeping" for e in logs)


def _raising_uow() -> Any:
    raise ConnectionError("database is gone")


def test_a_hard_stop_propagates_and_the_run_is_not_left_running(org_runtime: OrgRuntime) -> None:
    def second_ctrl_c(runtime: OrgRuntime, *, log: Any, dry_run: bool = False) -> Mapping[str, int]:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(org_runtime, "mirror", second_ctrl_c)
    [row] = rows(org_runtime)
    assert row.status == "stopped" and row.finished_at is not None
    assert row.error == "interrupted; resumes at the next run"
