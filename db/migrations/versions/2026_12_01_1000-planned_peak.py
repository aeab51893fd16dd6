"""peak GPU memory the worker's batch plan expects

Revision ID: 0009_planned_peak
Revises: 0008_worker_losses
Create Date: 2026-12-01 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_planned_peak"
down_revision = "0008_worker_losses"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("training_job", sa.Column("planned_peak_bytes", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("training_job", "planned_peak_bytes")
