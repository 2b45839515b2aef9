"""The local model: one ``MetaData`` holding the mirror tables and the connector's own tables.

Mirror tables hold one row per Salesforce record, keyed by ``(org_id, sf_id)`` so many orgs
share one database. Their data columns are written out here, not generated from a mapping:
the mapping set is checked against these tables at start-up (``mirror_columns``), so a
mapping can never change the schema behind Alembic's back.

Every datetime is timezone-aware UTC, every amount an exact ``Decimal`` (see ``types``).

A new database is created from these tables (``migrate.upgrade``), not by replaying the
migrations, so they must describe exactly the schema the migrations build, down to the
column order: a column a migration adds goes last in its table here, as the migration's
``ADD COLUMN`` puts it (tests/integration/store/test_migrations.py compares the two).
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)

from connector.adapters.store.types import ExactDecimal, Json, Money, Percent, Price, UtcDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

ORG_ID = 18  # Salesforce 18-character ids (org ids and record ids)
SF_ID = 18


def _org_id() -> Column[str]:
    return Column("org_id", String(ORG_ID), primary_key=True)


# --------------------------------------------------------------------------- mirror tables
# Store type names used by ``mirror_columns`` (the mapping loader's vocabulary).
_STRING, _INT, _MONEY, _PRICE, _PERCENT = "string", "int", "money", "price", "percent"
_DATE, _DATETIME, _BOOLEAN, _JSON = "date", "datetime", "boolean", "json"

# Columns a mapping may not target: the connector maintains them itself.
BOOKKEEPING_COLUMNS = frozenset({"org_id", "is_deleted", "deleted_at", "extra", "first_seen_at", "updated_at"})


def _name() -> Column[str]:
    return Column("name", String(255))


def _ref(name: str) -> Column[str]:
    return Column(name, String(SF_ID))


def _str(name: str) -> Column[str]:
    return Column(name, String(255))


def _mirror_table(name: str, *data_columns: Column, indexes: tuple[str, ...] = ()) -> Table:
    """A mirror table: the common columns, then ``data_columns`` from the mapping.

    ``indexes`` names reference columns worth an ``(org_id, column)`` index (children
    looked up by parent)."""
    table = Table(
        name,
        metadata,
        _org_id(),
        Column("sf_id", String(SF_ID), primary_key=True),
        Column("system_modstamp", UtcDateTime(), nullable=False),
        Column("is_deleted", Boolean(), nullable=False, default=False, server_default=false()),
        Column("deleted_at", UtcDateTime()),
        Column("extra", Json()),
        Column("first_seen_at", UtcDateTime(), nullable=False),
        Column("updated_at", UtcDateTime(), nullable=False),
        *data_columns,
    )
    Index(f"ix_{name}_org_id_system_modstamp", table.c.org_id, table.c.system_modstamp)
    for column in indexes:
        Index(f"ix_{name}_org_id_{column}", table.c.org_id, table.c[column])
    return table


term_sets = _mirror_table(
    "term_sets",
    _name(),
    _str("default_currency"),
    Column("default_billing_frequency_months", Integer()),
)

ppcs = _mirror_table(
    "ppcs",
    _name(),
    _ref("term_set_id"),
    Column("revenue_share_percent", Percent()),
    Column("floor_price", Money()),
)

ppps = _mirror_table("ppps", _name(), _ref("ppc_id"))

product_licenses = _mirror_table(
    "product_licenses",
    _name(),
    _ref("ppp_id"),
    _ref("license_id"),
    indexes=("ppp_id",),  # "is this sold PPP provisionable?" looks licenses up by PPP
)

customers = _mirror_table(
    "customers",
    _name(),
    _str("customer_org_id"),
    _str("billing_email"),
    _ref("account_id"),
)

offers = _mirror_table(
    "offers",
    _name(),
    _str("status"),
    _str("offer_type"),
    _str("customer_name"),
    _str("customer_org_id"),
    _ref("term_set_id"),
    Column("contract_term_months", Integer()),
    Column("service_start_date", Date()),
    Column("service_end_date", Date()),
    Column("valid_until", Date()),
    _str("recipient_email"),
    _str("billing_email"),
    _str("currency"),
    Column("subtotal", Money()),
    _ref("initial_order_id"),
    _str("partner_po_number"),
    _str("customer_po_number"),
    _ref("customer_id"),
)

offer_items = _mirror_table(
    "offer_items",
    _name(),
    _ref("offer_id"),
    _ref("ppp_id"),
    Column("quantity", Integer()),
    Column("unit_price_per_month", Price()),
    Column("line_item_total", Money()),
    indexes=("offer_id",),
)

orders = _mirror_table(
    "orders",
    _name(),
    _str("order_number"),
    _str("status"),
    _str("order_type"),
    _ref("offer_id"),
    _ref("initial_order_id"),
    _str("customer_name"),
    _str("customer_org_id"),
    Column("contract_term_months", Integer()),
    Column("service_start_date", Date()),
    Column("service_end_date", Date()),
    _str("recipient_email"),
    _str("billing_email"),
    _str("currency"),
    Column("subtotal", Money()),
)

order_items = _mirror_table(
    "order_items",
    _name(),
    _ref("order_id"),
    _ref("ppp_id"),
    Column("quantity", Integer()),
    Column("unit_price_per_month", Price()),
    Column("line_item_total", Money()),
    indexes=("order_id",),
)

order_billing_links = _mirror_table(
    "order_billing_links",
    _name(),
    _ref("order_id"),
    _str("stripe_invoice_id"),
    indexes=("order_id",),
)

org_payouts = _mirror_table(
    "org_payouts",
    _name(),
    _str("stripe_payout_id"),
    Column("amount", Money()),
    Column("payout_date", Date()),
    _str("status"),
    _str("currency"),
)

MIRROR_TABLES: Mapping[str, Table] = {
    t.name: t for t in (term_sets, ppcs, ppps, product_licenses, customers, offers, offer_items, orders, order_items,
                        order_billing_links, org_payouts)
}
# Mapping object keys (mappings/gtm-v2) -> mirror table names, for ``uow.mirror("order")``.
OBJECT_TABLES: Mapping[str, str] = {
    "term_set": "term_sets",
    "ppc": "ppcs",
    "ppp": "ppps",
    "product_license": "product_licenses",
    "customer": "customers",
    "offer": "offers",
    "offer_item": "offer_items",
    "order": "orders",
    "order_item": "order_items",
    "billing_link": "order_billing_links",
    "payout": "org_payouts",
}


def _type_name(column: Column) -> str:
    t = column.type
    if isinstance(t, ExactDecimal):
        return {2: _MONEY, 6: _PRICE}.get(t.scale, _PERCENT)
    if isinstance(t, UtcDateTime):
        return _DATETIME
    if isinstance(t, Boolean):
        return _BOOLEAN
    if isinstance(t, Integer):
        return _INT
    if isinstance(t, Date):
        return _DATE
    if isinstance(t, String):
        return _STRING
    return _JSON


def mirror_columns(table_name: str) -> dict[str, str]:
    """The columns of mirror table ``table_name`` a mapping may target, with their store type
    name (``string``, ``int``, ``money``, ``percent``, ``date``, ``datetime``, ``boolean``).

    Includes ``sf_id`` and ``system_modstamp``; leaves out the bookkeeping columns the
    store maintains (``org_id``, ``is_deleted``, ``deleted_at``, ``extra``,
    ``first_seen_at``, ``updated_at``).
    Raises ``KeyError`` for a table that is not a mirror table. Meant for
    ``connector.mappings.check_against_tables(mapping, mirror_columns)``."""
    table = MIRROR_TABLES[table_name]
    return {c.name: _type_name(c) for c in table.columns if c.name not in BOOKKEEPING_COLUMNS}


def column_scale(table_name: str, column: str) -> int | None:
    """Decimals a mirror column keeps (Price 6, Money 2, Percent 4); None if it is not a
    decimal column or unknown. What the mapping check holds a describe's scale against."""
    table = MIRROR_TABLES.get(table_name)
    if table is None or column not in table.c:
        return None
    kind = table.c[column].type
    return kind.scale if isinstance(kind, ExactDecimal) else None


