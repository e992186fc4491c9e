"""ACME against a real pebble: the HTTP-01 challenge is really served by the devicecloud under
test and checked by pebble; the certificate it issues is then presented on the HTTPS port,
renewed without a restart when it nears its end, kept across a restart while good; a CA that
cannot be reached or refuses is one log line, retried, and plain HTTP goes on."""

from __future__ import annotations

import asyncio
import datetime
import http.client
import logging
import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from cryptography import x509
from support.mqtt_clients import client_id
from support.pebble import Pebble, needs_pebble
from support.polling import eventually
from support.server import (
    CLUSTER_POSTGRES,
    Server,
    free_port,
    postgres_database,
    postgres_problem,
    random_mac,
)
from support.services import PrivateRedis

from devicecloud.acme import Backoff, Renewal
from devicecloud.config import Settings
from devicecloud.protocols import mqtt
from devicecloud.tls import Certificates

pytestmark = needs_pebble
NAME = "device.test"


def acme_args(directory: str, ca: Path, https_port: int,
              mqtts_port: int = 0) -> tuple[str, ...]:
    return ("--https-port", str(https_port), "--mqtts-port", str(mqtts_port or free_port()),
            "--acme-domain", NAME, "--acme-email", "ops@device.test",
            "--acme-directory", directory, "--acme-ca", str(ca), "--log-level", "info")


class Acme:
    """A pebble and a devicecloud whose plain HTTP port is where pebble validates HTTP-01."""

    def __init__(self, folder: Path, *more_args: str, env: dict[str, str] | None = None) -> None:
        http_port, self.https_port, self.mqtts_port = free_port(), free_port(), free_port()
        self.pebble = Pebble(folder / "pebble", http_port).start()
        self.server = Server(folder / "data", http_port=http_port, env=env or {}, extra_args=(
            *acme_args(self.pebble.directory, self.pebble.ca_bundle, self.https_port,
                       self.mqtts_port), *more_args))

    @property
    def tls_dir(self) -> Path:
        return self.server.data_dir / "tls"

    def connect(self, trusted: str, port: int = 0) -> ssl.SSLSocket:
        """A TLS connection to the HTTPS port (or `port`) asking for NAME, verified against
        `trusted`."""
        context = ssl.create_default_context(cadata=trusted)
        raw = socket.create_connection(("127.0.0.1", port or self.https_port), timeout=5)
        return context.wrap_socket(raw, server_hostname=NAME)

    def served_serial(self, trusted: str) -> int | None:
        """The serial of the certificate a new connection sees, if it verifies against
        `trusted`; else None."""
        try:
            with self.connect(trusted) as connection:
                return serial_of(connection)
        except (OSError, ssl.SSLError):
            return None

    def stored_serial(self) -> int:
        pem = (self.tls_dir / "cert.pem").read_bytes()
        return x509.load_pem_x509_certificate(pem).serial_number

    def close(self) -> None:
        if self.server.process is not None and self.server.process.poll() is None:
            self.server.stop()
        self.pebble.stop()


def serial_of(connection: ssl.SSLSocket) -> int:
    der = connection.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def healthz(connection: ssl.SSLSocket) -> int:
    """One request on an open HTTPS connection (kept alive); its status."""
    connection.sendall(f"GET /healthz HTTP/1.1\r\nHost: {NAME}\r\n\r\n".encode())
    response = http.client.HTTPResponse(connection)  # type: ignore[arg-type]
    response.begin()
    response.read()
    return response.status


@pytest.fixture
def acme(tmp_path: Path) -> Iterator[Acme]:
    pair = Acme(tmp_path)
    yield pair
    pair.close()


