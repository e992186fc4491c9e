"""Running the service: one process, or a supervisor and N worker processes sharing the ports."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from types import FrameType

import uvicorn

from devicecloud.app import create_app, drain
from devicecloud.config import Settings
from devicecloud.gateways.http_protocol import HeaderTimeoutProtocol
from devicecloud.gateways.mqtt_listener import MqttListener
from devicecloud.gateways.ws_protocol import BoundedWebSocketProtocol
from devicecloud.store import migrate
from devicecloud.web.services import started

log = logging.getLogger("devicecloud")
RESTART_DELAY = 1.0
DRAIN_TIMEOUT = 10  # seconds live connections get to answer what they received
STOP_DEADLINE = DRAIN_TIMEOUT + 15  # a stop taking longer ends the process regardless
KEEP_ALIVE_TIMEOUT = 5  # seconds an HTTP connection may stay open between requests
FILES_WARNING_INTERVAL = 60.0  # seconds between two "out of open files" lines
# The cyclic collector's first threshold: CPython's 700 made it take ~40% of the event loop under
# load (every request allocates a few short-lived containers); see docs/benchmarks.md.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Move everything allocated so far (modules, the app) out of the collector's sight and
    collect young objects less often: the hot path makes almost no reference cycles."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _give_up() -> None:
    log.error("still stopping after %s s; exiting now", STOP_DEADLINE)
    logging.shutdown()
    os._exit(70)


def raise_file_limit() -> int:
    """Raise this process's open-files soft limit to its hard limit (every connection holds one
    file descriptor); returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    raised_from = None
    if soft != hard and hard != resource.RLIM_INFINITY:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft, raised_from = hard, soft
        except (ValueError, OSError) as problem:
            log.warning("open files limit stays at %d: %s", soft, problem)
    log.info("open files limit %d%s: each connection holds one", soft,
             f" (raised from {raised_from})" if raised_from is not None else "")
    return soft


class FileWatch:
    """Notices when the process has no file descriptor left. The listeners then close every new
    connection as soon as they accept it, and uvloop does so without a word: this says it, at
    most once a minute, and says when descriptors are free again."""

    def __init__(self) -> None:
        self.warned_at = -FILES_WARNING_INTERVAL
        self.warned = False  # the last line said we were out

    def check(self, connections: str) -> None:
        """Try to open one descriptor; `connections` says which connections hold them."""
        try:
            os.close(os.open(os.devnull, os.O_RDONLY))
        except OSError as problem:
            if problem.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            now = time.monotonic()
            if now - self.warned_at >= FILES_WARNING_INTERVAL:
                self.warned_at, self.warned = now, True
                log.warning("out of open files (limit %d; %s open): new HTTP and MQTT "
                            "connections are closed as soon as they arrive",
                            resource.getrlimit(resource.RLIMIT_NOFILE)[0], connections)
            return
        if self.warned:
            self.warned = False
            log.warning("open files available again (%s open)", connections)


class GracefulServer(uvicorn.Server):
    """Stops on SIGINT or SIGTERM once in-flight work is answered, then exits with status 0;
    says when it runs out of file descriptors."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._deadline: threading.Timer | None = None
        self.files = FileWatch()

    async def on_tick(self, counter: int) -> bool:
        if counter % 10 == 0:  # uvicorn ticks ten times a second
            self.files.check(self._connections())
        return await super().on_tick(counter)

    def _connections(self) -> str:
        running = started(self.lifespan.state)
        listener = running.mqtt if running is not None else None
        mqtt = len(listener.connections) if isinstance(listener, MqttListener) else 0
        return f"{len(self.server_state.connections)} HTTP and WebSocket, {mqtt} MQTT"

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:  # no new connections while the live ones finish
            server.close()
        try:
            await asyncio.wait_for(drain(self.lifespan.state),
                                   self.config.timeout_graceful_shutdown)
        except TimeoutError:
            log.error("stopping with requests still unanswered")
        await super().shutdown(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()
        if self._deadline is None:  # whatever hangs, the process ends
            self._deadline = threading.Timer(STOP_DEADLINE, _give_up)
            self._deadline.daemon = True
            self._deadline.start()


def listening_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A bound, listening TCP socket; with `reuse_port` several processes may bind the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.set_inheritable(True)
    return sock


def serve_one(settings: Settings) -> None:
    """This process serves HTTP, WebSocket and MQTT until SIGINT or SIGTERM."""
    raise_file_limit()
    app = create_app(settings)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.http_port,
        ws_max_size=settings.ws_frame_limit, log_level=settings.log_level.lower(),
        lifespan="on", timeout_graceful_shutdown=DRAIN_TIMEOUT, server_header=False,
        http=HeaderTimeoutProtocol, timeout_keep_alive=KEEP_ALIVE_TIMEOUT,
        ws=BoundedWebSocketProtocol,
        # X-Forwarded-* only from the configured proxies; by default from nobody.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or [])
    sockets = None
    if settings.reuse_port:
        sockets = [listening_socket(settings.host, settings.http_port, True)]
    tune_gc()
    GracefulServer(config).run(sockets=sockets)


def workers_problem(settings: Settings) -> str | None:
    """Why `settings` cannot run several workers, or None."""
    if settings.database.engine == "sqlite":
        return "several workers need a shared database (DEVICECLOUD_DATABASE_URL=postgresql://...)"
    if not settings.bus_url:
        return "several workers need a shared bus (DEVICECLOUD_BUS_URL=redis://...)"
    return None


def serve_workers(settings: Settings, argv: list[str]) -> int:
    """Supervise `settings.workers` processes that share the ports (SO_REUSEPORT); a worker that
    dies is started again; SIGINT or SIGTERM stops them all gracefully."""
    migrate.upgrade(settings.database)  # once, before the workers race for it
    env = {**os.environ, "DEVICECLOUD_WORKERS": "1", "DEVICECLOUD_REUSE_PORT": "true"}
    command = [sys.executable, "-m", "devicecloud", *argv, "--workers", "1"]  # the last one wins
    stopping = False
    stopped_at = 0.0

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping, stopped_at
        if not stopping:
            stopped_at = time.monotonic()
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    children = [subprocess.Popen(command, env=env) for _ in range(settings.workers)]
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("started %d workers", settings.workers)
    while True:
        for index, child in enumerate(children):
            code = child.poll()
            if code is not None and not stopping:
                log.error("worker %d exited with %s; starting it again", child.pid, code)
                time.sleep(RESTART_DELAY)
                children[index] = subprocess.Popen(command, env=env)
        if stopping and all(child.poll() is not None for child in children):
            return max((child.returncode or 0) for child in children)
        if stopping and time.monotonic() > stopped_at + STOP_DEADLINE + 5:
            for child in children:
                if child.poll() is None:
                    log.error("worker %d did not stop; killing it", child.pid)
                    child.kill()
        time.sleep(0.2)
