"""Initial schema: the mirror tables of mapping gtm-v1 and the connector's own tables.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-23

Written out table by table (not ``metadata.create_all``) so this revision stays what it
was when later revisions change ``tables.py``. The column types come from
``connector.adapters.store.types``, whose storage format is part of the schema contract.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from connector.adapters.store.types import Json, Money, Percent, UtcDateTime

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

MIRROR_TABLES = (
    "term_sets", "ppcs", "ppps", "product_licenses", "offers",
    "offer_items", "orders", "order_items", "org_payouts",
)  # fmt: skip


def _mirror(name: str, *columns: sa.Column, ref_indexes: tuple[str, ...] = ()) -> None:
    """A mirror table: key, Salesforce bookkeeping, then the mapped columns."""
    op.create_table(
        name,
        sa.Column("org_id", sa.String(18), nullable=False),
        sa.Column("sf_id", sa.String(18), nullable=False),
        sa.Column("system_modstamp", UtcDateTime(), nullable=False),
        sa.Column("is_deleted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("deleted_at", UtcDateTime(), nullable=True),
        sa.Column("extra", Json(), nullable=True),
        sa.Column("first_seen_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        *columns,
        sa.PrimaryKeyConstraint("org_id", "sf_id", name=f"pk_{name}"),
    )
    op.create_index(f"ix_{name}_org_id_system_modstamp", name, ["org_id", "system_modstamp"])
    for column in ref_indexes:
        op.create_index(f"ix_{name}_org_id_{column}", name, ["org_id", column])


def _s(name: str, length: int = 255) -> sa.Column:
    return sa.Column(name, sa.String(length), nullable=True)


def _ref(name: str) -> sa.Column:
    return sa.Column(name, sa.String(18), nullable=True)


def _col(name: str, type_: sa.types.TypeEngine) -> sa.Column:
    return sa.Column(name, type_, nullable=True)


def upgrade() -> None:
    _create_mirror_tables()
    _create_connector_tables()


def _create_mirror_tables() -> None:
    _mirror("term_sets", _s("name"), _col("contract_term_months", sa.Integer()), _s("payment_terms"))
    _mirror(
        "ppcs",
        _s("name"),
        _ref("term_set_id"),
        _col("revenue_share_percent", Percent()),
        _col("floor_price", Money()),
    )
    _mirror("ppps", _s("name"), _ref("ppc_id"))
    _mirror("product_licenses", _s("name"), _ref("ppp_id"), _s("package_license_id"), _s("permission_set_id"))
    _mirror(
        "offers",
        _s("name"),
        _s("status"),
        _s("offer_type"),
        _s("customer_name"),
        _s("customer_org_id"),
        _ref("term_set_id"),
        _col("contract_term_months", sa.Integer()),
        _col("service_start_date", sa.Date()),
        _col("service_end_date", sa.Date()),
        _col("valid_until", sa.Date()),
        _s("recipient_email"),
        _s("billing_email"),
        _s("currency"),
        _col("subtotal", Money()),
        _ref("initial_order_id"),
        _s("partner_po_number"),
        _s("customer_po_number"),
    )
    _mirror(
        "offer_items",
        _s("name"),
        _ref("offer_id"),
        _ref("ppp_id"),
        _col("quantity", sa.Integer()),
        _col("unit_price_per_month", Money()),
        _col("line_item_total", Money()),
        ref_indexes=("offer_id",),
    )
    _mirror(
        "orders",
        _s("name"),
        _s("order_number"),
        _s("status"),
        _s("order_type"),
        _ref("offer_id"),
        _ref("initial_order_id"),
        _s("customer_name"),
        _s("customer_org_id"),
        _col("contract_term_months", sa.Integer()),
        _col("service_start_date", sa.Date()),
        _col("service_end_date", sa.Date()),
        _s("recipient_email"),
        _s("billing_email"),
        _s("currency"),
        _col("subtotal", Money()),
    )
    _mirror(
        "order_items",
        _s("name"),
        _ref("order_id"),
        _ref("ppp_id"),
        _col("quantity", sa.Integer()),
        _col("unit_price_per_month", Money()),
        _col("line_item_total", Money()),
        ref_indexes=("order_id",),
    )
    _mirror(
        "org_payouts",
        _s("name"),
        _s("stripe_payout_id"),
        _col("amount", Money()),
        _col("payout_date", sa.Date()),
        _s("status"),
    )


def _create_connector_tables() -> None:
    op.create_table(
        "sync_state",
        sa.Column("org_id", sa.String(18), nullable=False),
        sa.Column("object_name", sa.String(128), nullable=False),
        sa.Column("cursor", UtcDateTime(), nullable=True),
        sa.Column("last_run_at", UtcDateTime(), nullable=True),
        sa.Column("last_full_at", UtcDateTime(), nullable=True),
        sa.Column("last_status", sa.String(255), nullable=True),
        sa.Column("records_total", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "object_name", name="pk_sync_state"),
    )

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("org_id", sa.String(18), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("subject_id", sa.String(64), nullable=False),
        sa.Column("request", Json(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("result", Json(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("idempotency_key", name="uq_outbox_idempotency_key"),
    )
    op.create_index("ix_outbox_org_id_status", "outbox", ["org_id", "status"])
    op.create_index("ix_outbox_org_id_subject_id", "outbox", ["org_id", "subject_id"])

    op.create_table(
        "dead_letter",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("org_id", sa.String(18), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("object_name", sa.String(128), nullable=False),
        sa.Column("record_id", sa.String(255), nullable=False),
        sa.Column("error_code", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payload", Json(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("resolved_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_dead_letter"),
    )
    # One open letter per (org, source, object, record): unique among unresolved rows only.
    op.create_index(
        "uq_dead_letter_open",
        "dead_letter",
        ["org_id", "source", "object_name", "record_id"],
        unique=True,
        sqlite_where=sa.text("resolved_at IS NULL"),
        postgresql_where=sa.text("resolved_at IS NULL"),
    )

    op.create_table(
        "invoices",
        sa.Column("org_id", sa.String(18), nullable=False),
        sa.Column("order_id", sa.String(18), nullable=False),
        sa.Column("stripe_invoice_id", sa.String(255), nullable=True),
        sa.Column("stripe_customer_id", sa.String(255), nullable=True),
        sa.Column("number", sa.String(64), nullable=True),
        sa.Column("hosted_url", sa.Text(), nullable=True),
        sa.Column("status", sa.String(32), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("currency", sa.String(8), nullable=True),
        sa.Column("amount_due", Money(), nullable=True),
        sa.Column("amount_paid", Money(), nullable=True),
        sa.Column("amount_remaining", Money(), nullable=True),
        sa.Column("plan_version", sa.String(64), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("finalized_at", UtcDateTime(), nullable=True),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
        sa.Column("paid_at", UtcDateTime(), nullable=True),
        sa.Column("voided_at", UtcDateTime(), nullable=True),
        sa.Column("last_event_id", sa.String(255), nullable=True),
        sa.Column("last_event_created", sa.BigInteger(), nullable=True),
        sa.Column("status_source", sa.String(16), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "order_id", name="pk_invoices"),
        sa.UniqueConstraint("stripe_invoice_id", name="uq_invoices_stripe_invoice_id"),
    )
    op.create_index("ix_invoices_org_id_status", "invoices", ["org_id", "status"])

    op.create_table(
        "stripe_events",
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("org_id", sa.String(18), nullable=True),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("received_at", UtcDateTime(), nullable=False),
        sa.Column("processed_at", UtcDateTime(), nullable=True),
        sa.Column("outcome", sa.String(255), nullable=True),
        sa.Column("payload", Json(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name="pk_stripe_events"),
    )

    op.create_table(
        "payouts",
        sa.Column("org_id", sa.String(18), nullable=False),
        sa.Column("stripe_payout_id", sa.String(255), nullable=False),
        sa.Column("amount", Money(), nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("arrival_date", sa.Date(), nullable=True),
        sa.Column("status", sa.String(32), nullable=True),
        sa.Column("created", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "stripe_payout_id", name="pk_payouts"),
    )

    op.create_table(
        "payout_reconciliation",
        sa.Column("org_id", sa.String(18), nullable=False),
        sa.Column("order_id", sa.String(18), nullable=False),
        sa.Column("subtotal", Money(), nullable=False),
        sa.Column("revenue_share", Money(), nullable=False),
        sa.Column("expected_payout", Money(), nullable=False),
        sa.Column("actual_payout", Money(), nullable=True),
        sa.Column("difference", Money(), nullable=True),
        sa.Column("payout_ids", Json(), nullable=True),
        sa.Column("payout_date", sa.Date(), nullable=True),
        sa.Column("discrepancy", sa.Text(), nullable=True),
        sa.Column("computed_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "order_id", name="pk_payout_reconciliation"),
    )

    op.create_table(
        "anomalies",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("org_id", sa.String(18), nullable=False),
        sa.Column("object_name", sa.String(128), nullable=False),
        sa.Column("record_id", sa.String(255), nullable=False),
        sa.Column("machine", sa.String(64), nullable=False),
        sa.Column("from_state", sa.String(255), nullable=True),
        sa.Column("to_state", sa.String(255), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("observed_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_anomalies"),
    )
    op.create_index("ix_anomalies_org_id_observed_at", "anomalies", ["org_id", "observed_at"])

    op.create_table(
        "writeback_state",
        sa.Column("org_id", sa.String(18), nullable=False),
        sa.Column("order_id", sa.String(18), nullable=False),
        sa.Column("payload", Json(), nullable=True),
        sa.Column("payload_hash", sa.String(64), nullable=True),
        sa.Column("last_written_at", UtcDateTime(), nullable=True),
        sa.Column("last_result", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("org_id", "order_id", name="pk_writeback_state"),
    )

    op.create_table(
        "offer_drafts",
        sa.Column("org_id", sa.String(18), nullable=False),
        sa.Column("draft_key", sa.String(255), nullable=False),
        sa.Column("sf_id", sa.String(18), nullable=True),
        sa.Column("payload", Json(), nullable=True),
        sa.Column("payload_hash", sa.String(64), nullable=True),
        sa.Column("status", sa.String(32), nullable=True),
        sa.Column("pushed_at", UtcDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "draft_key", name="pk_offer_drafts"),
    )

    op.create_table(
        "job_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("org_id", sa.String(18), nullable=False),
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("instance", sa.String(255), nullable=True),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("counts", Json(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_job_runs"),
    )
    op.create_index("ix_job_runs_org_id_job_started_at", "job_runs", ["org_id", "job", "started_at"])


def downgrade() -> None:
    for name in (
        "job_runs", "offer_drafts", "writeback_state", "anomalies", "payout_reconciliation",
        "payouts", "stripe_events", "invoices", "dead_letter", "outbox", "sync_state",
        *reversed(MIRROR_TABLES),
    ):  # fmt: skip
        op.drop_table(name)
