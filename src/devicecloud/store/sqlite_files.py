"""The SQL store's part for stored files: forgetting a file, or the files of a field (the caller
then deletes their blobs). The jobs run on the writer thread, as every job of the SQL store."""

from __future__ import annotations

import sqlite3

from devicecloud.store.group_commit import GroupCommitter


def _delete_files(conn: sqlite3.Connection, device_id: int, field_name: str,
                  keep: str) -> list[str]:
    rows = conn.execute("DELETE FROM files WHERE device_id = ? AND field_name = ? AND id <> ? "
                        "RETURNING id", (device_id, field_name, keep))
    return [row[0] for row in rows]


def _delete_file(conn: sqlite3.Connection, file_id: str) -> None:
    conn.execute("DELETE FROM files WHERE id = ?", (file_id,))


class FilesSqlite:
    """The file methods of the `Store` port beyond add and get, for `SqlStore`."""

    _writer: GroupCommitter

    async def delete_files(self, device_id: int, field_name: str,
                           keep: str | None = None) -> list[str]:
        return await self._writer.call(_delete_files, device_id, field_name, keep or "")

    async def delete_file(self, file_id: str) -> None:
        await self._writer.call(_delete_file, file_id)
