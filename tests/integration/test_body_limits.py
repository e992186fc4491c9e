"""Every body read has a limit and the caller is checked before the body is buffered: uploads
with a wrong token, and the external broker's auth hooks (served only with `--mqtt-broker`, only
to the broker), leave the server's memory flat. Memory is the server's own (`/proc/PID/status`)."""

from __future__ import annotations

import secrets
import select
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.server import Server, random_mac
from support.services import Mosquitto

MB = 1024 * 1024
HOOK_SECRET = secrets.token_hex(16)


def memory_kb(server: Server, key: str) -> int:
    """`VmRSS` (now) or `VmHWM` (the peak so far) of the server process, in kB."""
    assert server.process is not None
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} in /proc status")


def send_streaming(port: int, path: str, headers: dict[str, str], parts: Iterator[bytes],
                   host: str = "127.0.0.1") -> tuple[int, bytes]:
    """POST a body piece by piece, stopping as soon as the server answers; the status and the
    answer's body."""
    with socket.create_connection((host, port), timeout=30) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{head}\r\n".encode())
        received = b""
        for part in parts:
            if select.select([sock], [], [], 0)[0]:
                break  # the server has answered: stop sending
            try:
                sock.sendall(part)
            except OSError:
                break
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            received += chunk
    head_bytes, _, body = received.partition(b"\r\n\r\n")
    assert head_bytes, "no answer"
    return int(head_bytes.split()[1]), body


def multipart(boundary: str, fields: list[tuple[str, str]], file_size: int,
              file_first: bool) -> Iterator[bytes]:
    """A multipart body with a `file` part of `file_size` bytes, made on the fly."""
    def text_parts() -> Iterator[bytes]:
        for name, value in fields:
            yield (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                   f"{value}\r\n").encode()

    def file_part() -> Iterator[bytes]:
        yield (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
               'filename="big.jpg"\r\nContent-Type: image/jpeg\r\n\r\n').encode()
        chunk = b"\xa5" * (256 * 1024)
        for _ in range(file_size // len(chunk)):
            yield chunk
        yield b"\r\n"

    if file_first:
        yield from file_part()
        yield from text_parts()
    else:
        yield from text_parts()
        yield from file_part()
    yield f"--{boundary}--\r\n".encode()


def test_uploads_with_a_wrong_token_are_refused_with_flat_memory(server: Server) -> None:
    boundary = secrets.token_hex(8)
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}",
               "Transfer-Encoding": "chunked"}
    results: list[tuple[int, bytes]] = []
    peak_before = memory_kb(server, "VmHWM")

    def chunked(parts: Iterator[bytes]) -> Iterator[bytes]:
        for part in parts:
            yield f"{len(part):x}\r\n".encode() + part + b"\r\n"
        yield b"0\r\n\r\n"

    def one(index: int) -> None:
        fields = [("deviceToken", "f" * 32), ("name", "photo")]
        body = multipart(boundary, fields, 10 * MB - MB // 4, file_first=index % 2 == 1)
        results.append(send_streaming(server.http_port, "/api/v2/device/uploadDeviceFile",
                                      headers, chunked(body)))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == 40
    for status, body in results:
        assert status == 200 and b'"msg":"unknown deviceToken"' in body, body
    grown = memory_kb(server, "VmHWM") - peak_before
    assert grown < 60 * 1024, f"peak memory grew by {grown} kB for 400 MB refused"
    assert list((server.data_dir / "files" / ".incoming").glob("*")) == []
    # A right token still uploads through the same path, streamed as well.
    token = server.register()
    status, body = send_streaming(server.http_port, "/api/v2/device/uploadDeviceFile", headers,
                                  chunked(multipart(boundary, [("deviceToken", token),
                                                               ("name", "photo")], MB, True)))
    assert status == 200 and b'"code":200' in body, body


def test_the_broker_hooks_are_not_served_without_a_broker(server: Server) -> None:
    for path in ("/mqtt/auth", "/mqtt/acl"):
        reply = httpx.post(f"{server.url}{path}", json={"username": "x"})
        assert reply.status_code == 404 and reply.json()["code"] == 500


def test_the_hooks_answer_only_the_broker_and_read_little(mosquitto: Mosquitto,
                                                          own_server: Server) -> None:
    own_server.extra_args = ("--mqtt-broker", mosquitto.broker_url)
    own_server.env["DEVICECLOUD_MQTT_HOOK_SECRET"] = HOOK_SECRET
    own_server.start()
    mac = random_mac()
    token = own_server.register(mac=mac)
    auth = f"{own_server.url}/mqtt/auth"
    login = {"username": token, "clientid": f"ez{mac}ez", "password": ""}
    for headers in ({}, {"x-devicecloud-hook-secret": "wrong"}):
        refused = httpx.post(auth, json=login, headers=headers)
        assert (refused.status_code, refused.json()) == (403, {"result": "deny"})
    good = {"x-devicecloud-hook-secret": HOOK_SECRET}
    assert httpx.post(auth, json=login, headers=good).json()["result"] == "allow"

    rss_before = memory_kb(own_server, "VmRSS")
    declared = {**good, "Content-Length": str(800 * MB), "Content-Type": "application/json"}
    chunk = b" " * MB
    status, body = send_streaming(own_server.http_port, "/mqtt/auth", declared,
                                  iter([chunk] * 50))
    assert (status, body) == (413, b'{"result":"deny"}')
    streamed = {**good, "Transfer-Encoding": "chunked", "Content-Type": "application/json"}
    status, body = send_streaming(own_server.http_port, "/mqtt/acl", streamed,
                                  iter([b"100000\r\n" + chunk + b"\r\n"] * 50))
    assert (status, body) == (413, b'{"result":"deny"}')
    grown = memory_kb(own_server, "VmRSS") - rss_before
    assert grown < 20 * 1024, f"RSS grew by {grown} kB"
    assert httpx.post(auth, json=login, headers=good).json()["result"] == "allow"


def _outward_address() -> str | None:
    """This machine's address on its default route, if it has one that is not loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_without_a_secret_only_loopback_callers_are_answered(mosquitto: Mosquitto,
                                                             own_server: Server) -> None:
    outward = _outward_address()
    if outward is None:
        pytest.skip("this machine has no non-loopback address to call from")
    own_server.extra_args = ("--mqtt-broker", mosquitto.broker_url, "--host", "0.0.0.0")
    own_server.start()
    body = {"username": "x", "topic": "t", "action": "publish"}
    far = httpx.post(f"http://{outward}:{own_server.http_port}/mqtt/acl", json=body)
    assert (far.status_code, far.json()) == (403, {"result": "deny"})
    near = httpx.post(f"{own_server.url}/mqtt/acl", json=body)
    assert (near.status_code, near.json()) == (200, {"result": "deny"})
