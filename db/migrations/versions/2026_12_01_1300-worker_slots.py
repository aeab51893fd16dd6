"""a worker process owns several GPU slots: each slot row knows its host (the process) and GPU index

Revision ID: 0013_worker_slots
Revises: 0008_worker_losses
Create Date: 2026-12-01 13:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_worker_slots"
down_revision = "0008_worker_losses"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("worker", sa.Column("host_id", sa.String(length=128), nullable=True))
    op.add_column("worker", sa.Column("gpu_index", sa.Integer(), nullable=True))
    op.execute("UPDATE worker SET host_id = id")  # every worker so far owned one slot, itself
    op.alter_column("worker", "host_id", nullable=False)
    op.create_index("ix_worker_host_id", "worker", ["host_id"])


def downgrade() -> None:
    op.drop_index("ix_worker_host_id", table_name="worker")
    op.drop_column("worker", "gpu_index")
    op.drop_column("worker", "host_id")
