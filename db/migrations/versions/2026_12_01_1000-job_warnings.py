"""job warnings (pre-flight and live advice) and the evaluation report

Revision ID: 0011_job_warnings
Revises: 0008_worker_losses
Create Date: 2026-12-01 10:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011_job_warnings"
down_revision = "0008_worker_losses"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "training_job",
        sa.Column("warnings", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
    )
    op.add_column("training_job", sa.Column("report", postgresql.JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("training_job", "report")
    op.drop_column("training_job", "warnings")
