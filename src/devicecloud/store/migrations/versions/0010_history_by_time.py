"""An index of each field's history by time, for range reads and buckets.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_field_history_field_time", "field_history", ["field_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_field_history_field_time", "field_history")
