"""`gtm-connector daemon`: every org's jobs on a schedule, in one long-running process.

* One APScheduler 3 ``BackgroundScheduler`` job per (org, enabled job): ``max_instances=1``,
  ``coalesce=True``, the org's misfire grace and jitter. Each fire calls
  ``connector.jobs.run_job`` — the same code path as ``gtm-connector run-job``.
* Several daemons may share one PostgreSQL database: ``run_job`` takes the (org, job)
  advisory lock and skips a tick another instance already served. On SQLite a lock file
  refuses a second daemon (``locks.py``).
* Isolation: orgs run in parallel on a pool with a thread for every scheduled job, so a
  slow or failing org never delays another. Within one org, jobs take turns (they share
  the org's gateways, API budget and, on SQLite, its single writer). An org whose database
  is down at start keeps its schedule and retries at each tick.
* Shutdown: the first SIGTERM/SIGINT stops scheduling and sets the ``stop`` event the jobs
  check between pages/batches; the process exits 0 once running jobs return, or 1 if the
  grace runs out. A second signal exits at once (130). Committed cursors and the outbox
  make the next start resume where this one stopped.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from connector.bootstrap import OrgRuntime, bootstrap
from connector.config import JOBS as CONFIG_JOBS
from connector.config import OrgConfig, load_config_dir
from connector.entrypoints.daemon.http import HttpEndpoint, WsgiApp
from connector.entrypoints.daemon.locks import AlreadyRunning, InstanceLock, sqlite_file
from connector.entrypoints.daemon.schedule import JobPlan, plan_for
from connector.instance import default_instance_id
from connector.jobs import JOBS, Registry, RunLedger, available_jobs, run_job
from connector.metrics import DaemonMetrics

log = structlog.get_logger("connector.daemon")

TICK_END_MARGIN = timedelta(seconds=2)
EXIT_OK, EXIT_GRACE_EXPIRED, EXIT_CONFIG, EXIT_ALREADY_RUNNING, EXIT_KILLED = 0, 1, 2, 3, 130


@dataclass
class OrgSlot:
    config: OrgConfig
    plans: dict[str, JobPlan] = field(default_factory=dict)
    runtime: OrgRuntime | None = None
    error: str | None = None
    # Serializes this org's jobs inside the process (shared gateways and budget).
    turn: threading.Lock = field(default_factory=threading.Lock)
    boot: threading.Lock = field(default_factory=threading.Lock)

    @property
    def alias(self) -> str:
        return self.config.alias


class Daemon:
    def __init__(
        self,
        configs: list[OrgConfig],
        *,
        instance_id: str,
        bind: str = "127.0.0.1",
        port: int = 8765,
        shutdown_grace_s: float = 30,
        registry: Registry | None = None,
        bootstrapper: Callable[[OrgConfig], OrgRuntime] = bootstrap,
    ) -> None:
        self.instance_id = instance_id
        self.bind, self.port = bind, port
        self.shutdown_grace_s = shutdown_grace_s
        self.registry: Registry = registry if registry is not None else JOBS
        self.bootstrapper = bootstrapper
        self.slots = {c.alias: OrgSlot(c) for c in configs}
        self.metrics = DaemonMetrics()
        self.stop = threading.Event()
        self.scheduler: BackgroundScheduler | None = None
        self.http: HttpEndpoint | None = None
        self._locks: list[InstanceLock] = []
        self._inflight = 0
        self._inflight_cv = threading.Condition()
        self._webhook: WsgiApp | None = None
        self._dashboard: WsgiApp | None = None

    # ----------------------------------------------------------------------- start
    def start(self) -> None:
        self._lock_sqlite_files()
        try:
            for slot in self.slots.values():
                self._ensure_runtime(slot)
                if slot.runtime is not None and slot.runtime.engine.dialect.name == "sqlite":
                    self._close_abandoned(slot)
            self._plan()
            self._webhook = self._load_webhook()
            self._dashboard = self._load_dashboard()
            try:
                self.http = HttpEndpoint(self, self.bind, self.port)
            except OSError as exc:  # say which address: the operator fixes [daemon] bind/port or --port
                raise OSError(exc.errno, f"cannot listen on {self.bind}:{self.port} ({exc.strerror or exc}); "
                                         "set [daemon] port or --port") from None
            self.http.start()
            self._start_scheduler()
        except BaseException:
            self.close()
            raise
        host, port = self.http.address
        log.info("daemon.started", instance=self.instance_id, bind=host, port=port, orgs=sorted(self.slots),
                 jobs=sum(len(s.plans) for s in self.slots.values()))

    def _lock_sqlite_files(self) -> None:
        seen: set[Path] = set()
        for alias, slot in list(self.slots.items()):
            path = sqlite_file(slot.config.database_url or "")
            if path is None or path in seen:
                continue
            seen.add(path)
            lock = InstanceLock(path, self.instance_id)
            try:
                lock.acquire()
            except AlreadyRunning:
                self._release_locks()
                raise
            except OSError as exc:
                # This org's SQLite file can't be made (data_dir under a file, no permission):
                # skip the org like an invalid config file, not the whole daemon.
                if len(self.slots) == 1:
                    raise
                log.error("config.invalid", file=str(slot.config.source_file), key="database_url",
                          problem=f"cannot create {exc.filename}: {exc.strerror}", action="org skipped")
                del self.slots[alias]
                continue
            self._locks.append(lock)

    def _ensure_runtime(self, slot: OrgSlot) -> OrgRuntime | None:
        with slot.boot:
            if slot.runtime is not None:
                return slot.runtime
            try:
                with _migration_turn(slot.config.database_url or ""):
                    slot.runtime = self.bootstrapper(slot.config)
            except Exception as exc:  # database down, migration failed: this org waits, the others run
                slot.error = f"{type(exc).__name__}: {exc}"
                log.error("org.bootstrap_failed", org=slot.alias, error=slot.error)
                return None
            slot.error = None
            log.info("org.ready", org=slot.alias, org_id=slot.config.org_id)
            return slot.runtime

    def _close_abandoned(self, slot: OrgSlot) -> None:
        # On SQLite this daemon is the only one (lock file): every 'running' row is a dead run's.
        assert slot.runtime is not None
        ledger = RunLedger(slot.runtime)
        for job in self.registry:
            n = ledger.close_abandoned(job, by=self.instance_id)
            if n:
                log.warning("job.abandoned_closed", org=slot.alias, job=job, runs=n)

    def _plan(self) -> None:
        availability = available_jobs(self.registry)
        for job, reason in availability.items():
            if reason:
                log.info("job.unavailable", job=job, reason=reason)
        for slot in self.slots.values():
            grace = slot.config.daemon.misfire_grace_seconds
            for job in self.registry:
                if availability.get(job) or job not in CONFIG_JOBS:
                    continue
                plan = plan_for(slot.config.schedules, job, grace)
                if plan is None:
                    log.info("job.disabled", org=slot.alias, job=job)
                    continue
                slot.plans[job] = plan
            self.metrics.touch_org(slot.alias, list(slot.plans))

    def _start_scheduler(self) -> None:
        total = sum(len(s.plans) for s in self.slots.values())
        # A thread per scheduled job: no (org, job) ever waits for a pool slot.
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=max(total, 1))},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=UTC,
        )
        now = datetime.now(UTC)
        for slot in self.slots.values():
            jitter = max((slot.config.schedules.trigger(j).jitter_seconds for j in slot.plans), default=0)
            for job, plan in slot.plans.items():
                # Catch up at start: serve the current tick unless an instance already did.
                first = now + timedelta(seconds=random.uniform(0, min(jitter, 30)))
                self.scheduler.add_job(
                    self._tick, plan.trigger, args=(slot.alias, job), id=f"{slot.alias}:{job}",
                    name=f"{slot.alias}:{job}", misfire_grace_time=plan.misfire_grace_s, next_run_time=first,
                )
                log.info("job.scheduled", org=slot.alias, job=job, schedule=plan.description)
        self.scheduler.start()

    def _load_webhook(self) -> WsgiApp | None:
        from connector.entrypoints.daemon.webhook_mount import mount_webhook

        try:
            return mount_webhook(self)
        except Exception as exc:  # a broken receiver must not keep the schedules from running
            log.error("webhook.unavailable", reason=f"{type(exc).__name__}: {exc}", exc_info=True)
            return None

    def _load_dashboard(self) -> WsgiApp | None:
        from connector.entrypoints.daemon.dashboard_source import build_dashboard

        first = next(iter(self.slots.values())).config.daemon
        try:
            return build_dashboard(self, first, self.bind)
        except Exception as exc:  # the pages are a convenience: never a reason not to run the jobs
            log.error("dashboard.unavailable", reason=f"{type(exc).__name__}: {exc}", exc_info=True)
            return None

    # ------------------------------------------------------------------------ runs
    def _tick(self, alias: str, job: str) -> None:
        slot = self.slots[alias]
        plan = slot.plans[job]
        now = datetime.now(UTC)
        tick = plan.tick_of(now)
        if plan.tick_of(now + TICK_END_MARGIN) != tick:
            # A fire this close to the next tick (a catch-up at start, a late fire) would
            # record its start inside that tick and make it look served: leave it to the next.
            log.info("job.skipped", org=alias, job=job, reason="tick_ending", instance=self.instance_id)
            return
        with self._track():
            with slot.turn:
                if self.stop.is_set():
                    return
                runtime = self._ensure_runtime(slot)
                if runtime is None:
                    log.warning("job.finished", org=alias, job=job, status="failed", stage="bootstrap",
                                error=slot.error, instance=self.instance_id)
                    self.metrics.observe_run(alias, job, "failed", 0.0, {})
                    return
                run_job(runtime, job, instance_id=self.instance_id, stop=self.stop, tick=tick,
                        registry=self.registry, metrics=self.metrics)

    @contextmanager
    def _track(self) -> Iterator[None]:
        with self._inflight_cv:
            self._inflight += 1
        try:
            yield
        finally:
            with self._inflight_cv:
                self._inflight -= 1
                self._inflight_cv.notify_all()

    # ---------------------------------------------------------------------- probes
    def readiness(self) -> tuple[bool, dict[str, Any]]:
        running = self.scheduler is not None and self.scheduler.running and not self.stop.is_set()
        ready = running
        orgs: dict[str, Any] = {}
        for alias, slot in self.slots.items():
            info: dict[str, Any] = {"jobs": sorted(slot.plans)}
            runtime = slot.runtime
            if runtime is None:
                info["database"] = f"unavailable: {slot.error}"
                ready = False
            else:
                try:
                    info["database"] = "ok"
                    info["last_success"] = _last_successes(runtime, list(slot.plans))
                except Exception as exc:
                    info["database"] = f"error: {type(exc).__name__}"
                    info.pop("last_success", None)
                    ready = False
            orgs[alias] = info
        return ready, {"ready": ready, "instance": self.instance_id,
                       "scheduler": "running" if running else "stopped", "orgs": orgs}

    def metrics_text(self) -> bytes:
        for alias, slot in self.slots.items():
            if slot.runtime is None:
                continue
            try:
                with slot.runtime.uow() as uow:
                    org_id = slot.runtime.org_id
                    dead = uow.dead_letters.count_open(org_id)
                    discrepancies = len(uow.reconciliation.list(org_id, discrepancies_only=True))
                    missing = uow.dead_letters.count_open(org_id, "invoicing", error_code="INVOICE_MISSING")
                    mismatches = uow.dead_letters.count_open(org_id, "invoicing", error_code="INVOICE_MISMATCH")
            except Exception as exc:  # a scrape still answers with the counters it has
                log.warning("metrics.store_unavailable", org=alias, error=type(exc).__name__)
                continue
            self.metrics.set_store_figures(alias, dead_letters_open=dead, discrepancies=discrepancies,
                                           invoices_missing=missing, invoice_mismatches=mismatches)
        return self.metrics.render()

    def webhook_app(self) -> WsgiApp | None:
        return self._webhook

    def dashboard_app(self) -> WsgiApp | None:
        return self._dashboard

    # -------------------------------------------------------------------- shutdown
    def request_stop(self) -> None:
        self.stop.set()

    def shutdown(self, grace_s: float | None = None) -> bool:
        """Stop scheduling, wait up to the grace for running jobs; True if they all returned."""
        grace = self.shutdown_grace_s if grace_s is None else grace_s
        self.stop.set()
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        deadline = time.monotonic() + grace
        with self._inflight_cv:
            while self._inflight and (left := deadline - time.monotonic()) > 0:
                self._inflight_cv.wait(left)
            finished = self._inflight == 0
        if finished:
            self.close()
        return finished

    def close(self) -> None:
        if self.http is not None:
            self.http.stop()
            self.http = None
        for slot in self.slots.values():
            if slot.runtime is not None:
                try:
                    slot.runtime.close()
                except Exception:  # closing is best effort at exit
                    pass
                slot.runtime = None
        self._release_locks()

    def _release_locks(self) -> None:
        for lock in self._locks:
            lock.release()
        self._locks.clear()


def _last_successes(runtime: OrgRuntime, jobs: list[str]) -> dict[str, str | None]:
    from sqlalchemy import text

    out: dict[str, str | None] = {}
    with runtime.uow() as uow:
        uow.session.execute(text("SELECT 1"))
        for job in jobs:
            run = uow.job_runs.last_success(runtime.org_id, job)
            out[job] = run.finished_at.isoformat() if run is not None and run.finished_at else None
    return out


@contextmanager
def _migration_turn(database_url: str) -> Iterator[None]:
    """Daemons starting together on one PostgreSQL database migrate it one at a time
    (Alembic takes no lock of its own); a no-op on SQLite, which has one daemon."""
    if not database_url.startswith("postgres"):
        yield
        return
    from sqlalchemy import text

    from connector.adapters.store import make_engine
    from connector.adapters.store.engine import lock_key

    engine = make_engine(database_url)
    key = lock_key("gtm-connector", "migrate")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- process
class _ToStructlog(logging.Handler):
    """APScheduler speaks stdlib logging; the daemon's stderr is JSON lines only."""

    def emit(self, record: logging.LogRecord) -> None:
        level = "warning" if record.levelno >= logging.WARNING else "info"
        getattr(log, level)("scheduler.message", logger=record.name, message=record.getMessage())


