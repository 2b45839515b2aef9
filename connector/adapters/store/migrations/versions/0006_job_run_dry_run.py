"""Whether a job run was a dry run, kept with the run.

Revision ID: 0006_job_run_dry_run
Revises: 0005_alerts
Create Date: 2026-12-07

* ``job_runs.dry_run``: the run wrote and sent nothing (``--dry-run``). Alerts' failure
  streaks, a job's last success and the daemon's "tick already served" ignore such runs;
  the dashboard and ``status`` show them, marked.
  Rows from before this revision were real runs as far as anyone can tell: ``false``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_job_run_dry_run"
down_revision = "0005_alerts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_runs") as batch:
        batch.add_column(sa.Column("dry_run", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("job_runs") as batch:
        batch.drop_column("dry_run")
