"""What every part of the SQL store runs its jobs on."""

from __future__ import annotations

from devicecloud.store.group_commit import GroupCommitter
from devicecloud.store.reads import Readers


class SqlPart:
    """Writes go to the group-committing writer, reads to `Readers` (never queued behind or
    inside a group of writes); the engine chooses how they connect."""

    def __init__(self, writer: GroupCommitter, readers: Readers) -> None:
        self._writer = writer
        self._reader = readers

    @property
    def writer(self) -> GroupCommitter:
        """The writer: whether it is up, and what it tells of each commit."""
        return self._writer

    @property
    def stats(self) -> tuple[int, int]:
        """(transactions committed, jobs run): their ratio is the mean group size."""
        return self._writer.batches, self._writer.jobs

    async def close(self) -> None:
        """Commit and answer everything queued, then close every connection."""
        await self._writer.close()
        await self._reader.close()
