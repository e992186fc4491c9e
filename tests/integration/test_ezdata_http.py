"""EzData over HTTP (spec sections 1, 5, 6), through a real socket to a real server."""

from __future__ import annotations

import httpx
import pytest
from support.clients import WsDevice
from support.server import Server, random_mac

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def uiflow_multipart(parts: list[tuple[str, str | bytes, str | None]],
                     boundary: str = "0.8145632177840527") -> tuple[bytes, dict[str, str]]:
    """A body the way UiFlow2's EzData library builds it: a float as the boundary, and every text
    part carrying its own `Content-Type: multipart/form-data` header."""
    chunks: list[bytes] = []
    for name, value, filename in parts:
        chunks.append(f"--{boundary}\r\n".encode())
        if filename is None:
            chunks.append(f'Content-Disposition: form-data; name="{name}"\r\n'
                          "Content-Type: multipart/form-data\r\n\r\n".encode())
        else:
            chunks.append(f'Content-Disposition: form-data; name="{name}"; '
                          f'filename="{filename}"\r\nContent-Type: image/png\r\n\r\n'.encode())
        chunks.append(value if isinstance(value, bytes) else value.encode())
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def post_json(server: Server, path: str, doc: object) -> dict:
    reply = httpx.post(f"{server.url}{path}", json=doc)
    assert reply.status_code == 200
    return reply.json()


# 1. Registration ---------------------------------------------------------------------------------

def test_register_is_idempotent_across_mac_spellings(server: Server) -> None:
    mac = random_mac()
    spellings = [mac, mac.lower(), ":".join(mac[i:i + 2] for i in range(0, 12, 2)),
                 "-".join(mac[i:i + 2].lower() for i in range(0, 12, 2))]
    raw = [httpx.post(f"{server.url}/api/v2/device/registerMac",
                      content=f'{{"deviceType": "tab5", "mac": "{m}"}}') for m in spellings]
    assert raw[0].text.startswith('{"code":200,"msg":"OK","data":"')
    tokens = {r.json()["data"] for r in raw}
    assert len(tokens) == 1
    (token,) = tokens
    assert len(token) == 32 and token == token.lower() and int(token, 16) >= 0


@pytest.mark.parametrize(("body", "message"), [
    (b'{"deviceType": "basic", "mac": "AABBCCDDEEF"}', "invalid mac"),
    (b'{"deviceType": "basic", "mac": "GGBBCCDDEEFF"}', "invalid mac"),
    (b'{"deviceType": "basic", "mac": 12}', "mac must be"),
    (b'{"deviceType": "basic"}', "mac must be"),
    (b'{"deviceType": "basic", "mac": ', "invalid JSON"),
    (b'["AABBCCDDEEFF"]', "JSON object"),
])
def test_register_rejects_bad_input_clearly(server: Server, body: bytes, message: str) -> None:
    reply = httpx.post(f"{server.url}/api/v2/device/registerMac", content=body)
    assert reply.status_code == 200
    doc = reply.json()
    assert doc["code"] == 500 and doc["data"] is None and message in doc["msg"]


# 6. The UiFlow2 REST API ------------------------------------------------------------------------

def test_add_is_an_upsert_with_history(server: Server) -> None:
    token = server.register()
    api = f"/api/v2/{token}"
    for value in (1, 2, 3):
        doc = post_json(server, f"{api}/add", {"dataType": "number", "name": "t",
                                               "permissions": "1", "value": value})
        assert doc["code"] == 200 and doc["msg"] == "OK"
    record = httpx.get(f"{server.url}{api}/dataByKey/t").json()["data"]
    assert record["value"] == 3 and record["dataType"] == "number"
    assert record["updateTime"].isdigit() and record["createTime"].isdigit()
    rows = httpx.get(f"{server.url}{api}/list").json()["data"]["rows"]
    assert [r["name"] for r in rows] == ["t"]
    history = httpx.get(f"{server.url}{api}/historyByKey/t").json()["data"]
    assert [row["value"] for row in history["rows"]] == [3, 2, 1]
    assert all(row["createTime"].isdigit() for row in history["rows"])
    page = httpx.get(f"{server.url}{api}/historyByKey/t?pageNum=2&pageSize=2").json()["data"]
    assert [row["value"] for row in page["rows"]] == [1] and page["total"] == 3


