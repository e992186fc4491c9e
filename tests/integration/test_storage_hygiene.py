"""Files are deleted with what owns them (a field, a replaced file value, a firmware image), kept
only after every check, and a failed or interrupted write leaves no `.part` behind: a full disk
answers "storage full" (logged once, no traceback) and frees itself once the writer gives up."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.espai import api, new_tenant
from support.server import Server


def blobs(server: Server) -> set[str]:
    """The stored blobs (`<two hex>/<id>`), and any `.part` left anywhere."""
    root = server.data_dir / "files"
    return {str(p.relative_to(root)) for p in root.glob("*/*") if p.is_file()}


def upload_file(server: Server, token: str, name: str, data: bytes) -> dict:
    doc: dict = httpx.post(f"{server.url}/api/v2/{token}/uploadFile", data={"name": name},
                           files={"file": ("photo.jpg", data, "image/jpeg")}, timeout=30).json()
    return doc


def file_id(doc: dict) -> str:
    return str(doc["data"]["value"].rsplit("/", 2)[-2])


def test_a_field_and_a_replaced_file_take_their_blobs_along(server: Server) -> None:
    token = server.register()
    first = upload_file(server, token, "photo", b"\xff\xd8one")
    first_id = file_id(first)
    assert f"{first_id[:2]}/{first_id}" in blobs(server)
    second = upload_file(server, token, "photo", b"\xff\xd8two")
    second_id = file_id(second)
    assert f"{first_id[:2]}/{first_id}" not in blobs(server)
    assert httpx.get(first["data"]["value"]).status_code == 404
    assert httpx.get(second["data"]["value"]).content == b"\xff\xd8two"
    deleted = httpx.delete(f"{server.url}/api/v2/{token}/delete/photo").json()
    assert deleted["code"] == 200
    assert f"{second_id[:2]}/{second_id}" not in blobs(server)
    assert httpx.get(second["data"]["value"]).status_code == 404


def test_refused_uploads_keep_nothing(server: Server) -> None:
    token = server.register()
    before = blobs(server)
    refused = httpx.post(f"{server.url}/api/v2/{token}/uploadFile", data={"name": ""},
                         files={"file": ("a.bin", b"x" * 1000)}).json()
    assert refused == {"code": 500, "msg": "name cannot be empty", "data": None}
    tenant = new_tenant(server)

    def firmware(version: str) -> dict:
        doc: dict = httpx.post(f"{server.url}/firmware/upload",
                               data={"bin_id": "hygiene", "version": version},
                               files={"file": ("fw.bin", b"\x01" * 4096)},
                               headers={"authorization": tenant.open_api_key}).json()
        return doc

    kept = firmware("1.0")
    assert kept["success"] is True
    assert firmware("1.0")["message"] == "该固件的此版本已存在"
    assert len(blobs(server) - before) == 1
    assert api(server, "/firmware/del", [{"id": kept["data"]["id"]}],
               tenant.open_api_key)["success"] is True
    assert blobs(server) == before


def test_parts_left_by_a_crash_are_removed_at_start(own_server: Server) -> None:
    own_server.start()
    own_server.stop()
    files = own_server.data_dir / "files"
    (files / "ab").mkdir(exist_ok=True)
    left = [files / "ab" / ("ab" + "0" * 30 + ".part"), files / ".incoming" / "c0ffee.part"]
    for path in left:
        path.write_bytes(b"half a file")
    own_server.start()
    assert not any(path.exists() for path in left)
    assert "removed 2 unfinished upload file(s)" in own_server.log()


@pytest.fixture
def small_disk(own_server: Server) -> Iterator[Path]:
    """A 2 MiB tmpfs as the server's files folder."""
    files = own_server.data_dir / "files"
    files.mkdir(parents=True)
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(files)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield files
    if own_server.process is not None and own_server.process.poll() is None:
        own_server.stop()
    subprocess.run(["umount", str(files)], check=True)


def test_a_full_disk_answers_storage_full_and_frees_itself(own_server: Server,
                                                          small_disk: Path) -> None:
    own_server.start()
    token = own_server.register()
    big = os.urandom(3 * 1024 * 1024)
    for _ in range(3):
        assert upload_file(own_server, token, "big", big) == {
            "code": 500, "msg": "storage full", "data": None}
        assert list(small_disk.glob("*/*.part")) == []
    tenant = new_tenant(own_server)
    firmware = httpx.post(f"{own_server.url}/firmware/upload",
                          data={"bin_id": "big", "version": "1"},
                          files={"file": ("fw.bin", big)},
                          headers={"authorization": tenant.open_api_key}).json()
    assert firmware["success"] is False and firmware["message"] == "storage full"
    # Nothing failed is left to keep the disk full: a file that fits is stored.
    small = upload_file(own_server, token, "small", b"\xff\xd8" * 100_000)
    assert small["code"] == 200, small
    assert httpx.get(small["data"]["value"]).content == b"\xff\xd8" * 100_000
    assert upload_file(own_server, token, "big", big)["msg"] == "storage full"
    own_server.stop()
    log = own_server.log()
    assert "Traceback" not in log
    assert log.count("storage full") == 2, log  # once, and once more after the disk recovered
