"""Changes of fields the store has seen take the batched path, and stay right when the field was
deleted or re-created behind the store's back (by another process)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import orjson
from support.server import database_url

from devicecloud.config import Settings
from devicecloud.core.models import Field
from devicecloud.store.open import open_store
from devicecloud.store.sql.store import SqlStore


async def test_known_fields_follow_changes_made_elsewhere(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=database_url(tmp_path))
    store, other = await open_store(settings), await open_store(settings)
    try:
        device = await store.register_mac("AABBCCDDEEFF", "", "a" * 32, 1)

        def add(store: SqlStore, name: str, value: Any, kind: str, permissions: str,
                ids: tuple[str, str], now: int) -> Awaitable[Field]:
            return store.add_field(device.id, name, value, orjson.dumps(value), kind,
                                   permissions, ids, now)

        def modify(store: SqlStore, name: str, value: Any, kind: str,
                   now: int) -> Awaitable[Field | None]:
            return store.modify_field(device.id, name, value, orjson.dumps(value), kind, now)

        added = await add(store, "f", 0, "number", "1", ("1" * 32, "2" * 32), 2)
        changed = await asyncio.gather(*(modify(store, "f", n, "number", 10 + n)
                                         for n in range(1, 50)))
        assert [f.value if f else None for f in changed] == list(range(1, 50))
        assert changed[-1] == await store.get_field(device.id, "f")
        assert changed[-1] is not None and changed[-1].id == added.id
        assert changed[-1].permissions == "1" and changed[-1].created_at == 2
        entries, total = await store.history(added.id, 5, 0)
        assert total == 50 and [e.value for e in entries] == [49, 48, 47, 46, 45]

        assert await other.delete_field(device.id, "f") is not None
        assert await modify(store, "f", 99, "number", 100) is None
        again = await add(other, "f", "x", "string", "0", ("3" * 32, "4" * 32),
                                      101)
        results = await asyncio.gather(modify(store, "f", "y", "string", 102),
                                       modify(store, "g", 1, "number", 103))
        assert results[1] is None and results[0] is not None
        assert (results[0].id, results[0].value, results[0].created_at) == (again.id, "y", 101)
        assert (await store.history(again.id, 10, 0))[1] == 2
        renewed = await modify(store, "f", "z", "string", 104)
        assert renewed is not None and renewed.id == again.id
    finally:
        await store.close()
        await other.close()
