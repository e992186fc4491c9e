"""TLS on every transport (operations spec section 1): real clients over real handshakes on
HTTPS, WSS and MQTT over TLS; reload without a drop; bad input on either kind of port."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import queue
import shutil
import signal
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
import trustme
from support.clients import WsDevice
from support.console_client import PASSWORD, ConsoleUser
from support.mqtt_clients import RawMqtt, client_id
from support.polling import eventually
from support.server import (
    CLUSTER_POSTGRES,
    Server,
    postgres_database,
    postgres_problem,
    random_mac,
)
from support.services import PrivateRedis
from support.tls import NAMES, TlsFiles, TlsServer, der, presented
from support.tls import mqtts_device as connect_mqtts

from devicecloud.protocols import mqtt
from devicecloud.protocols.ezdata_mqtt import down_topic, up_topic


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    """One TLS server for the tests that leave its certificate alone."""
    folder = tmp_path_factory.mktemp("tls")
    instance = TlsServer.make(folder / "data", TlsFiles(folder / "certs"),
                              "--http-redirect").start()
    yield instance
    assert instance.server.stop() == 0, instance.server.log()


@pytest.fixture
def own_tls(tmp_path: Path) -> Iterator[TlsServer]:
    """A TLS server of the test's own, whose certificate files it may change."""
    instance = TlsServer.make(tmp_path / "data", TlsFiles(tmp_path / "certs")).start()
    yield instance
    assert instance.server.stop() == 0, instance.server.log()


def register(tls: TlsServer, mac: str | None = None) -> str:
    reply = httpx.post(f"{tls.https_url}/api/v2/device/registerMac", verify=tls.files.client(),
                       json={"deviceType": "basic", "mac": mac or random_mac()})
    body = reply.json()
    assert body["code"] == 200, body
    token: str = body["data"]
    return token


def stored(tls: TlsServer, token: str, name: str) -> Any:
    reply = httpx.get(f"{tls.https_url}/api/v2/{token}/dataByKey/{name}",
                      verify=tls.files.client())
    return reply.json()["data"]


async def mqtts_device(tls: TlsServer, token: str, mac: str) -> RawMqtt:
    """An EzData device over MQTT/TLS on the server's MQTTS port, connected and subscribed."""
    return await connect_mqtts(tls.mqtts_port, tls.files.client(), token, mac)


def logged(tls: TlsServer, text: str, timeout: float = 5.0) -> str:
    """The server's log once it holds `text`."""
    return eventually(lambda: tls.server.log() if text in tls.server.log() else "",
                      f"a log line with {text!r}", timeout)


# Real clients ---------------------------------------------------------------------------------

def test_uiflow_style_https_calls_with_the_ca(tls: TlsServer) -> None:
    token = register(tls)
    context = tls.files.client()
    reply = httpx.post(f"{tls.https_url}/api/v2/{token}/add", verify=context,
                       json={"dataType": "number", "name": "t", "value": 21.5})
    assert reply.json()["code"] == 200
    assert stored(tls, token, "t")["value"] == 21.5
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls.https_url}/healthz")  # the system CAs do not know this one


def test_paho_over_tls_connects_with_its_token_and_gets_the_reply(tls: TlsServer) -> None:
    mac = random_mac()
    token = register(tls, mac)
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id(mac),
                         protocol=paho.MQTTv311)
    client.tls_set(ca_certs=str(tls.files.ca_file))
    client.username_pw_set(token)
    answers = queue.Queue[bytes]()
    client.on_message = lambda _client, _data, message: answers.put(message.payload)
    client.connect("localhost", tls.mqtts_port, keepalive=30)
    client.loop_start()
    try:
        client.subscribe(down_topic(token), qos=0)
        body = {"requestType": 100, "name": "relay", "value": {"on": True}}
        client.publish(up_topic(token), json.dumps({"deviceToken": token, "body": body}),
                       qos=1).wait_for_publish(5)
        added = json.loads(answers.get(timeout=5))
        assert added["cmd"] == 100 and added["code"] == 200
        body = {"requestType": 101, "name": "relay", "value": {"on": False}}
        client.publish(up_topic(token), json.dumps({"deviceToken": token, "body": body}),
                       qos=1).wait_for_publish(5)
        changed = json.loads(answers.get(timeout=5))
        assert changed["cmd"] == 101 and changed["value"] == {"on": False}
    finally:
        client.disconnect()
        client.loop_stop()


