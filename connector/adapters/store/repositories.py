"""Repositories over the connector's own tables, plus the mirror repository.

Each takes the caller's ``Session`` (from ``SqlUnitOfWork``) and never commits: the unit of
work decides what lands together. Reads return the frozen dataclasses of ``records``.

Concurrency: writers of one org and job are serialized by the (org, job) advisory lock,
so "read, then insert or update" is safe here; where two jobs may race on one row
(outbox intents, Stripe events) the insert is an atomic ``ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import ColumnElement, Insert, Table, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from connector.adapters.store import tables as t
from connector.adapters.store.clock import Clock, utcnow
from connector.adapters.store.engine import rowcount
from connector.adapters.store.mirror import MirrorRepository
from connector.adapters.store.records import (
    Anomaly,
    DeadLetter,
    Invoice,
    JobRun,
    MappingCheck,
    OfferDraft,
    OutboxEntry,
    Payout,
    Reconciliation,
    StripeEvent,
    SyncState,
    WritebackState,
    _FromRow,
)
from connector.adapters.store.types import UtcDateTime

__all__ = [
    "AnomalyRepository",
    "DeadLetterRepository",
    "InvoiceRepository",
    "JobRunRepository",
    "MirrorRepository",
    "OfferDraftRepository",
    "OutboxRepository",
    "PayoutRepository",
    "ReconciliationRepository",
    "StripeEventRepository",
    "SyncStateRepository",
    "WritebackStateRepository",
]

R = TypeVar("R", bound=_FromRow)


class _Repository(Generic[R]):
    """Shared plumbing: the session, the clock, typed reads of one table."""

    table: ClassVar[Table]
    record: type[R]  # set by each subclass to its record class

    def __init__(self, session: Session, *, clock: Clock = utcnow) -> None:
        self.session = session
        self._clock = clock

    def _one(self, *where: ColumnElement[bool], lock: bool = False) -> R | None:
        stmt = select(self.table).where(*where)
        if lock:
            stmt = stmt.with_for_update()  # PostgreSQL row lock; SQLite ignores it
        row = self.session.execute(stmt).first()
        return self.record.from_row(row) if row else None

    def _all(self, *where: ColumnElement[bool], order_by: Any, limit: int | None = None) -> builtins.list[R]:
        stmt = select(self.table).where(*where).order_by(*order_by)
        if limit is not None:
            stmt = stmt.limit(limit)
        return [self.record.from_row(row) for row in self.session.execute(stmt)]

    def _insert_ignore(self, values: Mapping[str, Any], conflict: builtins.list[str]) -> bool:
        """INSERT … ON CONFLICT DO NOTHING; True if the row was inserted."""
        stmt: Insert
        if self.session.get_bind().dialect.name == "postgresql":
            stmt = postgresql.insert(self.table).values(**values).on_conflict_do_nothing(index_elements=conflict)
        else:
            stmt = sqlite.insert(self.table).values(**values).on_conflict_do_nothing(index_elements=conflict)
        # rowcount of an INSERT is only kept when asked for (SQLAlchemy closes the cursor early)
        return rowcount(self.session.execute(stmt.execution_options(preserve_rowcount=True))) > 0

    def _check_fields(self, fields: Mapping[str, Any], allowed: Iterable[str]) -> None:
        unknown = set(fields) - set(allowed)
        if unknown:
            raise TypeError(f"{self.table.name}: unknown column(s) {', '.join(sorted(unknown))}")


class _KeyedRepository(_Repository[R]):
    """A table keyed by ``(org_id, <key>)`` with ``upsert(org_id, key, **fields)``.

    ``insert_defaults`` fill columns a new row needs when the caller did not pass them;
    ``touch`` columns are set to now on every write unless passed."""

    key: ClassVar[str]
    insert_defaults: ClassVar[tuple[str, ...]] = ()
    touch: ClassVar[tuple[str, ...]] = ()

    def get(self, org_id: str, key: str) -> R | None:
        return self._one(self.table.c.org_id == org_id, self.table.c[self.key] == key)

    def upsert(self, org_id: str, key: str, /, **fields: Any) -> R:
        """Create the row or update the given columns; returns the stored row."""
        self._check_fields(fields, set(self.table.c.keys()) - {"org_id", self.key})
        now = self._clock()
        values = {**{c: now for c in self.touch}, **fields}
        where = (self.table.c.org_id == org_id, self.table.c[self.key] == key)
        if self._one(*where, lock=True) is None:
            defaults = {c: now for c in self.insert_defaults}
            self.session.execute(insert(self.table).values(**{**defaults, **values, "org_id": org_id, self.key: key}))
        elif values:
            self.session.execute(update(self.table).where(*where).values(**values))
        stored = self.get(org_id, key)
        assert stored is not None
        return stored

    def list(self, org_id: str) -> builtins.list[R]:
        return self._all(self.table.c.org_id == org_id, order_by=[self.table.c[self.key]])


# ------------------------------------------------------------------------------ sync state
class SyncStateRepository(_Repository[SyncState]):
    """Per (org, object) cursor and run bookkeeping. The cursor only ever moves forward."""

    table = t.sync_state
    record = SyncState

    def get(self, org_id: str, object_name: str) -> SyncState | None:
        return self._one(self.table.c.org_id == org_id, self.table.c.object_name == object_name)

    def advance(self, org_id: str, object_name: str, cursor: datetime | None, records: int = 0) -> SyncState:
        """Move the cursor to ``cursor`` unless it is already later, and add ``records``
        to the running total. Call it in the unit of work that wrote those records."""
        current = self._ensure(org_id, object_name)
        values: dict[str, Any] = {"records_total": current.records_total + records, "updated_at": self._clock()}
        if cursor is not None:
            cursor = UtcDateTime.coerce(cursor)
            if current.cursor is None or cursor > current.cursor:
                values["cursor"] = cursor
        return self._update(org_id, object_name, values)

    def mark_run(self, org_id: str, object_name: str, status: str, full: bool = False) -> SyncState:
        """Record that a run of this object ended with ``status`` (``full`` for a full resync)."""
        self._ensure(org_id, object_name)
        now = self._clock()
        values: dict[str, Any] = {"last_run_at": now, "last_status": status, "updated_at": now}
        if full:
            values["last_full_at"] = now
        return self._update(org_id, object_name, values)

    UNFINISHED = ("running", "failed", "stopped")

    def begin(self, org_id: str, object_name: str) -> SyncState:
        """A run of this object starts: ``running`` from now. After an unfinished run the
        start of that earlier run is kept: what it wrote is still not known complete."""
        current = self._ensure(org_id, object_name)
        now = self._clock()
        values: dict[str, Any] = {"last_status": "running", "updated_at": now}
        if current.last_status not in self.UNFINISHED or current.last_run_at is None:
            values["last_run_at"] = now
        return self._update(org_id, object_name, values)

    def set_status(self, org_id: str, object_name: str, status: str) -> SyncState:
        """Change only the status (an unfinished run keeps its start in ``last_run_at``)."""
        self._ensure(org_id, object_name)
        return self._update(org_id, object_name, {"last_status": status, "updated_at": self._clock()})

    def unfinished_since(self, org_id: str, object_names: Iterable[str]) -> datetime | None:
        """When the oldest unfinished run (``running``, ``failed``, ``stopped``) of these
        objects started; None when every one of them last finished its run."""
        names = builtins.list(object_names)
        starts = [s.last_run_at for s in self.all(org_id)
                  if s.object_name in names and s.last_status in self.UNFINISHED and s.last_run_at is not None]
        return min(starts) if starts else None

    def reset_cursor(self, org_id: str, object_name: str) -> None:
        """Forget the cursor, so the next run reads the object from the start (full resync).
        The only way a cursor moves backwards."""
        self._ensure(org_id, object_name)
        self._update(org_id, object_name, {"cursor": None, "updated_at": self._clock()})

    def all(self, org_id: str) -> builtins.list[SyncState]:
        return self._all(self.table.c.org_id == org_id, order_by=[self.table.c.object_name])

    def _ensure(self, org_id: str, object_name: str) -> SyncState:
        where = (self.table.c.org_id == org_id, self.table.c.object_name == object_name)
        state = self._one(*where, lock=True)
        if state is None:
            self.session.execute(
                insert(self.table).values(
                    org_id=org_id, object_name=object_name, records_total=0, updated_at=self._clock()
                )
            )
            state = self._one(*where)
            assert state is not None
        return state

    def _update(self, org_id: str, object_name: str, values: Mapping[str, Any]) -> SyncState:
        where = (self.table.c.org_id == org_id, self.table.c.object_name == object_name)
        self.session.execute(update(self.table).where(*where).values(**values))
        state = self._one(*where)
        assert state is not None
        return state


# ---------------------------------------------------------------------------------- outbox
class OutboxRepository(_Repository[OutboxEntry]):
    """Intent before an external write, result after: a crash in between is resumed with
    the same idempotency key, never duplicated."""

    table = t.outbox
    record = OutboxEntry

    def get(self, key: str) -> OutboxEntry | None:
        return self._one(self.table.c.idempotency_key == key)

    def record_intent(
        self, org_id: str, key: str, operation: str, subject_id: str, request: Any
    ) -> OutboxEntry:
        """Record that ``operation`` on ``subject_id`` is about to be sent with ``key``.
        If the key is already recorded, the existing entry is returned unchanged (its
        status tells the caller whether the call still has to be made)."""
        now = self._clock()
        self._insert_ignore(
            {"org_id": org_id, "idempotency_key": key, "operation": operation, "subject_id": subject_id,
             "request": request, "status": "pending", "attempts": 0, "created_at": now, "updated_at": now},
            ["idempotency_key"],
        )  # fmt: skip
        entry = self.get(key)
        assert entry is not None
        return entry

    def record_result(self, key: str, result: Any, status: str = "done", error: str | None = None) -> OutboxEntry:
        """Store the outcome of the call made under ``key`` and count the attempt."""
        if status not in t.OUTBOX_STATUSES:
            raise ValueError(f"outbox status {status!r} is not one of {t.OUTBOX_STATUSES}")
        c = self.table.c
        done = self.session.execute(
            update(self.table)
            .where(c.idempotency_key == key)
            .values(result=result, status=status, error=error, attempts=c.attempts + 1, updated_at=self._clock())
        )
        if not rowcount(done):
            raise KeyError(f"outbox: no intent recorded under key {key!r}")
        entry = self.get(key)
        assert entry is not None
        return entry

    def pending(self, org_id: str) -> builtins.list[OutboxEntry]:
        """Intents without a result yet, oldest first: what a restart must resume."""
        c = self.table.c
        return self._all(c.org_id == org_id, c.status == "pending", order_by=[c.id])

    def has_other_keys(self, org_id: str, operation: str, prefix: str) -> bool:
        """Whether the org has an entry for ``operation`` whose key does not start with
        ``prefix`` (entries written under an older key scheme)."""
        c = self.table.c
        found = self.session.execute(
            select(c.id).where(c.org_id == org_id, c.operation == operation,
                               ~c.idempotency_key.startswith(prefix, autoescape=True)).limit(1)
        ).first()
        return found is not None

    def for_subject(self, org_id: str, subject_id: str) -> builtins.list[OutboxEntry]:
        c = self.table.c
        return self._all(c.org_id == org_id, c.subject_id == subject_id, order_by=[c.id])


# ----------------------------------------------------------------------------- dead letter
class DeadLetterRepository(_Repository[DeadLetter]):
    """Quarantined records. At most one open letter per (org, source, object, record):
    adding again refreshes it and counts the attempt."""

    table = t.dead_letter
    record = DeadLetter

    def add(
        self,
        org_id: str,
        source: str,
        object_name: str,
        record_id: str,
        code: str,
        reason: str,
        payload: Any = None,
    ) -> int:
        """Open (or refresh) the letter for this record; returns its id. The reason and the
        payload's texts are made storable (no NUL, long texts cut): a letter about a bad
        value must not fail on that value itself."""
        reason = _storable(reason)
        payload = _storable(payload)
        if source not in t.DEAD_LETTER_SOURCES:
            raise ValueError(f"dead letter source {source!r} is not one of {t.DEAD_LETTER_SOURCES}")
        c = self.table.c
        now = self._clock()
        existing = self._one(*self._open_where(org_id, source, object_name, record_id), lock=True)
        if existing is not None:
            self.session.execute(
                update(self.table)
                .where(c.id == existing.id)
                .values(error_code=code, reason=reason, payload=payload, attempts=c.attempts + 1, updated_at=now)
            )
            return existing.id
        result = self.session.execute(
            insert(self.table)
            .values(org_id=org_id, source=source, object_name=object_name, record_id=record_id, error_code=code,
                    reason=reason, payload=payload, attempts=1, created_at=now, updated_at=now)
            .returning(c.id)
        )  # fmt: skip
        return int(result.scalar_one())

    def get(self, letter_id: int) -> DeadLetter | None:
        return self._one(self.table.c.id == letter_id)

    def open(
        self, org_id: str | None = None, source: str | None = None, ids: Iterable[int] | None = None
    ) -> builtins.list[DeadLetter]:
        """Open letters, oldest first, optionally of one org, one source, or these letter ids."""
        c = self.table.c
        where: builtins.list[ColumnElement[bool]] = [c.resolved_at.is_(None)]
        if org_id is not None:
            where.append(c.org_id == org_id)
        if source is not None:
            where.append(c.source == source)
        if ids is not None:
            where.append(c.id.in_(builtins.list(ids)))
        return self._all(*where, order_by=[c.id])

    def resolve(self, letter_id: int) -> bool:
        """Close an open letter; False if it was not open."""
        c = self.table.c
        now = self._clock()
        result = self.session.execute(
            update(self.table).where(c.id == letter_id, c.resolved_at.is_(None)).values(resolved_at=now, updated_at=now)
        )
        return bool(rowcount(result))

    def resolve_for(self, org_id: str, source: str, object_name: str, record_id: str) -> bool:
        """Close the open letter of this record, if any (the record went through)."""
        now = self._clock()
        result = self.session.execute(
            update(self.table)
            .where(*self._open_where(org_id, source, object_name, record_id))
            .values(resolved_at=now, updated_at=now)
        )
        return bool(rowcount(result))

    def count_open(self, org_id: str, source: str | None = None, *, error_code: str | None = None) -> int:
        c = self.table.c
        stmt = select(func.count()).select_from(self.table).where(c.org_id == org_id, c.resolved_at.is_(None))
        if source is not None:
            stmt = stmt.where(c.source == source)
        if error_code is not None:
            stmt = stmt.where(c.error_code == error_code)
        return int(self.session.execute(stmt).scalar_one())

    def _open_where(
        self, org_id: str, source: str, object_name: str, record_id: str
    ) -> tuple[ColumnElement[bool], ...]:
        c = self.table.c
        return (c.org_id == org_id, c.source == source, c.object_name == object_name, c.record_id == record_id,
                c.resolved_at.is_(None))  # fmt: skip


# ------------------------------------------------------------------------------- anomalies
class AnomalyRepository(_Repository[Anomaly]):
    """Observed state transitions the state machines do not allow: kept, never applied."""

    table = t.anomalies
    record = Anomaly

    def add(
        self,
        org_id: str,
        object_name: str,
        record_id: str,
        machine: str,
        from_state: str | None,
        to_state: str | None,
        detail: str | None = None,
        observed_at: datetime | None = None,
    ) -> int:
        result = self.session.execute(
            insert(self.table)
            .values(org_id=org_id, object_name=object_name, record_id=record_id, machine=machine,
                    from_state=from_state, to_state=to_state, detail=detail,
                    observed_at=observed_at or self._clock())
            .returning(self.table.c.id)
        )  # fmt: skip
        return int(result.scalar_one())

    def list(self, org_id: str, object_name: str | None = None) -> builtins.list[Anomaly]:
        c = self.table.c
        where = [c.org_id == org_id] + ([c.object_name == object_name] if object_name else [])
        return self._all(*where, order_by=[c.id])

    def count(self, org_id: str) -> int:
        stmt = select(func.count()).select_from(self.table).where(self.table.c.org_id == org_id)
        return int(self.session.execute(stmt).scalar_one())


# -------------------------------------------------------------------------------- invoices
class InvoiceRepository(_KeyedRepository[Invoice]):
    """One Stripe invoice per (org, order). ``created_at`` is set on first write."""

    table = t.invoices
    record = Invoice
    key = "order_id"
    insert_defaults = ("created_at",)
    touch = ("updated_at",)

    def upsert(self, org_id: str, order_id: str, /, **fields: Any) -> Invoice:
        source = fields.get("status_source")
        if source is not None and source not in t.INVOICE_STATUS_SOURCES:
            raise ValueError(f"invoice status_source {source!r} is not one of {t.INVOICE_STATUS_SOURCES}")
        return super().upsert(org_id, order_id, **fields)

    def get_by_stripe_id(self, stripe_invoice_id: str, *, lock: bool = False) -> Invoice | None:
        """``lock``: hold the row until commit (PostgreSQL), so concurrent webhooks about one
        invoice apply one after the other and none moves it back from a stale read."""
        return self._one(self.table.c.stripe_invoice_id == stripe_invoice_id, lock=lock)

    def list(self, org_id: str, status: str | None = None) -> builtins.list[Invoice]:
        c = self.table.c
        where = [c.org_id == org_id] + ([c.status == status] if status else [])
        return self._all(*where, order_by=[c.order_id])


# --------------------------------------------------------------------------- stripe events
class StripeEventRepository(_Repository[StripeEvent]):
    """Every Stripe event received, once: the webhook and the poller dedupe through it."""

    table = t.stripe_events
    record = StripeEvent

    def seen(self, event_id: str) -> bool:
        stmt = select(self.table.c.event_id).where(self.table.c.event_id == event_id)
        return self.session.execute(stmt).first() is not None

    def add(
        self,
        event_id: str,
        *,
        type: str,  # noqa: A002 - Stripe's field name
        created: int,
        payload: Any = None,
        org_id: str | None = None,
        received_at: datetime | None = None,
    ) -> bool:
        """Record an event; False if it was already recorded (a duplicate delivery)."""
        return self._insert_ignore(
            {"event_id": event_id, "org_id": org_id, "type": type, "created": created, "payload": payload,
             "received_at": received_at or self._clock()},
            ["event_id"],
        )  # fmt: skip

    def get(self, event_id: str) -> StripeEvent | None:
        return self._one(self.table.c.event_id == event_id)

    def mark_processed(self, event_id: str, outcome: str) -> None:
        result = self.session.execute(
            update(self.table)
            .where(self.table.c.event_id == event_id)
            .values(processed_at=self._clock(), outcome=outcome)
        )
        if not rowcount(result):
            raise KeyError(f"stripe event {event_id!r} was never recorded")

    def unprocessed(self, org_id: str | None = None) -> builtins.list[StripeEvent]:
        """Recorded but not processed events, in Stripe's order (oldest ``created`` first)."""
        c = self.table.c
        where = [c.processed_at.is_(None)] + ([c.org_id == org_id] if org_id else [])
        return self._all(*where, order_by=[c.created, c.event_id])


