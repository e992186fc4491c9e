"""The certificate store and the TLS listener in-process: real files, real handshakes."""

from __future__ import annotations

import asyncio
import datetime
import logging
import socket
import ssl
from pathlib import Path

import pytest
import trustme
from support.tls import NAMES, TlsFiles

from devicecloud.config import StartupError
from devicecloud.gateways.tls_handshake import TlsServer, bound_socket
from devicecloud.tls import Certificates


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert transport.get_extra_info("sslcontext") is not None
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data.upper())


async def echoed(port: int, context: ssl.SSLContext, server_name: str | None) -> bytes:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=server_name or "")
    writer.write(b"hello")
    answer = await asyncio.wait_for(reader.readexactly(5), 5)
    writer.close()
    return answer


def test_a_missing_pair_stops_the_start_unless_allowed(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match=r"cannot read .*cert.pem: no such file"):
        Certificates(tmp_path / "cert.pem", tmp_path / "key.pem")
    empty = Certificates(tmp_path / "cert.pem", tmp_path / "key.pem", obtained=True)
    assert empty.expires_at is None and empty.names == []
    files = TlsFiles(tmp_path)
    assert empty.reload() and empty.names == list(NAMES)
    assert empty.expires_at is not None and empty.expires_at > 2e9
    assert Certificates(files.cert, files.key).names == list(NAMES)


async def test_every_handshake_sni_or_none_gets_the_newest_pair(tmp_path: Path) -> None:
    files = TlsFiles(tmp_path)
    certificates = Certificates(files.cert, files.key)
    listening = bound_socket("127.0.0.1", 0, False)
    port = listening.getsockname()[1]
    server = TlsServer(listening, certificates.context, Echo, "test")
    unchecked = ssl.create_default_context()
    unchecked.check_hostname, unchecked.verify_mode = False, ssl.CERT_NONE
    assert await echoed(port, files.client(), "localhost") == b"HELLO"
    assert await echoed(port, unchecked, None) == b"HELLO"  # no SNI: the callback runs too
    other = trustme.CA()
    files.install(other.issue_cert(*NAMES))
    assert certificates.reload()
    assert await echoed(port, files.client(files.ca_path(other, "other.pem")), "localhost") \
        == b"HELLO"
    with pytest.raises(ssl.SSLCertVerificationError):
        await echoed(port, files.client(), "localhost")
    server.close()
    await server.wait_closed()


async def test_a_half_finished_handshake_times_out_with_one_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    files = TlsFiles(tmp_path)
    certificates = Certificates(files.cert, files.key)
    listening = bound_socket("127.0.0.1", 0, False)
    port = listening.getsockname()[1]
    server = TlsServer(listening, certificates.context, Echo, "test", timeout=0.3)
    caplog.set_level(logging.WARNING, "devicecloud.tls")
    held = []
    for _ in range(3):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x16\x03\x01\x02\x00\x01")
        held.append((reader, writer))
    for reader, _writer in held:  # each is closed by the server once its time is up
        assert await asyncio.wait_for(reader.read(), 5) == b""
    lines = [r.getMessage() for r in caplog.records if "not finished" in r.getMessage()]
    first = held[0][1].get_extra_info("sockname")[1]
    assert lines == [f"test: TLS handshake with 127.0.0.1:{first} failed: the handshake was not "
                     "finished within 0.3 s"]  # the other two not: one line a minute
    assert await echoed(port, files.client(), "localhost") == b"HELLO"
    server.close()
    await server.wait_closed()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


async def test_no_pair_yet_refuses_handshakes_until_one_is_loaded(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    certificates = Certificates(tmp_path / "cert.pem", tmp_path / "key.pem", obtained=True)
    listening = bound_socket("127.0.0.1", 0, False)
    port = listening.getsockname()[1]
    server = TlsServer(listening, certificates.context, Echo, "test")
    caplog.set_level(logging.WARNING, "devicecloud.tls")
    files = TlsFiles(tmp_path)
    for _ in range(2):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await echoed(port, files.client(), "localhost")
    refusals = [r.getMessage() for r in caplog.records if "no certificate" in r.getMessage()]
    assert refusals[0] == f"TLS handshake refused: no certificate in {tmp_path} yet"
    assert len(refusals) == 2 and "no certificate to present yet" in refusals[1]  # once each
    assert certificates.reload()
    assert await echoed(port, files.client(), "localhost") == b"HELLO"
    server.close()
    await server.wait_closed()


def test_an_obtained_pair_may_be_expired_at_the_start_and_change_its_names(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    files = TlsFiles(tmp_path)
    ended = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    files.install(files.ca.issue_cert(*NAMES, not_before=ended - datetime.timedelta(days=90),
                                      not_after=ended))
    with pytest.raises(StartupError, match="expired"):
        Certificates(files.cert, files.key)
    with caplog.at_level(logging.WARNING, "devicecloud.tls"):
        renewing = Certificates(files.cert, files.key, obtained=True)
    assert renewing.expires_at is None and "cannot be used" in caplog.text
    files.install(files.ca.issue_cert("device.test"))  # the renewal, for another name
    assert renewing.reload() and renewing.names == ["device.test"]
    files.install(files.ca.issue_cert("other.test"))
    assert renewing.reload() and renewing.names == ["other.test"]
