"""In-memory fakes of the ports (``connector.services.ports``), for service tests that test
logic and need no database and no server.

* ``FakeStore`` holds the rows; ``FakeUnitOfWork`` is one transaction over it: writes go to
  the store's tables only at ``commit()`` (leaving the block without one discards them),
  like ``SqlUnitOfWork``. Rows are the store's own record types (``Invoice``, ``DeadLetter``,
  ``JobRun``, ``SyncState``, ``OutboxEntry``, ``Alert``...), so a service reads what it reads
  in production; ``tests/integration/store/test_fakes_agree.py`` holds the repositories to
  the SQL ones. No mirror tables: ``mirror()`` and the ``attention`` reads raise.
* ``FakeOrg``, ``FakeBilling``, ``FakePayouts``: the gateways, recording calls and
  counting API calls; ``FakeBilling`` honours idempotency keys.
* ``FakeRuntime``: an ``OrgContext`` wiring them for one org (a real ``OrgConfig``).

They are checked against the Protocols in ``tests/unit/test_ports.py``, as the adapters are.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, ClassVar, Generic, Self, TypeVar

import structlog

from connector.adapters.store.alerts import API_LIMIT_ERROR_PREFIX, Alert
from connector.adapters.store.records import (
    DeadLetter,
    Invoice,
    JobRun,
    MappingCheck,
    OfferDraft,
    OutboxEntry,
    Payout,
    Reconciliation,
    SyncState,
    WritebackState,
)
from connector.adapters.store.tables import OUTBOX_STATUSES
from connector.config import OrgConfig
from connector.domain import InvoiceLine, InvoicePlan
from connector.domain.reconciliation import BalanceTxn, StripePayout
from connector.errors import PermanentError
from connector.mappings import MappingSet
from connector.services.billing_port import BillingEvent, StripeCustomer, StripeInvoice
from connector.services.ports import MirrorStore


def _now() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------------ the store
@dataclass
class FakeStore:
    """Every table of the fake store: plain dicts, keyed as the real tables are."""

    invoices: dict[tuple[str, str], Invoice] = field(default_factory=dict)
    dead_letters: dict[int, DeadLetter] = field(default_factory=dict)
    job_runs: dict[int, JobRun] = field(default_factory=dict)
    stripe_events: dict[str, dict[str, Any]] = field(default_factory=dict)
    anomalies: list[dict[str, Any]] = field(default_factory=list)
    sync_state: dict[tuple[str, str], SyncState] = field(default_factory=dict)
    outbox: dict[str, OutboxEntry] = field(default_factory=dict)
    payouts: dict[tuple[str, str], Payout] = field(default_factory=dict)
    reconciliation: dict[tuple[str, str], Reconciliation] = field(default_factory=dict)
    writeback_state: dict[tuple[str, str], WritebackState] = field(default_factory=dict)
    offer_drafts: dict[tuple[str, str], OfferDraft] = field(default_factory=dict)
    mapping_checks: dict[tuple[str, str], MappingCheck] = field(default_factory=dict)
    alerts: dict[int, Alert] = field(default_factory=dict)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    commits: int = 0

    # The tables a unit of work copies on entry and puts back at commit.
    TABLES: ClassVar[tuple[str, ...]] = (
        "invoices", "dead_letters", "job_runs", "stripe_events", "anomalies", "sync_state", "outbox", "payouts",
        "reconciliation", "writeback_state", "offer_drafts", "mapping_checks", "alerts")


class _Repo:
    def __init__(self, tables: FakeStore, clock: Any) -> None:
        self.t = tables
        self.clock = clock


class FakeInvoices(_Repo):
    def get(self, org_id: str, key: str) -> Invoice | None:
        return self.t.invoices.get((org_id, key))

    def upsert(self, org_id: str, key: str, /, **values: Any) -> Invoice:
        now = self.clock()
        current = self.t.invoices.get((org_id, key))
        if current is None:
            blank = {f.name: None for f in fields(Invoice)}
            current = Invoice(**{**blank, "org_id": org_id, "order_id": key, "created_at": now, "updated_at": now})
        row = replace(current, **{"updated_at": now, **values})
        self.t.invoices[(org_id, key)] = row
        return row

    def get_by_stripe_id(self, stripe_invoice_id: str, *, lock: bool = False) -> Invoice | None:
        return next((r for r in self.t.invoices.values() if r.stripe_invoice_id == stripe_invoice_id), None)

    def list(self, org_id: str, status: str | None = None) -> list[Invoice]:
        return [r for (org, _), r in self.t.invoices.items() if org == org_id and status in (None, r.status)]


class FakeDeadLetters(_Repo):
    def add(self, org_id: str, source: str, object_name: str, record_id: str, code: str, reason: str,
            payload: Any = None) -> int:
        now = self.clock()
        for letter in self.t.dead_letters.values():
            if (letter.org_id, letter.source, letter.object_name, letter.record_id) == (
                    org_id, source, object_name, record_id) and letter.is_open:
                self.t.dead_letters[letter.id] = replace(letter, error_code=code, reason=reason, payload=payload,
                                                         attempts=letter.attempts + 1, updated_at=now)
                return letter.id
        letter_id = next(self.t.ids)
        self.t.dead_letters[letter_id] = DeadLetter(letter_id, org_id, source, object_name, record_id, code, reason,
                                                    payload, 1, now, now, None)
        return letter_id

    def get(self, letter_id: int) -> DeadLetter | None:
        return self.t.dead_letters.get(letter_id)

    def open(self, org_id: str | None = None, source: str | None = None,
             ids: Any = None) -> list[DeadLetter]:
        wanted = set(ids) if ids is not None else None
        return [d for d in sorted(self.t.dead_letters.values(), key=lambda d: d.id)
                if d.is_open and org_id in (None, d.org_id) and source in (None, d.source)
                and (wanted is None or d.id in wanted)]

    def resolve(self, letter_id: int) -> bool:
        letter = self.t.dead_letters.get(letter_id)
        if letter is None or not letter.is_open:
            return False
        self.t.dead_letters[letter_id] = replace(letter, resolved_at=self.clock())
        return True

    def resolve_for(self, org_id: str, source: str, object_name: str, record_id: str) -> bool:
        for letter in self.open(org_id, source):
            if (letter.object_name, letter.record_id) == (object_name, record_id):
                return self.resolve(letter.id)
        return False

    def count_open(self, org_id: str, source: str | None = None, *, error_code: str | None = None) -> int:
        return sum(1 for d in self.open(org_id, source) if error_code in (None, d.error_code))


class FakeJobRuns(_Repo):
    def start(self, org_id: str, job: str, run_id: str, instance: str | None = None,
              started_at: datetime | None = None, *, dry_run: bool = False) -> int:
        row_id = next(self.t.ids)
        self.t.job_runs[row_id] = JobRun(row_id, org_id, job, run_id, instance, started_at or self.clock(), None,
                                         "running", None, None, dry_run=dry_run)
        return row_id

    def finish(self, run_id: int, status: str, counts: Any = None, error: str | None = None, *,
               api_calls: int | None = None, api_used: int | None = None, api_limit: int | None = None) -> JobRun:
        row = replace(self.t.job_runs[run_id], status=status, counts=counts, error=error, finished_at=self.clock(),
                      api_calls=api_calls, api_used=api_used, api_limit=api_limit)
        self.t.job_runs[run_id] = row
        return row

    def last_success(self, org_id: str, job: str) -> JobRun | None:
        done = [r for r in self.t.job_runs.values()
                if (r.org_id, r.job, r.status) == (org_id, job, "ok") and not r.dry_run]
        return max(done, key=lambda r: (r.started_at, r.id), default=None)

    def started_since(self, org_id: str, job: str, since: datetime) -> bool:
        return any((r.org_id, r.job) == (org_id, job) and r.started_at >= since and r.status != "skipped"
                   and not r.dry_run for r in self.t.job_runs.values())

    def close_abandoned(self, org_id: str, job: str, *, finished_at: datetime, error: str) -> int:
        running = [r for r in self.t.job_runs.values() if (r.org_id, r.job, r.status) == (org_id, job, "running")]
        for r in running:
            self.t.job_runs[r.id] = replace(r, status="failed", finished_at=finished_at, error=error)
        return len(running)

    def list(self, org_id: str | None = None, job: str | None = None, limit: int = 50) -> list[JobRun]:
        """Newest first."""
        return [r for r in sorted(self.t.job_runs.values(), key=lambda r: r.id, reverse=True)
                if org_id in (None, r.org_id) and job in (None, r.job)][:limit]


class FakeStripeEvents(_Repo):
    def seen(self, event_id: str) -> bool:
        return event_id in self.t.stripe_events

    def add(self, event_id: str, *, type: str, created: int, payload: Any = None,  # noqa: A002
            org_id: str | None = None, received_at: datetime | None = None) -> bool:
        if event_id in self.t.stripe_events:
            return False
        self.t.stripe_events[event_id] = {"type": type, "created": created, "payload": payload, "org_id": org_id,
                                          "outcome": None}
        return True

    def mark_processed(self, event_id: str, outcome: str) -> None:
        self.t.stripe_events[event_id]["outcome"] = outcome


class FakeAnomalies(_Repo):
    def add(self, org_id: str, object_name: str, record_id: str, machine: str, from_state: str | None,
            to_state: str | None, detail: str | None = None, observed_at: datetime | None = None) -> int:
        self.t.anomalies.append({"org_id": org_id, "object": object_name, "record_id": record_id, "machine": machine,
                                 "from": from_state, "to": to_state, "detail": detail})
        return len(self.t.anomalies)

    def count(self, org_id: str) -> int:
        return sum(1 for a in self.t.anomalies if a["org_id"] == org_id)

    def list(self, org_id: str, object_name: str | None = None) -> list[dict[str, Any]]:
        return [a for a in self.t.anomalies if a["org_id"] == org_id and object_name in (None, a["object"])]


R = TypeVar("R")


def _next_id(rows: Iterable[Any]) -> int:
    """The id a table's next row gets: one more than the largest (as a fresh SQL table counts)."""
    return max((r.id for r in rows), default=0) + 1


