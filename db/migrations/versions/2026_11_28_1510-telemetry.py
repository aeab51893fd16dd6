"""telemetry: pause requests

Revision ID: 0003_telemetry
Revises: 0001
Create Date: 2026-11-28 15:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_telemetry"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "training_job",
        sa.Column("pause_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("training_job", "pause_requested")
