"""The one way a job runs — for the daemon, the CLI commands and the demo alike.

A job is a service entry function ``fn(runtime, *, log, dry_run=False[, stop]) -> counts``
named in ``JOBS`` by import path. ``run_job`` wraps one run of it:

1. takes the (org, job) advisory lock — a run held by another instance is *skipped*;
2. when the daemon passes the ``tick`` it serves, skips if any instance already started a
   run of this (org, job) in that tick (the lock alone stops overlap, not a second run
   right after the first: this is what makes several daemons run each tick once);
3. closes as *failed* any ``running`` row left by a holder that died (on PostgreSQL the
   lock is only ours if the previous holder's connection is gone);
4. records a ``job_runs`` row (running → outcome), logs one ``job.started`` and one
   ``job.finished`` line, and moves the metrics;
5. translates what the job raises: ``ApiLimitReached`` → *stopped* (the org's cycle ends
   cleanly, the next tick resumes from committed state), another ``ConnectorError`` →
   *failed* with its message, anything else → *failed* with its type name and a logged
   traceback. Nothing propagates to the caller: a job never kills the scheduler.

A job whose module or function does not exist (yet) is *skipped* as unavailable.
"""

from __future__ import annotations

import importlib
import inspect
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from connector.alerts import alert_after_run
from connector.errors import ApiLimitReached, ConnectorError
from connector.logging import bound_run, new_run_id

if TYPE_CHECKING:
    from connector.bootstrap import OrgRuntime
    from connector.metrics import DaemonMetrics

JOBS: dict[str, str] = {
    "mirror": "connector.services.mirror:run_mirror_job",
    "offers_push": "connector.services.offers_push:run_offers_push_job",
    "invoicing": "connector.services.invoicing:run_invoicing_job",
    "invoice_status": "connector.services.invoice_status:run_invoice_status_job",
    "reconcile": "connector.services.payouts:run_reconcile_job",
    "writeback": "connector.services.writeback:run_writeback_job",
}

# One vocabulary: a job is named as in JOBS (and in job_runs, metrics and [schedules]); the
# words an operator also uses for it — its command, the dead-letter source — are aliases.
JOB_ALIASES: dict[str, str] = {
    "sync": "mirror",
    "offers": "offers_push", "push": "offers_push", "offers-push": "offers_push",
    "invoice": "invoicing",
    "invoice-status": "invoice_status",
    "payouts": "reconcile", "reconciliation": "reconcile",
    "write-back": "writeback",
}
# Dead letters are filed under the job that made them, except reconcile's (``payouts``).
DEAD_LETTER_SOURCE_OF_JOB: dict[str, str] = {"reconcile": "payouts"}


class UnknownName(ValueError):
    """A job or dead-letter source name that is not in the vocabulary; says which are."""


def _known(names: Iterable[str], aliases: Mapping[str, str]) -> str:
    shown = []
    for name in names:
        words = [a for a, target in aliases.items() if target == name]
        shown.append(f"{name} ({', '.join(words)})" if words else name)
    return ", ".join(shown)


def job_name(name: str) -> str:
    """The job ``name`` means (``sync`` -> ``mirror``); UnknownName listing the valid ones."""
    word = name.strip().lower()
    for candidate in (word, word.replace("-", "_")):
        if candidate in JOBS:
            return candidate
    if word in JOB_ALIASES:
        return JOB_ALIASES[word]
    raise UnknownName(f"unknown job {name!r}; valid jobs: {_known(JOBS, JOB_ALIASES)}")


def dead_letter_source(name: str) -> str:
    """The dead-letter source ``name`` means (a source, a job or a command: ``reconcile``,
    ``sync``, ``invoice`` ...); UnknownName listing the valid ones."""
    from connector.adapters.store.tables import DEAD_LETTER_SOURCES

    word = name.strip().lower()
    if word in DEAD_LETTER_SOURCES:
        return word
    try:
        job = job_name(word)
    except UnknownName:
        job = None
    source = DEAD_LETTER_SOURCE_OF_JOB.get(job or "", job)
    if source in DEAD_LETTER_SOURCES:
        return source
    aliases = {a: DEAD_LETTER_SOURCE_OF_JOB.get(t, t) for a, t in JOB_ALIASES.items()}
    aliases.update({job: source for job, source in DEAD_LETTER_SOURCE_OF_JOB.items()})
    aliases = {a: t for a, t in aliases.items() if a not in DEAD_LETTER_SOURCES}
    raise UnknownName(f"unknown dead-letter source {name!r}; valid sources: {_known(DEAD_LETTER_SOURCES, aliases)}")


