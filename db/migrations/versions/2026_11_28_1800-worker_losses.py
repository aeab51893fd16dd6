"""times a job lost its worker

Revision ID: 0008_worker_losses
Revises: 0007_worker_queue
Create Date: 2026-11-28 18:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_worker_losses"
down_revision = "0007_worker_queue"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("training_job", sa.Column("worker_losses", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    op.drop_column("training_job", "worker_losses")
