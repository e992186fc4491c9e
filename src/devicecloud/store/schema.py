"""The tables, as SQLAlchemy Core metadata (the source of truth for migrations)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

devices = Table(
    "devices", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("mac", String(12), nullable=False, unique=True),
    Column("token", String(32), nullable=False, unique=True),
    Column("device_type", String(64), nullable=False, server_default=""),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("last_seen_at", BigInteger),
    Column("owner_id", Integer, index=True),
    Column("downlink_limit", Integer),
    # The ESP-AI device record (migration 0004).
    Column("public_id", String(32), index=True, unique=True),
    Column("agent_id", String(32), index=True),
    *(Column(name, String(length)) for name, length in (
        ("name", 128), ("wifi_ssid", 64), ("wifi_pwd", 128), ("net_ip", 64), ("version", 64),
        ("bin_id", 64), ("nation", 64), ("province", 64), ("city", 64), ("latitude", 32),
        ("longitude", 32))),
    Column("enable", String(1), nullable=False, server_default="0"),
    Column("type", String(8), nullable=False, server_default="0"),
    *(Column(name, Text) for name in ("memory", "ext1", "ext2", "ext3", "local_data")),
    Column("sort", Integer),
    Column("battery", Integer),
    Column("firmware_addr", String(64), index=True),  # migration 0005
    # A release asked for by the device's token, waiting for the owner (migration 0006).
    Column("release_requested_at", BigInteger, index=True),
    Column("release_refused_until", BigInteger),
    # What the owner says of it, beside its name (migration 0008).
    Column("description", Text, nullable=False, server_default=""),
)

# The owner's tags of a device, for grouping and filtering (migration 0008).
device_tags = Table(
    "device_tags", metadata,
    Column("device_id", Integer, ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    Column("tag", String(64), primary_key=True),
    Index("ix_device_tags_tag", "tag"),
)

fields = Table(
    "fields", metadata,
    Column("id", String(32), primary_key=True),
    Column("data_token", String(32), nullable=False, unique=True),
    Column("device_id", Integer, ForeignKey("devices.id"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("value", Text, nullable=False),
    Column("data_type", String(16), nullable=False),
    Column("permissions", String(8), nullable=False, server_default="0"),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    UniqueConstraint("device_id", "name", name="uq_fields_device_name"),
)

# The unit an owner gives a field's values ("°C", "%"), shown beside them (migration 0011).
field_units = Table(
    "field_units", metadata,
    Column("field_id", String(32), primary_key=True),
    Column("unit", String(16), nullable=False),
)

field_history = Table(
    "field_history", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("field_id", String(32), nullable=False),
    Column("value", Text, nullable=False),
    Column("data_type", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_field_history_field_time", "field_id", "created_at", "id"),
)

files = Table(
    "files", metadata,
    Column("id", String(32), primary_key=True),
    Column("device_id", Integer, ForeignKey("devices.id"), nullable=False, index=True),
    Column("field_name", String(128), nullable=False),
    Column("file_name", String(128), nullable=False),
    Column("content_type", String(128), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

accounts = Table(
    "accounts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("display_name", String(100), nullable=False, server_default=""),
    Column("phone", String(32), nullable=False, server_default=""),
    Column("open_api_key", String(32), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("session_epoch", String(32), nullable=False, server_default=""),  # migration 0007
    Column("mask_wifi_pwd", Integer, nullable=False, server_default="0"),
)

pair_codes = Table(
    "pair_codes", metadata,
    Column("code", String(16), primary_key=True),
    Column("device_id", Integer, ForeignKey("devices.id"), nullable=False, unique=True),
    Column("expires_at", BigInteger, nullable=False),
)

agents = Table(
    "agents", metadata,
    Column("id", String(32), primary_key=True),
    Column("account_id", Integer, nullable=False, index=True),
    Column("name", String(100), nullable=False),
    Column("api_key", String(32), nullable=False, unique=True),
    Column("server_url", String(255), nullable=False, server_default=""),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

firmware = Table(
    "firmware", metadata,
    Column("id", String(32), primary_key=True),
    Column("account_id", Integer, nullable=False, index=True),
    Column("bin_id", String(64), nullable=False),
    Column("version", String(64), nullable=False),
    Column("file_name", String(128), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("account_id", "bin_id", "version", name="uq_firmware_account_bin_version"),
)

# The event log (migration 0009): what each account is told of, in commit order. `id` comes
# from the one row of `event_seq`, taken in the transaction that writes the events, so ids are
# unique and increase in commit order on every engine (see docs/architecture.md, The event log).
events = Table(
    "events", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=False),
    Column("account_id", Integer, nullable=False),
    Column("device", String(32), nullable=False),  # the device's public id
    Column("type", String(32), nullable=False),
    Column("data", Text, nullable=False),  # the event's data as JSON, without `device`
    Column("created_at", BigInteger, nullable=False),
    Index("ix_events_account", "account_id", "id"),
)

event_seq = Table(
    "event_seq", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_id", BigInteger, nullable=False),
)
