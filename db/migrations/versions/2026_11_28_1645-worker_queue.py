"""worker queue family

Revision ID: 0007_worker_queue
Revises: 0006_merge
Create Date: 2026-11-28 16:45:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_worker_queue"
down_revision = "0006_merge"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("worker", sa.Column("queue", sa.String(length=128), server_default="gpu", nullable=False))


def downgrade() -> None:
    op.drop_column("worker", "queue")
