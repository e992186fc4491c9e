"""Devices, their data fields with history, and uploaded files.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("mac", sa.String(12), nullable=False, unique=True),
        sa.Column("token", sa.String(32), nullable=False, unique=True),
        sa.Column("device_type", sa.String(64), nullable=False, server_default=""),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("last_seen_at", sa.BigInteger),
        sa.Column("owner_id", sa.Integer),
    )
    op.create_index("ix_devices_owner_id", "devices", ["owner_id"])
    op.create_table(
        "fields",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("data_token", sa.String(32), nullable=False, unique=True),
        sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id"), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("data_type", sa.String(16), nullable=False),
        sa.Column("permissions", sa.String(8), nullable=False, server_default="0"),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("device_id", "name", name="uq_fields_device_name"),
    )
    op.create_table(
        "field_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("field_id", sa.String(32), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("data_type", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_field_history_field", "field_history", ["field_id", "id"])
    op.create_table(
        "files",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id"), nullable=False),
        sa.Column("field_name", sa.String(128), nullable=False),
        sa.Column("file_name", sa.String(128), nullable=False),
        sa.Column("content_type", sa.String(128), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_files_device_id", "files", ["device_id"])


def downgrade() -> None:
    op.drop_table("files")
    op.drop_table("field_history")
    op.drop_table("fields")
    op.drop_table("devices")