def column_length(table_name: str, column: str) -> int | None:
    """Characters a mirror text column holds; None if it is not a text column or unknown.
    What the mapping check holds a describe's ``length`` against."""
    table = MIRROR_TABLES.get(table_name)
    if table is None or column not in table.c:
        return None
    kind = table.c[column].type
    return kind.length if isinstance(kind, String) else None


# ------------------------------------------------------------------------ connector tables
sync_state = Table(
    "sync_state",
    metadata,
    _org_id(),
    Column("object_name", String(128), primary_key=True),
    Column("cursor", UtcDateTime()),
    Column("last_run_at", UtcDateTime()),
    Column("last_full_at", UtcDateTime()),
    Column("last_status", String(255)),
    Column("records_total", Integer(), nullable=False, default=0, server_default=text("0")),
    Column("updated_at", UtcDateTime(), nullable=False),
)

OUTBOX_STATUSES = ("pending", "done", "failed")
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    Column("org_id", String(ORG_ID), nullable=False),
    Column("idempotency_key", String(255), nullable=False),
    Column("operation", String(64), nullable=False),
    Column("subject_id", String(64), nullable=False),
    Column("request", Json()),
    Column("status", String(16), nullable=False),
    Column("result", Json()),
    Column("error", Text()),
    Column("attempts", Integer(), nullable=False, default=0, server_default=text("0")),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    UniqueConstraint("idempotency_key", name="uq_outbox_idempotency_key"),
    Index("ix_outbox_org_id_status", "org_id", "status"),
    Index("ix_outbox_org_id_subject_id", "org_id", "subject_id"),
)

