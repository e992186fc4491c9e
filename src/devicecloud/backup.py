"""Backups: one `.tar.gz` with a consistent copy of the database, the stored files and the
session secret, taken while the server runs; and restoring one into an empty data directory.

The database is copied first, in one step: on SQLite by its online backup API (one read
transaction, which WAL lets writes run beside), on PostgreSQL by `pg_dump` (one snapshot). So the
copy holds every change acknowledged before the backup began. The files are added after it: a file
stored meanwhile may be in the archive without a field naming it, never the reverse, since files
are stored before the change that names them commits, and a file deleted meanwhile is kept for
the backup (`blobs.disk.hold_deletions`).

Layout of the archive:

    devicecloud-backup.json   what it is: format, devicecloud version, engine, schema, time
    database/devicecloud.db   (SQLite) or database/devicecloud.pgdump (pg_dump's custom format)
    files/...                 the stored files, as in the data directory
    secret.key                the key that signs console sessions (sessions survive a restore)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, inspect, text

from devicecloud import __version__
from devicecloud.blobs.disk import hold_deletions, stored_blobs
from devicecloud.config import Settings, StartupError
from devicecloud.store import migrate
from devicecloud.store.url import Database

FORMAT = 1
MANIFEST = "devicecloud-backup.json"
SQLITE_MEMBER = "database/devicecloud.db"
PG_MEMBER = "database/devicecloud.pgdump"
PROGRESS_SECONDS = 1.0
Say = Callable[[str], None]


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 1e6 else f"{count / 1e3:.0f} kB"


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True)
class Summary:
    """What a backup holds."""

    path: Path
    engine: str
    files: int
    bytes: int

    def __str__(self) -> str:
        return (f"{self.path}: {_size(self.bytes)}, the {self.engine} database, "
                f"{self.files} stored file{'s' if self.files != 1 else ''} and the secret key")


def schema_revision(database: Database) -> str:
    """The Alembic revision the database is at ("" if it has none; a missing SQLite file is not
    made)."""
    if database.engine == "sqlite" and not database.sqlite_path.is_file():
        return ""
    engine = create_engine(database.migration_url)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return ""
            return str(connection.execute(text("SELECT version_num FROM alembic_version"))
                       .scalar() or "")
    finally:
        engine.dispose()


def _libpq(database: Database) -> tuple[str, dict[str, str]]:
    """The database for pg_dump/pg_restore: its URL without the password, and the password in
    the environment (not on a command line others can read)."""
    url = database.url.set(drivername="postgresql", password=None)
    env = {**os.environ}
    if database.url.password:
        env["PGPASSWORD"] = str(database.url.password)
    return url.render_as_string(hide_password=False), env


def _run(command: list[str], env: dict[str, str], what: str) -> None:
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise StartupError(f"{command[0]} is not installed: {what} on PostgreSQL needs the "
                           "PostgreSQL client tools (apt-get install postgresql-client)") from None
    if done.returncode:
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        raise StartupError(f"{what} failed: {lines[-1]}")


def _copy_database(database: Database, folder: Path, say: Say) -> str:
    """A consistent copy of the database in `folder`; returns its member name."""
    started = time.monotonic()
    if database.engine == "sqlite":
        target = folder / Path(SQLITE_MEMBER).name
        source = sqlite3.connect(f"file:{database.sqlite_path}?mode=ro", uri=True)
        copy = sqlite3.connect(target)
        try:
            # One step: a step-wise copy starts again whenever another process writes.
            source.backup(copy)
        finally:
            copy.close()
            source.close()
        member = SQLITE_MEMBER
    else:
        target = folder / Path(PG_MEMBER).name
        url, env = _libpq(database)
        _run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges",
              f"--file={target}", f"--dbname={url}"], env, "pg_dump")
        member = PG_MEMBER
    say(f"backup: database copied ({_size(target.stat().st_size)} in "
        f"{time.monotonic() - started:.1f} s)")
    return member


def backup(settings: Settings, destination: Path, say: Say = _stderr) -> Summary:
    """Write a backup of the data `settings` name to `destination` (a `.tar.gz`), which appears
    whole or not at all."""
    database = settings.database
    revision = schema_revision(database)
    if not revision:
        raise StartupError(f"no devicecloud database at {database.url.render_as_string()}: "
                           "nothing to back up")
    destination = destination.resolve()
    destination.parent.mkdir(parents=True, exist_ok=True)
    draft = destination.with_name(f".{destination.name}.part")
    count = 0
    with tempfile.TemporaryDirectory(dir=destination.parent, prefix=".devicecloud-backup-") \
            as work, hold_deletions(settings.files_dir) as held:
        member = _copy_database(database, Path(work), say)
        manifest = {"format": FORMAT, "version": __version__, "engine": database.engine,
                    "schema": revision, "created_at": int(time.time() * 1000)}
        try:
            with tarfile.open(draft, "w:gz", compresslevel=6) as archive:
                _add_bytes(archive, MANIFEST, json.dumps(manifest, indent=1).encode())
                archive.add(Path(work) / Path(member).name, member)
                shown = time.monotonic()
                files = list(stored_blobs(settings.files_dir))
                for count, path in enumerate(files, 1):
                    kept = path if path.exists() else held / path.name  # deleted meanwhile
                    with contextlib.suppress(FileNotFoundError):  # gone before the copy
                        archive.add(kept, f"files/{path.parent.name}/{path.name}")
                    if time.monotonic() - shown >= PROGRESS_SECONDS:
                        shown = time.monotonic()
                        say(f"backup: files {count}/{len(files)}")
                listed = {path.name for path in files}
                for path in sorted(held.iterdir()):  # deleted before they were listed
                    if path.name not in listed:
                        archive.add(path, f"files/{path.name[:2]}/{path.name}")
                if settings.secret_path.is_file():
                    archive.add(settings.secret_path, "secret.key")
            with open(draft, "rb") as written:
                os.fsync(written.fileno())
            draft.replace(destination)
        finally:
            draft.unlink(missing_ok=True)
    return Summary(destination, database.engine, count, destination.stat().st_size)


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
    archive.addfile(info, io.BytesIO(data))


def read_manifest(archive: tarfile.TarFile, source: Path) -> dict[str, object]:
    """The archive's manifest; a file that is not a devicecloud backup is refused."""
    try:
        member = archive.extractfile(MANIFEST)
        manifest = json.loads(member.read()) if member is not None else None
    except (KeyError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StartupError(f"{source} is not a devicecloud backup (no {MANIFEST} of format "
                           f"{FORMAT} in it)")
    return manifest


def _empty(settings: Settings) -> str:
    """What already holds data where a restore would write ("" if nothing)."""
    database = settings.database
    if database.engine == "sqlite" and database.sqlite_path.exists():
        return str(database.sqlite_path)
    if settings.files_dir.is_dir() and any(stored_blobs(settings.files_dir)):
        return str(settings.files_dir)
    if settings.secret_path.exists():
        return str(settings.secret_path)
    if database.engine == "postgresql" and schema_revision(database):
        return database.url.render_as_string()
    return ""


def _clear(settings: Settings) -> None:
    """Remove what a restore replaces (with --force)."""
    database = settings.database
    if database.engine == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{database.sqlite_path}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(settings.files_dir, ignore_errors=True)
    settings.secret_path.unlink(missing_ok=True)


def restore(settings: Settings, source: Path, force: bool = False, say: Say = _stderr) -> str:
    """Restore the backup `source` into the data directory and database `settings` name, which
    must hold no data unless `force`; then bring its schema up to this version's. Returns the
    manifest's description."""
    if not source.is_file():
        raise StartupError(f"no backup at {source}")
    try:
        archive = tarfile.open(source, "r:gz")  # noqa: SIM115 - closed by the block below
    except (tarfile.TarError, OSError) as problem:
        raise StartupError(f"{source} is not a devicecloud backup ({problem})") from None
    with archive:
        manifest = read_manifest(archive, source)
        database = settings.database
        if manifest.get("engine") != database.engine:
            raise StartupError(f"{source} holds a {manifest.get('engine')} database; restore it "
                               f"into the same engine (the target is {database.engine})")
        holding = _empty(settings)
        if holding and not force:
            raise StartupError(f"{holding} already holds data; restore into an empty data "
                               "directory (and database), or pass --force to replace it")
        if holding:
            _clear(settings)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=settings.data_dir, prefix=".restore-") as work:
            try:
                archive.extractall(work, filter="data")  # no paths outside `work`, no devices
            except (tarfile.TarError, OSError) as problem:
                raise StartupError(f"{source} cannot be read whole: {problem}") from None
            unpacked = Path(work)
            _restore_database(database, unpacked, force, say)
            if (unpacked / "files").is_dir():
                shutil.rmtree(settings.files_dir, ignore_errors=True)
                shutil.move(unpacked / "files", settings.files_dir)
            if (unpacked / "secret.key").is_file():
                shutil.move(unpacked / "secret.key", settings.secret_path)
                settings.secret_path.chmod(0o600)
    migrate.upgrade(database)
    created = manifest.get("created_at")
    when = time.gmtime(created / 1000 if isinstance(created, int) else 0)
    return (f"restored the backup of {time.strftime('%Y-%m-%d %H:%M:%S UTC', when)} "
            f"(devicecloud {manifest.get('version')}, schema {manifest.get('schema')})")


def _restore_database(database: Database, unpacked: Path, force: bool, say: Say) -> None:
    if database.engine == "sqlite":
        copy = unpacked / SQLITE_MEMBER
        if not copy.is_file():
            raise StartupError(f"the backup holds no {SQLITE_MEMBER}")
        check = sqlite3.connect(copy)
        try:
            verdict = check.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            check.close()
        if verdict != "ok":
            raise StartupError(f"the backup's database is damaged: {verdict}")
        database.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(copy, database.sqlite_path)
    else:
        dump = unpacked / PG_MEMBER
        if not dump.is_file():
            raise StartupError(f"the backup holds no {PG_MEMBER}")
        url, env = _libpq(database)
        clean = ["--clean", "--if-exists"] if force else []
        _run(["pg_restore", "--no-owner", "--no-privileges", "--single-transaction", *clean,
              f"--dbname={url}", str(dump)], env, "pg_restore")
    say("restore: database restored")
