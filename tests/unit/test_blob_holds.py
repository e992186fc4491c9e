"""A backup's hold keeps the blobs deleted while it copies (blobs/disk.py `hold_deletions`)."""

from __future__ import annotations

from pathlib import Path

from devicecloud.blobs.disk import DiskBlobs, hold_deletions, stored_blobs


async def test_a_blob_deleted_under_a_hold_is_kept_in_it_and_the_hold_goes_after(
        tmp_path: Path) -> None:
    blobs = DiskBlobs(tmp_path / "files")
    await blobs.put("ab" + "0" * 30, b"kept for the backup")
    await blobs.put("cd" + "0" * 30, b"deleted before")
    await blobs.delete(["cd" + "0" * 30])
    with hold_deletions(tmp_path / "files") as held:
        assert [p.name for p in stored_blobs(tmp_path / "files")] == ["ab" + "0" * 30]
        await blobs.delete(["ab" + "0" * 30, "ef" + "0" * 30])  # one never existed
        assert blobs.local_path("ab" + "0" * 30) is None
        assert (held / ("ab" + "0" * 30)).read_bytes() == b"kept for the backup"
        assert [p.name for p in held.iterdir()] == ["ab" + "0" * 30]
        assert list(stored_blobs(tmp_path / "files")) == []  # the hold is not a blob folder
    assert not held.exists()
    await blobs.delete(["ab" + "0" * 30])  # no hold now: nothing is kept, nothing fails
