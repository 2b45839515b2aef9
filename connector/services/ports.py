"""The ports: what the services need from the outside world, as Protocols (STYLE §2).

Services are typed against these and never against an adapter or an SDK. The adapters
satisfy them structurally (no inheritance): ``SqlUnitOfWork`` (``adapters.store``) is a
``UnitOfWork``, ``SalesforceOrg`` (``adapters.salesforce``) an ``OrgGateway``,
``StripeBilling`` a ``BillingGateway`` and ``StripePayouts`` a ``PayoutsGateway``;
``tests/unit/test_ports.py`` checks each, and ``tests/fakes.py`` holds in-memory fakes of
all of them for service tests that need no database or server.

``OrgContext`` is what a job function receives: one org's config, mapping, unit-of-work
factory, clock and gateways (``connector.bootstrap.OrgRuntime`` in production).

The repository Protocols name the calls the services make; a repository attribute typed
``Any`` on ``UnitOfWork`` is one no service test fakes yet.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

from connector.domain import InvoiceLine, InvoicePlan
from connector.domain.reconciliation import BalanceTxn, StripePayout
from connector.services.billing_port import BillingEvent, StripeCustomer, StripeInvoice

if TYPE_CHECKING:
    import structlog

    from connector.config import OrgConfig
    from connector.errors import RecordError
    from connector.mappings import MappingSet


# ------------------------------------------------------------------------ the store
@runtime_checkable
class DeadLetterStore(Protocol):
    def add(self, org_id: str, source: str, object_name: str, record_id: str, code: str, reason: str,
            payload: Any = None) -> int: ...
    def get(self, letter_id: int) -> Any: ...
    def open(self, org_id: str | None = None, source: str | None = None,
             ids: Iterable[int] | None = None) -> builtins.list[Any]: ...
    def resolve(self, letter_id: int) -> bool: ...
    def resolve_for(self, org_id: str, source: str, object_name: str, record_id: str) -> bool: ...
    def count_open(self, org_id: str, source: str | None = None, *, error_code: str | None = None) -> int: ...


@runtime_checkable
class JobRunStore(Protocol):
    def start(self, org_id: str, job: str, run_id: str, instance: str | None = None,
              started_at: datetime | None = None, *, dry_run: bool = False) -> int: ...
    def finish(self, run_id: int, status: str, counts: Any = None, error: str | None = None, *,
               api_calls: int | None = None, api_used: int | None = None, api_limit: int | None = None) -> Any: ...
    def last_success(self, org_id: str, job: str) -> Any: ...
    def list(self, org_id: str | None = None, job: str | None = None, limit: int = 50) -> builtins.list[Any]: ...
    def started_since(self, org_id: str, job: str, since: datetime) -> bool: ...
    def close_abandoned(self, org_id: str, job: str, *, finished_at: datetime, error: str) -> int: ...


@runtime_checkable
class InvoiceStore(Protocol):
    def get(self, org_id: str, key: str) -> Any: ...
    def upsert(self, org_id: str, key: str, /, **fields: Any) -> Any: ...
    def get_by_stripe_id(self, stripe_invoice_id: str, *, lock: bool = False) -> Any: ...
    def list(self, org_id: str, status: str | None = None) -> builtins.list[Any]: ...


@runtime_checkable
class StripeEventStore(Protocol):
    def seen(self, event_id: str) -> bool: ...
    def add(self, event_id: str, *, type: str, created: int, payload: Any = None,  # noqa: A002
            org_id: str | None = None, received_at: datetime | None = None) -> bool: ...
    def mark_processed(self, event_id: str, outcome: str) -> None: ...


@runtime_checkable
class AnomalyStore(Protocol):
    def add(self, org_id: str, object_name: str, record_id: str, machine: str, from_state: str | None,
            to_state: str | None, detail: str | None = None, observed_at: datetime | None = None) -> int: ...
    def count(self, org_id: str) -> int: ...
    def list(self, org_id: str, object_name: str | None = None) -> builtins.list[Any]: ...


class StoredForms(Protocol):
    """How a mirror table stores each column a row may carry (``adapters.store.mirror.StoredForms``,
    ``uow.mirror(key).forms``): ``forms[column]`` gives a value its stored form or raises
    ``ValueError``/``TypeError`` (None: stored as it is); ``refusal`` is the record's error then."""

    @property
    def forms(self) -> Mapping[str, Callable[[Any], Any] | None]: ...
    def refusal(self, sf_id: str, column: str, exc: Exception) -> RecordError: ...


