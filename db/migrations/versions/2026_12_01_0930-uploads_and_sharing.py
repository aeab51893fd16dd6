"""resumable uploads, shared fine-tunes, deleted models and result files

Revision ID: 0009_uploads_and_sharing
Revises: 0008_worker_losses
Create Date: 2026-12-01 09:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_uploads_and_sharing"
down_revision = "0008_worker_losses"
branch_labels = None
depends_on = None


def _now() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    op.add_column("training_job", sa.Column("model_deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "training_job",
        sa.Column(
            "result_file_id", sa.String(64), sa.ForeignKey("dataset_file.id", ondelete="SET NULL"), nullable=True
        ),
    )
    op.create_table(
        "upload",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("team_id", sa.String(64), sa.ForeignKey("team.id", ondelete="CASCADE"), nullable=False),
        sa.Column("filename", sa.String(512), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("mime_type", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("file_id", sa.String(64), sa.ForeignKey("dataset_file.id", ondelete="SET NULL"), nullable=True),
        _now(),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_upload_team_id", "upload", ["team_id"])
    op.create_index(
        "ix_upload_pending_expiry", "upload", ["expires_at"], postgresql_where=sa.text("status = 'pending'")
    )
    op.create_table(
        "upload_part",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("upload_id", sa.String(64), sa.ForeignKey("upload.id", ondelete="CASCADE"), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("storage_key", sa.String(512), nullable=False),
        _now(),
    )
    op.create_index("ix_upload_part_upload_id", "upload_part", ["upload_id"])
    op.create_table(
        "model_permission",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("job_id", sa.String(64), sa.ForeignKey("training_job.id", ondelete="CASCADE"), nullable=False),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("model_name", sa.String(600), nullable=False),
        sa.Column(
            "grantee_team_id", sa.String(64), sa.ForeignKey("team.id", ondelete="CASCADE"), nullable=False
        ),
        _now(),
    )
    op.create_index("ix_model_permission_job_id", "model_permission", ["job_id"])
    op.create_index("ix_model_permission_grantee_team_id", "model_permission", ["grantee_team_id"])
    op.create_index("ux_model_permission_grant", "model_permission", ["model_name", "grantee_team_id"], unique=True)


def downgrade() -> None:
    op.drop_table("model_permission")
    op.drop_table("upload_part")
    op.drop_table("upload")
    op.drop_column("training_job", "result_file_id")
    op.drop_column("training_job", "model_deleted_at")
