"""Reads on connections of their own, off the writer thread.

A read never waits behind a group of writes, never runs inside one (so a slow read cannot delay a
commit and a failing read cannot spoil a group), and reads run side by side: SQLite in WAL mode
lets readers work while the writer commits, and PostgreSQL serves each connection on its own.
Each read is one statement or a few, on an autocommit connection: it sees everything committed
before it started, so a caller that awaited its own write reads it back.

A connection that broke (the database server restarted) is dropped and the read is tried once
more on a fresh one; a database that cannot be reached is `Unavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from devicecloud.core.errors import Unavailable
from devicecloud.store.connection import Connection

log = logging.getLogger(__name__)

T = TypeVar("T")


def _broken(conn: Connection) -> bool:
    return bool(getattr(conn, "broken", False))


class Readers:
    """`call(fn, *args)` runs `fn(conn, *args)` on one of `size` threads, each with a connection."""

    def __init__(self, connect: Callable[[], Connection], size: int = 2) -> None:
        self._connect = connect
        self._idle: queue.SimpleQueue[Connection] = queue.SimpleQueue()
        self._open: set[Connection] = set()
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(size, thread_name_prefix="store-read")
        self._loop = asyncio.get_running_loop()

    def call(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run the read `fn(conn, *args)` now, beside any writes; resolves with its result."""
        return self._loop.run_in_executor(self._executor, self._read, fn, args)

    async def close(self) -> None:
        """Finish the reads under way, then close every connection."""
        await asyncio.to_thread(self._executor.shutdown)
        with self._lock:
            for conn in self._open:
                with contextlib.suppress(Exception):
                    conn.close()
            self._open.clear()

    def _read(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        for attempt in (1, 2):
            conn = self._take()
            try:
                result = fn(conn, *args)
            except Exception as error:
                if not _broken(conn):
                    self._idle.put(conn)
                    raise
                self._drop(conn)
                if attempt == 2:
                    log.error("database unavailable: %s", error)
                    raise Unavailable("the database is unavailable; try again") from None
                log.warning("database connection lost; connecting again")
                continue
            self._idle.put(conn)
            return result
        raise AssertionError("unreachable")

    def _take(self) -> Connection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        try:
            conn = self._connect()
        except Exception as error:
            log.error("database unavailable: %s", error)
            raise Unavailable("the database is unavailable; try again") from None
        with self._lock:
            self._open.add(conn)
        return conn

    def _drop(self, conn: Connection) -> None:
        with self._lock:
            self._open.discard(conn)
        with contextlib.suppress(Exception):
            conn.close()