def test_delete_and_unknown_names(server: Server) -> None:
    token = server.register()
    api = f"{server.url}/api/v2/{token}"
    httpx.post(f"{api}/add", json={"name": "gone", "value": "x", "dataType": "string"})
    reply = httpx.delete(f"{api}/delete/gone", headers={"deviceToken": token, "key": "gone"})
    assert reply.json()["code"] == 200
    for doc in (httpx.get(f"{api}/dataByKey/gone").json(),
                httpx.delete(f"{api}/delete/gone").json(),
                httpx.get(f"{api}/historyByKey/gone").json()):
        assert doc["code"] == 500 and "no data named" in doc["msg"] and doc["data"] is None


def test_unknown_token_and_bad_bodies(server: Server) -> None:
    assert httpx.get(f"{server.url}/api/v2/{'0' * 32}/list").json()["msg"] == "unknown deviceToken"
    token = server.register()
    api = f"{server.url}/api/v2/{token}"
    assert httpx.post(f"{api}/add", content=b"{oops").json()["msg"] == "invalid JSON"
    assert httpx.post(f"{api}/add", json={"name": "v"}).json()["msg"] == "missing value"
    assert httpx.post(f"{api}/add", json={"value": 1}).json()["msg"] == "name cannot be empty"
    missing = httpx.get(f"{server.url}/no/such/path")
    assert missing.status_code == 404 and missing.json()["code"] == 500
    assert httpx.get(f"{api}/list").json()["data"]["rows"] == []


def test_public_reads_by_data_token_honour_permissions(server: Server) -> None:
    token = server.register()
    api = f"{server.url}/api/v2/{token}"
    public = httpx.post(f"{api}/add", json={"name": "p", "value": 7, "permissions": "1"}).json()
    private = httpx.post(f"{api}/add", json={"name": "q", "value": 8, "permissions": "0"}).json()
    data_token = public["data"]["dataToken"]
    read = httpx.get(f"{server.url}/api/v2/{data_token}/data").json()
    assert read["code"] == 200 and read["data"]["value"] == 7
    history = httpx.get(f"{server.url}/api/v2/{data_token}/history").json()
    assert [row["value"] for row in history["data"]["rows"]] == [7]
    hidden = httpx.get(f"{server.url}/api/v2/{private['data']['dataToken']}/data").json()
    assert hidden["code"] == 500 and hidden["data"] is None


# 5. Files ------------------------------------------------------------------------------------

async def test_upload_device_file_uiflow_style_pushes_105(server: Server) -> None:
    token = server.register()
    device = await WsDevice.connect(server.ws_url, token)
    body, headers = uiflow_multipart([("deviceToken", token, None), ("name", "deviceFile", None),
                                      ("file", PNG, "/flash/res/img/x.png")])
    async with httpx.AsyncClient() as http:
        reply = await http.post(f"{server.url}/api/v2/device/uploadDeviceFile", content=body,
                                headers=headers)
        doc = reply.json()
        assert doc["code"] == 200 and doc["data"]["name"] == "deviceFile"
        url = doc["data"]["value"]
        assert url.endswith("/x.png") and "?" not in url and "/flash" not in url
        push = await device.recv_json()
        assert push == {"body": {"deviceToken": token, "name": "deviceFile", "value": url},
                        "cmd": 105, "code": 200, "msg": "OK"}
        download = await http.get(url)
        assert download.status_code == 200 and download.content == PNG
        assert download.headers["content-type"] == "image/png"
    record = (await device.request(104, name="deviceFile"))["body"]
    assert record["value"] == url and record["dataType"] == "file"
    await device.close()


