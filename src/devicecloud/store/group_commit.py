"""Group commit: one writer thread runs every queued job in one transaction, then answers all.

Jobs that arrive while a transaction is committing wait for the next one, so a burst of N changes
costs one fsync rather than N. A caller's future is settled only after its transaction committed.
A batched job (`call_batched`) takes a list of items: consecutive jobs of the same batched
function in a transaction run as one call, so its SQL can change many rows per statement.

A connection that breaks (a database server restarted or unreachable) is replaced before the next
transaction. A batch that failed on a broken connection before its COMMIT was sent committed
nothing, so it is run once more on a fresh connection; one whose COMMIT got no answer may or may
not have committed, so its callers get an error, never a false "done".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from itertools import groupby
from operator import itemgetter
from typing import Any, TypeVar

from devicecloud.core.errors import DeviceCloudError, Unavailable
from devicecloud.store.connection import Connection

log = logging.getLogger(__name__)

T = TypeVar("T")
# (function, arguments or, when batched, the one item, future, batched)
Job = tuple[Callable[..., Any], Any, "asyncio.Future[Any]", bool]
_STOP = None
_KIND = itemgetter(0, 3)  # consecutive jobs of one function, batched or not, run together


class GroupCommitter:
    """Owns one connection on one thread; `call(fn, *args)` runs `fn(conn, *args)` there.
    `on_commit(jobs, seconds)`, if set, is called on that thread after each committed batch;
    `up` says whether the last transaction committed (False while the database is unavailable)."""

    def __init__(self, connect: Callable[[], Connection], max_batch: int = 20_000,
                 begin: str = "BEGIN IMMEDIATE") -> None:
        self._connect = connect
        self._begin = begin
        self._max_batch = max_batch
        self._conn: Connection | None = None
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()
        self.batches = 0
        self.jobs = 0
        self.on_commit: Callable[[int, float], None] | None = None
        self.up = True

    def call(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue `fn(conn, *args)`; the future resolves after the transaction holding it commits."""
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put((fn, args, future, False))
        return future

    def call_batched(self, fn: Callable[[Any, list[Any]], list[T]], item: Any) -> asyncio.Future[T]:
        """Queue `item` for `fn(conn, items)`, which returns one result per item; consecutive
        jobs of `fn` in a transaction share one call. Resolves after the commit."""
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put((fn, item, future, True))
        return future

    async def close(self) -> None:
        """Finish every job queued so far, then close the connection."""
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)

    def _run(self) -> None:
        try:
            while True:
                job = self._queue.get()
                if job is _STOP:
                    return
                batch = [job]
                stop = False
                while len(batch) < self._max_batch:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is _STOP:
                        stop = True
                        break
                    batch.append(more)
                self._loop.call_soon_threadsafe(_settle, batch, self._commit(batch))
                if stop:
                    return
        finally:
            if self._conn is not None:
                self._conn.close()

    def _connection(self) -> Connection:
        """The open connection, or a new one if there is none (or it broke)."""
        if self._conn is not None and getattr(self._conn, "broken", False):
            log.warning("database connection lost; connecting again")
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _commit(self, batch: list[Job]) -> list[tuple[bool, Any]]:
        self.batches += 1
        self.jobs += len(batch)
        started = time.perf_counter()
        for attempt in (1, 2):
            committing = False
            try:
                conn = self._connection()
                conn.execute(self._begin)
                outcomes: list[tuple[bool, Any]] = []
                for (fn, batched), run in groupby(batch, _KIND):
                    jobs = list(run)
                    if batched:
                        outcomes.extend((True, r) for r in fn(conn, [job[1] for job in jobs]))
                    else:
                        outcomes.extend((True, fn(conn, *job[1])) for job in jobs)
                committing = True
                conn.execute("COMMIT")
                self._committed(len(batch), started)
                return outcomes
            except Exception as error:
                if self._rolled_back():
                    if len(batch) == 1:
                        _log_failure(error)
                        return [(False, error)]
                    break  # one job spoiled the batch: run each alone, below
                if committing or attempt == 2:  # the outcome is unknown, or the database is gone
                    log.error("database unavailable: %s", error)
                    self.up = False
                    gone = Unavailable("the database is unavailable; try again")
                    return [(False, gone)] * len(batch)
        return [self._alone(job) for job in batch]

    def _committed(self, jobs: int, started: float) -> None:
        self.up = True
        if self.on_commit is not None:
            self.on_commit(jobs, time.perf_counter() - started)

    def _rolled_back(self) -> bool:
        """Roll back the failed transaction; False if the connection itself is broken."""
        conn = self._conn
        if conn is None or getattr(conn, "broken", False):
            return False
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except Exception:
            return False
        return not getattr(conn, "broken", False)

    def _alone(self, job: Job) -> tuple[bool, Any]:
        fn, args, _, batched = job
        started = time.perf_counter()
        try:
            conn = self._connection()
            conn.execute(self._begin)
            result = fn(conn, [args])[0] if batched else fn(conn, *args)
            conn.execute("COMMIT")
            self._committed(1, started)
            return True, result
        except Exception as error:  # handed to the caller, whose request fails alone
            self._rolled_back()
            _log_failure(error)
            return False, error


def _log_failure(error: Exception) -> None:
    """A job that broke a rule (a client's error) is the caller's to answer; anything else is
    logged with its traceback."""
    if not isinstance(error, DeviceCloudError):
        log.error("database job failed", exc_info=error)


def _settle(batch: list[Job], outcomes: list[tuple[bool, Any]]) -> None:
    for (_, _, future, _), (ok, value) in zip(batch, outcomes, strict=True):
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