JobFn = Callable[..., Mapping[str, int]]
# A registry maps job names to import paths, or (tests, demo) directly to functions.
Registry = Mapping[str, "str | JobFn"]
Status = Literal["ok", "failed", "skipped", "stopped"]

# The count keys a job may report that feed counters (beyond the per-run totals).
INVOICES_CREATED_KEYS = ("invoices_created", "created")


def dry_run_counts(counts: Mapping[str, int], renames: Mapping[str, str]) -> dict[str, int]:
    """A dry run's counts: what the real run would have done (written, sent, quarantined …)
    under a ``would_…`` name from ``renames``; facts it found (fetched, considered,
    unchanged, discrepancies) keep theirs. So no dry run reports, in ``job_runs``, the
    metrics or a table, a write it did not make under the name of the real one."""
    return {renames.get(k, k): v for k, v in counts.items()}


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


@dataclass(frozen=True)
class Resolved:
    fn: JobFn | None
    reason: str | None = None  # why fn is None: "unavailable: ..."


def resolve_job(job: str, registry: Registry | None = None) -> Resolved:
    """The job's function, or why it is unavailable. An import error *inside* an existing
    module is not "unavailable": it is a bug, raised so the run fails loudly."""
    target = (registry if registry is not None else JOBS).get(job)
    if target is None:
        known = ", ".join(sorted(registry if registry is not None else JOBS))
        raise ValueError(f"unknown job {job!r} (known: {known})")
    if callable(target):
        return Resolved(target)
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            return Resolved(None, f"unavailable: module {module_name} is not installed")
        raise
    fn = getattr(module, attr, None)
    if fn is None:
        return Resolved(None, f"unavailable: {module_name} has no {attr}")
    return Resolved(fn)


def available_jobs(registry: Registry | None = None) -> dict[str, str | None]:
    """job -> None when runnable, else the reason it is not (for start-up logs and `status`)."""
    out: dict[str, str | None] = {}
    for job in registry if registry is not None else JOBS:
        try:
            out[job] = resolve_job(job, registry).reason
        except Exception as exc:  # a broken module: reported, the others still run
            out[job] = f"broken: {type(exc).__name__}: {exc}"
    return out


