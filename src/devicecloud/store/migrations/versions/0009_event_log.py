"""The event log: every committed change an account is told of, and the counter of its ids.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=False),
        sa.Column("account_id", sa.Integer, nullable=False),
        sa.Column("device", sa.String(32), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False))
    op.create_index("ix_events_account", "events", ["account_id", "id"])
    seq = op.create_table(
        "event_seq",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("last_id", sa.BigInteger, nullable=False))
    op.bulk_insert(seq, [{"id": 1, "last_id": 0}])


def downgrade() -> None:
    op.drop_table("event_seq")
    op.drop_index("ix_events_account", "events")
    op.drop_table("events")
