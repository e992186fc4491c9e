"""The baseline devicecloud is compared with: a private Debian Mosquitto on a free port plus the
Python echo backend (`bench/baseline_echo.py`), started for one measurement and stopped after."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from bench.server import free_port

MOSQUITTO = "/usr/sbin/mosquitto"
CONFIG = """\
listener {port} 127.0.0.1
allow_anonymous true
max_connections -1
max_queued_messages 0
persistence false
log_dest file {log}
log_type error
log_type warning
"""


@dataclass
class Baseline:
    """Where the baseline broker listens and its processes (broker first)."""

    port: int
    broker_pid: int
    echo_pid: int | None

    @property
    def pids(self) -> tuple[int, ...]:
        return (self.broker_pid,) if self.echo_pid is None else (self.broker_pid, self.echo_pid)


async def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {process.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise RuntimeError("mosquitto did not start listening")


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.asynccontextmanager
async def baseline(echo: bool = True, timeout: float = 15.0) -> AsyncIterator[Baseline]:
    """Mosquitto (`allow_anonymous true`, `max_connections -1`, no persistence) on a free
    loopback port and, with `echo`, the echo backend subscribed to `$ezdata/+/up`."""
    if not Path(MOSQUITTO).exists():
        raise RuntimeError(f"the baseline needs Debian's Mosquitto at {MOSQUITTO}")
    folder = Path(tempfile.mkdtemp(prefix="devicecloud-baseline-"))
    port = free_port()
    config = folder / "mosquitto.conf"
    config.write_text(CONFIG.format(port=port, log=folder / "mosquitto.log"))
    broker: subprocess.Popen[bytes] | None = None
    backend: subprocess.Popen[bytes] | None = None
    try:
        broker = subprocess.Popen([MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        await _wait_for_port(port, broker, timeout)
        if echo:
            backend = subprocess.Popen(
                [sys.executable, "-m", "bench.baseline_echo", "--port", str(port)],
                stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent)
            assert backend.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(backend.stdout.readline), timeout)
            if line.strip() != b"ready":
                raise RuntimeError(f"the echo backend did not start: {line!r}")
        yield Baseline(port, broker.pid, backend.pid if backend is not None else None)
    finally:
        _stop(backend)
        _stop(broker)
        shutil.rmtree(folder, ignore_errors=True)
