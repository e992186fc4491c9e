"""Firmware images per account: a `bin_id` is the account's own (unique per account and version),
and the address of each device's last firmware socket, which says whose images an unmodified
firmware's `query_new_ota` may be offered.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("firmware") as batch:
        batch.drop_constraint("uq_firmware_bin_version", type_="unique")
        batch.create_unique_constraint("uq_firmware_account_bin_version",
                                       ["account_id", "bin_id", "version"])
    op.add_column("devices", sa.Column("firmware_addr", sa.String(64)))
    op.create_index("ix_devices_firmware_addr", "devices", ["firmware_addr"])


def downgrade() -> None:
    op.drop_index("ix_devices_firmware_addr", "devices")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("firmware_addr")
    with op.batch_alter_table("firmware") as batch:
        batch.drop_constraint("uq_firmware_account_bin_version", type_="unique")
        batch.create_unique_constraint("uq_firmware_bin_version", ["bin_id", "version"])
