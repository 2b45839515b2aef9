"""The daemon process: start, run until a signal, stop within the grace.

* Start: lock the SQLite files (a second daemon on one SQLite file is refused, exit 3),
  bootstrap every org (an org whose database is down waits; the others run), plan, mount
  the webhook receiver, listen (exit 2 when the address is taken), start the scheduler.
* Shutdown: the first SIGTERM/SIGINT stops scheduling and sets the ``stop`` event the jobs
  check between pages/batches; the process exits 0 once running jobs return, or 1 if the
  grace runs out (``daemon_stopped`` is alerted in both cases, with the runs abandoned).
  A second signal exits at once (130). Committed cursors and the outbox make the next
  start resume where this one stopped.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from connector.alerts import alert_daemon
from connector.bootstrap import OrgRuntime, bootstrap
from connector.config import OrgConfig, load_config_dir
from connector.entrypoints.daemon.app import DaemonProbes, HttpEndpoint
from connector.entrypoints.daemon.locks import AlreadyRunning, InstanceLock, sqlite_file
from connector.entrypoints.daemon.scheduler import OrgSlot, Scheduler
from connector.entrypoints.http_server import WsgiApp
from connector.instance import default_instance_id
from connector.jobs import JOBS, Registry
from connector.metrics import DaemonMetrics

log = structlog.get_logger("connector.daemon")

EXIT_OK, EXIT_GRACE_EXPIRED, EXIT_CONFIG, EXIT_ALREADY_RUNNING, EXIT_KILLED = 0, 1, 2, 3, 130


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
        self.metrics = DaemonMetrics()
        self.stop = threading.Event()
        self.scheduler = Scheduler(configs, instance_id=instance_id,
                                   registry=registry if registry is not None else JOBS,
                                   bootstrapper=bootstrapper, metrics=self.metrics, stop=self.stop)
        self.probes = DaemonProbes(self.scheduler, self.metrics, instance_id)
        self.http: HttpEndpoint | None = None
        self._locks: list[InstanceLock] = []
        self._stop_alerted = False

    @property
    def slots(self) -> dict[str, OrgSlot]:
        return self.scheduler.slots

    @property
    def inflight(self) -> int:
        return self.scheduler.inflight

    # ----------------------------------------------------------------------- start
    def start(self) -> None:
        self._lock_sqlite_files()
        try:
            for slot in self.slots.values():
                self.scheduler.ensure_runtime(slot)
                if slot.runtime is not None and slot.runtime.engine.dialect.name == "sqlite":
                    self.scheduler.close_abandoned(slot)
            self.scheduler.plan()
            self.probes.webhook = self._load_webhook()
            self.probes.dashboard = self._load_dashboard()
            try:
                self.http = HttpEndpoint(self.probes, self.bind, self.port)
            except OSError as exc:  # say which address: the operator fixes [daemon] bind/port or --port
                raise OSError(exc.errno, f"cannot listen on {self.bind}:{self.port} ({exc.strerror or exc}); "
                                         "set [daemon] port or --port") from None
            self.http.start()
            self.scheduler.start()
        except BaseException:
            self.close()
            raise
        host, port = self.http.address
        log.info("daemon.started", instance=self.instance_id, bind=host, port=port, orgs=sorted(self.slots),
                 jobs=self.scheduler.job_count)
        alert_daemon([s.runtime for s in self.slots.values()], "daemon_started", self.instance_id)

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

    def _load_webhook(self) -> WsgiApp | None:
        from connector.entrypoints.daemon.webhook_mount import mount_webhook

        try:
            return mount_webhook(self.scheduler.runtimes)
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

    # ---------------------------------------------------------------------- probes
    def readiness(self) -> tuple[bool, dict[str, Any]]:
        return self.probes.readiness()

    def metrics_text(self) -> bytes:
        return self.probes.metrics_text()

    def webhook_app(self) -> WsgiApp | None:
        return self.probes.webhook_app()

    def dashboard_app(self) -> WsgiApp | None:
        return self.probes.dashboard_app()

    # -------------------------------------------------------------------- shutdown
    def request_stop(self) -> None:
        self.stop.set()

    def shutdown(self, grace_s: float | None = None) -> bool:
        """Stop scheduling, wait up to the grace for running jobs; True if they all returned.
        ``daemon_stopped`` goes out either way, once, after the grace (never extending it):
        when the grace ran out it counts the runs abandoned (the process then exits hard)."""
        grace = self.shutdown_grace_s if grace_s is None else grace_s
        self.scheduler.stop_scheduling()
        finished = self.scheduler.wait_idle(grace)
        if not self._stop_alerted:
            self._stop_alerted = True
            alert_daemon([s.runtime for s in self.slots.values()], "daemon_stopped", self.instance_id,
                         abandoned=self.scheduler.running_jobs(), grace_s=grace)
        if finished:
            self.close()
        return finished

    def close(self) -> None:
        if self.http is not None:
            self.http.stop()
            self.http = None
        self.scheduler.close_runtimes()
        self._release_locks()

    def _release_locks(self) -> None:
        for lock in self._locks:
            lock.release()
        self._locks.clear()


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
    log.info("daemon.stopping", instance=instance, grace_s=daemon.shutdown_grace_s, running=daemon.inflight)
    if daemon.shutdown():
        log.info("daemon.stopped", instance=instance)
        return EXIT_OK
    log.error("daemon.grace_expired", instance=instance, running=daemon.inflight)
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