class FakeSyncState(_Repo):
    UNFINISHED = ("running", "failed", "stopped")

    def get(self, org_id: str, object_name: str) -> SyncState | None:
        return self.t.sync_state.get((org_id, object_name))

    def advance(self, org_id: str, object_name: str, cursor: datetime | None, records: int = 0) -> SyncState:
        current = self._ensure(org_id, object_name)
        values: dict[str, Any] = {"records_total": current.records_total + records, "updated_at": self.clock()}
        if cursor is not None and (current.cursor is None or cursor > current.cursor):
            values["cursor"] = cursor
        return self._update(current, values)

    def mark_run(self, org_id: str, object_name: str, status: str, full: bool = False) -> SyncState:
        now = self.clock()
        values: dict[str, Any] = {"last_run_at": now, "last_status": status, "updated_at": now}
        if full:
            values["last_full_at"] = now
        return self._update(self._ensure(org_id, object_name), values)

    def begin(self, org_id: str, object_name: str) -> SyncState:
        current = self._ensure(org_id, object_name)
        now = self.clock()
        values: dict[str, Any] = {"last_status": "running", "updated_at": now}
        if current.last_status not in self.UNFINISHED or current.last_run_at is None:
            values["last_run_at"] = now
        return self._update(current, values)

    def set_status(self, org_id: str, object_name: str, status: str) -> SyncState:
        return self._update(self._ensure(org_id, object_name), {"last_status": status, "updated_at": self.clock()})

    def unfinished_since(self, org_id: str, object_names: Iterable[str]) -> datetime | None:
        names = list(object_names)
        starts = [s.last_run_at for s in self.all(org_id)
                  if s.object_name in names and s.last_status in self.UNFINISHED and s.last_run_at is not None]
        return min(starts) if starts else None

    def all(self, org_id: str) -> list[SyncState]:
        return sorted((s for (org, _), s in self.t.sync_state.items() if org == org_id), key=lambda s: s.object_name)

    def _ensure(self, org_id: str, object_name: str) -> SyncState:
        state = self.get(org_id, object_name)
        if state is None:
            state = SyncState(org_id, object_name, None, None, None, None, 0, self.clock())
            self.t.sync_state[(org_id, object_name)] = state
        return state

    def _update(self, current: SyncState, values: Mapping[str, Any]) -> SyncState:
        row = replace(current, **values)
        self.t.sync_state[(row.org_id, row.object_name)] = row
        return row


