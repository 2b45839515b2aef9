"""`gtm-connector daemon`: every org's jobs on a schedule, in one long-running process.

* ``scheduler``: one APScheduler job per (org, enabled job), each fire one ``run_job`` (the
  same code path as ``gtm-connector run-job``); orgs in parallel, one org's jobs in turn.
* ``app``: the HTTP route table (/healthz, /readyz, /metrics, /stripe/webhook, the dashboard
  at / and /orgs/…) on the connector's cheroot server; ``webhook_mount`` routes the webhook
  to the orgs' receivers, ``dashboard_source`` feeds the dashboard.
* ``lifecycle``: ``Daemon`` (start, shutdown, close) and ``run_daemon`` (the process: config,
  signals, exit codes).
* ``schedule``: the epoch-aligned tick grid every instance shares; ``locks``: the SQLite
  instance lock.

Several daemons may share one PostgreSQL database: ``run_job`` takes the (org, job) lock
and skips a tick another instance already served. On SQLite a lock file refuses a second
daemon. The first SIGTERM/SIGINT stops scheduling and lets running jobs finish within the
grace (exit 0, or 1 when it runs out); a second signal exits at once (130).
"""

from connector.entrypoints.daemon.app import ROUTES, DaemonProbes, HttpEndpoint, Route, make_app
from connector.entrypoints.daemon.lifecycle import (
    EXIT_ALREADY_RUNNING,
    EXIT_CONFIG,
    EXIT_GRACE_EXPIRED,
    EXIT_KILLED,
    EXIT_OK,
    Daemon,
    default_instance_id,
    run_daemon,
)
from connector.entrypoints.daemon.scheduler import OrgSlot, Scheduler

__all__ = [
    "EXIT_ALREADY_RUNNING", "EXIT_CONFIG", "EXIT_GRACE_EXPIRED", "EXIT_KILLED", "EXIT_OK", "ROUTES", "Daemon",
    "DaemonProbes", "HttpEndpoint", "OrgSlot", "Route", "Scheduler", "default_instance_id", "make_app", "run_daemon",
]
