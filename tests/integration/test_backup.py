"""`devicecloud backup` while the server runs, `devicecloud restore` into an empty directory: what
was acknowledged before the backup began is served after the restore (SQLite, or PostgreSQL with
pg_dump and pg_restore on the PostgreSQL run)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import httpx
import pytest
from support.console_client import ConsoleUser
from support.server import Server, database_url

from devicecloud.backup import backup, restore
from devicecloud.config import StartupError, load_settings


def command(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "devicecloud", *args, "--data-dir",
                           str(data_dir), "--database-url", database_url(data_dir)],
                          env=os.environ, capture_output=True, text=True, timeout=120,
                          check=False)


def value(server: Server, token: str, name: str) -> object:
    reply = httpx.get(f"{server.url}/api/v2/{token}/dataByKey/{name}").json()
    assert reply["code"] == 200, reply
    return reply["data"]["value"]


class Counter(threading.Thread):
    """Writes 1, 2, 3... to one field as fast as the server acknowledges them."""

    def __init__(self, server: Server, token: str) -> None:
        super().__init__(daemon=True)
        self.url = f"{server.url}/api/v2/{token}/add"
        self.acknowledged = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self.stop.is_set():
                n = self.acknowledged + 1
                reply = http.post(self.url, json={"name": "n", "value": n, "dataType": "number"})
                assert reply.json()["code"] == 200
                self.acknowledged = n


def test_a_backup_taken_under_writes_restores_what_was_acknowledged(tmp_path: Path) -> None:
    server = Server(tmp_path / "live").start()
    restored: Server | None = None
    try:
        tokens = [server.register() for _ in range(5)]
        for index, token in enumerate(tokens):
            httpx.post(f"{server.url}/api/v2/{token}/add",
                       json={"name": "temp", "value": 20 + index, "dataType": "number"})
        photo = b"\xff\xd8\xff" + os.urandom(2000)
        upload = httpx.post(f"{server.url}/api/v2/{tokens[0]}/uploadFile",
                            data={"name": "photo", "deviceToken": tokens[0]},
                            files={"file": ("cat.jpeg", photo, "image/jpeg")}).json()
        assert upload["code"] == 200, upload
        user = ConsoleUser.sign_up(server)
        assert user.bind(tokens[1]).status_code == 303
        writes = Counter(server, tokens[2])
        writes.start()
        while writes.acknowledged < 20:  # writes are going on when the backup begins
            writes.stop.wait(0.01)
        before = writes.acknowledged
        done = command("backup", str(tmp_path / "b.tar.gz"), data_dir=server.data_dir)
        during = writes.acknowledged
        writes.stop.set()
        writes.join(10)
        assert done.returncode == 0, done.stderr
        assert "database copied" in done.stderr
        assert "1 stored file and the secret key" in done.stdout
        assert during > before  # the server kept acknowledging writes through the backup

        restoring = command("restore", str(tmp_path / "b.tar.gz"), data_dir=tmp_path / "new")
        assert restoring.returncode == 0, restoring.stderr
        assert "restored the backup of" in restoring.stdout
    finally:
        assert server.stop() == 0
    restored = Server(tmp_path / "new").start()
    try:
        for index, token in enumerate(tokens):
            assert value(restored, token, "temp") == 20 + index
        counted = value(restored, tokens[2], "n")
        assert isinstance(counted, int) and before <= counted <= during + 1
        download = httpx.get(upload["data"]["value"].replace(server.url, restored.url))
        assert download.content == photo
        user.server, user.http.base_url = restored, httpx.URL(restored.url)
        page = user.get("/console/devices")  # the old session cookie still signs in
        assert page.status_code == 200 and tokens[1] in page.text
    finally:
        assert restored.stop() == 0


def test_restore_refuses_a_directory_with_data_and_anything_not_a_backup(tmp_path: Path) -> None:
    server = Server(tmp_path / "live").start()
    try:
        token = server.register()
        made = command("backup", str(tmp_path / "b.tar.gz"), data_dir=server.data_dir)
        assert made.returncode == 0, made.stderr
        running = command("restore", str(tmp_path / "b.tar.gz"), data_dir=server.data_dir)
        assert running.returncode == 2 and "in use by another devicecloud" in running.stderr
    finally:
        assert server.stop() == 0
    into = tmp_path / "new"
    assert command("restore", str(tmp_path / "b.tar.gz"), data_dir=into).returncode == 0
    again = command("restore", str(tmp_path / "b.tar.gz"), data_dir=into)
    assert again.returncode == 2 and "already holds data" in again.stderr
    assert "--force" in again.stderr
    forced = command("restore", str(tmp_path / "b.tar.gz"), "--force", data_dir=into)
    assert forced.returncode == 0, forced.stderr

    restored = Server(into).start()
    try:
        assert httpx.get(f"{restored.url}/api/v2/{token}/list").json()["code"] == 200
    finally:
        assert restored.stop() == 0


def test_what_is_not_a_backup_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    other = load_settings({"data_dir": tmp_path / "other",
                           "database_url": database_url(tmp_path / "other")})
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(os.urandom(500))
    foreign = tmp_path / "foreign.tar.gz"
    with tarfile.open(foreign, "w:gz") as archive:
        archive.add(garbage, "something/else")
    for source in (garbage, foreign, tmp_path / "absent.tar.gz"):
        with pytest.raises(StartupError, match=r"not a devicecloud backup|no backup at"):
            restore(other, source)
    assert not (tmp_path / "other" / "devicecloud.db").exists()
    with pytest.raises(StartupError, match="no devicecloud database"):
        backup(other, tmp_path / "c.tar.gz")
    assert not (tmp_path / "c.tar.gz").exists()
