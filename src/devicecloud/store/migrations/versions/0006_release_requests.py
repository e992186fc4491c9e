"""A release asked for by a bound device's token waits for its owner: when it was asked, and until
when the owner refused further requests.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("devices", sa.Column("release_requested_at", sa.BigInteger))
    op.add_column("devices", sa.Column("release_refused_until", sa.BigInteger))
    op.create_index("ix_devices_release_requested_at", "devices", ["release_requested_at"])


def downgrade() -> None:
    op.drop_index("ix_devices_release_requested_at", "devices")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("release_refused_until")
        batch.drop_column("release_requested_at")
