"""A real devicecloud process on a free port, and where its database lives in this test run."""

from __future__ import annotations

import getpass
import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

# With DEVICECLOUD_TEST_POSTGRES=postgresql://user@host:port/db every server runs on PostgreSQL:
# a database of its own per data directory (servers sharing a data directory share it).
POSTGRES_ADMIN_URL = os.environ.get("DEVICECLOUD_TEST_POSTGRES", "")
_created_databases: list[tuple[str, str]] = []  # (admin URL, database name)


def postgres_database(data_dir: Path, admin_url: str = POSTGRES_ADMIN_URL) -> str:
    """A fresh database for `data_dir` (the same one on later calls); returns its URL."""
    import psycopg

    name = "dc_test_" + hashlib.sha1(str(data_dir).encode()).hexdigest()[:16]
    if (admin_url, name) not in _created_databases:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}"')
        _created_databases.append((admin_url, name))
    base = admin_url.rsplit("/", 1)[0]
    return f"{base}/{name}"


CLUSTER_POSTGRES = POSTGRES_ADMIN_URL or \
    f"postgresql://{getpass.getuser()}@127.0.0.1:5432/postgres"
"""The PostgreSQL that tests of several processes use on either run (they need a shared one)."""


def postgres_problem(admin_url: str = CLUSTER_POSTGRES) -> str:
    """Why PostgreSQL cannot be used at `admin_url`, or ""."""
    import psycopg

    try:
        psycopg.connect(admin_url, connect_timeout=3).close()
    except psycopg.Error as problem:
        return f"PostgreSQL is not reachable at {admin_url} ({problem})"
    return ""


def database_url(data_dir: Path) -> str:
    """The database a server or command using `data_dir` runs on in this test session."""
    if POSTGRES_ADMIN_URL:
        return postgres_database(data_dir)
    return f"sqlite:///{data_dir / 'devicecloud.db'}"


def drop_test_databases() -> None:
    """Drop the databases this run created."""
    if not _created_databases:
        return
    import psycopg

    for admin_url, name in _created_databases:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _created_databases.clear()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def random_mac() -> str:
    return secrets.token_hex(6).upper()


@dataclass
class Server:
    """A `devicecloud serve` child process."""

    data_dir: Path
    http_port: int = field(default_factory=free_port)
    mqtt_port: int = field(default_factory=free_port)
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.http_port}/ws"

    def start(self, timeout: float = 20.0) -> Server:
        if POSTGRES_ADMIN_URL and "DEVICECLOUD_DATABASE_URL" not in self.env:
            self.env["DEVICECLOUD_DATABASE_URL"] = database_url(self.data_dir)
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-{self.http_port}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        command = [sys.executable, "-m", "devicecloud", "serve", "--host", "127.0.0.1",
                   "--http-port", str(self.http_port),
                   "--mqtt-port", str(self.mqtt_port), "--data-dir", str(self.data_dir),
                   "--log-level", "warning",
                   # Every test comes from 127.0.0.1: a limit per address is for its own tests.
                   "--limit", "ip.register=1000/s:10000", "--limit", "ip.connects=off",
                   "--limit", "ip.connections=off",
                   # Tests flood single devices and accounts; those limits have their own.
                   "--limit", "device.messages=off", "--limit", "account.api=off",
                   *self.extra_args]
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                        env={**os.environ, **self.env})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def register(self, mac: str | None = None, device_type: str = "basic") -> str:
        reply = httpx.post(f"{self.url}/api/v2/device/registerMac",
                           json={"deviceType": device_type, "mac": mac or random_mac()})
        body = reply.json()
        assert body["code"] == 200, body
        token: str = body["data"]
        return token
