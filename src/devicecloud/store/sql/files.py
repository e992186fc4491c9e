"""Stored files: their records (the blob store holds the contents; a caller that forgets a file
then deletes its blob)."""

from __future__ import annotations

from devicecloud.core.models import StoredFile
from devicecloud.store.connection import Connection
from devicecloud.store.sql.base import SqlPart


def _add_file(conn: Connection, f: StoredFile) -> None:
    conn.execute("INSERT INTO files (id, device_id, field_name, file_name, content_type, size, "
                 "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                 (f.id, f.device_id, f.field_name, f.file_name, f.content_type, f.size,
                  f.created_at))


def _get_file(conn: Connection, file_id: str) -> StoredFile | None:
    row = conn.execute("SELECT id, device_id, field_name, file_name, content_type, size, "
                       "created_at FROM files WHERE id = ?", (file_id,)).fetchone()
    return StoredFile(*row) if row else None


def _delete_files(conn: Connection, device_id: int, field_name: str, keep: str) -> list[str]:
    rows = conn.execute("DELETE FROM files WHERE device_id = ? AND field_name = ? AND id <> ? "
                        "RETURNING id", (device_id, field_name, keep))
    return [row[0] for row in rows]


def _delete_file(conn: Connection, file_id: str) -> None:
    conn.execute("DELETE FROM files WHERE id = ?", (file_id,))


class SqlFiles(SqlPart):
    """The `FileStore` port."""

    async def add_file(self, file: StoredFile) -> None:
        await self._writer.call(_add_file, file)

    async def get_file(self, file_id: str) -> StoredFile | None:
        return await self._reader.call(_get_file, file_id)

    async def delete_files(self, device_id: int, field_name: str,
                           keep: str | None = None) -> list[str]:
        return await self._writer.call(_delete_files, device_id, field_name, keep or "")

    async def delete_file(self, file_id: str) -> None:
        await self._writer.call(_delete_file, file_id)
