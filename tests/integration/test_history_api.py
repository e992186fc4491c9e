"""A field's history on /api/v1 against a real server over HTTP: ranges by epoch ms and RFC 3339,
raw pages without gaps or repeats, 1m/1h/1d buckets checked against the points written, CSV and
NDJSON streams of 100,000 points in flat server memory, backfills (JSON and CSV) that are all or
nothing, never pushed and never overwrite a newer value, and clear errors for bad input."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from support.clients import WsDevice
from support.server import Server
from test_api_v1 import Api, account, push_of

DAY = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def history(device: dict[str, Any], name: str = "temp") -> str:
    return f"/devices/{device['id']}/fields/{name}/history"


def backfill(api: Api, path: str, points: list[tuple[int, Any]], status: int = 200) -> Any:
    return api.call("POST", path, status, json=[{"t": t, "value": v} for t, v in points])


def walk(api: Api, path: str, **query: Any) -> tuple[list[dict[str, Any]], int]:
    """Every item the pages give, following `next_cursor`, and the number of pages."""
    items, cursor = [], None
    for pages in range(1, 1000):
        page = api.call("GET", path, params={**query, **({"cursor": cursor} if cursor else {})})
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items, pages
    raise AssertionError("the cursors never ended")


def rss_kb(server: Server) -> int:
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def test_ranges_and_raw_pages_list_every_point_once_in_time_order(server: Server) -> None:
    ada = account(server)
    token = server.register()
    device = ada.bind(token)
    path = history(device)
    # Imported newest first, with some times twice: the order is by time, then by arrival.
    points = [(T0 + (i // 2) * 1000, i) for i in range(300)][::-1]
    assert backfill(ada, path, points)["imported"] == 300
    expected = sorted(points, key=lambda p: (p[0], -p[1]))
    items, pages = walk(ada, path, limit=37)
    assert pages == 9 and [(i["t"], i["value"]) for i in items] == expected
    start, end = T0 + 10_000, T0 + 20_000  # from included, to excluded
    inside = [p for p in expected if start <= p[0] < end]
    for low, high in ((start, end), (iso(start), iso(end)),
                      ("2026-01-01T01:00:10+01:00", str(end))):
        got = ada.call("GET", path, params={"from": low, "to": high, "limit": 1000})
        assert [(i["t"], i["value"]) for i in got["items"]] == inside, (low, high)
    assert ada.call("GET", path, params={"from": end, "to": end})["items"] == []
    other = account(server)
    for method in ("GET", "POST"):
        assert device["id"] in other.call(method, path, 404, json=[])["detail"]
    ez = httpx.get(f"{server.url}/api/v2/{token}/historyByKey/temp",
                   params={"pageSize": 1000}).json()["data"]
    assert ez["total"] == 300 and sorted(r["value"] for r in ez["rows"]) == list(range(300))


def expected_buckets(points: list[tuple[int, float]], size: int) -> list[dict[str, Any]]:
    groups: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for t, v in points:
        groups[t - t % size].append((t, v))
    out = []
    for start in sorted(groups):
        values = [v for _, v in groups[start]]
        out.append({"t": start, "min": min(values), "max": max(values),
                    "mean": sum(values) / len(values), "count": len(values),
                    "last": max(groups[start])[1]})
    return out


def same(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want), (got[:3], want[:3])
    for g, w in zip(got, want, strict=True):
        assert g["t"] == w["t"] and g["count"] == w["count"], (g, w)
        for key in ("min", "max", "mean", "last"):
            assert abs(g[key] - w[key]) < 1e-9, (key, g, w)


def test_buckets_give_min_max_mean_count_and_last_of_the_points(server: Server) -> None:
    ada = account(server)
    device = ada.bind(server.register())
    path = history(device)
    # Every 7 minutes over three days and a bit, values that rise and fall.
    points = [(T0 + 5_000 + i * 7 * 60_000, float((i * 37) % 101) - 20.5) for i in range(700)]
    backfill(ada, path, points)
    for aggregate, size in (("1m", 60_000), ("1h", 3_600_000), ("1d", DAY)):
        want = expected_buckets(points, size)
        got, _ = walk(ada, path, aggregate=aggregate, limit=50)
        same(got, want)
        text = ada.http.get(path, params={"aggregate": aggregate, "format": "csv"}).text
        rows = list(csv.DictReader(io.StringIO(text)))
        assert list(rows[0]) == ["t", "min", "max", "mean", "count", "last"]
        same([{k: float(v) if k != "t" and k != "count" else int(v) for k, v in row.items()}
               for row in rows], want)
        lines = ada.http.get(path, params={"aggregate": aggregate, "format": "ndjson"}).text
        same([json.loads(line) for line in lines.splitlines()], want)
    # A range that starts inside a bucket counts only the points from its start.
    start = T0 + DAY + 3_600_000 * 5 + 1
    within = [p for p in points if start <= p[0] < T0 + 2 * DAY]
    got = ada.call("GET", path, params={"aggregate": "1d", "from": start,
                                        "to": T0 + 2 * DAY})["items"]
    same(got, expected_buckets(within, DAY))


def test_csv_and_ndjson_stream_100000_points_in_flat_memory(server: Server) -> None:
    ada = account(server)
    device = ada.bind(server.register())
    path = history(device)
    points = [(T0 + i * 1000, i % 1000 / 10) for i in range(100_000)]
    assert backfill(ada, path, points)["imported"] == 100_000
    ada.http.get(path, params={"format": "csv", "to": T0 + 10_000_000}).raise_for_status()
    before = rss_kb(server)
    for form in ("csv", "ndjson", "csv"):
        count, last = 0, None
        with ada.http.stream("GET", path, params={"format": form}) as reply:
            assert reply.status_code == 200
            for line in reply.iter_lines():
                count += 1
                last = line
        assert count == 100_000 + (form == "csv"), (form, count)
        assert last is not None and str(T0 + 99_999_000) in last
    grown = rss_kb(server) - before
    assert grown < 8 * 1024, f"server RSS grew by {grown} KB while streaming"


def test_bad_input_is_a_problem_naming_it_and_imports_nothing(server: Server) -> None:
    ada = account(server)
    device = ada.bind(server.register())
    path = history(device)
    backfill(ada, path, [(T0, 1)])
    for query, status, named in (({"from": T0 + 1, "to": T0}, 400, "from"),
                                 ({"aggregate": "5m"}, 400, "aggregate"),
                                 ({"from": "yesterday"}, 400, "from"),
                                 ({"to": "2026-01-01"}, 400, "to"),
                                 ({"to": "2026-01-01T00:00:00"}, 400, "to"),
                                 ({"format": "xml"}, 400, "format"),
                                 ({"cursor": "WzFd"}, 400, "cursor")):
        doc = ada.call("GET", path, status, params=query)
        assert doc["detail"].startswith(named), (query, doc)
    assert "to" in ada.call("GET", path, 400, params={"from": T0 + 1, "to": T0})["detail"]
    ada.call("GET", history(device, "missing"), 404)
    text = history(device, "label")
    backfill(ada, text, [(T0, "on"), (T0 + 1, "off")])
    assert ada.call("GET", text, 422, params={"aggregate": "1h"})["detail"].startswith(
        "aggregate")
    good = [(T0 + 10 + i, i) for i in range(10)]
    bad = [{"t": t, "value": v} for t, v in good]
    for index, part, point in ((5, "t", {"t": "noon", "value": 1}),
                               (3, "t", {"t": True, "value": 1}),
                               (7, "value", {"t": T0, "value": "warm"}),
                               (2, "value", {"t": T0, "value": "x" * 70_000}),
                               (4, "", {"t": T0})):
        body = [*bad[:index], point, *bad[index + 1:]]
        doc = ada.call("POST", path, 422, json=body)
        assert doc["detail"].startswith(f"items.{index}{'.' + part if part else ''}"), doc
    assert ada.call("POST", path, 400, content=b"[{")["detail"].startswith("body")
    assert ada.call("POST", path, 422, json={"t": 1})["detail"].startswith("body")
    too_many = [(T0 + 100 + i, i) for i in range(100_001)]
    assert ada.call("POST", path, 413, json=[{"t": t, "value": v} for t, v in too_many])
    assert ada.call("POST", path, 413, content=b"[" + b" " * (17 * 1024 * 1024) + b"]")
    assert [i["t"] for i in ada.call("GET", path)["items"]] == [T0]  # nothing half-imported


async def test_a_backfill_never_pushes_nor_overwrites_a_newer_value(server: Server) -> None:
    ada = account(server)
    token = server.register()
    device = await WsDevice.connect(server.ws_url, token)
    try:
        found = ada.bind(token)
        await push_of(device, 106)
        path = f"/devices/{found['id']}/fields/level/history"
        ada.call("PUT", f"/devices/{found['id']}/fields/level", json={"value": 50})
        await push_of(device, 109)
        answer = backfill(ada, path, [(T0 + i, i) for i in range(1000)])
        assert answer["value_changed"] is False and answer["field"]["value"] == 50
        csv_body = "t,value\n" + "".join(f"{iso(T0 - DAY + i)},{i}\n" for i in range(5))
        imported = ada.call("POST", path, content=csv_body.encode(),
                            headers={"content-type": "text/csv"})
        assert imported["imported"] == 5 and imported["field"]["value"] == 50
        assert await device.before_marker() == []
        future = 4_102_444_800_000  # 2100: newer than the value, so it becomes the value
        answer = backfill(ada, path, [(future, 99), (T0 + 5000, 7)])
        assert answer["value_changed"] is True and answer["field"]["value"] == 99
        assert answer["field"]["updated"] == future
        assert await device.before_marker() == []  # imported points never push
        fields = ada.call("GET", f"/devices/{found['id']}/fields")["items"]
        assert [(f["name"], f["value"]) for f in fields] == [("level", 99)]
        made = backfill(ada, f"/devices/{found['id']}/fields/new/history", [(T0, 1), (T0 + 1, 2)])
        assert made["field"]["value"] == 2 and made["value_changed"] is True
        assert await device.before_marker() == []
        items, _ = walk(ada, path, limit=1000)
        assert len(items) == 1 + 1000 + 5 + 2
        assert items[0] == {"t": T0 - DAY, "value": 0} and items[-1]["t"] == future
    finally:
        await device.close()
