"""Mapping gtm-v2 (Salesforce's documented GTM names): exact unit prices, customers, the
order <-> invoice billing links, product license ids, term set defaults, payout currency,
and who issued each invoice (the connector, or Salesforce's GTM app).

Revision ID: 0002_documented_names
Revises: 0001_initial
Create Date: 2026-12-07

* ``unit_price_per_month`` becomes NUMERIC(18, 6): a price the org gives with sub-cent
  digits (0.125) is kept exactly. On SQLite the column holds minor units, so existing
  values are rescaled from 1/100 to 1/1,000,000.
* Every mirror cursor is reset: the next sync re-reads each object once under the new
  mapping (upserts are idempotent), which fills the new columns and replaces prices that
  were stored rounded to the cent.
* ``mapping_checks``: per org and mapping set, the last check of the mapping against the
  org's describe that passed (mapping hash, the describe's Last-Modified, when).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from connector.adapters.store.types import Json, Money, Price, UtcDateTime

revision = "0002_documented_names"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

PRICE_TABLES = ("offer_items", "order_items")


def _mirror(name: str, *columns: sa.Column, ref_indexes: tuple[str, ...] = ()) -> None:
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


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in PRICE_TABLES:
        if sqlite:
            # Same INTEGER column, new unit: cents -> millionths.
            op.execute(sa.text(f"UPDATE {table} SET unit_price_per_month = unit_price_per_month * 10000 "
                               f"WHERE unit_price_per_month IS NOT NULL"))
        else:
            op.alter_column(table, "unit_price_per_month", type_=Price(), existing_type=Money())
    with op.batch_alter_table("term_sets") as batch:
        batch.drop_column("contract_term_months")
        batch.drop_column("payment_terms")
        batch.add_column(_s("default_currency"))
        batch.add_column(sa.Column("default_billing_frequency_months", sa.Integer(), nullable=True))
    with op.batch_alter_table("product_licenses") as batch:
        batch.drop_column("package_license_id")
        batch.drop_column("permission_set_id")
        batch.add_column(_s("license_id", 18))
    with op.batch_alter_table("offers") as batch:
        batch.add_column(_s("customer_id", 18))
    with op.batch_alter_table("org_payouts") as batch:
        batch.add_column(_s("currency"))
    _mirror("customers", sa.Column("name", sa.String(255)), _s("customer_org_id"), _s("billing_email"),
            _s("account_id", 18))
    _mirror("order_billing_links", sa.Column("name", sa.String(255)), _s("order_id", 18), _s("stripe_invoice_id"),
            ref_indexes=("order_id",))
    op.create_table(
        "mapping_checks",
        sa.Column("org_id", sa.String(18), nullable=False),
        sa.Column("mapping_name", sa.String(255), nullable=False),
        sa.Column("mapping_hash", sa.String(64), nullable=False),
        sa.Column("describe_last_modified", sa.String(64), nullable=True),
        sa.Column("checked_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "mapping_name", name="pk_mapping_checks"),
    )
    op.execute(sa.text("DELETE FROM sync_state"))
    # Who issued each invoice: everything so far was the connector's own.
    with op.batch_alter_table("invoices") as batch:
        batch.add_column(sa.Column("issued_by", sa.String(16), nullable=True))
    op.execute(sa.text("UPDATE invoices SET issued_by = 'connector' WHERE stripe_invoice_id IS NOT NULL"))


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("invoices") as batch:
        batch.drop_column("issued_by")
    op.drop_table("mapping_checks")
    op.drop_table("order_billing_links")
    op.drop_table("customers")
    with op.batch_alter_table("org_payouts") as batch:
        batch.drop_column("currency")
    with op.batch_alter_table("offers") as batch:
        batch.drop_column("customer_id")
    with op.batch_alter_table("product_licenses") as batch:
        batch.drop_column("license_id")
        batch.add_column(_s("package_license_id"))
        batch.add_column(_s("permission_set_id"))
    with op.batch_alter_table("term_sets") as batch:
        batch.drop_column("default_billing_frequency_months")
        batch.drop_column("default_currency")
        batch.add_column(sa.Column("contract_term_months", sa.Integer(), nullable=True))
        batch.add_column(_s("payment_terms"))
    for table in PRICE_TABLES:
        if sqlite:
            op.execute(sa.text(f"UPDATE {table} SET unit_price_per_month = (unit_price_per_month + 5000) / 10000 "
                               f"WHERE unit_price_per_month IS NOT NULL"))
        else:
            op.alter_column(table, "unit_price_per_month", type_=Money(), existing_type=Price())
