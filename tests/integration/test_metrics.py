"""`GET /metrics` (operations spec section 3): each family moves when a real device acts."""

from __future__ import annotations

import asyncio
import datetime
import json
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families
from support.clients import WsDevice
from support.mqtt_clients import PahoDevice
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
from support.tls import NAMES, TlsFiles, TlsServer

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: Server, token: str = "") -> Samples:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    reply = httpx.get(f"{server.url}/metrics", headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(reply.text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def refuse_a_registration(server: Server) -> None:
    """Register until the `ip.register` limit answers with its refusal."""
    for _ in range(10):
        body = httpx.post(f"{server.url}/api/v2/device/registerMac",
                          json={"deviceType": "basic", "mac": random_mac()}).json()
        if "rate limited" in str(body):
            return
    raise AssertionError("ip.register never refused")


async def test_each_metric_moves(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", extra_args=("--limit", "ip.register=1/h:3")).start()
    try:
        mac = random_mac()
        token = server.register(mac=mac)
        before = scrape(server)
        assert value(before, "devicecloud_database_up") == 1
        assert value(before, "devicecloud_bus_up") == 1

        ws = await WsDevice.connect(server.ws_url, token)
        paho = await asyncio.to_thread(PahoDevice, server.mqtt_port, token, mac)
        live = scrape(server)
        assert value(live, "devicecloud_connections", transport="websocket") == 1
        assert value(live, "devicecloud_connections", transport="mqtt") == 1

        assert (await ws.request(100, name="t", value=1))["code"] == 200
        assert (await ws.request(101, name="missing", value=1))["code"] == 500
        assert (await asyncio.to_thread(paho.request, 101, name="t", value=2))["code"] == 200
        assert (await ws.recv_json())["cmd"] == 107  # the MQTT write, pushed to the WebSocket
        await asyncio.to_thread(refuse_a_registration, server)
        after = scrape(server)

        def moved(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert moved("devicecloud_requests_total", transport="websocket", command="add",
                     result="ok") == 1
        assert moved("devicecloud_requests_total", transport="websocket", command="modify",
                     result="error") == 1
        assert moved("devicecloud_requests_total", transport="mqtt", command="modify",
                     result="ok") == 1
        assert moved("devicecloud_commit_batch_size_count") >= 2
        assert moved("devicecloud_commit_batch_size_sum") >= 2
        assert moved("devicecloud_commit_seconds_count") >= 2
        assert moved("devicecloud_commit_seconds_sum") > 0
        assert moved("devicecloud_push_seconds_count") >= 1
        assert moved("devicecloud_rate_limited_total", limit="ip.register") == 1

        await ws.close()
        await asyncio.to_thread(paho.close)
        eventually(lambda: value(scrape(server), "devicecloud_connections",
                                 transport="websocket") == 0 and
                   value(scrape(server), "devicecloud_connections", transport="mqtt") == 0,
                   "no live connection left")
    finally:
        assert server.stop() == 0, server.log()


def test_metrics_token(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", extra_args=("--metrics-token", "s3cret-metrics")).start()
    try:
        refused = httpx.get(f"{server.url}/metrics")
        assert refused.status_code == 401 and refused.headers["www-authenticate"]
        wrong = httpx.get(f"{server.url}/metrics", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert value(scrape(server, "s3cret-metrics"), "devicecloud_database_up") == 1
    finally:
        assert server.stop() == 0, server.log()


# A real Prometheus ---------------------------------------------------------------------------

DEPLOY = Path(__file__).parents[2] / "deploy"
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None,
    reason="Debian's prometheus package is not installed (apt-get install prometheus)")


@needs_prometheus
def test_alert_rules_and_scrape_config_pass_promtool() -> None:
    assert PROMTOOL is not None
    for check, name in (("rules", "alerts.yml"), ("config", "prometheus.yml")):
        done = subprocess.run([PROMTOOL, "check", check, str(DEPLOY / "prometheus" / name)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def dashboard_queries() -> list[str]:
    """Every query of the Grafana dashboard, its variables given values Prometheus takes."""
    dashboard = json.loads((DEPLOY / "grafana" / "devicecloud.json").read_text())
    return [target["expr"].replace("$__rate_interval", "1m").replace("$instance", ".*")
            for panel in dashboard["panels"] for target in panel["targets"]]


@needs_prometheus
def test_prometheus_scrapes_the_server(tmp_path: Path) -> None:
    assert PROMETHEUS is not None
    server = Server(tmp_path / "data").start()
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(DEPLOY / "prometheus" / "alerts.yml")],
        "scrape_configs": [{"job_name": "devicecloud",
                            "static_configs": [{"targets": [f"127.0.0.1:{server.http_port}"]}]}],
    }))
    log = (tmp_path / "prometheus.log").open("wb")
    prometheus = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{port}/api/v1"

    def query(expr: str) -> list[Any]:
        """The query's samples; none while Prometheus starts (it answers 503 until ready)."""
        try:
            answer = httpx.get(f"{api}/query", params={"query": expr}, timeout=2)
        except httpx.HTTPError:
            return []
        if answer.status_code == 503:
            return []
        reply = answer.json()
        assert reply["status"] == "success", (expr, reply)
        found: list[Any] = reply["data"]["result"]
        return found

    try:
        asyncio.run(_one_ws_request(server, server.register()))
        samples = eventually(lambda: query('devicecloud_requests_total{command="add"}'),
                             "devicecloud_requests_total in Prometheus", timeout=30, every=0.5)
        ok = [s for s in samples if s["metric"]["result"] == "ok"]
        assert [(s["metric"]["transport"], s["value"][1]) for s in ok] == [("websocket", "1")]
        assert eventually(lambda: query("devicecloud_database_up == 1"), "database up")
        rules = httpx.get(f"{api}/rules").json()["data"]["groups"]
        assert {r["name"] for g in rules for r in g["rules"]} >= {"DevicecloudDatabaseDown",
                                                                  "DevicecloudBusDown"}
        for expr in dashboard_queries():
            query(expr)  # each one is valid PromQL
    finally:
        prometheus.terminate()
        prometheus.wait(10)
        log.close()
        assert server.stop() == 0, server.log()


async def _one_ws_request(server: Server, token: str) -> None:
    device = await WsDevice.connect(server.ws_url, token)
    assert (await device.request(100, name="n", value=1))["code"] == 200
    await device.close()


def test_bus_up_follows_redis(tmp_path: Path) -> None:
    redis = PrivateRedis(tmp_path)
    redis.start()
    server = Server(tmp_path / "data", extra_args=("--bus-url", redis.url)).start()
    try:
        assert value(scrape(server), "devicecloud_bus_up") == 1
        redis.stop()
        eventually(lambda: value(scrape(server), "devicecloud_bus_up") == 0, "bus down",
                   timeout=15)
        redis.start()
        eventually(lambda: value(scrape(server), "devicecloud_bus_up") == 1, "bus up again",
                   timeout=15)
    finally:
        if redis.process is not None and redis.process.poll() is None:
            redis.stop()
        assert server.stop() == 0, server.log()


@pytest.mark.skipif(bool(postgres_problem()), reason=postgres_problem() or "-")
async def test_any_worker_reports_the_whole_server(tmp_path: Path) -> None:
    redis = PrivateRedis(tmp_path)
    redis.start()
    data = tmp_path / "data"
    server = Server(data, extra_args=("--bus-url", redis.url, "--workers", "2"),
                    env={"DEVICECLOUD_DATABASE_URL": postgres_database(data, CLUSTER_POSTGRES)})
    server.start()
    try:
        tokens = [server.register() for _ in range(8)]
        devices = []
        for token in tokens:  # new connections land on either worker
            devices.append(await WsDevice.connect(server.ws_url, token))
            assert (await devices[-1].request(100, name="n", value=1))["code"] == 200

        def whole(samples: Samples) -> bool:
            return (value(samples, "devicecloud_requests_total", transport="websocket",
                          command="add", result="ok") == 8
                    and value(samples, "devicecloud_connections", transport="websocket") == 8
                    and value(samples, "devicecloud_database_up") == 1)

        eventually(lambda: whole(scrape(server)), "the whole server's figures", timeout=10)
        for _ in range(10):  # each scrape reaches either worker: all say the same
            assert whole(scrape(server))
            await asyncio.sleep(0.05)
        for device in devices:
            await device.close()
    finally:
        assert server.stop() == 0, server.log()[-3000:]
        redis.stop()


def test_the_certificate_expiry_follows_a_reload(tmp_path: Path) -> None:
    files = TlsFiles(tmp_path / "tls")
    tls = TlsServer.make(tmp_path / "data", files).start()
    try:
        ends = x509.load_pem_x509_certificate(files.pem).not_valid_after_utc.timestamp()
        expiry = "devicecloud_tls_certificate_expiry_timestamp_seconds"
        assert value(scrape(tls.server), expiry) == ends
        sooner = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=10)
        files.install(files.ca.issue_cert(*NAMES, not_after=sooner))
        assert tls.server.process is not None
        tls.server.process.send_signal(signal.SIGHUP)
        eventually(lambda: value(scrape(tls.server), expiry) == int(sooner.timestamp()),
                   "the new certificate's end", timeout=10)
    finally:
        assert tls.server.stop() == 0


def test_without_tls_there_is_no_certificate_expiry(server: Server) -> None:
    assert not any(name == "devicecloud_tls_certificate_expiry_timestamp_seconds"
                   for name, _ in scrape(server))