class UnitOfWork(Protocol):
    """One transaction over the store (STYLE §3): enter, write, ``commit()``; leaving
    without a commit rolls back. (The typed repositories are read-only properties here so
    an adapter's own repository classes satisfy them.)"""

    @property
    def dead_letters(self) -> DeadLetterStore: ...
    @property
    def job_runs(self) -> JobRunStore: ...
    @property
    def invoices(self) -> InvoiceStore: ...
    @property
    def stripe_events(self) -> StripeEventStore: ...
    @property
    def anomalies(self) -> AnomalyStore: ...

    sync_state: Any
    outbox: Any
    payouts: Any
    reconciliation: Any
    writeback_state: Any
    offer_drafts: Any
    mapping_checks: Any
    attention: Any
    alerts: Any
    alert_facts: Any

    def __enter__(self) -> Self: ...
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool | None: ...
    def mirror(self, object_key_or_table: Any) -> Any: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]


# ------------------------------------------------------------------------ Salesforce
# The records the org answers with: read-only here, so the adapter's frozen dataclasses fit.
class QueryPage(Protocol):
    @property
    def records(self) -> list[dict[str, Any]]: ...
    @property
    def total_size(self) -> int: ...
    @property
    def done(self) -> bool: ...


class QueryAnswer(QueryPage, Protocol):
    @property
    def error_code(self) -> str | None: ...
    @property
    def message(self) -> str: ...


class SubResult(Protocol):
    @property
    def reference_id(self) -> str: ...
    @property
    def status(self) -> int: ...
    @property
    def body(self) -> Any: ...
    @property
    def ok(self) -> bool: ...
    @property
    def error_code(self) -> str | None: ...
    @property
    def message(self) -> str: ...


class RecordOutcome(Protocol):
    @property
    def index(self) -> int: ...
    @property
    def success(self) -> bool: ...
    @property
    def error_code(self) -> str | None: ...
    @property
    def message(self) -> str: ...


@runtime_checkable
class MirrorReader(Protocol):
    """What the mirror (and replay) read from the org."""

    def query_pages(self, soql: str, include_deleted: bool = False) -> Iterator[QueryPage]: ...
    def composite_queries(self, soqls: Sequence[str], include_deleted: bool = False, batch_size: int | None = None,
                          raise_errors: bool = True) -> Sequence[QueryAnswer]: ...
    def get(self, sobject: str, record_id: str, fields: Sequence[str] | None = None) -> dict[str, Any] | None: ...
    def prime_queries(self, soqls: Sequence[str], include_deleted: bool = False) -> int: ...
    def forget_primed(self) -> None: ...


@runtime_checkable
class OrgGateway(MirrorReader, Protocol):
    """The org (``adapters.salesforce.SalesforceOrg``): reads, the composite writes of
    offers push, the collections upsert of write-back, describes, API counters."""

    @property
    def api_calls(self) -> int: ...
    @property
    def api_usage(self) -> Any: ...  # ApiUsage | None: used, limit, remaining
    def subrequest(self, method: str, path: str, reference_id: str,
                   body: Mapping[str, Any] | None = None) -> dict[str, Any]: ...
    def composite(self, subrequests: Sequence[Mapping[str, Any]], *, all_or_none: bool) -> Sequence[SubResult]: ...
    def upsert_collection(self, sobject: str, external_id_field: str,
                          records: Sequence[Mapping[str, Any]]) -> Sequence[RecordOutcome]: ...
    def describes(self, sobjects: Sequence[str], *, if_modified_since: str | None = None) -> dict[str, Any]: ...
    def close(self) -> None: ...


