"""A device's description and its owner's tags.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("devices", sa.Column("description", sa.Text, nullable=False,
                                       server_default=""))
    op.create_table(
        "device_tags",
        sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("tag", sa.String(64), primary_key=True))
    op.create_index("ix_device_tags_tag", "device_tags", ["tag"])


def downgrade() -> None:
    op.drop_index("ix_device_tags_tag", "device_tags")
    op.drop_table("device_tags")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("description")
