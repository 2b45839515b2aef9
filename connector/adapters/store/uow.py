"""The unit of work: one transaction per page or batch (STYLE §3).

    with uow:                                   # a new Session, one transaction
        uow.mirror("order").upsert_many(org_id, rows)
        uow.sync_state.advance(org_id, "SfdcPartnerOrder", page_max_modstamp, len(rows))
        uow.commit()                            # rows and cursor land together, or neither

Leaving the block without ``commit()`` rolls back; an exception inside rolls back and
propagates. On SQLite the transaction starts as ``BEGIN IMMEDIATE`` at its first
statement (see ``session_factory``): writers queue, up to the busy timeout, rather than
fail on a stale snapshot. Database errors a retry can cure (SQLite "database is locked", a lost PostgreSQL
connection, serialization failure, deadlock, lock timeout) are raised as
``TransientError`` (chained to the original), at ``commit()`` or from the block, so the
one retry policy in ``connector.retry`` retries the whole unit; every other error
propagates unchanged. The same ``SqlUnitOfWork`` can be entered again (a fresh Session
each time) but not while it is already open.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Literal, Self

from sqlalchemy import Table
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from connector.adapters.store.alerts import AlertFacts, AlertRepository
from connector.adapters.store.attention import AttentionQueries
from connector.adapters.store.clock import Clock, utcnow
from connector.adapters.store.engine import describe_db_error, is_transient
from connector.adapters.store.mirror import MirrorRepository, mirror_table
from connector.adapters.store.repositories import (
    AnomalyRepository,
    DeadLetterRepository,
    InvoiceRepository,
    JobRunRepository,
    MappingCheckRepository,
    OfferDraftRepository,
    OutboxRepository,
    PayoutRepository,
    ReconciliationRepository,
    StripeEventRepository,
    SyncStateRepository,
    WritebackStateRepository,
)
from connector.errors import TransientError


def _transient(exc: DBAPIError) -> TransientError:
    return TransientError(f"database busy or unreachable: {describe_db_error(exc)}")


class SqlUnitOfWork:
    """A transaction over the store with every repository bound to its Session."""

    session: Session
    sync_state: SyncStateRepository
    outbox: OutboxRepository
    dead_letters: DeadLetterRepository
    anomalies: AnomalyRepository
    invoices: InvoiceRepository
    stripe_events: StripeEventRepository
    payouts: PayoutRepository
    reconciliation: ReconciliationRepository
    writeback_state: WritebackStateRepository
    offer_drafts: OfferDraftRepository
    mapping_checks: MappingCheckRepository
    job_runs: JobRunRepository
    attention: AttentionQueries
    alerts: AlertRepository
    alert_facts: AlertFacts

    def __init__(self, session_factory: sessionmaker[Session], *, clock: Clock = utcnow) -> None:
        self._session_factory = session_factory
        self._clock = clock
        self._mirrors: dict[str, MirrorRepository] = {}
        self._open = False

    def __enter__(self) -> Self:
        if self._open:
            raise RuntimeError("this unit of work is already open; use a new SqlUnitOfWork for a nested one")
        session = self._session_factory()
        self.session = session
        kw: dict[str, Any] = {"clock": self._clock}
        self.sync_state = SyncStateRepository(session, **kw)
        self.outbox = OutboxRepository(session, **kw)
        self.dead_letters = DeadLetterRepository(session, **kw)
        self.anomalies = AnomalyRepository(session, **kw)
        self.invoices = InvoiceRepository(session, **kw)
        self.stripe_events = StripeEventRepository(session, **kw)
        self.payouts = PayoutRepository(session, **kw)
        self.reconciliation = ReconciliationRepository(session, **kw)
        self.writeback_state = WritebackStateRepository(session, **kw)
        self.offer_drafts = OfferDraftRepository(session, **kw)
        self.mapping_checks = MappingCheckRepository(session, **kw)
        self.job_runs = JobRunRepository(session, **kw)
        self.attention = AttentionQueries(session)
        self.alerts = AlertRepository(session, **kw)
        self.alert_facts = AlertFacts(session)
        self._mirrors = {}
        self._open = True
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        try:
            self._safe_rollback()  # a no-op after commit(); undoes everything otherwise
        finally:
            self.session.close()
            self._open = False
        if isinstance(exc, DBAPIError) and is_transient(exc):
            raise _transient(exc) from exc
        return False

    def mirror(self, object_key_or_table: str | Table) -> MirrorRepository:
        """The mirror repository for a mapping object key (``"order"``) or table (``"orders"``)."""
        self._require_open()
        table = mirror_table(object_key_or_table)
        repo = self._mirrors.get(table.name)
        if repo is None:
            repo = self._mirrors[table.name] = MirrorRepository(self.session, table, clock=self._clock)
        return repo

    def commit(self) -> None:
        """Make everything written in this unit durable, at once."""
        self._require_open()
        try:
            self.session.commit()
        except DBAPIError as exc:
            self._safe_rollback()
            if is_transient(exc):
                raise _transient(exc) from exc
            raise

    def rollback(self) -> None:
        self._require_open()
        self.session.rollback()

    def _safe_rollback(self) -> None:
        try:
            self.session.rollback()
        except DBAPIError:
            pass  # the connection is gone; closing the session discards it

    def _require_open(self) -> None:
        if not self._open:
            raise RuntimeError("use the unit of work inside `with uow:`")
