"""Changes of fields the store has seen take the batched path, and stay right when the field was
deleted or re-created behind the store's back (by another process)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from support.server import database_url

from devicecloud.app import open_store
from devicecloud.config import Settings


async def test_known_fields_follow_changes_made_elsewhere(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=database_url(tmp_path))
    store, other = await open_store(settings), await open_store(settings)
    try:
        device = await store.register_mac("AABBCCDDEEFF", "", "a" * 32, 1)
        added = await store.add_field(device.id, "f", 0, "number", "1", ("1" * 32, "2" * 32), 2)
        changed = await asyncio.gather(*(store.modify_field(device.id, "f", n, "number", 10 + n)
                                         for n in range(1, 50)))
        assert [f.value if f else None for f in changed] == list(range(1, 50))
        assert changed[-1] == await store.get_field(device.id, "f")
        assert changed[-1] is not None and changed[-1].id == added.id
        assert changed[-1].permissions == "1" and changed[-1].created_at == 2
        entries, total = await store.history(added.id, 5, 0)
        assert total == 50 and [e.value for e in entries] == [49, 48, 47, 46, 45]

        assert await other.delete_field(device.id, "f") is not None
        assert await store.modify_field(device.id, "f", 99, "number", 100) is None
        again = await other.add_field(device.id, "f", "x", "string", "0", ("3" * 32, "4" * 32),
                                      101)
        results = await asyncio.gather(store.modify_field(device.id, "f", "y", "string", 102),
                                       store.modify_field(device.id, "g", 1, "number", 103))
        assert results[1] is None and results[0] is not None
        assert (results[0].id, results[0].value, results[0].created_at) == (again.id, "y", 101)
        assert (await store.history(again.id, 10, 0))[1] == 2
        renewed = await store.modify_field(device.id, "f", "z", "string", 104)
        assert renewed is not None and renewed.id == again.id
    finally:
        await store.close()
        await other.close()
