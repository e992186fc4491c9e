"""Running the service: one process, or a supervisor and N worker processes sharing the ports."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import gc
import logging
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import FrameType
from typing import Any

import uvicorn
from prometheus_client import multiprocess
from starlette.applications import Starlette

from devicecloud.addresses import is_loopback_url
from devicecloud.app import create_app, drain
from devicecloud.config import Settings, StartupError
from devicecloud.gateways.http_protocol import HeaderTimeoutProtocol
from devicecloud.gateways.mqtt_listener import MqttListener
from devicecloud.gateways.tls_handshake import TlsServer, bound_socket
from devicecloud.gateways.ws_protocol import BoundedWebSocketProtocol
from devicecloud.metrics import SHARED_DIR
from devicecloud.store import migrate
from devicecloud.tls import Certificates, describe
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
    """Opens the services before it listens (a problem they meet leaves `serve` as that
    StartupError) and says where to connect once it listens; stops on SIGINT or SIGTERM once
    in-flight work is answered, then exits with status 0; says when it runs out of file
    descriptors."""

    def __init__(self, app: Starlette, config: uvicorn.Config, settings: Settings,
                 tls_socket: socket.socket | None = None) -> None:
        super().__init__(config)
        self.application = app
        self.settings = settings
        self.tls_socket = tls_socket
        self.tls_server: TlsServer | None = None
        self._deadline: threading.Timer | None = None
        self._state: Mapping[str, Any] | None = None
        self.files = FileWatch()

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        app = self.application
        async with app.router.lifespan_context(app) as state:
            self._state = state
            await super().serve(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.lifespan.state.update(self._state or {})
        await super().startup(sockets)
        running = started(self.lifespan.state)
        certificates = running.tls if running is not None else None
        https_port = 0
        if self.started and certificates is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, certificates.reload)
            if self.tls_socket is not None:
                https_port = self.tls_socket.getsockname()[1]
                self.tls_server = TlsServer(self.tls_socket, certificates.context,
                                            self._http_protocol, f"HTTPS on port {https_port}")
        if self.started and sockets:
            announce(self.settings, sockets[0].getsockname()[1], https_port, certificates)

    def _http_protocol(self) -> asyncio.Protocol:
        """uvicorn's HTTP protocol for one connection, as its own listener makes it (over TLS
        it says scheme https, and wss once upgraded)."""
        protocol: asyncio.Protocol = self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config, server_state=self.server_state, app_state=self.lifespan.state)
        return protocol

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
        if self.tls_server is not None:
            self.tls_server.close()
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


def listening_socket(host: str, port: int, reuse_port: bool, what: str = "HTTP",
                     flag: str = "--http-port") -> socket.socket:
    """A bound, listening TCP socket; with `reuse_port` several processes may bind the port.
    A port that cannot be opened stops the start with the flag that changes it."""
    try:
        sock = bound_socket(host, port, reuse_port)
    except OSError as problem:
        reason = (problem.strerror or str(problem)).lower()
        fix = (f"stop the other server or pass {flag} another port"
               if problem.errno == errno.EADDRINUSE else "check --host (or DEVICECLOUD_HOST)")
        raise StartupError(f"cannot listen for {what} on {host}:{port}: {reason}; {fix}") from None
    sock.set_inheritable(True)
    return sock


def check_tls(settings: Settings) -> None:
    """Stop the start if the TLS settings cannot work: a given pair that cannot be used, or
    `--http-redirect` with no HTTPS port of our own to send pages to."""
    if settings.http_redirect and not (settings.tls and settings.https_port):
        raise StartupError("--http-redirect (DEVICECLOUD_HTTP_REDIRECT) sends console pages to "
                           "this server's HTTPS port: give --tls-cert and --tls-key, or "
                           "--acme-domain, and an --https-port; behind a proxy that ends TLS, "
                           "have the proxy redirect")
    if settings.tls_cert is not None and settings.tls_key is not None:
        Certificates(settings.tls_cert, settings.tls_key)


def serve_one(settings: Settings) -> None:
    """This process serves HTTP, WebSocket and MQTT until SIGINT or SIGTERM."""
    check_tls(settings)
    raise_file_limit()
    app = create_app(settings)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.http_port,
        ws_max_size=settings.ws_frame_limit, log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's loggers go to the handler logs.configure set
        lifespan="off", timeout_graceful_shutdown=DRAIN_TIMEOUT, server_header=False,
        http=HeaderTimeoutProtocol, timeout_keep_alive=KEEP_ALIVE_TIMEOUT,
        ws=BoundedWebSocketProtocol,
        # X-Forwarded-* only from the configured proxies; by default from nobody.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or [])
    sockets = [listening_socket(settings.host, settings.http_port, settings.reuse_port)]
    tls_socket = None
    if settings.tls and settings.https_port:
        tls_socket = listening_socket(settings.host, settings.https_port, settings.reuse_port,
                                      "HTTPS", "--https-port")
    tune_gc()
    GracefulServer(app, config, settings, tls_socket).run(sockets=sockets)


def _reachable(host: str) -> str:
    """An address of this machine others may reach `host` at: for a wildcard, the one its
    default route leaves from (a UDP connect sends nothing)."""
    if host not in ("0.0.0.0", "::", ""):
        return f"[{host}]" if ":" in host else host
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
            address: str = probe.getsockname()[0]
        except OSError:
            address = "127.0.0.1"
    return address


def announce(settings: Settings, http_port: int, https_port: int = 0,
             certificates: Certificates | None = None) -> None:
    """Say where the console is and what address devices need, once the service listens."""
    host = _reachable(settings.host)
    base = settings.public_url or f"http://{host}:{http_port}"
    pages = base if settings.public_url or not https_port else f"https://{host}:{https_port}"
    if settings.mqtt_broker:
        mqtt = "MQTT through the broker"
    elif settings.mqtt_port:
        mqtt = f"MQTT {host}:{settings.mqtt_port}"
    else:
        mqtt = "MQTT off"
    log.info("console: %s/console", pages)
    log.info("devices: HTTP/WebSocket %s, %s", base, mqtt)
    if certificates is not None:
        mqtts = settings.mqtts_port if not settings.mqtt_broker else 0
        log.info("TLS (%s): HTTPS/WSS %s, MQTT over TLS %s", describe(certificates),
                 f"https://{host}:{https_port}" if https_port else "off",
                 f"{host}:{mqtts}" if mqtts else "off")
    if settings.public_url and is_loopback_url(settings.public_url):
        log.warning("--public-url %s is a loopback address: links and QR codes handed out "
                    "work on this machine only", settings.public_url)


@contextmanager
def hold_data_dir(settings: Settings) -> Iterator[None]:
    """Lock the data directory while the block runs: alone, or shared with the other instances
    of a cluster (which share a bus or a broker). Another process's lock, or a directory this
    user cannot write, stops the start. A worker (`reuse_port`) leaves it to its supervisor."""
    if settings.reuse_port:
        yield
        return
    folder = settings.data_dir.resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / "devicecloud.lock", "a+")  # noqa: SIM115 - held for the block
    except OSError as problem:
        reason = problem.strerror or str(problem)
        raise StartupError(f"cannot write to the data directory {folder}: {reason}; pass "
                           "--data-dir (or DEVICECLOUD_DATA_DIR) a directory this user can "
                           "write") from None
    with lock:
        shared = bool(settings.bus_url or settings.mqtt_broker)
        try:
            fcntl.flock(lock, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            other = lock.read().strip() or "unknown"
            raise StartupError(f"the data directory {folder} is in use by another devicecloud "
                               f"(pid {other}); stop it, or give this one another --data-dir "
                               "(or DEVICECLOUD_DATA_DIR)") from None
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield


def workers_problem(settings: Settings) -> str | None:
    """Why `settings` cannot run several workers, or None."""
    if settings.database.engine == "sqlite":
        return "several workers need a shared database (DEVICECLOUD_DATABASE_URL=postgresql://...)"
    if not settings.bus_url:
        return "several workers need a shared bus (DEVICECLOUD_BUS_URL=redis://...)"
    return None


def serve_workers(settings: Settings, argv: list[str]) -> int:
    """Supervise `settings.workers` processes that share the ports (SO_REUSEPORT); a worker that
    dies is started again; SIGINT or SIGTERM stops them all gracefully. The workers share a
    metrics directory, so that each reports the whole server."""
    check_tls(settings)  # a problem stops here, not each worker again and again
    migrate.upgrade(settings.database)  # once, before the workers race for it
    metrics = tempfile.mkdtemp(prefix="devicecloud-metrics-")
    env = {**os.environ, "DEVICECLOUD_WORKERS": "1", "DEVICECLOUD_REUSE_PORT": "true",
           SHARED_DIR: metrics}
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

    def reload(signum: int, frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGHUP)

    children = [subprocess.Popen(command, env=env) for _ in range(settings.workers)]
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)  # the workers reload their certificates
    log.info("started %d workers", settings.workers)
    while True:
        for index, child in enumerate(children):
            code = child.poll()
            if code is not None and not stopping:
                log.error("worker %d exited with %s; starting it again", child.pid, code)
                multiprocess.mark_process_dead(child.pid, metrics)  # type: ignore[no-untyped-call]
                time.sleep(RESTART_DELAY)
                children[index] = subprocess.Popen(command, env=env)
        if stopping and all(child.poll() is not None for child in children):
            shutil.rmtree(metrics, ignore_errors=True)
            return max((child.returncode or 0) for child in children)
        if stopping and time.monotonic() > stopped_at + STOP_DEADLINE + 5:
            for child in children:
                if child.poll() is None:
                    log.error("worker %d did not stop; killing it", child.pid)
                    child.kill()
        time.sleep(0.2)
