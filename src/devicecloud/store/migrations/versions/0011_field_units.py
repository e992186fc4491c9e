"""The unit an owner gives a field's values, shown beside them in the console.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("field_units",
                    sa.Column("field_id", sa.String(32), primary_key=True),
                    sa.Column("unit", sa.String(16), nullable=False))


def downgrade() -> None:
    op.drop_table("field_units")
