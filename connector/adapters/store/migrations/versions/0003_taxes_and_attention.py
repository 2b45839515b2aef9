"""Taxes on invoices and in payout reconciliation; product licenses looked up by PPP.

Revision ID: 0003_taxes_and_attention
Revises: 0002_documented_names
Create Date: 2026-12-07

* ``invoices.tax``: the tax on the Stripe invoice (part of ``amount_due``, never the
  partner's money). NULL on rows written before this revision: the next status refresh
  fills it.
* ``payout_reconciliation.tax``: the tax that passed through the order's payouts, kept
  apart from ``actual_payout`` (which is the partner's money, ex tax).
* ``ix_product_licenses_org_id_ppp_id``: the "sold but not provisionable" check looks
  product licenses up by PPP on every ``status`` and ``report``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from connector.adapters.store.types import Money

revision = "0003_taxes_and_attention"
down_revision = "0002_documented_names"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.add_column(sa.Column("tax", Money(), nullable=True))
    with op.batch_alter_table("payout_reconciliation") as batch:
        batch.add_column(sa.Column("tax", Money(), nullable=True))
    op.create_index("ix_product_licenses_org_id_ppp_id", "product_licenses", ["org_id", "ppp_id"])


def downgrade() -> None:
    op.drop_index("ix_product_licenses_org_id_ppp_id", table_name="product_licenses")
    with op.batch_alter_table("payout_reconciliation") as batch:
        batch.drop_column("tax")
    with op.batch_alter_table("invoices") as batch:
        batch.drop_column("tax")