def test_rest_upload_file_as_uiflow_sends_it(server: Server) -> None:
    token = server.register()
    body, headers = uiflow_multipart([
        ("dataType", "file", None), ("name", "photo", None), ("permissions", "1", None),
        ("value", "cat.jpeg", None), ("deviceToken", token, None),
        ("file", b"\xff\xd8\xff" + b"j" * 500, "/sd/cat.jpeg")], boundary="1234.5678")
    doc = httpx.post(f"{server.url}/api/v2/{token}/uploadFile", content=body,
                     headers=headers).json()
    assert doc["code"] == 200 and doc["data"]["value"].endswith("/cat.jpeg")
    assert httpx.get(doc["data"]["value"]).content.startswith(b"\xff\xd8\xff")


@pytest.mark.parametrize(("filename", "content", "inline"), [
    ("page.html", b"<script>alert(1)</script>", False),
    ("vector.svg", b"<svg xmlns='http://www.w3.org/2000/svg'><script>x()</script></svg>", False),
    ("photo.png", PNG, True)])
def test_device_files_never_run_as_pages_of_the_site(server: Server, filename: str,
                                                     content: bytes, inline: bool) -> None:
    token = server.register()
    body, headers = uiflow_multipart([("deviceToken", token, None), ("name", "f", None),
                                      ("file", content, filename)])
    url = httpx.post(f"{server.url}/api/v2/device/uploadDeviceFile", content=body,
                     headers=headers).json()["data"]["value"]
    download = httpx.get(url)
    assert download.content == content
    assert download.headers["content-security-policy"] == "sandbox"
    assert download.headers["x-content-type-options"] == "nosniff"
    assert ("content-disposition" not in download.headers) == inline


@pytest.mark.parametrize("filename", ["../../etc/passwd.png", "/flash/../../x.bmp",
                                      "..\\..\\win.jpg", "....png"])
def test_hostile_file_names_never_reach_the_file_system(server: Server, filename: str) -> None:
    token = server.register()
    body, headers = uiflow_multipart([("deviceToken", token, None), ("name", "f", None),
                                      ("file", b"data", filename)])
    doc = httpx.post(f"{server.url}/api/v2/device/uploadDeviceFile", content=body,
                     headers=headers).json()
    assert doc["code"] == 200
    url = doc["data"]["value"]
    tail = url.rsplit("/files/", 1)[1]
    assert ".." not in tail.split("/")[1][:2] and "\\" not in tail and tail.count("/") == 1
    assert httpx.get(url).content == b"data"
    assert not list(server.data_dir.parent.glob("**/passwd*"))


def test_upload_without_name_or_over_the_limit(server: Server) -> None:
    token = server.register()
    body, headers = uiflow_multipart([("deviceToken", token, None), ("file", PNG, "a.png")])
    reply = httpx.post(f"{server.url}/api/v2/device/uploadDeviceFile", content=body,
                       headers=headers)
    assert reply.status_code == 200
    assert reply.json() == {"code": 500, "msg": "name cannot be empty", "data": None}
    huge, headers = uiflow_multipart([("deviceToken", token, None), ("name", "big", None),
                                      ("file", b"\0" * (10 * 1024 * 1024 + 1), "big.bin")])
    reply = httpx.post(f"{server.url}/api/v2/device/uploadDeviceFile", content=huge,
                       headers=headers)
    assert reply.status_code == 413 and "larger than" in reply.json()["msg"]
    unknown, headers = uiflow_multipart([("deviceToken", "1" * 32, None), ("name", "n", None),
                                         ("file", PNG, "a.png")])
    reply = httpx.post(f"{server.url}/api/v2/device/uploadDeviceFile", content=unknown,
                       headers=headers)
    assert reply.json()["msg"] == "unknown deviceToken"
    assert httpx.get(f"{server.url}/api/v2/{token}/list").json()["data"]["rows"] == []


def test_release_user(server: Server) -> None:
    token = server.register()
    doc = post_json(server, f"/api/v2/device/releaseUser/{token}", {})
    assert doc == {"code": 200, "msg": "OK", "data": None}  # not bound: nothing to wait for
    assert post_json(server, f"/api/v2/device/releaseUser/{'2' * 32}", {})["code"] == 500