def _route_stdlib_logging() -> None:
    aps = logging.getLogger("apscheduler")
    aps.handlers[:] = [_ToStructlog()]
    aps.setLevel(logging.WARNING)
    aps.propagate = False


def run_daemon(
    config_dir: Path,
    *,
    bind: str | None = None,
    port: int | None = None,
    instance_id: str | None = None,
    shutdown_grace_s: float | None = None,
    registry: Registry | None = None,
    install_signals: bool = True,
) -> int:
    """Run until SIGTERM/SIGINT. Returns the process exit code."""
    from connector.logging import configure

    configure(json=True)
    _route_stdlib_logging()
    instance = instance_id or default_instance_id()
    configs, errors = load_config_dir(config_dir)
    for error in errors:
        for file, key, msg in error.problems:
            log.error("config.invalid", file=file, key=key, problem=msg, action="org skipped")
    if not configs:
        log.error("daemon.no_orgs", config_dir=str(config_dir), reason="no valid org config file")
        return EXIT_CONFIG
    first = configs[0].daemon
    _warn_on_disagreement(configs)
    daemon = Daemon(
        configs, instance_id=instance, bind=bind or first.bind, port=first.port if port is None else port,
        shutdown_grace_s=first.shutdown_grace_seconds if shutdown_grace_s is None else shutdown_grace_s,
        registry=registry,
    )
    if install_signals:  # before start: a SIGTERM during start-up is a clean stop too
        _install_signal_handlers(daemon)
    try:
        daemon.start()
    except AlreadyRunning as exc:
        log.error("daemon.refused", instance=instance, reason=str(exc))
        print(f"gtm-connector daemon: {exc}", file=sys.stderr)
        return EXIT_ALREADY_RUNNING
    except OSError as exc:
        log.error("daemon.start_failed", instance=instance, error=f"{type(exc).__name__}: {exc}")
        print(f"gtm-connector daemon: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CONFIG
    while not daemon.stop.wait(0.5):
        pass
    log.info("daemon.stopping", instance=instance, grace_s=daemon.shutdown_grace_s, running=daemon._inflight)
    if daemon.shutdown():
        log.info("daemon.stopped", instance=instance)
        return EXIT_OK
    log.error("daemon.grace_expired", instance=instance, running=daemon._inflight)
    _hard_exit(EXIT_GRACE_EXPIRED)
    return EXIT_GRACE_EXPIRED  # not reached


def _warn_on_disagreement(configs: list[OrgConfig]) -> None:
    first = configs[0]
    for other in configs[1:]:
        d1, d2 = first.daemon, other.daemon
        if (d1.bind, d1.port, d1.shutdown_grace_seconds) != (d2.bind, d2.port, d2.shutdown_grace_seconds):
            log.warning("config.daemon_settings_differ", used=str(first.source_file), ignored=str(other.source_file),
                        hint="[daemon] bind/port/shutdown_grace_seconds are per process: the first file's apply")


def _install_signal_handlers(daemon: Daemon) -> None:
    def handle(signum: int, _frame: Any) -> None:
        if daemon.stop.is_set():
            log.warning("daemon.killed", signal=signal.Signals(signum).name, reason="second signal")
            _hard_exit(EXIT_KILLED)
        log.info("daemon.signal", signal=signal.Signals(signum).name)
        daemon.request_stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def _hard_exit(code: int) -> None:
    # Worker threads may be mid-call; interpreter shutdown would join them. Locks held by
    # this process (flock, PostgreSQL sessions) are released by the kernel / server.
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(code)


__all__ = ["Daemon", "OrgSlot", "default_instance_id", "run_daemon"]