class FakeOutbox(_Repo):
    def get(self, key: str) -> OutboxEntry | None:
        return self.t.outbox.get(key)

    def record_intent(self, org_id: str, key: str, operation: str, subject_id: str, request: Any) -> OutboxEntry:
        if key not in self.t.outbox:
            now = self.clock()
            self.t.outbox[key] = OutboxEntry(_next_id(self.t.outbox.values()), org_id, key, operation, subject_id,
                                             request, "pending", None, None, 0, now, now)
        return self.t.outbox[key]

    def record_result(self, key: str, result: Any, status: str = "done", error: str | None = None) -> OutboxEntry:
        if status not in OUTBOX_STATUSES:
            raise ValueError(f"outbox status {status!r} is not one of {OUTBOX_STATUSES}")
        entry = self.t.outbox.get(key)
        if entry is None:
            raise KeyError(f"outbox: no intent recorded under key {key!r}")
        self.t.outbox[key] = replace(entry, result=result, status=status, error=error, attempts=entry.attempts + 1,
                                     updated_at=self.clock())
        return self.t.outbox[key]

    def pending(self, org_id: str) -> list[OutboxEntry]:
        return [e for e in self._ordered() if e.org_id == org_id and e.status == "pending"]

    def has_other_keys(self, org_id: str, operation: str, prefix: str) -> bool:
        return any(e.org_id == org_id and e.operation == operation and not e.idempotency_key.startswith(prefix)
                   for e in self.t.outbox.values())

    def for_subject(self, org_id: str, subject_id: str) -> list[OutboxEntry]:
        return [e for e in self._ordered() if (e.org_id, e.subject_id) == (org_id, subject_id)]

    def _ordered(self) -> list[OutboxEntry]:
        return sorted(self.t.outbox.values(), key=lambda e: e.id)