# ------------------------------------------------------------------------ Stripe
@runtime_checkable
class BillingGateway(Protocol):
    """What invoicing and invoice status need from Stripe invoicing (``StripeBilling``).
    Every write takes the idempotency ``key`` the caller derived and recorded in its
    outbox, so a retried or resumed call is the same call to Stripe. Errors are the
    connector's: ``TransientError`` (retry with the same key), ``PermanentError`` /
    ``AuthError`` (stop), ``RecordError`` (this record only)."""

    def find_customer(self, *, org_id: str, email: str) -> StripeCustomer | None:
        """The org's customer for this billing email, if Stripe holds one (one list call,
        strongly consistent): the look-first of an unsure customer create."""
        ...

    def create_customer(
        self, *, org_id: str, email: str, name: str | None, customer_org_id: str | None, order_id: str, key: str
    ) -> StripeCustomer:
        """A new customer of the org for this billing email (one call, under ``key``)."""
        ...

    def create_invoice(self, plan: InvoicePlan, customer_id: str, key: str) -> StripeInvoice:
        """A draft: ``send_invoice``, ``days_until_due`` from the plan, metadata from the plan."""
        ...

    def add_lines(self, invoice_id: str, lines: Sequence[InvoiceLine], currency: str, key: str) -> StripeInvoice:
        """All lines in one call (at most 250)."""
        ...

    def send(self, invoice_id: str, key: str) -> StripeInvoice:
        """Email the invoice to the customer; a draft is finalized first (Stripe: "Stripe
        automatically finalizes drafts before sending"), so draft -> open + sent in one call."""
        ...

    def find_invoice_by_metadata(
        self, org_id: str, order_id: str, *, customer_id: str | None = None
    ) -> StripeInvoice | None:
        """The (non-void) invoice Stripe holds for this org's order, if any."""
        ...

    def retrieve_invoice(self, invoice_id: str) -> StripeInvoice: ...

    def was_sent(self, invoice_id: str, *, since: datetime | None = None) -> bool:
        """Whether Stripe has e-mailed the invoice (its ``invoice.sent`` event, after ``since``)."""
        ...

    def find_salesforce_invoice(self, order_id: str) -> StripeInvoice | None:
        """The (non-void) invoice the GTM app issued for this Salesforce order, found by
        the order id in its metadata (search), if any."""
        ...

    def list_invoices(self, org_id: str, *, status: str | None = None) -> Iterator[StripeInvoice]:
        """This org's invoices (by metadata), newest first, every page."""
        ...

    def verify_event(self, payload: bytes, signature_header: str | None, secret: str) -> BillingEvent:
        """The event of a webhook delivery, after checking ``Stripe-Signature`` (300 s
        tolerance); ``PermanentError`` when the signature does not verify."""
        ...


@runtime_checkable
class PayoutsGateway(Protocol):
    """What reconciliation needs from Stripe (``adapters.stripe_payouts.StripePayouts``)."""

    def list_payouts(self, created_since: int | None = None) -> Sequence[StripePayout]: ...
    def transactions(self, payout: StripePayout) -> Sequence[BalanceTxn]: ...


# ------------------------------------------------------------------------ one org
class OrgContext(Protocol):
    """What a job function gets: one org, wired (``connector.bootstrap.OrgRuntime``)."""

    @property
    def config(self) -> OrgConfig: ...
    @property
    def mapping(self) -> MappingSet: ...
    @property
    def uow(self) -> UnitOfWorkFactory: ...
    @property
    def clock(self) -> Callable[[], datetime]: ...

    @property
    def alias(self) -> str: ...
    @property
    def org_id(self) -> str: ...
    def logger(self, job: str, run_id: str | None = None) -> structlog.typing.FilteringBoundLogger: ...
    def salesforce(self) -> OrgGateway: ...
    def billing(self) -> BillingGateway: ...
    def payouts(self) -> PayoutsGateway: ...
    def built_salesforce(self) -> OrgGateway | None: ...
    def job_lock(self, job: str) -> AbstractContextManager[bool]: ...
    def mapping_guard(self) -> Any: ...  # connector.services.mapping_guard.MappingGuard
    def bulk_query(self) -> Any: ...  # services.bulk_mirror.BulkReader | None (adapters.salesforce_bulk)


__all__ = [
    "AnomalyStore", "BillingGateway", "DeadLetterStore", "InvoiceStore", "JobRunStore", "MirrorReader",
    "OrgContext", "OrgGateway", "PayoutsGateway", "QueryAnswer", "QueryPage", "RecordOutcome", "StoredForms",
    "StripeEventStore", "SubResult", "UnitOfWork", "UnitOfWorkFactory",
]
