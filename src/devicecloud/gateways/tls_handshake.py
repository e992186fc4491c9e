"""TLS listeners that say why a handshake failed.

asyncio's own `create_server(ssl=...)` drops a failed handshake without a word. `TlsServer`
accepts itself and awaits each handshake (`loop.connect_accepted_socket`, bounded by a timeout);
the listener's protocol sees the connection only once it is secured. A failure is one log line
naming the listener, the peer and the reason, at most once a minute per reason (a scanner does
not flood the log).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import time
from collections.abc import Callable

log = logging.getLogger("devicecloud.tls")
HANDSHAKE_TIMEOUT = 10.0  # seconds a client has to finish its TLS handshake
# Seconds a closing connection waits for the client's close_notify (clients busy elsewhere send
# it late or never; the connection's descriptor, and a stopping server, would wait with it).
SHUTDOWN_TIMEOUT = 1.0
FAILURE_LOG_INTERVAL = 60.0  # seconds between two lines for the same kind of failure
ACCEPT_BATCH = 100  # connections accepted in one go
ACCEPT_PAUSE = 0.1  # seconds accepting waits when the process is out of file descriptors

CLOSED = ("the client closed the connection during the handshake (one that does not trust the "
          "certificate does so: give it the CA file)")
PLAIN = "not TLS: plain text sent to the TLS port (a client without TLS?)"
OLD = "the client offers only TLS 1.0 or 1.1 (TLS 1.2 or newer needed)"
# OpenSSL's reasons, in words an operator can act on.
_REASONS = {
    "HTTP_REQUEST": "not TLS: plain HTTP sent to the TLS port (use https://)",
    "WRONG_VERSION_NUMBER": PLAIN,
    "UNKNOWN_PROTOCOL": PLAIN,
    "RECORD_LAYER_FAILURE": PLAIN,
    "PACKET_LENGTH_TOO_LONG": PLAIN,
    "UNSUPPORTED_PROTOCOL": OLD,
    "NO_PROTOCOLS_AVAILABLE": OLD,
    "NO_SHARED_CIPHER": "no cipher in common with the client",
    "TLSV1_ALERT_UNKNOWN_CA": "the client does not trust the certificate (give it the CA file)",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the client refused the certificate (wrong name or CA?)",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "the client refused the certificate (wrong name or CA?)",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the client says the certificate has expired",
    "CALLBACK_FAILED": "no certificate to present yet",
    "UNEXPECTED_EOF_WHILE_READING": CLOSED,
}


def handshake_problem(problem: BaseException, timeout: float = HANDSHAKE_TIMEOUT) -> str:
    """Why a handshake failed, in words."""
    if isinstance(problem, ssl.SSLError):
        reason = problem.reason or ""
        return _REASONS.get(reason, f"TLS error {reason or problem}")
    if isinstance(problem, ConnectionAbortedError | TimeoutError):
        return f"the handshake was not finished within {timeout:g} s"
    return CLOSED


class FailureLog:
    """One line per kind of failure per minute, saying how many more were not logged."""

    def __init__(self, listener: str) -> None:
        self.listener = listener
        self._last: dict[str, tuple[float, int]] = {}  # reason: (logged at, failures since)

    def failed(self, peer: str, reason: str) -> None:
        now = time.monotonic()
        logged_at, since = self._last.get(reason, (-FAILURE_LOG_INTERVAL, 0))
        if now - logged_at < FAILURE_LOG_INTERVAL:
            self._last[reason] = (logged_at, since + 1)
            return
        self._last[reason] = (now, 0)
        more = f" ({since} more like it in the last minute)" if since else ""
        log.warning("%s: TLS handshake with %s failed: %s%s", self.listener, peer, reason, more)


def bound_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A listening TCP socket on `host`:`port`; with `reuse_port` several processes may bind
    the port. Raises OSError when the port cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(4096)
    return sock


class TlsServer:
    """Accepts connections on a listening socket and runs each one's TLS handshake, bounded by
    `timeout`; the protocol `make` builds sees the connection once it is secured. Quacks like
    `asyncio.Server` where a server stops (`close`, `wait_closed`)."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext,
                 make: Callable[[], asyncio.Protocol], listener: str,
                 timeout: float = HANDSHAKE_TIMEOUT) -> None:
        self.sock = sock
        self.context = context
        self.make = make
        self.timeout = timeout
        self.failures = FailureLog(listener)
        self.handshakes: set[asyncio.Task[None]] = set()  # under way
        self._loop = asyncio.get_running_loop()
        self._resume: asyncio.TimerHandle | None = None
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                connection, _address = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as problem:  # out of file descriptors: the server says so
                if problem.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS,
                                         errno.ENOMEM, errno.ECONNABORTED):
                    raise
                if problem.errno != errno.ECONNABORTED:
                    self._loop.remove_reader(self.sock.fileno())
                    self._resume = self._loop.call_later(ACCEPT_PAUSE, self._accept_again)
                    return
                continue
            task = self._loop.create_task(self._handshake(connection))
            self.handshakes.add(task)
            task.add_done_callback(self.handshakes.discard)

    def _accept_again(self) -> None:
        self._resume = None
        self._loop.add_reader(self.sock.fileno(), self._accept)

    async def _handshake(self, connection: socket.socket) -> None:
        peer = _peer(connection)
        try:
            await self._loop.connect_accepted_socket(self.make, connection, ssl=self.context,
                                                     ssl_handshake_timeout=self.timeout,
                                                     ssl_shutdown_timeout=SHUTDOWN_TIMEOUT)
        except (OSError, EOFError) as problem:
            connection.close()
            self.failures.failed(peer, handshake_problem(problem, self.timeout))

    def close(self) -> None:
        """Stop accepting and abandon the handshakes under way (their connections close)."""
        if self._resume is not None:
            self._resume.cancel()
        if self.sock.fileno() >= 0:
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()
        for task in tuple(self.handshakes):
            task.cancel()

    async def wait_closed(self) -> None:
        if self.handshakes:
            await asyncio.wait(tuple(self.handshakes), timeout=1.0)


def _peer(connection: socket.socket) -> str:
    try:
        host, port = connection.getpeername()[:2]
    except OSError:
        return "a client"
    return f"{host}:{port}"
