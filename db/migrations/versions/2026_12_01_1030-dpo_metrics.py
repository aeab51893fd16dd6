"""DPO's reward metrics per step

Revision ID: 0012_dpo_metrics
Revises: 0008_worker_losses
Create Date: 2026-12-01 10:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_dpo_metrics"
down_revision = "0008_worker_losses"
branch_labels = None
depends_on = None

_COLUMNS = [
    "rewards_chosen",
    "rewards_rejected",
    "rewards_margins",
    "rewards_accuracies",
    "valid_rewards_chosen",
    "valid_rewards_rejected",
    "valid_rewards_margins",
    "valid_rewards_accuracies",
]


def upgrade() -> None:
    for name in _COLUMNS:
        op.add_column("job_metric", sa.Column(name, sa.Float(), nullable=True))


def downgrade() -> None:
    for name in _COLUMNS:
        op.drop_column("job_metric", name)
