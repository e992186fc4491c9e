"""Fixtures: a server shared by the run, a server of a test's own, a taken port; CI's rule against
skips."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.server import POSTGRES_ADMIN_URL, Server, drop_test_databases, free_port
from support.services import Mosquitto, start_mosquitto


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server shared by the tests that only need a running service (each uses new devices)."""
    instance = Server(tmp_path_factory.mktemp("shared") / "data").start()
    yield instance
    assert instance.stop() == 0, instance.log()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own, for tests that stop or reconfigure it."""
    instance = Server(tmp_path / "data")
    yield instance
    if instance.process is not None and instance.process.poll() is None:
        instance.stop(signal.SIGKILL)



@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A Mosquitto of the test's own, with devicecloud's configuration, on free ports."""
    broker = start_mosquitto(tmp_path / "mosquitto", free_port(), free_port())
    yield broker
    broker.process.terminate()
    broker.process.wait(10)


def pytest_report_header() -> str:
    return f"database: {'PostgreSQL' if POSTGRES_ADMIN_URL else 'SQLite'}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI=true a skipped test is a failure: CI must prove everything."""
    drop_test_databases()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if os.environ.get("CI", "").lower() == "true" and skipped:
        reporter.write_line(f"CI=true: {len(skipped)} test(s) skipped; failing the run", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
