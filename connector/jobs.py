"""The one way a job runs — for the daemon, the CLI commands and the demo alike.

``JOBS`` is the table of jobs: a name and a ``Job``, the service entry function itself
(``fn(runtime, *, log, dry_run=False[, stop]) -> counts``) and whether it takes the
``stop`` event (checked between pages/batches). A job's service module is imported when
the job is first looked up, so a process that runs one job (``sync``: the mirror) does
not load every other service. ``run_job`` wraps one run of it:

1. takes the (org, job) lock (``runtime.job_lock``) — a run held by another instance is
   *skipped*;
2. when the daemon passes the ``tick`` it serves, skips if any instance already started a
   run of this (org, job) in that tick (the lock alone stops overlap, not a second run
   right after the first: this is what makes several daemons run each tick once);
3. closes as *failed* any ``running`` row left by a holder that died (on PostgreSQL the
   lock is only ours if the previous holder's connection is gone);
4. records a ``job_runs`` row (running → outcome; a dry run marked so), logs one ``job.started`` and one
   ``job.finished`` line, and moves the metrics;
5. translates what the job raises: ``ApiLimitReached`` → *stopped* (the org's cycle ends
   cleanly, the next tick resumes from committed state), another ``ConnectorError`` →
   *failed* with its message, anything else → *failed* with its type name and a logged
   traceback. Nothing propagates to the caller: a job never kills the scheduler.

Callers may pass their own ``registry`` (the CLI's commands, tests): a ``Job`` or a bare
function (called without ``stop``).
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from connector.alerts import alert_after_run
from connector.errors import ApiLimitReached, ConnectorError
from connector.job_names import (
    DEAD_LETTER_SOURCE_OF_JOB,
    JOB_ALIASES,
    JOB_NAMES,
    UnknownName,
    dead_letter_source,
    job_name,
)
from connector.logging import bound_run, new_run_id
from connector.services.dry_run import dry_run_counts
from connector.services.ports import OrgContext

if TYPE_CHECKING:
    from connector.metrics import DaemonMetrics

JobFn = Callable[..., Mapping[str, int]]


@dataclass(frozen=True)
class Job:
    """A job: its entry function, and whether that function takes ``stop=``."""

    fn: JobFn
    stoppable: bool = False


class _JobTable(Mapping[str, Job]):
    """Job name -> ``Job``, each built from ``"module:function"`` on first lookup."""

    def __init__(self, entries: Mapping[str, tuple[str, bool]]) -> None:
        self._entries = dict(entries)
        self._jobs: dict[str, Job] = {}

    def __getitem__(self, name: str) -> Job:
        job = self._jobs.get(name)
        if job is None:
            target, stoppable = self._entries[name]  # KeyError for an unknown name, as a dict
            module, function = target.split(":")
            job = self._jobs[name] = Job(getattr(importlib.import_module(module), function), stoppable=stoppable)
        return job

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"JOBS({', '.join(self._entries)})"


JOBS: Mapping[str, Job] = _JobTable({
    "mirror": ("connector.services.mirror:run_mirror_job", True),
    "offers_push": ("connector.services.offers_push:run_offers_push_job", False),
    "invoicing": ("connector.services.invoicing:run_invoicing_job", False),
    "invoice_status": ("connector.services.invoice_status:run_invoice_status_job", False),
    "reconcile": ("connector.services.payouts:run_reconcile_job", True),
    "writeback": ("connector.services.writeback:run_writeback_job", True),
})

# A registry maps job names to jobs; a bare function is a Job that takes no ``stop``.
Registry = Mapping[str, "Job | JobFn"]
Status = Literal["ok", "failed", "skipped", "stopped"]

# The count keys a job may report that feed counters (beyond the per-run totals).
INVOICES_CREATED_KEYS = ("invoices_created", "created")


def job_of(job: str, registry: Registry | None = None) -> Job:
    """The registry's (default ``JOBS``) entry for ``job``; ValueError for an unknown name
    (the caller's bug, not a run outcome)."""
    table = registry if registry is not None else JOBS
    entry = table.get(job)
    if entry is None:
        raise ValueError(f"unknown job {job!r} (known: {', '.join(sorted(table))})")
    return entry if isinstance(entry, Job) else Job(entry)


@dataclass(frozen=True)
class JobOutcome:
    org: str
    job: str
    status: Status
    counts: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None
    duration_s: float = 0.0
    run_id: str = ""
    api_calls: int | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "skipped", "stopped")


def run_job(
    runtime: OrgContext,
    job: str,
    *,
    instance_id: str,
    dry_run: bool = False,
    stop: threading.Event | None = None,
    tick: datetime | None = None,
    registry: Registry | None = None,
    metrics: DaemonMetrics | None = None,
) -> JobOutcome:
    """Run ``job`` once for the runtime's org. Never raises (see the module docstring).
    Every log line of the run, from any module, carries the org alias, job and run id."""
    run_id = new_run_id()
    with bound_run(runtime.alias, job, run_id):
        outcome = _run_job(runtime, job, run_id, instance_id=instance_id, dry_run=dry_run, stop=stop, tick=tick,
                           registry=registry, metrics=metrics)
        alert_after_run(runtime, dry_run=dry_run, status=outcome.status)  # after its transactions; never raises
    for listener in _listeners.get():
        listener(outcome)
    return outcome