DEAD_LETTER_SOURCES = ("mirror", "offers_push", "invoicing", "payouts", "writeback")
dead_letter = Table(
    "dead_letter",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    Column("org_id", String(ORG_ID), nullable=False),
    Column("source", String(32), nullable=False),
    Column("object_name", String(128), nullable=False),
    Column("record_id", String(255), nullable=False),
    Column("error_code", String(128), nullable=False),
    Column("reason", Text(), nullable=False),
    Column("payload", Json()),
    Column("attempts", Integer(), nullable=False, default=1, server_default=text("1")),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("resolved_at", UtcDateTime()),
)
# At most one open letter per record and source: a partial unique index, on both backends.
Index(
    "uq_dead_letter_open",
    dead_letter.c.org_id,
    dead_letter.c.source,
    dead_letter.c.object_name,
    dead_letter.c.record_id,
    unique=True,
    sqlite_where=dead_letter.c.resolved_at.is_(None),
    postgresql_where=dead_letter.c.resolved_at.is_(None),
)

INVOICE_STATUS_SOURCES = ("create", "adopt", "webhook", "poll")
invoices = Table(
    "invoices",
    metadata,
    _org_id(),
    Column("order_id", String(SF_ID), primary_key=True),
    Column("stripe_invoice_id", String(255)),
    Column("stripe_customer_id", String(255)),
    Column("number", String(64)),
    Column("hosted_url", Text()),
    Column("status", String(32)),
    Column("due_date", Date()),
    Column("currency", String(8)),
    Column("amount_due", Money()),
    Column("amount_paid", Money()),
    Column("amount_remaining", Money()),
    Column("plan_version", String(64)),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("finalized_at", UtcDateTime()),
    Column("sent_at", UtcDateTime()),
    Column("paid_at", UtcDateTime()),
    Column("voided_at", UtcDateTime()),
    Column("last_event_id", String(255)),
    Column("last_event_created", BigInteger()),
    Column("status_source", String(16)),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("issued_by", String(16)),  # "connector" (we made it) or "salesforce" (adopted from the GTM app)
    Column("tax", Money()),  # tax on the invoice (Stripe's total_taxes), part of amount_due, never the partner's
    UniqueConstraint("stripe_invoice_id", name="uq_invoices_stripe_invoice_id"),
    Index("ix_invoices_org_id_status", "org_id", "status"),
)