class _FakeKeyed(_Repo, Generic[R]):
    """A table keyed by ``(org_id, <key>)``, like ``_KeyedRepository``: ``insert_defaults``
    are set to now on a new row, ``touch`` columns on every write unless passed."""

    table: ClassVar[str]
    record: type[Any]
    key: ClassVar[str]
    insert_defaults: ClassVar[tuple[str, ...]] = ()
    touch: ClassVar[tuple[str, ...]] = ()

    @property
    def rows(self) -> dict[tuple[str, str], R]:
        rows: dict[tuple[str, str], R] = getattr(self.t, self.table)
        return rows

    def get(self, org_id: str, key: str) -> R | None:
        return self.rows.get((org_id, key))

    def upsert(self, org_id: str, key: str, /, **values: Any) -> R:
        columns = {f.name for f in fields(self.record)}
        unknown = set(values) - (columns - {"org_id", self.key})
        if unknown:
            raise TypeError(f"{self.table}: unknown column(s) {', '.join(sorted(unknown))}")
        now = self.clock()
        current: Any = self.rows.get((org_id, key))
        if current is None:
            blank = {name: None for name in columns}
            current = self.record(**{**blank, **{c: now for c in self.insert_defaults}, "org_id": org_id,
                                     self.key: key})
        row: R = replace(current, **{**{c: now for c in self.touch}, **values})
        self.rows[(org_id, key)] = row
        return row

    def list(self, org_id: str) -> list[R]:
        return [row for (org, _), row in sorted(self.rows.items()) if org == org_id]


class FakePayoutStore(_FakeKeyed[Payout]):
    table, record, key, touch = "payouts", Payout, "stripe_payout_id", ("updated_at",)

    def list(self, org_id: str) -> list[Payout]:
        return sorted(super().list(org_id), key=lambda p: (p.arrival_date is None, p.arrival_date or 0,
                                                           p.stripe_payout_id))


