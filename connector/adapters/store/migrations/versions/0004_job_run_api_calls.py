"""The Salesforce API figures of each job run, kept with the run.

Revision ID: 0004_job_run_api_calls
Revises: 0003_taxes_and_attention
Create Date: 2026-12-07

* ``job_runs.api_calls``: Salesforce API calls the run made (NULL: the job made none it
  could count, e.g. an invoicing run that only talks to Stripe).
* ``job_runs.api_used`` / ``job_runs.api_limit``: the org's daily API usage as Salesforce
  last reported it (``Sforce-Limit-Info``) when the run ended. The dashboard shows the
  budget from here, so it survives a daemon restart.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_job_run_api_calls"
down_revision = "0003_taxes_and_attention"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_runs") as batch:
        batch.add_column(sa.Column("api_calls", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("api_used", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("api_limit", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_runs") as batch:
        batch.drop_column("api_limit")
        batch.drop_column("api_used")
        batch.drop_column("api_calls")