def test_a_certificate_is_obtained_then_kept_across_a_restart(acme: Acme) -> None:
    acme.server.start()
    root = acme.pebble.root()
    serial = eventually(lambda: acme.served_serial(root), "pebble's certificate on HTTPS",
                        timeout=20)
    with acme.connect(root) as connection:
        assert healthz(connection) == 200
    mac = random_mac()
    with acme.connect(root, acme.mqtts_port) as connection:  # MQTT over TLS: the same certificate
        assert serial_of(connection) == serial
        connection.sendall(mqtt.encode(mqtt.Connect(client_id=client_id(mac),
                                                    username=acme.server.register(mac))))
        assert mqtt.Parser(role="client").feed(connection.recv(4)) == [mqtt.Connack(False, 0)]
    assert acme.stored_serial() == serial
    assert (acme.tls_dir / "key.pem").stat().st_mode & 0o777 == 0o600
    assert (acme.tls_dir / "account.key").stat().st_mode & 0o777 == 0o600
    assert list((acme.tls_dir / "challenges").iterdir()) == []  # answered, then removed
    assert acme.server.stop() == 0

    acme.server.start()
    eventually(lambda: "ACME: the certificate for device.test is kept" in acme.server.log(),
               "the restart's check of the stored certificate", timeout=10)
    assert acme.server.log().count("ACME: ordering a certificate") == 1, acme.server.log()
    assert acme.stored_serial() == serial
    assert acme.served_serial(root) == serial


def test_a_certificate_near_its_end_is_renewed_without_a_restart(acme: Acme) -> None:
    old_ca = trustme.CA()
    ending = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=10)
    old = old_ca.issue_cert(NAME, not_after=ending)
    acme.tls_dir.mkdir(parents=True)
    old.cert_chain_pems[0].write_to_path(str(acme.tls_dir / "cert.pem"))
    old.private_key_pem.write_to_path(str(acme.tls_dir / "key.pem"))
    old_serial = acme.stored_serial()
    acme.server.start()
    assert acme.server.process is not None
    pid = acme.server.process.pid
    with acme.connect(old_ca.cert_pem.bytes().decode()) as before:
        assert serial_of(before) == old_serial  # opened before the renewal
        assert healthz(before) == 200
        root = acme.pebble.root()

        def renewed() -> int | None:
            assert healthz(before) == 200  # the open connection works all along
            return acme.served_serial(root)

        serial = eventually(renewed, "pebble's certificate for new connections", timeout=20,
                            every=0.2)
        assert serial != old_serial
        assert healthz(before) == 200
    assert acme.server.process.poll() is None and acme.server.process.pid == pid
    assert "the certificate expires in 10.0 days" in acme.server.log()


@pytest.mark.skipif(bool(postgres_problem()), reason=postgres_problem() or "-")
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_with_workers_one_orders_and_every_worker_serves_it(tmp_path: Path) -> None:
    redis = PrivateRedis(tmp_path)
    redis.start()
    data = tmp_path / "data"
    acme = Acme(tmp_path, "--workers", "2", "--bus-url", redis.url,
                env={"DEVICECLOUD_DATABASE_URL": postgres_database(data, CLUSTER_POSTGRES)})
    try:
        acme.server.start()
        root = acme.pebble.root()
        eventually(lambda: acme.served_serial(root), "pebble's certificate", timeout=20)
        serial = acme.stored_serial()
        # new connections land on either worker: each presents the one certificate
        eventually(lambda: all(acme.served_serial(root) == serial for _ in range(12)),
                   "every worker presenting it", timeout=10)
        log = acme.server.log()
        assert log.count("ACME: ordering a certificate") == 1, log
        assert log.count("ACME: another process of this server renews the certificate") == 1, log
    finally:
        acme.close()
        redis.stop()


def test_a_missing_ca_bundle_stops_the_start(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", extra_args=acme_args(
        "https://127.0.0.1:1/dir", tmp_path / "none.pem", free_port()))
    with pytest.raises(RuntimeError, match="server exited early"):
        server.start()
    assert server.stop() == 2
    assert (f"devicecloud: --acme-ca (or DEVICECLOUD_ACME_CA) {tmp_path / 'none.pem'} is not a "
            "file; give the PEM bundle of the ACME CA's HTTPS certificate") in server.log()


