"""A devicecloud server of the benchmark's own: free port, temporary data dir, stopped after."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from bench.httpclient import RawConnection
from bench.net import split_url


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Target:
    """The server under test: where it listens and, when we started it, its process id."""

    url: str
    mqtt_port: int | None = None
    pid: int | None = None
    managed: bool = False
    exit_code: int | None = None
    data_dir: Path | None = None  # its database and files, when we started it
    mqtts_port: int | None = None  # MQTT over TLS, when we started it with TLS
    ca_file: Path | None = None  # the CA its certificate is from

    def tls_client(self) -> ssl.SSLContext:
        """A client context that trusts the server's certificate (TLS 1.2 and newer)."""
        if self.ca_file is None:
            raise SystemExit("--tls needs a server the benchmark starts itself (no --url)")
        return ssl.create_default_context(cafile=str(self.ca_file))

    @property
    def host_port(self) -> tuple[str, int]:
        return split_url(self.url)


class ManagedServer:
    """`python -m devicecloud serve` on a free loopback port with a temporary data dir."""

    def __init__(self, extra_args: tuple[str, ...] = (), tls: bool = False) -> None:
        self.port = free_port()
        self.mqtt_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = Path(tempfile.mkdtemp(prefix="devicecloud-bench-"))
        self.data_dir = self.dir / "data"
        self.log_path = self.dir / "server.log"
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None
        self.mqtts_port: int | None = None
        self.ca_file: Path | None = None
        if tls:
            self.extra_args += self._tls_args()

    def _tls_args(self) -> tuple[str, ...]:
        """A certificate for 127.0.0.1 from a throwaway CA; HTTPS and MQTT over TLS ports."""
        import trustme

        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = self.dir / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        leaf.cert_chain_pems[0].write_to_path(str(self.dir / "cert.pem"))
        leaf.private_key_pem.write_to_path(str(self.dir / "key.pem"))
        self.mqtts_port = free_port()
        return ("--tls-cert", str(self.dir / "cert.pem"), "--tls-key", str(self.dir / "key.pem"),
                "--https-port", str(free_port()), "--mqtts-port", str(self.mqtts_port))

    async def start(self, timeout: float = 30.0) -> None:
        command = [sys.executable, "-m", "devicecloud", "serve", "--host", "127.0.0.1",
                   "--http-port", str(self.port), "--data-dir", str(self.data_dir),
                   "--log-level", "warning", *self.extra_args]
        # The MQTT listener's port goes by variable: a build without MQTT ignores it.
        env = {**os.environ, "DEVICECLOUD_MQTT_PORT": str(self.mqtt_port)}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"devicecloud exited early:\n{self.log()}")
            connection = RawConnection("127.0.0.1", self.port)
            try:
                status, _ = await connection.get("/healthz")
                if status == 200:
                    return
            except OSError:
                pass
            finally:
                await connection.close()
            await asyncio.sleep(0.1)
        raise RuntimeError(f"devicecloud did not start:\n{self.log()}")

    async def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (a graceful stop), SIGKILL if it takes longer than `timeout`."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if process.poll() is None:
            process.kill()
            process.wait()
        return process.returncode

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.asynccontextmanager
async def server_under_test(url: str | None, mqtt_port: int | None = None,
                            pid: int | None = None, args: tuple[str, ...] = (),
                            tls: bool = False) -> AsyncIterator[Target]:
    """The server at `url` (its MQTT listener on `mqtt_port`, its process `pid` for CPU figures
    and profiles), or one of our own (with `args`; with `tls`, also serving TLS) started for the
    block and stopped after it."""
    if url is not None:
        split_url(url)  # refuses anything but loopback
        yield Target(url.rstrip("/"), mqtt_port, pid)
        return
    server = ManagedServer(args, tls)
    target: Target | None = None
    try:
        await server.start()
        assert server.process is not None
        target = Target(server.url, server.mqtt_port, server.process.pid, managed=True,
                        data_dir=server.data_dir, mqtts_port=server.mqtts_port,
                        ca_file=server.ca_file)
        yield target
    finally:
        code = await server.stop()
        if target is not None:
            target.exit_code = code
        if code not in (0, None) or "ERROR" in server.log():
            print(f"devicecloud exited with {code}; its log ends:\n{server.log()}",
                  file=sys.stderr)
        server.remove()
