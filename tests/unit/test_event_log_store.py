"""The event log's rows, on the real store (SQLite, or PostgreSQL with DEVICECLOUD_TEST_POSTGRES):
written by the jobs that commit the changes, only for devices with an owner, with ids that a
reader following the log as two writers commit side by side never skips; releases told to the
owner they ended; retention deleting only what is old, a step at a time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
from support.server import database_url

from devicecloud.bus.memory import MemoryBus
from devicecloud.config import Settings
from devicecloud.core.event_log import EVENT_RETENTION_MS, FORGET_STEP, EventLog
from devicecloud.core.events import LoggedEvent
from devicecloud.core.ids import now_ms
from devicecloud.store.open import open_store
from devicecloud.store.sql.store import SqlStore

ACCOUNT = 7


async def _fields(store: SqlStore, device_id: int, name: str, count: int) -> None:
    await store.upsert_field(device_id, name, 0, b"0", "number", "0", (name * 32, name[::-1] * 32),
                             1, source="device")
    await asyncio.gather(*(store.modify_field(device_id, name, n, orjson.dumps(n), "number", 2 + n,
                                              "device") for n in range(1, count)))


async def test_two_writers_log_only_owned_devices_and_a_reader_skips_nothing(
        tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=database_url(tmp_path))
    one, two = await open_store(settings), await open_store(settings)
    try:
        owned = await one.register_mac("AABBCCDDEE01", "", "a" * 32, 1)
        loose = await one.register_mac("AABBCCDDEE02", "", "b" * 32, 1)
        assert await one.bind_device(owned.id, ACCOUNT, 1)
        assert await two.bind_device(owned.id, ACCOUNT, 1)  # the same owner again: no news
        seen: list[LoggedEvent] = []
        writing = True

        async def follow() -> None:
            while writing or len(seen) < 1 + 2 * 200:
                more = await one.events_after(ACCOUNT, seen[-1].id if seen else 0, limit=50)
                seen.extend(more)
                if not more:
                    await asyncio.sleep(0.001)

        reader = asyncio.create_task(follow())
        await asyncio.gather(_fields(one, owned.id, "x", 200), _fields(two, owned.id, "y", 200),
                             _fields(two, loose.id, "z", 50))
        writing = False
        await asyncio.wait_for(reader, 10)
        logged = await two.events_after(ACCOUNT, 0, limit=1000)
        assert seen == logged  # followed while committing: nothing skipped, nothing twice
        assert [e.type for e in logged[:1]] == ["device.bound"]
        assert len(logged) == 1 + 2 * 200 and len({e.id for e in logged}) == len(logged)
        assert len({e.device for e in logged}) == 1
        for name in ("x", "y"):
            values = [e.data["value"] for e in logged if e.data.get("name") == name]
            assert sorted(values) == list(range(200)), name
        assert await one.events_after(ACCOUNT, 0, ("field.deleted",)) == []
        assert await one.events_after(ACCOUNT + 1, 0) == []

        assert await one.request_release(owned.id, ACCOUNT, 1000)
        assert await two.release_due(asked_before=2000, now=3000) == ["a" * 32]
        released = await one.events_after(ACCOUNT, logged[-1].id)
        assert [(e.type, e.created) for e in released] == [("device.released", 3000)]
        await one.modify_field(owned.id, "x", 1, b"1", "number", 4000)  # no owner: no event
        assert await one.events_after(ACCOUNT, released[0].id) == []
        assert await one.last_event_id() == released[0].id
    finally:
        await one.close()
        await two.close()


async def test_retention_deletes_only_old_events_a_step_at_a_time(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=database_url(tmp_path))
    store = await open_store(settings)
    try:
        device = await store.register_mac("AABBCCDDEE03", "", "c" * 32, 1)
        await store.bind_device(device.id, ACCOUNT, 1)
        old = now_ms() - EVENT_RETENTION_MS - 60_000
        for n in range(FORGET_STEP + 20):
            await store.record_event("c" * 32, "device.online", {"transport": "mqtt"}, old + n)
        await store.record_event("c" * 32, "device.offline", {"transport": "mqtt"}, now_ms())
        log = EventLog(store, MemoryBus())
        assert await log.forget_old() == FORGET_STEP
        assert await log.forget_old() == 20 + 1  # the bind's event, of time 1, too
        assert await log.forget_old() == 0
        left = await store.events_after(ACCOUNT, 0)
        assert [e.type for e in left] == ["device.offline"]
    finally:
        await store.close()