def test_mosquitto_pub_with_cafile(tls: TlsServer) -> None:
    if shutil.which("mosquitto_pub") is None and os.environ.get("CI") != "true":
        pytest.skip("needs mosquitto_pub (apt-get install -y mosquitto-clients)")
    mac = random_mac()
    token = register(tls, mac)
    message = {"deviceToken": token, "body": {"requestType": 100, "name": "temp", "value": 7}}
    subprocess.run(["mosquitto_pub", "-h", "localhost", "-p", str(tls.mqtts_port), "--cafile",
                    str(tls.files.ca_file), "-i", client_id(mac), "-u", token, "-q", "1",
                    "-t", up_topic(token), "-m", json.dumps(message)], check=True, timeout=10)
    assert eventually(lambda: stored(tls, token, "temp"), "the field mosquitto_pub set")[
        "value"] == 7


async def test_websocket_over_wss(tls: TlsServer) -> None:
    token = await asyncio.to_thread(register, tls)
    device = await WsDevice.connect(tls.wss_url, token, ssl=tls.files.client())
    added = await device.request(100, name="mode", value="eco")
    assert added["code"] == 200 and added["body"]["value"] == "eco"
    assert (await device.request(104, name="mode"))["body"]["value"] == "eco"
    await device.close()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_1_1_and_1_0_are_refused(tls: TlsServer) -> None:
    for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
        old.minimum_version = old.maximum_version = version
        for port in (tls.https_port, tls.mqtts_port):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                    pytest.raises(ssl.SSLError):
                old.wrap_socket(raw)
    logged(tls, "the client offers only TLS 1.0 or 1.1 (TLS 1.2 or newer needed)")
    modern = tls.files.client()
    modern.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", tls.https_port), timeout=5) as raw, \
            modern.wrap_socket(raw, server_hostname="localhost") as secured:
        assert secured.version() == "TLSv1.2"


# Cookies, HSTS, the redirect ------------------------------------------------------------------

def test_console_login_over_https_sets_secure_cookies_and_hsts(tls: TlsServer) -> None:
    user = ConsoleUser(tls.server)
    user.http = httpx.Client(base_url=tls.https_url, verify=tls.files.client())
    user.email = f"{random_mac().lower()}@example.com"
    user.get("/console/signup")
    login = user.post("/console/signup", email=user.email, password=PASSWORD, display_name="",
                      phone="")  # and logged in
    assert login.status_code == 303
    cookie = login.headers["set-cookie"]
    assert "devicecloud_session=" in cookie and "Secure" in cookie
    assert login.headers["strict-transport-security"] == "max-age=31536000"
    assert user.get("/console/devices").status_code == 200
    plain = httpx.get(f"{tls.server.url}/console/login")
    assert "Secure" not in plain.headers["set-cookie"]
    assert "strict-transport-security" not in plain.headers


