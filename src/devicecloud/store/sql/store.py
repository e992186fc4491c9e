"""The `Store` port, whole: every aggregate's part on one writer and one set of readers."""

from __future__ import annotations

from devicecloud.store.sql.accounts import SqlAccounts
from devicecloud.store.sql.device_profiles import SqlDeviceProfiles
from devicecloud.store.sql.devices import SqlDevices
from devicecloud.store.sql.espai import SqlEspAi
from devicecloud.store.sql.events import SqlEvents
from devicecloud.store.sql.fields import SqlFields
from devicecloud.store.sql.files import SqlFiles
from devicecloud.store.sql.history import SqlHistory


class SqlStore(SqlDevices, SqlDeviceProfiles, SqlFields, SqlHistory, SqlFiles, SqlAccounts,
               SqlEspAi, SqlEvents):
    """The `Store` port: writes as jobs for a group-committing writer, reads on `Readers`;
    `SqliteStore` and `PostgresStore` choose the engine."""
