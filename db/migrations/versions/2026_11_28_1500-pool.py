"""shared pool: placement columns, worker reservations, GPU usage ledger, team quotas

Revision ID: 0002_pool
Revises: 0001
Create Date: 2026-11-28 15:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002_pool"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("training_job", sa.Column("resources", postgresql.JSONB(), nullable=True))
    op.add_column("training_job", sa.Column("memory_estimate_bytes", sa.BigInteger(), nullable=True))
    op.add_column("training_job", sa.Column("dispatched_to", sa.String(length=128), nullable=True))
    op.add_column("worker", sa.Column("reserved_job_id", sa.String(length=64), nullable=True))
    op.create_table(
        "gpu_usage",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("team_id", sa.String(length=64), nullable=False),
        sa.Column("worker_id", sa.String(length=128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["training_job.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["team_id"], ["team.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_gpu_usage_team_started", "gpu_usage", ["team_id", "started_at"], unique=False)
    op.create_index(
        "ix_gpu_usage_worker_open", "gpu_usage", ["worker_id"], postgresql_where=sa.text("ended_at IS NULL")
    )
    op.create_table(
        "team_quota",
        sa.Column("team_id", sa.String(length=64), nullable=False),
        sa.Column("max_running_jobs", sa.Integer(), nullable=True),
        sa.Column("max_queued_jobs", sa.Integer(), nullable=True),
        sa.Column("gpu_hours_per_period", sa.Float(), nullable=True),
        sa.Column("period_hours", sa.Float(), nullable=False),
        sa.Column("max_dataset_storage_bytes", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["team_id"], ["team.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("team_id"),
    )


def downgrade() -> None:
    op.drop_table("team_quota")
    op.drop_index("ix_gpu_usage_worker_open", table_name="gpu_usage")
    op.drop_index("ix_gpu_usage_team_started", table_name="gpu_usage")
    op.drop_table("gpu_usage")
    op.drop_column("worker", "reserved_job_id")
    op.drop_column("training_job", "dispatched_to")
    op.drop_column("training_job", "memory_estimate_bytes")
    op.drop_column("training_job", "resources")