class FakeReconciliation(_FakeKeyed[Reconciliation]):
    table, record, key, touch = "reconciliation", Reconciliation, "order_id", ("computed_at",)

    def list(self, org_id: str, *, discrepancies_only: bool = False) -> list[Reconciliation]:
        return [r for r in super().list(org_id) if not discrepancies_only or r.discrepancy is not None]


class FakeWritebackState(_FakeKeyed[WritebackState]):
    table, record, key = "writeback_state", WritebackState, "order_id"


class FakeOfferDrafts(_FakeKeyed[OfferDraft]):
    table, record, key, touch = "offer_drafts", OfferDraft, "draft_key", ("updated_at",)

    def list(self, org_id: str, status: str | None = None) -> list[OfferDraft]:
        return [d for d in super().list(org_id) if status in (None, d.status)]


class FakeMappingChecks(_FakeKeyed[MappingCheck]):
    table, record, key = "mapping_checks", MappingCheck, "mapping_name"


class FakeAlerts(_Repo):
    def record(self, org_id: str, key: str, event: str, payload: Any, *, now: datetime | None = None) -> bool:
        key = key[:255]
        if any((a.org_id, a.key) == (org_id, key) for a in self.t.alerts.values()):
            return False
        alert_id = _next_id(self.t.alerts.values())
        self.t.alerts[alert_id] = Alert(alert_id, org_id, key, event, payload, "pending", 0, None,
                                        now or self.clock(), None, None)
        return True

    def pending(self, org_id: str, limit: int = 100) -> list[Alert]:
        return [a for a in self.list(org_id) if a.status == "pending"][:limit]

    def list(self, org_id: str) -> list[Alert]:
        return sorted((a for a in self.t.alerts.values() if a.org_id == org_id), key=lambda a: a.id)

    def claim(self, alert_id: int, *, now: datetime | None = None) -> bool:
        alert = self.t.alerts.get(alert_id)
        if alert is None or alert.status != "pending":
            return False
        self.t.alerts[alert_id] = replace(alert, attempts=alert.attempts + 1, last_attempt_at=now or self.clock())
        return True

    def mark_sent(self, alert_id: int, *, now: datetime | None = None) -> None:
        self.t.alerts[alert_id] = replace(self.t.alerts[alert_id], status="sent", sent_at=now or self.clock(),
                                          last_error=None)

    def mark_failed(self, alert_id: int, error: str) -> None:
        self.t.alerts[alert_id] = replace(self.t.alerts[alert_id], last_error=error[:2000])

    def count_pending(self, org_id: str) -> int:
        return len(self.pending(org_id, limit=len(self.t.alerts)))


class FakeAlertFacts(_Repo):
    """Reads of the fake's job runs, as ``AlertFacts`` reads ``job_runs``."""

    def jobs(self, org_id: str) -> list[str]:
        return sorted({r.job for r in self.t.job_runs.values() if r.org_id == org_id})

    def failed_streak(self, org_id: str, job: str, limit: int) -> list[JobRun]:
        real = [r for r in sorted(self.t.job_runs.values(), key=lambda r: r.id)
                if (r.org_id, r.job) == (org_id, job) and not r.dry_run]
        last_ok = max((r.id for r in real if r.status == "ok"), default=0)
        return [r for r in real if r.status == "failed" and r.id > last_ok][:limit]

    def budget_stops_since(self, org_id: str, since: datetime) -> list[JobRun]:
        return [r for r in sorted(self.t.job_runs.values(), key=lambda r: r.id)
                if r.org_id == org_id and r.status == "stopped" and r.finished_at is not None
                and r.finished_at >= since and (r.error or "").startswith(API_LIMIT_ERROR_PREFIX)]


class FakeAttention:
    """The attention reads join mirror tables, which the fake store does not have."""

    def invoiced_orders_in(self, org_id: str, labels: Collection[str]) -> list[dict[str, Any]]:
        raise NotImplementedError("the fake store has no mirror tables; test attention against SQLite")

    def sold_without_license(self, org_id: str, labels: Collection[str]) -> list[dict[str, Any]]:
        raise NotImplementedError("the fake store has no mirror tables; test attention against SQLite")


