"""Files on the local disk, written atomically and fsynced before they count as stored.

A blob is first written to a `.part` file that its writer holds locked (`flock`); it becomes the
blob by an atomic rename. A `.part` is removed when its write fails, and at start every `.part`
no process holds (left by a crash) is removed, so a failed write never keeps the disk full. A full
disk is `StorageFull`, logged once until a write succeeds again.

A backup copies the database, then the blobs. So that a blob the copied database still names
cannot be deleted before it is copied, a backup first makes a hold folder (`hold_deletions`):
while one exists, a deleted blob is first linked into it. A deletion follows the commit that
forgets the blob, so a blob removed before the hold existed is not named by the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import secrets
import shutil
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import BinaryIO

from devicecloud.core.errors import StorageFull

log = logging.getLogger(__name__)
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
INCOMING = ".incoming"  # uploads being received (never a blob folder: those are two hex digits)
HOLD = ".held-"  # a backup's hold folder is named this and its process id


class DiskBlobs:
    """Each blob is `<root>/<first two hex digits>/<file id>`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / INCOMING).mkdir(parents=True, exist_ok=True)
        self._full = False
        self.removed_parts = remove_orphan_parts(root)
        if self.removed_parts:
            log.warning("removed %d unfinished upload file(s) from %s", self.removed_parts, root)

    def path(self, file_id: str) -> Path:
        return self.root / file_id[:2] / file_id

    async def put(self, file_id: str, data: bytes) -> None:
        spool = self.spool()
        try:
            await spool.write(data)
            await spool.keep(file_id)
        finally:
            spool.discard()

    def spool(self) -> DiskSpool:
        """A locked temporary file on the blobs' disk to receive an upload into; keep it or
        discard it."""
        try:
            return DiskSpool(self, self.root / INCOMING / f"{secrets.token_hex(16)}.part")
        except OSError as problem:
            raise self.failed(problem) from None

    def recovered(self) -> None:
        """A write succeeded: the next full disk is logged again."""
        self._full = False

    def failed(self, problem: OSError) -> Exception:
        """`StorageFull` for a full disk (logged once per episode), else the error itself."""
        if problem.errno not in _FULL:
            return problem
        if not self._full:
            self._full = True
            log.error("storage full: cannot write files under %s (%s)", self.root,
                      problem.strerror)
        return StorageFull("storage full")

    async def delete(self, file_ids: Collection[str]) -> None:
        """Remove these blobs (those already gone are fine)."""
        if file_ids:
            await asyncio.to_thread(self._delete, [self.path(i) for i in file_ids])

    def _delete(self, paths: list[Path]) -> None:
        holds = [folder for folder in self.root.iterdir() if folder.name.startswith(HOLD)]
        for path in paths:
            for hold in holds:
                with contextlib.suppress(FileNotFoundError, FileExistsError):
                    os.link(path, hold / path.name)
            path.unlink(missing_ok=True)

    def local_path(self, file_id: str) -> str | None:
        path = self.path(file_id)
        return str(path) if path.is_file() else None

    async def get(self, file_id: str) -> bytes | None:
        path = self.path(file_id)
        return await asyncio.to_thread(path.read_bytes) if path.is_file() else None


class DiskSpool:
    """An upload being received: a `.part` file held locked until it is kept or discarded."""

    def __init__(self, blobs: DiskBlobs, path: Path) -> None:
        self.blobs = blobs
        self.path = path
        self.size = 0
        self.kept = False
        self.out: BinaryIO = open(path, "xb")  # noqa: SIM115 - closed by discard()
        fcntl.flock(self.out.fileno(), fcntl.LOCK_EX)

    async def write(self, data: bytes) -> None:
        try:
            await asyncio.to_thread(self.out.write, data)
        except OSError as problem:
            self.discard()
            raise self.blobs.failed(problem) from None
        self.size += len(data)

    async def keep(self, file_id: str) -> None:
        """Make the contents the blob `file_id`, durably (the spool is then done)."""
        try:
            await asyncio.to_thread(self._keep, self.blobs.path(file_id))
        except OSError as problem:
            raise self.blobs.failed(problem) from None
        finally:
            self.discard()
        self.blobs.recovered()

    def _keep(self, path: Path) -> None:
        self.out.flush()
        os.fsync(self.out.fileno())
        path.parent.mkdir(exist_ok=True)
        os.replace(self.path, path)
        self.kept = True
        for directory in (path.parent, self.path.parent):
            descriptor = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)

    def discard(self) -> None:
        """Close the file; remove it unless it became a blob. Safe to call again."""
        if self.out.closed:
            return
        with contextlib.suppress(OSError):
            if not self.kept:
                self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.out.close()  # a failed flush of a full disk must not hide the first error


@contextlib.contextmanager
def hold_deletions(root: Path) -> Iterator[Path]:
    """While the block runs, blobs deleted under `root` (by any process) are kept in the folder
    it yields; it is removed afterwards."""
    hold = root / f"{HOLD}{os.getpid()}"
    shutil.rmtree(hold, ignore_errors=True)
    hold.mkdir(parents=True)
    try:
        yield hold
    finally:
        shutil.rmtree(hold, ignore_errors=True)


def stored_blobs(root: Path) -> Iterator[Path]:
    """Every blob under `root`, not the uploads still arriving nor the hold folders."""
    if not root.is_dir():
        return
    for folder in sorted(root.iterdir()):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.name.endswith(".part"):
                yield path


def remove_orphan_parts(root: Path) -> int:
    """Remove every `.part` under `root` that no process holds locked; how many were removed."""
    removed = 0
    for path in root.glob("*/*.part"):
        try:
            with open(path, "rb") as held:
                fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                path.unlink()
                removed += 1
        except OSError:
            continue  # being written by a live process, or gone already
    return removed
