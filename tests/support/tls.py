"""TLS for tests: certificate pairs from throwaway CAs (trustme), and a devicecloud server that
serves HTTPS, WSS and MQTT over TLS with them."""

from __future__ import annotations

import asyncio
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

from devicecloud.protocols import mqtt
from devicecloud.protocols.ezdata_mqtt import down_topic
from support.mqtt_clients import RawMqtt, client_id
from support.server import Server, free_port

NAMES = ("localhost", "127.0.0.1")


class TlsFiles:
    """The certificate and key files a server is given, and the CA its clients trust."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.cert = folder / "cert.pem"
        self.key = folder / "key.pem"
        self.ca = trustme.CA()
        self.ca_file = self.ca_path(self.ca, "ca.pem")
        self.pem = self.install(self.ca.issue_cert(*NAMES))

    def ca_path(self, ca: trustme.CA, name: str) -> Path:
        path = self.folder / name
        ca.cert_pem.write_to_path(str(path))
        return path

    def install(self, leaf: trustme.LeafCert) -> bytes:
        """Put `leaf` in place of the server's files (each replaced whole); returns its PEM."""
        self.write(leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes())
        return leaf.cert_chain_pems[0].bytes()

    def write(self, cert: bytes | None = None, key: bytes | None = None) -> None:
        for path, data in ((self.cert, cert), (self.key, key)):
            if data is not None:
                draft = path.with_suffix(".new")
                draft.write_bytes(data)
                os.replace(draft, path)

    def client(self, ca_file: Path | None = None) -> ssl.SSLContext:
        """A client context trusting the server's CA (or `ca_file`)."""
        return ssl.create_default_context(cafile=str(ca_file or self.ca_file))


def presented(port: int) -> bytes:
    """The certificate a new TLS handshake on `port` is shown, as DER."""
    pem = ssl.get_server_certificate(("127.0.0.1", port), timeout=5)
    return ssl.PEM_cert_to_DER_cert(pem)


def der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode())


@dataclass
class TlsServer:
    """A devicecloud process serving TLS with `files` beside its plain ports."""

    server: Server
    files: TlsFiles
    https_port: int
    mqtts_port: int

    @classmethod
    def make(cls, data_dir: Path, files: TlsFiles, *extra: str) -> TlsServer:
        https_port, mqtts_port = free_port(), free_port()
        server = Server(data_dir, extra_args=(
            "--tls-cert", str(files.cert), "--tls-key", str(files.key),
            "--https-port", str(https_port), "--mqtts-port", str(mqtts_port), *extra))
        return cls(server, files, https_port, mqtts_port)

    def start(self) -> TlsServer:
        self.server.start()
        return self

    @property
    def https_url(self) -> str:
        return f"https://localhost:{self.https_port}"

    @property
    def wss_url(self) -> str:
        return f"wss://localhost:{self.https_port}/ws"


async def mqtts_device(port: int, context: ssl.SSLContext, token: str, mac: str) -> RawMqtt:
    """An EzData device over MQTT/TLS on `port` (SNI localhost), connected and subscribed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context,
                                                   server_hostname="localhost")
    client = RawMqtt(reader, writer)
    await client.send(client.session.connect(mqtt.Connect(client_id=client_id(mac),
                                                          username=token)))
    assert await client.recv() == mqtt.Connack(False, 0)
    packet_id, data = client.session.subscribe([(down_topic(token), 0)])
    await client.send(data)
    assert await client.recv() == mqtt.Suback(packet_id, [0])
    return client