# ------------------------------------------------------------------- payouts, reconciliation
class PayoutRepository(_KeyedRepository[Payout]):
    """Stripe payouts seen for an org, keyed by the Stripe payout id."""

    table = t.payouts
    record = Payout
    key = "stripe_payout_id"
    touch = ("updated_at",)

    def list(self, org_id: str) -> builtins.list[Payout]:
        c = self.table.c
        return self._all(c.org_id == org_id, order_by=[c.arrival_date, c.stripe_payout_id])


class ReconciliationRepository(_KeyedRepository[Reconciliation]):
    """Expected against actual payout per order; ``computed_at`` is refreshed on each write."""

    table = t.payout_reconciliation
    record = Reconciliation
    key = "order_id"
    touch = ("computed_at",)

    def list(self, org_id: str, *, discrepancies_only: bool = False) -> builtins.list[Reconciliation]:
        c = self.table.c
        where = [c.org_id == org_id] + ([c.discrepancy.is_not(None)] if discrepancies_only else [])
        return self._all(*where, order_by=[c.order_id])


# ------------------------------------------------------------------ write-back, offer drafts
class WritebackStateRepository(_KeyedRepository[WritebackState]):
    """What was last written back to the org per order (payload hash skips no-op writes)."""

    table = t.writeback_state
    record = WritebackState
    key = "order_id"


