"""A start that fails (here: the MQTT port is taken) says why in one line with no traceback, exits
2, closes whatever it had opened (the store's writer thread, the Redis bus, presence) and leaves
nothing running."""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path

import pytest
from support.server import Server, database_url
from support.services import PrivateRedis

from devicecloud.app import create_app
from devicecloud.config import Settings, StartupError


def test_a_taken_mqtt_port_ends_the_process_with_a_clear_error(own_server: Server,
                                                                taken_port: int) -> None:
    own_server.mqtt_port = taken_port
    with pytest.raises(RuntimeError, match="server exited early"):
        own_server.start()
    assert own_server.stop() == 2
    log = own_server.log()
    assert (f"devicecloud: cannot listen for MQTT on 127.0.0.1:{taken_port}: address already in "
            "use; stop the other broker or pass --mqtt-port 0" in log), log
    assert "Traceback" not in log, log  # neither the start's nor a close failing after it
    for trouble in ("Task was destroyed", "Exception ignored", "Unclosed", "was never awaited"):
        assert trouble not in log, log


def _group_commit_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "group-commit" and t.is_alive()]


async def _fail_to_start(settings: Settings) -> None:
    app = create_app(settings)
    with pytest.raises(StartupError, match="cannot listen for MQTT"):
        async with app.router.lifespan_context(app):
            pass


async def test_a_failed_start_closes_the_store(tmp_path: Path, taken_port: int) -> None:
    data_dir = tmp_path / "data"
    before = _group_commit_threads()
    await _fail_to_start(Settings(data_dir=data_dir, database_url=database_url(data_dir),
                                  host="127.0.0.1", mqtt_port=taken_port))
    assert _group_commit_threads() == before
    assert asyncio.all_tasks() == {asyncio.current_task()}


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
async def test_a_failed_start_closes_the_redis_bus_and_presence(tmp_path: Path,
                                                               taken_port: int) -> None:
    redis = PrivateRedis(tmp_path)
    redis.start()
    try:
        data_dir = tmp_path / "data"
        before = _group_commit_threads()
        await _fail_to_start(Settings(data_dir=data_dir, database_url=database_url(data_dir),
                                      host="127.0.0.1", mqtt_port=taken_port,
                                      bus_url=redis.url))
        assert _group_commit_threads() == before
        assert asyncio.all_tasks() == {asyncio.current_task()}  # no bus or presence task left
    finally:
        redis.stop()