class _NoBillingLinks:
    """The billing junction of a fake store: empty (an order's invoice is its own row's).
    Only reading is supported; mirror writes are tested against SQLite."""

    def list(self, org_id: str, *, include_deleted: bool = False, **equals: Any) -> list[dict[str, Any]]:
        return []

    def __getattr__(self, name: str) -> Any:
        raise NotImplementedError(f"the fake store's billing junction has no {name}; test the mirror against SQLite")


_NO_BILLING_LINKS: Any = _NoBillingLinks()


class FakeUnitOfWork:
    """One transaction over a ``FakeStore``: the repositories work on a copy of its tables,
    which replaces the store's at ``commit()``."""

    def __init__(self, store: FakeStore, clock: Any = _now) -> None:
        self.store = store
        self.clock = clock
        self.committed = False
        # The attention reads need mirror tables: a service reaching them fails loudly.
        self.attention = FakeAttention()

    def __enter__(self) -> Self:
        self._work = copy.copy(self.store)
        for name in FakeStore.TABLES:
            setattr(self._work, name, copy.copy(getattr(self.store, name)))
        self.invoices = FakeInvoices(self._work, self.clock)
        self.dead_letters = FakeDeadLetters(self._work, self.clock)
        self.job_runs = FakeJobRuns(self._work, self.clock)
        self.stripe_events = FakeStripeEvents(self._work, self.clock)
        self.anomalies = FakeAnomalies(self._work, self.clock)
        self.sync_state = FakeSyncState(self._work, self.clock)
        self.outbox = FakeOutbox(self._work, self.clock)
        self.payouts = FakePayoutStore(self._work, self.clock)
        self.reconciliation = FakeReconciliation(self._work, self.clock)
        self.writeback_state = FakeWritebackState(self._work, self.clock)
        self.offer_drafts = FakeOfferDrafts(self._work, self.clock)
        self.mapping_checks = FakeMappingChecks(self._work, self.clock)
        self.alerts = FakeAlerts(self._work, self.clock)
        self.alert_facts = FakeAlertFacts(self._work, self.clock)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None  # what was not committed is dropped with the copy

    def mirror(self, object_key_or_table: str) -> MirrorStore:
        if object_key_or_table == "billing_link":
            return _NO_BILLING_LINKS  # invoice status asks which invoices an order has: only its own
        raise NotImplementedError("the fake store has no mirror tables; test the mirror against SQLite")

    def commit(self) -> None:
        for name in FakeStore.TABLES:
            setattr(self.store, name, getattr(self._work, name))
        self.store.commits += 1
        self.committed = True

    def rollback(self) -> None:
        self.__enter__()


# ------------------------------------------------------------------------ the org
@dataclass
class FakeUsage:
    used: int
    limit: int

    @property
    def remaining(self) -> int:
        return self.limit - self.used