class MappingCheckRepository(_KeyedRepository[MappingCheck]):
    """Per (org, mapping set): hash, describe Last-Modified and time of the last check that passed."""

    table = t.mapping_checks
    record = MappingCheck
    key = "mapping_name"


class OfferDraftRepository(_KeyedRepository[OfferDraft]):
    """Locally authored offer drafts and their push state."""

    table = t.offer_drafts
    record = OfferDraft
    key = "draft_key"
    touch = ("updated_at",)

    def list(self, org_id: str, status: str | None = None) -> builtins.list[OfferDraft]:
        c = self.table.c
        where = [c.org_id == org_id] + ([c.status == status] if status else [])
        return self._all(*where, order_by=[c.draft_key])


# -------------------------------------------------------------------------------- job runs
class JobRunRepository(_Repository[JobRun]):
    """One row per scheduled or one-off job run: what ``status`` and ``/healthz`` show."""

    table = t.job_runs
    record = JobRun

    def start(
        self, org_id: str, job: str, run_id: str, instance: str | None = None, started_at: datetime | None = None,
        *, dry_run: bool = False,
    ) -> int:
        result = self.session.execute(
            insert(self.table)
            .values(org_id=org_id, job=job, run_id=run_id, instance=instance,
                    started_at=started_at or self._clock(), status="running", dry_run=dry_run)
            .returning(self.table.c.id)
        )  # fmt: skip
        return int(result.scalar_one())

    def finish(self, run_id: int, status: str, counts: Any = None, error: str | None = None, *,
               api_calls: int | None = None, api_used: int | None = None, api_limit: int | None = None) -> JobRun:
        """Close run ``run_id`` (the id ``start`` returned) with ``status`` and, when known,
        its Salesforce API figures."""
        if status not in t.JOB_RUN_STATUSES or status == "running":
            raise ValueError(f"job run status {status!r} is not one of ok, failed, skipped")
        c = self.table.c
        self.session.execute(
            update(self.table)
            .where(c.id == run_id)
            .values(status=status, counts=counts, error=error, finished_at=self._clock(), api_calls=api_calls,
                    api_used=api_used, api_limit=api_limit)
        )
        run = self.get(run_id)
        if run is None:
            raise KeyError(f"job run {run_id} was never started")
        return run

    def get(self, run_id: int) -> JobRun | None:
        return self._one(self.table.c.id == run_id)

    def last_success(self, org_id: str, job: str) -> JobRun | None:
        """The newest ok run that was not a dry run (a dry run did none of the job's work)."""
        c = self.table.c
        runs = self._all(c.org_id == org_id, c.job == job, c.status == "ok", c.dry_run.is_(False),
                         order_by=[c.started_at.desc(), c.id.desc()], limit=1)
        return runs[0] if runs else None

    def list(self, org_id: str | None = None, job: str | None = None, limit: int = 50) -> builtins.list[JobRun]:
        """Newest first."""
        c = self.table.c
        where = ([c.org_id == org_id] if org_id else []) + ([c.job == job] if job else [])
        return self._all(*where, order_by=[c.started_at.desc(), c.id.desc()], limit=limit)

    def started_since(self, org_id: str, job: str, since: datetime) -> bool:
        """Whether any instance started a run of this (org, job) at or after ``since``
        (skipped runs and dry runs did none of its work: they don't count)."""
        c = self.table.c
        stmt = select(func.count()).select_from(self.table).where(
            c.org_id == org_id, c.job == job, c.started_at >= since, c.status != "skipped", c.dry_run.is_(False))
        return bool(self.session.execute(stmt).scalar_one())

    def close_abandoned(self, org_id: str, job: str, *, finished_at: datetime, error: str) -> int:
        """Close as failed every ``running`` row of this (org, job); how many there were."""
        c = self.table.c
        stmt = (update(self.table)
                .where(c.org_id == org_id, c.job == job, c.status == "running")
                .values(status="failed", finished_at=finished_at, error=error))
        return rowcount(self.session.execute(stmt))


_KEEP_CHARS = 2000


def _storable(value: Any) -> Any:
    """``value`` with every text free of NUL characters (shown as ``\\x00``) and cut to
    ``_KEEP_CHARS`` characters (saying how long it was); structure and other values kept."""
    if isinstance(value, str):
        text = value.replace("\x00", "\\x00")
        if len(text) > _KEEP_CHARS:
            text = f"{text[:_KEEP_CHARS]}... ({len(value)} characters)"
        return text
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value
