"""The account's session epoch: a console session cookie counts only while it carries the
account's current epoch, so a password change or "log out everywhere" ends every session.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("session_epoch", sa.String(32), nullable=False,
                                        server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("session_epoch")
