"""merge feature branches

Revision ID: 0006_merge
Revises: 0002_pool, 0004_ops, 0003_telemetry, 0005_idempotency
Create Date: 2026-11-28 16:30:13.318491
"""



revision = '0006_merge'
down_revision = ('0002_pool', '0004_ops', '0003_telemetry', '0005_idempotency')
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