# Who wants to hear of every outcome in this context: a command's exit code depends on how
# each run ended (stopped early, failed), however deep in the command the run was started.
_listeners: ContextVar[tuple[Callable[[JobOutcome], None], ...]] = ContextVar("job_outcome_listeners", default=())


@contextmanager
def observe_outcomes(listener: Callable[[JobOutcome], None]) -> Iterator[None]:
    """Call ``listener`` with the outcome of every ``run_job`` inside the block."""
    previous = _listeners.get()
    _listeners.set((*previous, listener))
    try:
        yield
    finally:
        _listeners.set(previous)


def _run_job(runtime: OrgContext, job: str, run_id: str, *, instance_id: str, dry_run: bool,
             stop: threading.Event | None, tick: datetime | None, registry: Registry | None,
             metrics: DaemonMetrics | None) -> JobOutcome:
    log = runtime.logger(job, run_id).bind(instance=instance_id)
    entry = job_of(job, registry)
    try:
        return _locked_run(runtime, job, entry, run_id=run_id, log=log, instance_id=instance_id,
                           dry_run=dry_run, stop=stop, tick=tick, metrics=metrics)
    except Exception as exc:  # the store itself failed (database down, ...): still no propagation
        log.error("job.failed", error=f"{type(exc).__name__}: {exc}", stage="bookkeeping", exc_info=True)
        return _account(runtime, job, run_id, metrics, "failed", error=describe_failure(exc, store=True))


def _locked_run(runtime: OrgContext, job: str, entry: Job, *, run_id: str, log: Any, instance_id: str,
                dry_run: bool, stop: threading.Event | None, tick: datetime | None,
                metrics: DaemonMetrics | None) -> JobOutcome:
    with runtime.job_lock(job) as acquired:
        if not acquired:
            log.info("job.skipped", reason="lock_held")
            return _account(runtime, job, run_id, metrics, "skipped", error="locked by another instance")
        ledger = RunLedger(runtime)
        if tick is not None and ledger.started_since(job, tick):
            log.info("job.skipped", reason="tick_served", tick=tick.isoformat())
            return _account(runtime, job, run_id, metrics, "skipped", error="already ran this tick")
        # The lock is real on both backends (advisory lock, lock file): any 'running' row of
        # this (org, job) is a dead holder's, e.g. a killed CLI run. Close it now.
        abandoned = ledger.close_abandoned(job, by=instance_id)
        if abandoned:
            log.info("job.abandoned_runs_closed", count=abandoned)
        row_id = ledger.start(job, run_id, instance_id, dry_run=dry_run)
        calls_before = api_calls_made(runtime)
        log.info("job.started", dry_run=dry_run, tick=tick.isoformat() if tick else None)
        started = time.monotonic()
        try:
            status, counts, error = _call(entry, runtime, log=log, dry_run=dry_run, stop=stop)
        except BaseException as exc:  # a hard stop (second Ctrl-C, SystemExit): close the row, then go
            _close_interrupted(ledger, row_id, exc, log)
            raise
        duration = round(time.monotonic() - started, 3)
        calls = _delta(calls_before, api_calls_made(runtime))
        used, remaining = api_usage(runtime)
        ledger.finish(row_id, status, counts, error, api_calls=calls, api_used=used,
                      api_limit=used + remaining if used is not None and remaining is not None else None)
    fields: dict[str, Any] = {"status": status, "counts": dict(counts), "duration_s": duration, "api_calls": calls}
    if used is not None:
        fields.update(api_used=used, api_remaining=remaining)
    if error:
        fields["error"] = error
    (log.warning if status == "failed" else log.info)("job.finished", **fields)
    if metrics is not None:
        metrics.set_api_usage(runtime.alias, used, remaining)
    return _account(runtime, job, run_id, metrics, status, counts=counts, error=error, duration=duration, calls=calls)


def _close_interrupted(ledger: RunLedger, row_id: int, exc: BaseException, log: Any) -> None:
    """Best effort: record the run as stopped so it doesn't read 'running' until the next
    start. What the job committed so far stays committed; the rest resumes next time."""
    try:
        ledger.finish(row_id, "stopped", {}, "interrupted; resumes at the next run")
        log.warning("job.interrupted", reason=type(exc).__name__)
    except Exception:  # the process is going down anyway; the next start closes the row
        pass


def _call(entry: Job, runtime: OrgContext, *, log: Any, dry_run: bool,
          stop: threading.Event | None) -> tuple[Status, dict[str, int], str | None]:
    kwargs: dict[str, Any] = {"log": log, "dry_run": dry_run}
    if stop is not None and entry.stoppable:
        kwargs["stop"] = stop
    try:
        counts = dict(entry.fn(runtime, **kwargs) or {})
    except ApiLimitReached as exc:
        log.warning("job.stopped", reason="api_limit", error=str(exc))
        return "stopped", {}, f"Salesforce API limit reached: {exc}"
    except ConnectorError as exc:
        return "failed", {}, describe_failure(exc)
    except Exception as exc:
        log.error("job.crashed", error=type(exc).__name__, exc_info=True)
        return "failed", {}, "unexpected error (a bug; the log has the traceback)"
    if stop is not None and stop.is_set():
        return "stopped", counts, "shutdown requested; the next run resumes from what was committed"
    return "ok", counts, None