def test_an_unreachable_directory_is_one_line_and_plain_http_goes_on(tmp_path: Path) -> None:
    directory = f"https://127.0.0.1:{free_port()}/dir"
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server = Server(tmp_path / "data", extra_args=acme_args(directory, tmp_path / "ca.pem",
                                                            free_port())).start()
    try:
        failures = eventually(
            lambda: [line for line in server.log().splitlines() if "ACME: no certificate" in line],
            "the failure's log line", timeout=10)
        assert failures[0].endswith(f"ACME: no certificate for device.test: cannot reach the ACME "
                                    f"server {directory}: Connection refused; retrying in 1 min")
        assert "Traceback" not in server.log()
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        _challenges_refuse_bad_tokens(server)
    finally:
        assert server.stop() == 0


def test_a_stop_does_not_wait_for_a_ca_that_hangs(tmp_path: Path, taken_port: int) -> None:
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "ca.pem"))  # the CA never answers:
    server = Server(tmp_path / "data", extra_args=acme_args(  # its port listens, nothing more
        f"https://127.0.0.1:{taken_port}/dir", tmp_path / "ca.pem", free_port())).start()
    eventually(lambda: "ACME: ordering a certificate" in server.log(), "the order begun")
    began = time.monotonic()
    assert server.stop() == 0, server.log()
    assert time.monotonic() - began < 5


def _challenges_refuse_bad_tokens(server: Server) -> None:
    folder = server.data_dir / "tls" / "challenges"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Tok3n_-x").write_text("Tok3n_-x.thumbprint")
    (folder / "a.b").write_text("a file whose name is no token")
    base = f"{server.url}/.well-known/acme-challenge"
    answer = httpx.get(f"{base}/Tok3n_-x")
    assert (answer.status_code, answer.text) == (200, "Tok3n_-x.thumbprint")
    for token in ("unknownToken", "a.b", "..", "..%2Faccount.key", "%2E%2E%2Fcert.pem",
                  "x" * 300, "a%20b", "%C3%A9", "a%00"):
        refused = httpx.get(f"{base}/{token}")
        assert refused.status_code == 404, token
        assert "BEGIN" not in refused.text and "file" not in refused.text, token


async def test_a_refused_order_is_logged_and_retried_with_backoff(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pebble = Pebble(tmp_path / "pebble", http_port=free_port()).start()  # nobody answers there
    try:
        settings = Settings(data_dir=tmp_path / "data", acme_domain=[NAME],
                            acme_email="ops@device.test", acme_directory=pebble.directory,
                            acme_ca=pebble.ca_bundle)
        certificates = Certificates(settings.tls_dir / "cert.pem", settings.tls_dir / "key.pem",
                                    obtained=True)
        caplog.set_level(logging.INFO, logger="devicecloud.acme")

        def failures() -> list[str]:
            return [record.getMessage() for record in caplog.records
                    if record.getMessage().startswith("ACME: no certificate")]

        renewal = asyncio.create_task(Renewal(settings, certificates, Backoff(0.1, 0.4)).run())
        try:
            lines = await asyncio.to_thread(
                eventually, lambda: len(failures()) >= 2 and failures(), "two failed orders",
                timeout=20)
        finally:
            renewal.cancel()
        assert lines[0].startswith("ACME: no certificate for device.test: the HTTP-01 "
                                   "challenge failed: device.test: ")
        assert lines[0].endswith("retrying in 0.1 s") and lines[1].endswith("retrying in 0.2 s")
        assert "\n" not in lines[0]
        assert not (settings.tls_dir / "cert.pem").exists()
        assert list((settings.tls_dir / "challenges").iterdir()) == []
        assert certificates.expires_at is None
    finally:
        pebble.stop()
