"""What the repositories return: plain frozen dataclasses, one per connector table row.

Field names are the column names, so ``Record(**row._mapping)`` builds them; amounts are
``Decimal``, datetimes aware UTC. Mirror rows are plain dicts instead (their columns vary
by table).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Self

from sqlalchemy import Row


class _FromRow:
    @classmethod
    def from_row(cls, row: Row[Any]) -> Self:
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in row._mapping.items() if k in names})


@dataclass(frozen=True)
class UpsertResult:
    """Counts of one ``MirrorRepository.upsert_many`` call, and ``stored``: what was stored
    for the page's ids before it (by sf_id; none on a first mirror's insert of new ids)."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    stored: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def written(self) -> int:
        return self.inserted + self.updated

    def __add__(self, other: UpsertResult) -> UpsertResult:
        return UpsertResult(
            self.inserted + other.inserted, self.updated + other.updated, self.unchanged + other.unchanged,
            {**self.stored, **other.stored},
        )


@dataclass(frozen=True)
class SyncState(_FromRow):
    org_id: str
    object_name: str
    cursor: datetime | None
    last_run_at: datetime | None
    last_full_at: datetime | None
    last_status: str | None
    records_total: int
    updated_at: datetime


@dataclass(frozen=True)
class OutboxEntry(_FromRow):
    id: int
    org_id: str
    idempotency_key: str
    operation: str
    subject_id: str
    request: Any
    status: str  # pending | done | failed
    result: Any
    error: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class DeadLetter(_FromRow):
    id: int
    org_id: str
    source: str  # mirror | offers_push | invoicing | payouts | writeback
    object_name: str
    record_id: str
    error_code: str
    reason: str
    payload: Any
    attempts: int
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


@dataclass(frozen=True)
class Anomaly(_FromRow):
    id: int
    org_id: str
    object_name: str
    record_id: str
    machine: str
    from_state: str | None
    to_state: str | None
    detail: str | None
    observed_at: datetime


@dataclass(frozen=True)
class Invoice(_FromRow):
    org_id: str
    order_id: str
    stripe_invoice_id: str | None
    stripe_customer_id: str | None
    number: str | None
    hosted_url: str | None
    status: str | None
    due_date: date | None
    currency: str | None
    amount_due: Decimal | None
    amount_paid: Decimal | None
    amount_remaining: Decimal | None
    plan_version: str | None
    created_at: datetime
    finalized_at: datetime | None
    sent_at: datetime | None
    paid_at: datetime | None
    voided_at: datetime | None
    last_event_id: str | None
    last_event_created: int | None
    status_source: str | None  # create | adopt | webhook | poll
    issued_by: str | None  # connector | salesforce
    updated_at: datetime
    tax: Decimal | None = None  # part of amount_due (migration 0003)


@dataclass(frozen=True)
class StripeEvent(_FromRow):
    event_id: str
    org_id: str | None
    type: str
    created: int
    received_at: datetime
    processed_at: datetime | None
    outcome: str | None
    payload: Any


@dataclass(frozen=True)
class Payout(_FromRow):
    org_id: str
    stripe_payout_id: str
    amount: Decimal
    currency: str
    arrival_date: date | None
    status: str | None
    created: int | None
    updated_at: datetime


@dataclass(frozen=True)
class Reconciliation(_FromRow):
    org_id: str
    order_id: str
    subtotal: Decimal
    revenue_share: Decimal
    expected_payout: Decimal
    actual_payout: Decimal | None
    difference: Decimal | None
    payout_ids: Any
    payout_date: date | None
    discrepancy: str | None
    computed_at: datetime
    tax: Decimal | None = None  # tax passed through the payouts, apart from actual_payout (migration 0003)


@dataclass(frozen=True)
class WritebackState(_FromRow):
    org_id: str
    order_id: str
    payload: Any
    payload_hash: str | None
    last_written_at: datetime | None
    last_result: str | None


@dataclass(frozen=True)
class MappingCheck(_FromRow):
    org_id: str
    mapping_name: str
    mapping_hash: str
    describe_last_modified: str | None
    checked_at: datetime


@dataclass(frozen=True)
class OfferDraft(_FromRow):
    org_id: str
    draft_key: str
    sf_id: str | None
    payload: Any
    payload_hash: str | None
    status: str | None
    pushed_at: datetime | None
    last_error: str | None
    updated_at: datetime


@dataclass(frozen=True)
class JobRun(_FromRow):
    id: int
    org_id: str
    job: str
    run_id: str
    instance: str | None
    started_at: datetime
    finished_at: datetime | None
    status: str  # running | ok | failed | skipped
    counts: Any
    error: str | None
    api_calls: int | None = None
    api_used: int | None = None
    api_limit: int | None = None
    dry_run: bool = False
