"""Each field's history indexed by time (then id) instead of by id alone: range reads and
buckets use it, and so do EzData's newest-first pages, so every change still updates one index.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_field_history_field_time", "field_history",
                    ["field_id", "created_at", "id"])
    op.drop_index("ix_field_history_field", "field_history")


def downgrade() -> None:
    op.create_index("ix_field_history_field", "field_history", ["field_id", "id"])
    op.drop_index("ix_field_history_field_time", "field_history")
