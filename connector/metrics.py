"""Prometheus metrics of one daemon process.

Every figure lives in a ``DaemonMetrics`` that owns its own ``CollectorRegistry``: nothing is
registered on prometheus_client's global default registry, so two daemons (or a daemon and
the tests) in one process never share or collide on series. Counters move when a job run
ends (``observe_run``); the gauges read from the store (open dead letters, discrepancies,
last successful run per task) are refreshed on each scrape by the daemon
(``set_store_figures``).

Conventions (Prometheus' own naming guide): every name starts with ``gtm_connector_``; the
job of a run is the label ``task``, never ``job`` (Prometheus owns ``job``: the scrape
target's, and would rename ours to ``exported_job``); no ``*_created`` series; the process
and platform collectors (``process_*``, ``python_*``) are registered like on the default
registry. ``config/prometheus/alerts.yml`` is an example rule file over these names.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "PREFIX", "DaemonMetrics"]

PREFIX = "gtm_connector_"

# ``*_created`` series double every counter and histogram and no dashboard reads them. The
# switch is process-wide in prometheus_client; this module is the only one that exports.
disable_created_metrics()

# Job runs span from a no-op idle poll (well under a second) to a first full mirror.
_DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class DaemonMetrics:
    """The daemon's series. Label values are org aliases, task (job) names or object keys."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        # What the default registry carries (process_*, python_*), on ours.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        p = PREFIX
        self.job_runs = Counter(f"{p}job_runs_total", "Job runs by outcome.", ["org", "task", "status"], registry=r)
        self.job_failures = Counter(f"{p}job_failures_total", "Job runs that failed.", ["org", "task"], registry=r)
        self.records_mirrored = Counter(f"{p}records_mirrored_total", "Records mirrored, by mapped object.",
                                        ["org", "object"], registry=r)
        self.invoices_created = Counter(f"{p}invoices_created_total", "Stripe invoices created.", ["org"], registry=r)
        self.invoices_adopted = Counter(f"{p}invoices_adopted_total", "Salesforce-issued invoices adopted.", ["org"],
                                        registry=r)
        self.invoices_missing = Gauge(f"{p}invoices_missing", "Orders Salesforce has not invoiced within the grace.",
                                      ["org"], registry=r)
        self.invoice_mismatches = Gauge(f"{p}invoice_mismatches",
                                        "Salesforce-issued invoices that differ from their order.", ["org"], registry=r)
        self.discrepancies = Gauge(f"{p}discrepancies", "Orders whose payout differs from the expected payout.",
                                   ["org"], registry=r)
        self.dead_letters_open = Gauge(f"{p}dead_letters_open", "Open (unresolved) dead letters.", ["org"], registry=r)
        self.api_calls_used = Gauge(f"{p}api_calls_used", "Salesforce API calls used in the org's 24 h window.",
                                    ["org"], registry=r)
        self.api_calls_remaining = Gauge(f"{p}api_calls_remaining",
                                         "Salesforce API calls remaining in the 24 h window.", ["org"], registry=r)
        self.job_duration = Histogram(f"{p}job_duration_seconds", "Job run duration.", ["org", "task"],
                                      buckets=_DURATION_BUCKETS, registry=r)
        self.alerts_pending = Gauge(f"{p}alerts_pending", "Webhook alerts not delivered yet (retried each cycle).",
                                    ["org"], registry=r)
        self.last_success = Gauge(f"{p}last_success_timestamp_seconds",
                                  "Unix time the task's last successful run ended (any instance).", ["org", "task"],
                                  registry=r)

    def observe_run(self, org: str, job: str, status: str, duration_s: float, counts: Mapping[str, int],
                    *, mirrored: Mapping[str, int] | None = None, invoices_created: int = 0,
                    invoices_adopted: int = 0) -> None:
        """Account one finished run (any status) of task ``job``."""
        self.job_runs.labels(org=org, task=job, status=status).inc()
        if status == "failed":
            self.job_failures.labels(org=org, task=job).inc()
        if status == "ok":
            self.last_success.labels(org=org, task=job).set(time.time())
        if status != "skipped":
            self.job_duration.labels(org=org, task=job).observe(duration_s)
        for obj, n in (mirrored or {}).items():
            if n > 0:
                self.records_mirrored.labels(org=org, object=obj).inc(n)
        if invoices_created > 0:
            self.invoices_created.labels(org=org).inc(invoices_created)
        if invoices_adopted > 0:
            self.invoices_adopted.labels(org=org).inc(invoices_adopted)

    def set_api_usage(self, org: str, used: int | None, remaining: int | None) -> None:
        if used is not None:
            self.api_calls_used.labels(org=org).set(used)
        if remaining is not None:
            self.api_calls_remaining.labels(org=org).set(remaining)

    def set_store_figures(self, org: str, *, dead_letters_open: int | None, discrepancies: int | None,
                          invoices_missing: int | None = None, invoice_mismatches: int | None = None,
                          last_success: Mapping[str, datetime | None] | None = None,
                          alerts_pending: int | None = None) -> None:
        """The figures the store holds for ``org``; ``last_success``: task -> when its last
        successful run ended, by whichever instance (None: never)."""
        for gauge, value in ((self.dead_letters_open, dead_letters_open), (self.discrepancies, discrepancies),
                             (self.invoices_missing, invoices_missing), (self.invoice_mismatches, invoice_mismatches),
                             (self.alerts_pending, alerts_pending)):
            if value is not None:
                gauge.labels(org=org).set(value)
        for task, when in (last_success or {}).items():
            if when is not None:
                self.last_success.labels(org=org, task=task).set(when.timestamp())

    def touch_org(self, org: str, jobs: list[str]) -> None:
        """Create the org's zero series up front so a scrape shows every org from the start
        (a missing series and a zero look different on dashboards and alerts)."""
        for job in jobs:
            self.job_failures.labels(org=org, task=job)
            self.job_runs.labels(org=org, task=job, status="ok")
        self.invoices_created.labels(org=org)
        self.invoices_adopted.labels(org=org)

    def render(self) -> bytes:
        return generate_latest(self.registry)