def test_http_redirect_sends_pages_to_https_and_leaves_device_calls(tls: TlsServer) -> None:
    page = httpx.get(f"{tls.server.url}/console/login?next=/console/devices",
                     headers={"accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 308
    assert page.headers["location"] == (f"https://127.0.0.1:{tls.https_port}"
                                        "/console/login?next=/console/devices")
    assert httpx.get(page.headers["location"].replace("127.0.0.1", "localhost"),
                     verify=tls.files.client()).status_code == 200
    token = tls.server.register()  # plain HTTP, as firmware without TLS does
    assert httpx.post(f"{tls.server.url}/api/v2/{token}/add", headers={"accept": "text/html"},
                      json={"name": "n", "value": 1, "dataType": "number"}).json()["code"] == 200
    assert httpx.get(f"{tls.server.url}/api/v2/{token}/dataByKey/n",
                     headers={"accept": "text/html"}).json()["data"]["value"] == 1


# Bad input ------------------------------------------------------------------------------------

async def test_plain_mqtt_on_the_tls_port_is_logged_and_others_go_on(tls: TlsServer) -> None:
    mac = random_mac()
    token = await asyncio.to_thread(register, tls, mac)
    plain = await RawMqtt.open(tls.mqtts_port)
    await plain.send(mqtt.Connect(client_id=client_id(mac), username=token))
    assert await plain.closed_within(5)
    await asyncio.to_thread(logged, tls, f"MQTT over TLS on port {tls.mqtts_port}: TLS "
                            "handshake with 127.0.0.1")
    assert "not TLS: plain text sent to the TLS port" in tls.server.log()
    device = await mqtts_device(tls, token, mac)
    await device.assert_pong_next(token)
    await device.close()


def test_plain_http_on_the_https_port_is_logged_and_once_a_minute(tls: TlsServer) -> None:
    for _ in range(3):
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{tls.https_port}/healthz")
    line = "failed: not TLS: plain HTTP sent to the TLS port (use https://)"
    logged(tls, line)
    # A failure of another kind, logged after them, shows the two others were not.
    with socket.create_connection(("127.0.0.1", tls.https_port)) as raw:
        raw.sendall(b"\x16\x03\x01\x00\x05\x99\x00\x00\x01\x00")  # a ClientHello of no kind
        raw.recv(100)
    logged(tls, f"HTTPS on port {tls.https_port}: TLS handshake with 127.0.0.1")
    assert tls.server.log().count(line) == 1
    assert httpx.get(f"{tls.https_url}/healthz", verify=tls.files.client()).status_code == 200


async def test_tls_client_on_the_plain_ports_is_refused_and_others_go_on(tls: TlsServer) -> None:
    mac = random_mac()
    token = await asyncio.to_thread(register, tls, mac)
    for port in (tls.server.http_port, tls.server.mqtt_port):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await asyncio.wait_for(asyncio.open_connection(
                "127.0.0.1", port, ssl=tls.files.client(), server_hostname="localhost"), 5)
    assert httpx.get(f"{tls.server.url}/healthz").status_code == 200
    plain = await RawMqtt.device(tls.server.mqtt_port, token, mac)
    await plain.assert_pong_next(token)
    await plain.close()


async def test_a_half_finished_handshake_holds_nobody_up(tls: TlsServer) -> None:
    mac = random_mac()
    token = await asyncio.to_thread(register, tls, mac)
    held = []
    for port in (tls.https_port, tls.mqtts_port):
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello begun
        await writer.drain()
        held.append(writer)
    device = await mqtts_device(tls, token, mac)
    await device.assert_pong_next(token)
    reply = await asyncio.to_thread(httpx.get, f"{tls.https_url}/healthz",
                                    verify=tls.files.client())
    assert reply.status_code == 200
    await device.close()
    for writer in held:
        writer.close()


# Reload -------------------------------------------------------------------------------------

def another_ca_pair(own_tls: TlsServer, name: str) -> tuple[bytes, ssl.SSLContext]:
    """A pair from a new CA put in place of the server's files; its PEM, and a client context
    trusting that CA only."""
    ca = trustme.CA()
    pem = own_tls.files.install(ca.issue_cert(*NAMES))
    return pem, own_tls.files.client(own_tls.files.ca_path(ca, name))


async def open_connections(own_tls: TlsServer) -> tuple[str, RawMqtt, WsDevice]:
    mac = random_mac()
    token = await asyncio.to_thread(register, own_tls, mac)
    device = await mqtts_device(own_tls, token, mac)
    ws = await WsDevice.connect(own_tls.wss_url, token, ssl=own_tls.files.client())
    return token, device, ws


async def still_working(token: str, device: RawMqtt, ws: WsDevice) -> None:
    """Requests on connections opened before the reload are answered."""
    assert (await ws.request(100, name="after", value=1))["code"] == 200
    pushed = await device.recv_json()
    assert pushed["cmd"] == 109 and pushed["value"] == 1  # the ws change, pushed over MQTT/TLS
    await device.assert_pong_next(token)
    await device.close()
    await ws.close()


async def test_sighup_reload_new_handshakes_new_certificate_open_ones_untouched(
        own_tls: TlsServer) -> None:
    token, device, ws = await open_connections(own_tls)
    old_context = own_tls.files.client()
    pem, new_context = another_ca_pair(own_tls, "second-ca.pem")
    assert own_tls.server.process is not None
    own_tls.server.process.send_signal(signal.SIGHUP)
    for port in (own_tls.https_port, own_tls.mqtts_port):
        await asyncio.to_thread(eventually, lambda port=port: presented(port) == der(pem),
                                "the new certificate on a new handshake")
    reply = await asyncio.to_thread(httpx.get, f"{own_tls.https_url}/healthz",
                                    verify=new_context)
    assert reply.status_code == 200
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        await asyncio.to_thread(httpx.get, f"{own_tls.https_url}/healthz", verify=old_context)
    await still_working(token, device, ws)


async def test_changed_files_are_picked_up_by_the_watch(own_tls: TlsServer) -> None:
    token, device, ws = await open_connections(own_tls)
    pem, _context = another_ca_pair(own_tls, "watched-ca.pem")
    for port in (own_tls.https_port, own_tls.mqtts_port):
        await asyncio.to_thread(eventually, lambda port=port: presented(port) == der(pem),
                                "the changed files in use", 10.0)
    await still_working(token, device, ws)


def test_a_bad_new_pair_keeps_the_old_one_and_says_why(own_tls: TlsServer) -> None:
    files = own_tls.files
    good = files.cert.read_bytes(), files.key.read_bytes()
    assert own_tls.server.process is not None
    now = datetime.datetime.now(datetime.UTC)
    other = trustme.CA()
    cases = [
        ("does not match the certificate",
         (other.issue_cert(*NAMES).cert_chain_pems[0].bytes(), good[1])),
        ("expired on", leaf_files(files.ca.issue_cert(
            *NAMES, not_before=now - datetime.timedelta(days=30),
            not_after=now - datetime.timedelta(days=1)))),
        ("is not valid before", leaf_files(files.ca.issue_cert(
            *NAMES, not_before=now + datetime.timedelta(days=1),
            not_after=now + datetime.timedelta(days=30)))),
        ("holds no PEM certificate", (b"garbage\n", good[1])),
        ("none of the names in use", leaf_files(files.ca.issue_cert("elsewhere.example.org"))),
    ]
    for reason, (cert, key) in cases:
        files.write(cert, key)
        own_tls.server.process.send_signal(signal.SIGHUP)
        logged(own_tls, reason)
        assert presented(own_tls.https_port) == der(good[0]), reason
        assert presented(own_tls.mqtts_port) == der(good[0]), reason
    log = own_tls.server.log()
    assert log.count("TLS certificate not reloaded, the one in use stays") == len(cases)
    files.write(*good)
    assert httpx.get(f"{own_tls.https_url}/healthz", verify=files.client()).status_code == 200


def leaf_files(leaf: trustme.LeafCert) -> tuple[bytes, bytes]:
    return leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes()


def test_http_redirect_without_tls_of_its_own_is_refused(own_server: Server) -> None:
    own_server.extra_args = ("--http-redirect",)
    with pytest.raises(RuntimeError, match="server exited early"):
        own_server.start()
    assert own_server.stop() == 2
    assert "--http-redirect (DEVICECLOUD_HTTP_REDIRECT) sends console pages to this server's " \
        "HTTPS port: give --tls-cert and --tls-key" in own_server.log()


def test_a_bad_pair_at_the_start_is_one_line(tmp_path: Path) -> None:
    files = TlsFiles(tmp_path / "certs")
    files.write(key=trustme.CA().issue_cert(*NAMES).private_key_pem.bytes())
    instance = TlsServer.make(tmp_path / "data", files)
    with pytest.raises(RuntimeError, match="server exited early"):
        instance.server.start()
    assert instance.server.stop() == 2
    assert (f"cannot use the TLS certificate: the key {files.key} does not match the certificate "
            f"{files.cert}; check --tls-cert and --tls-key") in instance.server.log()


@pytest.mark.skipif(bool(postgres_problem()) and os.environ.get("CI") != "true",
                    reason=postgres_problem() or "-")
def test_the_supervisor_passes_sighup_to_every_worker(tmp_path: Path) -> None:
    redis = PrivateRedis(tmp_path)
    redis.start()
    data = tmp_path / "data"
    instance = TlsServer.make(data, TlsFiles(tmp_path / "certs"), "--bus-url", redis.url,
                              "--workers", "2", "--log-level", "info")
    instance.server.env = {"DEVICECLOUD_DATABASE_URL": postgres_database(data, CLUSTER_POSTGRES)}
    try:
        instance.start()
        eventually(lambda: instance.server.log().count("devicecloud: TLS (") == 2,
                   "both workers listening")
        assert instance.server.process is not None
        instance.server.process.send_signal(signal.SIGHUP)  # the files are unchanged: no watch
        eventually(lambda: instance.server.log().count("TLS certificate loaded from") == 2,
                   "a reload in each worker")
        assert "exited" not in instance.server.log()
        assert httpx.get(f"{instance.https_url}/healthz",
                         verify=instance.files.client()).status_code == 200
    finally:
        assert instance.server.stop() == 0, instance.server.log()[-3000:]
        redis.stop()
