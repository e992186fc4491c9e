"""ESP-AI: device record columns, agents, firmware images, the wifi_pwd masking choice.

Revision ID: 0004
Revises: 0003
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TEXT = [("name", 128), ("wifi_ssid", 64), ("wifi_pwd", 128), ("net_ip", 64), ("version", 64),
         ("bin_id", 64), ("nation", 64), ("province", 64), ("city", 64), ("latitude", 32),
         ("longitude", 32)]


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("account_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("api_key", sa.String(32), nullable=False, unique=True),
        sa.Column("server_url", sa.String(255), nullable=False, server_default=""),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_agents_account_id", "agents", ["account_id"])
    op.create_table(
        "firmware",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("account_id", sa.Integer, nullable=False),
        sa.Column("bin_id", sa.String(64), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("file_name", sa.String(128), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("bin_id", "version", name="uq_firmware_bin_version"),
    )
    op.create_index("ix_firmware_account_id", "firmware", ["account_id"])

    op.add_column("devices", sa.Column("public_id", sa.String(32)))
    op.add_column("devices", sa.Column("agent_id", sa.String(32)))
    for name, length in _TEXT:
        op.add_column("devices", sa.Column(name, sa.String(length)))
    op.add_column("devices", sa.Column("enable", sa.String(1), nullable=False,
                                       server_default="0"))
    op.add_column("devices", sa.Column("type", sa.String(8), nullable=False, server_default="0"))
    for name in ("memory", "ext1", "ext2", "ext3", "local_data"):
        op.add_column("devices", sa.Column(name, sa.Text))
    op.add_column("devices", sa.Column("sort", sa.Integer))
    op.add_column("devices", sa.Column("battery", sa.Integer))
    devices = sa.table("devices", sa.column("id", sa.Integer), sa.column("public_id", sa.String))
    connection = op.get_bind()
    for (row_id,) in connection.execute(sa.select(devices.c.id)).fetchall():
        connection.execute(devices.update().where(devices.c.id == row_id)
                           .values(public_id=secrets.token_hex(16)))
    op.create_index("ix_devices_public_id", "devices", ["public_id"], unique=True)
    op.create_index("ix_devices_agent_id", "devices", ["agent_id"])

    op.add_column("accounts", sa.Column("mask_wifi_pwd", sa.Integer, nullable=False,
                                        server_default="0"))


def downgrade() -> None:
    op.drop_column("accounts", "mask_wifi_pwd")
    op.drop_index("ix_devices_agent_id", "devices")
    op.drop_index("ix_devices_public_id", "devices")
    with op.batch_alter_table("devices") as batch:
        for name in ("public_id", "agent_id", *(n for n, _ in _TEXT), "enable", "type", "memory",
                     "ext1", "ext2", "ext3", "local_data", "sort", "battery"):
            batch.drop_column(name)
    op.drop_table("firmware")
    op.drop_table("agents")
