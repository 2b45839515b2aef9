"""The alerts table and the stored facts alerts are evaluated from (``connector.alerts``).

``AlertRepository`` keeps one row per alert event, unique on ``(org_id, key)``: ``record``
is an ``INSERT … ON CONFLICT DO NOTHING``, so an event found again (next cycle, another
instance) is never recorded twice; ``pending`` rows are delivered and marked ``sent`` or
given their failure (``attempts``, ``last_error``) to be retried at the next cycle.

``AlertFacts`` are the reads over ``job_runs`` no other repository answers: the current
streak of failed runs of a job and the runs an API budget stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from connector.adapters.store.clock import Clock, utcnow
from connector.adapters.store.engine import rowcount
from connector.adapters.store.records import JobRun, _FromRow
from connector.adapters.store.tables import alerts, job_runs

# What ``run_job`` writes as the error of a run the API budget (or the org's own
# REQUEST_LIMIT_EXCEEDED) stopped.
API_LIMIT_ERROR_PREFIX = "Salesforce API limit reached"


@dataclass(frozen=True)
class Alert(_FromRow):
    id: int
    org_id: str
    key: str
    event: str
    payload: Any
    status: str  # pending | sent
    attempts: int
    last_error: str | None
    created_at: datetime
    last_attempt_at: datetime | None
    sent_at: datetime | None


class AlertRepository:
    def __init__(self, session: Session, *, clock: Clock = utcnow) -> None:
        self.session = session
        self._clock = clock

    def record(self, org_id: str, key: str, event: str, payload: Any, *, now: datetime | None = None) -> bool:
        """Record a new alert as pending; False if this key was recorded before (sent or not)."""
        values = {"org_id": org_id, "key": key[:255], "event": event, "payload": payload, "status": "pending",
                  "attempts": 0, "created_at": now or self._clock()}
        dialect = postgresql if self.session.get_bind().dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(alerts).values(**values).on_conflict_do_nothing(index_elements=["org_id", "key"])
        return rowcount(self.session.execute(stmt.execution_options(preserve_rowcount=True))) > 0

    def pending(self, org_id: str, limit: int = 100) -> list[Alert]:
        """Alerts not delivered yet, oldest first."""
        c = alerts.c
        stmt = select(alerts).where(c.org_id == org_id, c.status == "pending").order_by(c.id).limit(limit)
        return [Alert.from_row(row) for row in self.session.execute(stmt)]

    def list(self, org_id: str) -> list[Alert]:
        c = alerts.c
        return [Alert.from_row(row) for row in self.session.execute(
            select(alerts).where(c.org_id == org_id).order_by(c.id))]

    def get(self, org_id: str, key: str) -> Alert | None:
        c = alerts.c
        row = self.session.execute(select(alerts).where(c.org_id == org_id, c.key == key)).first()
        return Alert.from_row(row) if row else None

    def claim(self, alert_id: int, *, now: datetime | None = None) -> bool:
        """Count a delivery attempt; False if the alert is no longer pending (another
        instance delivered it meanwhile)."""
        c = alerts.c
        result = self.session.execute(update(alerts).where(c.id == alert_id, c.status == "pending")
                                      .values(attempts=c.attempts + 1, last_attempt_at=now or self._clock()))
        return bool(rowcount(result))

    def mark_sent(self, alert_id: int, *, now: datetime | None = None) -> None:
        c = alerts.c
        self.session.execute(update(alerts).where(c.id == alert_id)
                             .values(status="sent", sent_at=now or self._clock(), last_error=None))

    def mark_failed(self, alert_id: int, error: str) -> None:
        c = alerts.c
        self.session.execute(update(alerts).where(c.id == alert_id).values(last_error=error[:2000]))

    def count_pending(self, org_id: str) -> int:
        c = alerts.c
        stmt = select(func.count()).select_from(alerts).where(c.org_id == org_id, c.status == "pending")
        return int(self.session.execute(stmt).scalar_one())


class AlertFacts:
    """Reads of ``job_runs`` for alert evaluation."""

    def __init__(self, session: Session, **_: Any) -> None:
        self.session = session

    def jobs(self, org_id: str) -> list[str]:
        """The jobs the org has runs of."""
        c = job_runs.c
        return list(self.session.execute(select(c.job).where(c.org_id == org_id).distinct().order_by(c.job)).scalars())

    def failed_streak(self, org_id: str, job: str, limit: int) -> list[JobRun]:
        """The first ``limit`` failed runs of ``job`` since its last successful one, oldest
        first (skipped and stopped runs, and dry runs, neither break nor extend a streak)."""
        c = job_runs.c
        real = (c.org_id == org_id, c.job == job, c.dry_run.is_(False))
        last_ok = select(func.max(c.id)).where(*real, c.status == "ok").scalar_subquery()
        stmt = (select(job_runs).where(*real, c.status == "failed", c.id > func.coalesce(last_ok, 0))
                .order_by(c.id).limit(limit))
        return [JobRun.from_row(row) for row in self.session.execute(stmt)]

    def budget_stops_since(self, org_id: str, since: datetime) -> list[JobRun]:
        """Runs stopped by the Salesforce API limit that ended at or after ``since``, oldest first."""
        c = job_runs.c
        stmt = (select(job_runs).where(c.org_id == org_id, c.status == "stopped", c.finished_at >= since,
                                       c.error.like(f"{API_LIMIT_ERROR_PREFIX}%"))
                .order_by(c.id))
        return [JobRun.from_row(row) for row in self.session.execute(stmt)]
