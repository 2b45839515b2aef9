"""The daemon's scheduler: every org's enabled jobs on APScheduler, each fire one ``run_job``.

* One APScheduler 3 ``BackgroundScheduler`` job per (org, enabled job): ``max_instances=1``,
  ``coalesce=True``, the org's misfire grace and jitter. Each fire calls
  ``connector.jobs.run_job`` — the same code path as ``gtm-connector run-job``.
* Several daemons may share one PostgreSQL database: ``run_job`` takes the (org, job)
  lock and skips a tick another instance already served.
* Isolation: orgs run in parallel on a pool with a thread for every scheduled job, so a
  slow or failing org never delays another. Within one org, jobs take turns (they share
  the org's gateways, API budget and, on SQLite, its single writer). An org whose database
  is down at start keeps its schedule and retries at each tick.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from connector.bootstrap import OrgRuntime
from connector.config import JOBS as CONFIG_JOBS
from connector.config import OrgConfig
from connector.entrypoints.daemon.schedule import JobPlan, plan_for
from connector.jobs import Registry, RunLedger, run_job
from connector.metrics import DaemonMetrics

log = structlog.get_logger("connector.daemon")

TICK_END_MARGIN = timedelta(seconds=2)


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


class Scheduler:
    """The orgs (one ``OrgSlot`` each), their plans and the APScheduler that fires them."""

    def __init__(self, configs: list[OrgConfig], *, instance_id: str, registry: Registry,
                 bootstrapper: Callable[[OrgConfig], OrgRuntime], metrics: DaemonMetrics,
                 stop: threading.Event) -> None:
        self.instance_id = instance_id
        self.registry = registry
        self.bootstrapper = bootstrapper
        self.metrics = metrics
        self.stop = stop
        self.slots = {c.alias: OrgSlot(c) for c in configs}
        self._aps: BackgroundScheduler | None = None
        self._inflight: Counter[tuple[str, str]] = Counter()  # (alias, job) -> runs in progress
        self._inflight_cv = threading.Condition()

    # ----------------------------------------------------------------------- orgs
    def ensure_runtime(self, slot: OrgSlot) -> OrgRuntime | None:
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

    def runtimes(self) -> dict[str, OrgRuntime]:
        """The orgs whose runtime is up, by alias."""
        return {alias: slot.runtime for alias, slot in self.slots.items() if slot.runtime is not None}

    def close_abandoned(self, slot: OrgSlot) -> None:
        # On SQLite this daemon is the only one (lock file): every 'running' row is a dead run's.
        assert slot.runtime is not None
        ledger = RunLedger(slot.runtime)
        for job in self.registry:
            n = ledger.close_abandoned(job, by=self.instance_id)
            if n:
                log.warning("job.abandoned_closed", org=slot.alias, job=job, runs=n)

    def plan(self) -> None:
        for slot in self.slots.values():
            grace = slot.config.daemon.misfire_grace_seconds
            for job in self.registry:
                if job not in CONFIG_JOBS:
                    continue
                plan = plan_for(slot.config.schedules, job, grace)
                if plan is None:
                    log.info("job.disabled", org=slot.alias, job=job)
                    continue
                slot.plans[job] = plan
            self.metrics.touch_org(slot.alias, list(slot.plans))

    @property
    def job_count(self) -> int:
        return sum(len(s.plans) for s in self.slots.values())

    # ----------------------------------------------------------------------- running
    def start(self) -> None:
        # A thread per scheduled job: no (org, job) ever waits for a pool slot.
        self._aps = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=max(self.job_count, 1))},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=UTC,
        )
        now = datetime.now(UTC)
        for slot in self.slots.values():
            jitter = max((slot.config.schedules.trigger(j).jitter_seconds for j in slot.plans), default=0)
            for job, plan in slot.plans.items():
                # Catch up at start: serve the current tick unless an instance already did.
                first = now + timedelta(seconds=random.uniform(0, min(jitter, 30)))
                self._aps.add_job(
                    self.tick, plan.trigger, args=(slot.alias, job), id=f"{slot.alias}:{job}",
                    name=f"{slot.alias}:{job}", misfire_grace_time=plan.misfire_grace_s, next_run_time=first,
                )
                log.info("job.scheduled", org=slot.alias, job=job, schedule=plan.description)
        self._aps.start()

    def next_run_time(self, alias: str, job: str) -> datetime | None:
        """When the scheduler fires (org, job) next; None when it is not scheduled (or stopped)."""
        scheduled = self._aps.get_job(f"{alias}:{job}") if self._aps is not None else None
        return getattr(scheduled, "next_run_time", None)

    @property
    def running(self) -> bool:
        return self._aps is not None and self._aps.running and not self.stop.is_set()

    def tick(self, alias: str, job: str) -> None:
        slot = self.slots[alias]
        plan = slot.plans[job]
        now = datetime.now(UTC)
        tick = plan.tick_of(now)
        if plan.tick_of(now + TICK_END_MARGIN) != tick:
            # A fire this close to the next tick (a catch-up at start, a late fire) would
            # record its start inside that tick and make it look served: leave it to the next.
            log.info("job.skipped", org=alias, job=job, reason="tick_ending", instance=self.instance_id)
            return
        with self._track(alias, job):
            with slot.turn:
                if self.stop.is_set():
                    return
                runtime = self.ensure_runtime(slot)
                if runtime is None:
                    log.warning("job.finished", org=alias, job=job, status="failed", stage="bootstrap",
                                error=slot.error, instance=self.instance_id)
                    self.metrics.observe_run(alias, job, "failed", 0.0, {})
                    return
                run_job(runtime, job, instance_id=self.instance_id, stop=self.stop, tick=tick,
                        registry=self.registry, metrics=self.metrics)

    @contextmanager
    def _track(self, alias: str, job: str) -> Iterator[None]:
        with self._inflight_cv:
            self._inflight[alias, job] += 1
        try:
            yield
        finally:
            with self._inflight_cv:
                self._inflight[alias, job] -= 1
                if not self._inflight[alias, job]:
                    del self._inflight[alias, job]
                self._inflight_cv.notify_all()

    @property
    def inflight(self) -> int:
        """Job runs in progress."""
        with self._inflight_cv:
            return self._inflight.total()

    def running_jobs(self) -> dict[str, list[str]]:
        """Org alias -> the jobs with a run in progress (a job twice if it runs twice)."""
        running: dict[str, list[str]] = {}
        with self._inflight_cv:
            for (alias, job), n in sorted(self._inflight.items()):
                running.setdefault(alias, []).extend([job] * n)
        return running

    # ----------------------------------------------------------------------- stopping
    def stop_scheduling(self) -> None:
        self.stop.set()
        if self._aps is not None and self._aps.running:
            self._aps.shutdown(wait=False)

    def wait_idle(self, grace_s: float) -> bool:
        """Wait up to ``grace_s`` for the running jobs to return; True if they all did."""
        deadline = time.monotonic() + grace_s
        with self._inflight_cv:
            while self._inflight and (left := deadline - time.monotonic()) > 0:
                self._inflight_cv.wait(left)
            return not self._inflight

    def close_runtimes(self) -> None:
        for slot in self.slots.values():
            if slot.runtime is not None:
                try:
                    slot.runtime.close()
                except Exception:  # closing is best effort at exit
                    pass
                slot.runtime = None


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