stripe_events = Table(
    "stripe_events",
    metadata,
    Column("event_id", String(255), primary_key=True),
    Column("org_id", String(ORG_ID)),
    Column("type", String(128), nullable=False),
    Column("created", BigInteger(), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("processed_at", UtcDateTime()),
    Column("outcome", String(255)),
    Column("payload", Json()),
)

payouts = Table(
    "payouts",
    metadata,
    _org_id(),
    Column("stripe_payout_id", String(255), primary_key=True),
    Column("amount", Money(), nullable=False),
    Column("currency", String(8), nullable=False),
    Column("arrival_date", Date()),
    Column("status", String(32)),
    Column("created", BigInteger()),
    Column("updated_at", UtcDateTime(), nullable=False),
)

payout_reconciliation = Table(
    "payout_reconciliation",
    metadata,
    _org_id(),
    Column("order_id", String(SF_ID), primary_key=True),
    Column("subtotal", Money(), nullable=False),
    Column("revenue_share", Money(), nullable=False),
    Column("expected_payout", Money(), nullable=False),
    Column("actual_payout", Money()),
    Column("difference", Money()),
    Column("payout_ids", Json()),
    Column("payout_date", Date()),
    Column("discrepancy", Text()),
    Column("computed_at", UtcDateTime(), nullable=False),
    Column("tax", Money()),  # tax that passed through the order's payouts (in their gross, not the partner's)
)

anomalies = Table(
    "anomalies",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    Column("org_id", String(ORG_ID), nullable=False),
    Column("object_name", String(128), nullable=False),
    Column("record_id", String(255), nullable=False),
    Column("machine", String(64), nullable=False),
    Column("from_state", String(255)),
    Column("to_state", String(255)),
    Column("detail", Text()),
    Column("observed_at", UtcDateTime(), nullable=False),
    Index("ix_anomalies_org_id_observed_at", "org_id", "observed_at"),
)

writeback_state = Table(
    "writeback_state",
    metadata,
    _org_id(),
    Column("order_id", String(SF_ID), primary_key=True),
    Column("payload", Json()),
    Column("payload_hash", String(64)),
    Column("last_written_at", UtcDateTime()),
    Column("last_result", Text()),
)

# The last successful check of a mapping against the org's describe: the next check sends
# If-Modified-Since with its Last-Modified, and a changed mapping (another hash) re-checks fully.
mapping_checks = Table(
    "mapping_checks",
    metadata,
    _org_id(),
    Column("mapping_name", String(255), primary_key=True),
    Column("mapping_hash", String(64), nullable=False),
    Column("describe_last_modified", String(64)),
    Column("checked_at", UtcDateTime(), nullable=False),
)

offer_drafts = Table(
    "offer_drafts",
    metadata,
    _org_id(),
    Column("draft_key", String(255), primary_key=True),
    Column("sf_id", String(SF_ID)),
    Column("payload", Json()),
    Column("payload_hash", String(64)),
    Column("status", String(32)),
    Column("pushed_at", UtcDateTime()),
    Column("last_error", Text()),
    Column("updated_at", UtcDateTime(), nullable=False),
)

JOB_RUN_STATUSES = ("running", "ok", "failed", "skipped", "stopped")
job_runs = Table(
    "job_runs",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    Column("org_id", String(ORG_ID), nullable=False),
    Column("job", String(64), nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("instance", String(255)),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("finished_at", UtcDateTime()),
    Column("status", String(16), nullable=False),
    Column("counts", Json()),
    Column("error", Text()),
    Column("api_calls", Integer()),  # Salesforce API calls of this run
    Column("api_used", Integer()),  # the org's daily usage / limit as last reported when it ended
    Column("api_limit", Integer()),
    # a --dry-run wrote and sent nothing: never a success, a served tick nor part of a failure streak
    Column("dry_run", Boolean(), nullable=False, default=False, server_default=false()),
    Index("ix_job_runs_org_id_job_started_at", "org_id", "job", "started_at"),
)

# Alerts sent to the org's webhook ([alerts]): one row per event, keyed by a stable key so
# each is sent once (the insert is ON CONFLICT DO NOTHING); ``pending`` until a delivery is
# acknowledged, retried at each later cycle. ``payload`` is what is sent: ids, counts,
# org alias, task and a message, never the URL nor a record.
ALERT_STATUSES = ("pending", "sent")
alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    Column("org_id", String(ORG_ID), nullable=False),
    Column("key", String(255), nullable=False),
    Column("event", String(32), nullable=False),
    Column("payload", Json(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer(), nullable=False, default=0, server_default=text("0")),
    Column("last_error", Text()),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("last_attempt_at", UtcDateTime()),
    Column("sent_at", UtcDateTime()),
    UniqueConstraint("org_id", "key", name="uq_alerts_org_id_key"),
    Index("ix_alerts_org_id_status", "org_id", "status"),
)
