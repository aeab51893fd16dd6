"""server-side dashboard sessions; when each API key was last used; event numbers per job

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
    # Public event ids become 1, 2, 3, … per job (the global counter told teams about each other's activity).
    op.add_column("job_event", sa.Column("job_seq", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE job_event SET job_seq = numbered.n FROM (SELECT seq, row_number() OVER "
        "(PARTITION BY job_id ORDER BY seq) AS n FROM job_event) AS numbered WHERE job_event.seq = numbered.seq"
    )
    op.alter_column("job_event", "job_seq", nullable=False)
    op.create_index("ux_job_event_job_number", "job_event", ["job_id", "job_seq"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_job_event_job_number", table_name="job_event")
    op.drop_column("job_event", "job_seq")
    op.drop_index("ix_dashboard_session_api_key_id", table_name="dashboard_session")
    op.drop_table("dashboard_session")
    op.drop_column("api_key", "last_used_at")