def accepts_stop(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "stop" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def run_job(
    runtime: OrgRuntime,
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


def _run_job(runtime: OrgRuntime, job: str, run_id: str, *, instance_id: str, dry_run: bool,
             stop: threading.Event | None, tick: datetime | None, registry: Registry | None,
             metrics: DaemonMetrics | None) -> JobOutcome:
    log = runtime.logger(job, run_id).bind(instance=instance_id)
    try:
        resolved = resolve_job(job, registry)
    except ValueError:
        raise  # an unknown job name is the caller's bug, not a run outcome
    except Exception as exc:
        log.error("job.unavailable", reason=f"broken: {type(exc).__name__}", exc_info=True)
        return _account(runtime, job, run_id, metrics, "failed", error=describe_failure(exc))
    if resolved.fn is None:
        log.info("job.unavailable", reason=resolved.reason)
        return JobOutcome(runtime.alias, job, "skipped", error=resolved.reason, run_id=run_id)
    try:
        return _locked_run(runtime, job, resolved.fn, run_id=run_id, log=log, instance_id=instance_id,
                           dry_run=dry_run, stop=stop, tick=tick, metrics=metrics)
    except Exception as exc:  # the store itself failed (database down, ...): still no propagation
        log.error("job.failed", error=f"{type(exc).__name__}: {exc}", stage="bookkeeping", exc_info=True)
        return _account(runtime, job, run_id, metrics, "failed", error=describe_failure(exc, store=True))


def _locked_run(runtime: OrgRuntime, job: str, fn: JobFn, *, run_id: str, log: Any, instance_id: str,
                dry_run: bool, stop: threading.Event | None, tick: datetime | None,
                metrics: DaemonMetrics | None) -> JobOutcome:
    from connector.adapters.store import advisory_lock

    with advisory_lock(runtime.engine, runtime.org_id, job) as acquired:
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
        row_id = ledger.start(job, run_id, instance_id)
        calls_before = api_calls_made(runtime)
        log.info("job.started", dry_run=dry_run, tick=tick.isoformat() if tick else None)
        started = time.monotonic()
        try:
            status, counts, error = _call(fn, runtime, log=log, dry_run=dry_run, stop=stop)
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


def _call(fn: JobFn, runtime: OrgRuntime, *, log: Any, dry_run: bool,
          stop: threading.Event | None) -> tuple[Status, dict[str, int], str | None]:
    kwargs: dict[str, Any] = {"log": log, "dry_run": dry_run}
    if stop is not None and accepts_stop(fn):
        kwargs["stop"] = stop
    try:
        counts = dict(fn(runtime, **kwargs) or {})
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


def _account(runtime: OrgRuntime, job: str, run_id: str, metrics: DaemonMetrics | None, status: Status, *,
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


def _gateway(runtime: OrgRuntime) -> Any:
    # Only a gateway the run already built: asking for API figures must not log in.
    return getattr(runtime, "_salesforce", None)


def api_calls_made(runtime: OrgRuntime) -> int | None:
    """Salesforce API calls this process made for the org so far, if the gateway counts them."""
    gateway = _gateway(runtime)
    for name in ("api_calls", "api_calls_made", "calls_made"):
        value = getattr(gateway, name, None)
        if callable(value):
            value = value()
        if isinstance(value, int):
            return value
    return None


def api_usage(runtime: OrgRuntime) -> tuple[int | None, int | None]:
    """(used, remaining) of the org's daily API limit as last reported by Salesforce
    (``Sforce-Limit-Info``), if the gateway exposes it."""
    gateway = _gateway(runtime)
    usage = getattr(gateway, "api_usage", None)
    if callable(usage):
        usage = usage()
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

    def __init__(self, runtime: OrgRuntime) -> None:
        self.runtime = runtime

    def _now(self) -> datetime:
        return self.runtime.clock().astimezone(UTC)

    def start(self, job: str, run_id: str, instance_id: str) -> Any:
        with self.runtime.uow() as uow:
            row_id = uow.job_runs.start(self.runtime.org_id, job, run_id, instance=instance_id,
                                        started_at=self._now())
            uow.commit()
        return row_id

    def finish(self, row_id: Any, status: str, counts: Mapping[str, int], error: str | None, *,
               api_calls: int | None = None, api_used: int | None = None, api_limit: int | None = None) -> None:
        with self.runtime.uow() as uow:
            uow.job_runs.finish(row_id, status, dict(counts), error, api_calls=api_calls, api_used=api_used,
                                api_limit=api_limit)
            uow.commit()

    def started_since(self, job: str, since: datetime) -> bool:
        from sqlalchemy import func, select

        from connector.adapters.store.tables import job_runs as t

        query = select(func.count()).select_from(t).where(
            t.c.org_id == self.runtime.org_id, t.c.job == job, t.c.started_at >= since, t.c.status != "skipped")
        with self.runtime.uow() as uow:
            return bool(uow.session.execute(query).scalar_one())

    def close_abandoned(self, job: str, *, by: str) -> int:
        from sqlalchemy import update

        from connector.adapters.store.tables import job_runs as t

        stmt = (update(t)
                .where(t.c.org_id == self.runtime.org_id, t.c.job == job, t.c.status == "running")
                .values(status="failed", finished_at=self._now(),
                        error=f"abandoned: its instance stopped without finishing (found by {by})"))
        with self.runtime.uow() as uow:
            n = uow.session.execute(stmt).rowcount or 0
            uow.commit()
        return n
