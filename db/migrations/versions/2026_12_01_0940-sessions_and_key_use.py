"""server-side dashboard sessions; when each API key was last used

Revision ID: 0009_sessions
Revises: 0008_worker_losses
Create Date: 2026-12-01 09:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_sessions"
down_revision = "0008_worker_losses"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_key", sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "dashboard_session",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("api_key_id", sa.String(64), sa.ForeignKey("api_key.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_dashboard_session_api_key_id", "dashboard_session", ["api_key_id"])


def downgrade() -> None:
    op.drop_index("ix_dashboard_session_api_key_id", table_name="dashboard_session")
    op.drop_table("dashboard_session")
    op.drop_column("api_key", "last_used_at")
