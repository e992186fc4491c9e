"""Group commit on a real SQLite file: batching, durability settings, failure isolation."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from devicecloud.store.group_commit import GroupCommitter
from devicecloud.store.sqlite import connect


def _setup(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")


def _insert(conn: sqlite3.Connection, k: int) -> int:
    conn.execute("INSERT INTO t (k, v) VALUES (?, 'x')", (k,))
    return k


async def test_concurrent_jobs_share_transactions(tmp_path: Path) -> None:
    path = tmp_path / "db"
    _setup(path)
    writer = GroupCommitter(lambda: connect(path))
    results = await asyncio.gather(*(writer.call(_insert, k) for k in range(2000)))
    assert results == list(range(2000))
    assert writer.jobs == 2000 and writer.batches < 200
    await writer.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 2000
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_failing_job_fails_alone(tmp_path: Path) -> None:
    path = tmp_path / "db"
    _setup(path)
    writer = GroupCommitter(lambda: connect(path))
    futures = [writer.call(_insert, k) for k in (1, 2, 2, 3)]  # the second 2 breaks the key
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    assert outcomes[:2] == [1, 2] and outcomes[3] == 3
    assert isinstance(outcomes[2], sqlite3.IntegrityError)
    await writer.close()
    with sqlite3.connect(path) as conn:
        assert [r[0] for r in conn.execute("SELECT k FROM t ORDER BY k")] == [1, 2, 3]


async def test_close_finishes_what_was_queued(tmp_path: Path) -> None:
    path = tmp_path / "db"
    _setup(path)
    writer = GroupCommitter(lambda: connect(path))
    futures = [writer.call(_insert, k) for k in range(500)]
    await writer.close()
    assert [f.result() for f in futures] == list(range(500))


def test_synchronous_full(tmp_path: Path) -> None:
    conn = connect(tmp_path / "db")
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    conn.close()


@pytest.mark.parametrize("count", [1, 7])
async def test_small_batches(tmp_path: Path, count: int) -> None:
    path = tmp_path / "db"
    _setup(path)
    writer = GroupCommitter(lambda: connect(path))
    assert await asyncio.gather(*(writer.call(_insert, k) for k in range(count))) == list(
        range(count))
    await writer.close()


def _insert_many(conn: sqlite3.Connection, ks: list[int]) -> list[int]:
    conn.executemany("INSERT INTO t (k, v) VALUES (?, 'x')", [(k,) for k in ks])
    return [k * 10 for k in ks]


async def test_batched_jobs_share_one_call_and_fail_alone(tmp_path: Path) -> None:
    path = tmp_path / "db"
    _setup(path)
    writer = GroupCommitter(lambda: connect(path))
    keys = [1, 2, 3, 3, 4]  # the second 3 breaks the key: the batch is re-run one job at a time
    futures = [writer.call_batched(_insert_many, k) for k in keys[:2]]
    futures.append(writer.call(_insert, 100))
    futures += [writer.call_batched(_insert_many, k) for k in keys[2:]]
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    assert outcomes[:4] == [10, 20, 100, 30] and outcomes[5] == 40
    assert isinstance(outcomes[4], sqlite3.IntegrityError)
    results = await asyncio.gather(*(writer.call_batched(_insert_many, k) for k in range(200, 700)))
    assert results == [k * 10 for k in range(200, 700)]
    await writer.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 505
