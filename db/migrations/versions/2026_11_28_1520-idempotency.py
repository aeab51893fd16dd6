"""idempotency keys: one row per (team, Idempotency-Key), naming the object the first request made

Revision ID: 0005_idempotency
Revises: 0001
Create Date: 2026-11-28 15:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_idempotency"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idempotency_key",
        sa.Column("team_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("endpoint", sa.String(length=64), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["team_id"], ["team.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("team_id", "key"),
    )


def downgrade() -> None:
    op.drop_table("idempotency_key")
