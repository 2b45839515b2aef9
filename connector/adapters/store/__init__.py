"""The local model: SQLAlchemy 2 tables, repositories and unit of work, Alembic migrations.

Runs unchanged on SQLite (embedded default) and PostgreSQL (production)::

    engine = make_engine(config.database_url)
    upgrade(engine)                                   # Alembic, to the newest revision
    uow = SqlUnitOfWork(session_factory(engine))
    with advisory_lock(engine, org_id, "mirror") as acquired:
        with uow:
            uow.mirror("order").upsert_many(org_id, rows)
            uow.sync_state.advance(org_id, "SfdcPartnerOrder", cursor, len(rows))
            uow.commit()
"""

from connector.adapters.store.clock import Clock, utcnow
from connector.adapters.store.engine import advisory_lock, is_transient, json_dumps, make_engine, session_factory
from connector.adapters.store.migrate import current_revision, head_revision, upgrade
from connector.adapters.store.mirror import MirrorRepository, mirror_table
from connector.adapters.store.records import (
    Anomaly,
    DeadLetter,
    Invoice,
    JobRun,
    OfferDraft,
    OutboxEntry,
    Payout,
    Reconciliation,
    StripeEvent,
    SyncState,
    UpsertResult,
    WritebackState,
)
from connector.adapters.store.repositories import (
    AnomalyRepository,
    DeadLetterRepository,
    InvoiceRepository,
    JobRunRepository,
    OfferDraftRepository,
    OutboxRepository,
    PayoutRepository,
    ReconciliationRepository,
    StripeEventRepository,
    SyncStateRepository,
    WritebackStateRepository,
)
from connector.adapters.store.tables import (
    MIRROR_TABLES,
    OBJECT_TABLES,
    column_length,
    column_scale,
    metadata,
    mirror_columns,
)
from connector.adapters.store.types import ExactDecimal, Json, Money, Percent, UtcDateTime
from connector.adapters.store.uow import SqlUnitOfWork

__all__ = [
    "MIRROR_TABLES",
    "OBJECT_TABLES",
    "Anomaly",
    "AnomalyRepository",
    "Clock",
    "DeadLetter",
    "DeadLetterRepository",
    "ExactDecimal",
    "Invoice",
    "InvoiceRepository",
    "JobRun",
    "JobRunRepository",
    "Json",
    "MirrorRepository",
    "Money",
    "OfferDraft",
    "OfferDraftRepository",
    "OutboxEntry",
    "OutboxRepository",
    "Payout",
    "PayoutRepository",
    "Percent",
    "Reconciliation",
    "ReconciliationRepository",
    "SqlUnitOfWork",
    "StripeEvent",
    "StripeEventRepository",
    "SyncState",
    "SyncStateRepository",
    "UpsertResult",
    "UtcDateTime",
    "WritebackState",
    "WritebackStateRepository",
    "advisory_lock",
    "current_revision",
    "head_revision",
    "is_transient",
    "json_dumps",
    "make_engine",
    "metadata",
    "mirror_columns",
    "column_length",
    "column_scale",
    "mirror_table",
    "session_factory",
    "upgrade",
    "utcnow",
]
