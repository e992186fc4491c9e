"""Files on the local disk, written atomically and fsynced before they count as stored."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path


class DiskBlobs:
    """Each blob is `<root>/<first two hex digits>/<file id>`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, file_id: str) -> Path:
        return self.root / file_id[:2] / file_id

    async def put(self, file_id: str, data: bytes) -> None:
        await asyncio.to_thread(self._write, self._path(file_id), data)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".part")
        with open(temporary, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def local_path(self, file_id: str) -> str | None:
        path = self._path(file_id)
        return str(path) if path.is_file() else None

    async def get(self, file_id: str) -> bytes | None:
        path = self._path(file_id)
        return await asyncio.to_thread(path.read_bytes) if path.is_file() else None