class FakeOrg:
    """The org gateway: records by sObject and Id, every call counted as one API call."""

    def __init__(self, records: Mapping[str, Sequence[dict[str, Any]]] | None = None, *, limit: int = 100_000) -> None:
        self.records = {k: list(v) for k, v in (records or {}).items()}
        self.calls: list[tuple[str, Any]] = []
        self.upserted: list[tuple[str, str, list[Mapping[str, Any]]]] = []
        self.limit = limit
        self.closed = False

    def _call(self, name: str, arg: Any = None) -> None:
        self.calls.append((name, arg))

    @property
    def api_calls(self) -> int:
        return len(self.calls)

    @property
    def api_usage(self) -> FakeUsage | None:
        return FakeUsage(len(self.calls), self.limit) if self.calls else None

    def query_pages(self, soql: str, include_deleted: bool = False) -> Iterator[Any]:
        self._call("query", soql)
        return iter(())

    def composite_queries(self, soqls: Sequence[str], include_deleted: bool = False, batch_size: int | None = None,
                          raise_errors: bool = True) -> Sequence[Any]:
        self._call("composite_queries", list(soqls))
        return []

    def prime_queries(self, soqls: Sequence[str], include_deleted: bool = False) -> int:
        self._call("composite_queries", list(soqls))
        return 0  # nothing kept: each query_pages asks on its own

    def forget_primed(self) -> None:
        pass

    def get(self, sobject: str, record_id: str, fields: Sequence[str] | None = None) -> dict[str, Any] | None:
        self._call("get", (sobject, record_id))
        return next((dict(r) for r in self.records.get(sobject, []) if r.get("Id") == record_id), None)

    def subrequest(self, method: str, path: str, reference_id: str,
                   body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {"method": method, "url": path, "referenceId": reference_id, **({"body": body} if body else {})}

    def composite(self, subrequests: Sequence[Mapping[str, Any]], *, all_or_none: bool) -> Sequence[Any]:
        self._call("composite", len(subrequests))
        return []

    def upsert_collection(self, sobject: str, external_id_field: str,
                          records: Sequence[Mapping[str, Any]]) -> Sequence[Any]:
        self._call("upsert_collection", sobject)
        self.upserted.append((sobject, external_id_field, list(records)))
        return []

    def describes(self, sobjects: Sequence[str], *, if_modified_since: str | None = None) -> dict[str, Any]:
        self._call("describes", list(sobjects))
        return {}

    def close(self) -> None:
        self.closed = True


# ------------------------------------------------------------------------ Stripe
def an_invoice(invoice_id: str, status: str | None = "open", **overrides: Any) -> StripeInvoice:
    from decimal import Decimal

    base: dict[str, Any] = dict(id=invoice_id, customer_id="cus_1", status=status, number=None, hosted_url=None,
                                currency="usd", total=Decimal("100.00"), amount_due=Decimal("100.00"),
                                amount_paid=Decimal("0.00"), amount_remaining=Decimal("100.00"), line_count=1,
                                created=1_700_000_000)
    if status == "paid":
        base.update(amount_paid=Decimal("100.00"), amount_remaining=Decimal("0.00"))
    return StripeInvoice(**{**base, **overrides})


class FakeBilling:
    """Stripe invoicing in memory: invoices by id, customers by e-mail, writes idempotent
    by key (the same key returns the first answer), events verified by the secret alone."""

    def __init__(self) -> None:
        self.invoices: dict[str, StripeInvoice] = {}
        self.customers: dict[str, StripeCustomer] = {}
        self.sent: set[str] = set()
        self.calls: list[str] = []
        self._answers: dict[str, Any] = {}
        self._ids = itertools.count(1)

    def _once(self, key: str, make: Any) -> Any:
        if key not in self._answers:
            self._answers[key] = make()
        return self._answers[key]

    def find_customer(self, *, org_id: str, email: str) -> StripeCustomer | None:
        self.calls.append("find_customer")
        return replace(self.customers[email], created=False) if email in self.customers else None

    def create_customer(self, *, org_id: str, email: str, name: str | None, customer_org_id: str | None,
                        order_id: str, key: str) -> StripeCustomer:
        self.calls.append("customer")

        def make() -> StripeCustomer:
            self.customers[email] = StripeCustomer(f"cus_{next(self._ids)}", email, created=True)
            return self.customers[email]

        return self._once(key, make)

    def create_invoice(self, plan: InvoicePlan, customer_id: str, key: str) -> StripeInvoice:
        self.calls.append("create_invoice")

        def make() -> StripeInvoice:
            invoice = an_invoice(f"in_{next(self._ids)}", "draft", customer_id=customer_id,
                                 metadata=dict(getattr(plan, "metadata", {}) or {}))
            self.invoices[invoice.id] = invoice
            return invoice

        return self._once(key, make)

    def add_lines(self, invoice_id: str, lines: Sequence[InvoiceLine], currency: str, key: str) -> StripeInvoice:
        self.calls.append("add_lines")
        return self._once(key, lambda: self.invoices[invoice_id])

    def send(self, invoice_id: str, key: str) -> StripeInvoice:
        """Finalizes a draft first, as Stripe does."""
        self.calls.append("send")
        if self.invoices[invoice_id].status == "draft":
            self.invoices[invoice_id] = replace(self.invoices[invoice_id], status="open")
        self.sent.add(invoice_id)
        return self.invoices[invoice_id]

    def find_invoice_by_metadata(self, org_id: str, order_id: str, *,
                                 customer_id: str | None = None) -> StripeInvoice | None:
        return next((i for i in self.invoices.values() if i.metadata.get("gtm_order_id") == order_id
                     and i.status != "void"), None)

    def retrieve_invoice(self, invoice_id: str) -> StripeInvoice:
        self.calls.append(f"retrieve {invoice_id}")
        return self.invoices[invoice_id]

    def was_sent(self, invoice_id: str, *, since: datetime | None = None) -> bool:
        return invoice_id in self.sent

    def find_salesforce_invoice(self, order_id: str) -> StripeInvoice | None:
        return None

    def list_invoices(self, org_id: str, *, status: str | None = None) -> Iterator[StripeInvoice]:
        return iter([i for i in self.invoices.values() if status in (None, i.status)])

    def verify_event(self, payload: bytes, signature_header: str | None, secret: str) -> BillingEvent:
        """The body is the event id; the signature header must be the secret itself."""
        if signature_header != secret:
            raise PermanentError("signature does not verify")
        event_id = payload.decode() or "evt_empty"
        return BillingEvent(event_id, "customer.updated", 1_700_000_000, "customer")


class FakePayouts:
    def __init__(self, payouts: Sequence[StripePayout] = (),
                 transactions: Mapping[str, Sequence[BalanceTxn]] | None = None) -> None:
        self.payouts = list(payouts)
        self.txns = dict(transactions or {})
        self.calls: list[str] = []

    def list_payouts(self, created_since: int | None = None) -> Sequence[StripePayout]:
        self.calls.append("list_payouts")
        return [p for p in self.payouts if created_since is None or p.created >= created_since]

    def transactions(self, payout: StripePayout) -> Sequence[BalanceTxn]:
        self.calls.append(f"transactions {payout.id}")
        return list(self.txns.get(payout.id, ()))


# ------------------------------------------------------------------------ one org
class FakeRuntime:
    """An ``OrgContext`` on the fakes: a real config and mapping, a ``FakeStore``, fake
    gateways, and an in-process (org, job) lock."""

    def __init__(self, config: OrgConfig, mapping: MappingSet, *, store: FakeStore | None = None,
                 org: FakeOrg | None = None, billing: FakeBilling | None = None,
                 payouts: FakePayouts | None = None, clock: Any = _now) -> None:
        self.config = config
        self.mapping = mapping
        self.store = store or FakeStore()
        self.clock = clock
        self.org = org or FakeOrg()
        self.fake_billing = billing or FakeBilling()
        self.fake_payouts = payouts or FakePayouts()
        self._built_org = False
        self.held: set[str] = set()  # jobs whose lock "another instance" holds
        self._locks: dict[str, threading.Lock] = {}

    def uow(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self.store, self.clock)

    @property
    def alias(self) -> str:
        return self.config.alias

    @property
    def org_id(self) -> str:
        return self.config.org_id

    def logger(self, job: str, run_id: str | None = None) -> Any:
        return structlog.get_logger("test").bind(org=self.alias, job=job, run_id=run_id)

    def salesforce(self) -> FakeOrg:
        self._built_org = True
        return self.org

    def built_salesforce(self) -> FakeOrg | None:
        return self.org if self._built_org else None

    def billing(self) -> FakeBilling:
        return self.fake_billing

    def payouts(self) -> FakePayouts:
        return self.fake_payouts

    def mapping_guard(self) -> Any:
        raise NotImplementedError("the fake runtime has no mapping guard")

    def bulk_query(self) -> None:
        return None  # no Bulk API 2.0 here: the mirror reads REST pages

    @contextmanager
    def job_lock(self, job: str) -> Iterator[bool]:
        lock = self._locks.setdefault(job, threading.Lock())
        if job in self.held or not lock.acquire(blocking=False):
            yield False
            return
        try:
            yield True
        finally:
            lock.release()
