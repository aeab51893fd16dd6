"""serving backends (built-in engine or vLLM) that answer chat completions

Revision ID: 0010_serving_backends
Revises: 0008_worker_losses
Create Date: 2026-12-01 09:30:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010_serving_backends"
down_revision = "0008_worker_losses"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "serving_backend",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("base_model", sa.String(256), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("engine", sa.String(32), nullable=False),
        sa.Column("hostname", sa.String(256), nullable=False),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("loaded_adapters", postgresql.JSONB(), nullable=False),
        sa.Column("max_adapters", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("last_heartbeat", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_serving_backend_base_model", "serving_backend", ["base_model"])


def downgrade() -> None:
    op.drop_index("ix_serving_backend_base_model", "serving_backend")
    op.drop_table("serving_backend")
