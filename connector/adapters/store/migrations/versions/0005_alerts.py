"""Alerts: the events sent to an org's webhook, each once.

Revision ID: 0005_alerts
Revises: 0004_job_run_api_calls
Create Date: 2026-12-07

* ``alerts``: one row per alert event of an org, unique on ``(org_id, key)`` (the event's
  stable dedup key), ``pending`` until the receiver acknowledged it, then ``sent``;
  ``attempts`` / ``last_error`` / ``last_attempt_at`` record failed deliveries, which the
  next cycle retries. Same DDL on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from connector.adapters.store.types import Json, UtcDateTime

revision = "0005_alerts"
down_revision = "0004_job_run_api_calls"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("org_id", sa.String(18), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("payload", Json(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("last_attempt_at", UtcDateTime(), nullable=True),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.UniqueConstraint("org_id", "key", name="uq_alerts_org_id_key"),
    )
    op.create_index("ix_alerts_org_id_status", "alerts", ["org_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_alerts_org_id_status", table_name="alerts")
    op.drop_table("alerts")