def describe_failure(exc: BaseException, *, store: bool = False) -> str:
    """What went wrong, in words for the operator: the connector's own message (no
    exception class names), a database error described, anything else as a bug.
    ``store``: the run's own bookkeeping (the local database) failed."""
    if isinstance(exc, ConnectorError):
        return str(exc) or "failed"
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError):
        from connector.adapters.store.engine import describe_db_error

        return f"database error: {describe_db_error(exc)}"
    if store or isinstance(exc, OSError):
        return f"local database unusable: {exc}"
    return "unexpected error (a bug; the log has the traceback)"


def _account(runtime: OrgContext, job: str, run_id: str, metrics: DaemonMetrics | None, status: Status, *,
             counts: Mapping[str, int] | None = None, error: str | None = None, duration: float = 0.0,
             calls: int | None = None) -> JobOutcome:
    counts = dict(counts or {})
    if metrics is not None:
        mirrored = {k: v for k, v in counts.items() if k in runtime.mapping.objects} if job == "mirror" else None
        created = next((counts[k] for k in INVOICES_CREATED_KEYS if k in counts), 0) if job == "invoicing" else 0
        adopted = counts.get("invoices_adopted", 0) if job == "invoicing" else 0
        metrics.observe_run(runtime.alias, job, status, duration, counts, mirrored=mirrored, invoices_created=created,
                            invoices_adopted=adopted)
    return JobOutcome(runtime.alias, job, status, counts, error, duration, run_id, calls)


def _delta(before: int | None, after: int | None) -> int | None:
    if after is None:
        return None
    return after - (before or 0)


def api_calls_made(runtime: OrgContext) -> int | None:
    """Salesforce API calls this process made for the org so far (None before the run
    built its gateway: asking for API figures must not log in)."""
    gateway = runtime.built_salesforce()
    calls = gateway.api_calls if gateway is not None else None
    return calls if isinstance(calls, int) else None


def api_usage(runtime: OrgContext) -> tuple[int | None, int | None]:
    """(used, remaining) of the org's daily API limit as last reported by Salesforce
    (``Sforce-Limit-Info``), if the run built the gateway."""
    gateway = runtime.built_salesforce()
    usage = gateway.api_usage if gateway is not None else None
    if usage is None:
        return None, None
    used = getattr(usage, "used", None)
    limit = getattr(usage, "limit", None)
    remaining = getattr(usage, "remaining", None)
    if remaining is None and used is not None and limit is not None:
        remaining = limit - used
    return used, remaining


class RunLedger:
    """The job_runs rows of one org, one short transaction per call."""

    def __init__(self, runtime: OrgContext) -> None:
        self.runtime = runtime

    def _now(self) -> datetime:
        return self.runtime.clock().astimezone(UTC)

    def start(self, job: str, run_id: str, instance_id: str, *, dry_run: bool = False) -> Any:
        with self.runtime.uow() as uow:
            row_id = uow.job_runs.start(self.runtime.org_id, job, run_id, instance=instance_id,
                                        started_at=self._now(), dry_run=dry_run)
            uow.commit()
        return row_id

    def finish(self, row_id: Any, status: str, counts: Mapping[str, int], error: str | None, *,
               api_calls: int | None = None, api_used: int | None = None, api_limit: int | None = None) -> None:
        with self.runtime.uow() as uow:
            uow.job_runs.finish(row_id, status, dict(counts), error, api_calls=api_calls, api_used=api_used,
                                api_limit=api_limit)
            uow.commit()

    def started_since(self, job: str, since: datetime) -> bool:
        with self.runtime.uow() as uow:
            return uow.job_runs.started_since(self.runtime.org_id, job, since)

    def close_abandoned(self, job: str, *, by: str) -> int:
        with self.runtime.uow() as uow:
            n = uow.job_runs.close_abandoned(
                self.runtime.org_id, job, finished_at=self._now(),
                error=f"abandoned: its instance stopped without finishing (found by {by})")
            uow.commit()
        return n


def runner(instance_id: str) -> Callable[[OrgContext, str], JobOutcome]:
    """``run_job`` with the instance fixed: what replay (``services.replay``) is handed to
    run a job again the way the CLI does."""

    def run(runtime: OrgContext, job: str) -> JobOutcome:
        return run_job(runtime, job, instance_id=instance_id)

    return run


__all__ = [
    "DEAD_LETTER_SOURCE_OF_JOB", "JOBS", "JOB_ALIASES", "JOB_NAMES", "Job", "JobFn", "JobOutcome", "Registry",
    "RunLedger", "UnknownName", "dead_letter_source", "describe_failure", "dry_run_counts", "job_name", "job_of",
    "observe_outcomes", "run_job", "runner",
]
