"""What a newcomer meets on a first run: every startup problem of `devicecloud serve` is one line on
stderr naming the flag, variable or path to fix, with exit status 2 and no traceback; one server
per data directory; commands that refuse to make a new database; where to connect, once it
listens."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.server import Server, database_url, free_port


def serve(data_dir: Path, *args: str,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`devicecloud serve` on free ports (unless `args` or `env` name others), expected to stop
    by itself."""
    command = [sys.executable, "-m", "devicecloud", "serve", "--host", "127.0.0.1",
               "--log-level", "warning", "--data-dir", str(data_dir), *args]
    ports = {"DEVICECLOUD_HTTP_PORT": str(free_port()), "DEVICECLOUD_MQTT_PORT": str(free_port())}
    return subprocess.run(command, env={**os.environ, **ports, **(env or {})},
                          capture_output=True, text=True, timeout=60, check=False)


def one_line(done: subprocess.CompletedProcess[str], *words: str) -> str:
    """The single line a refused start printed, after checking it holds `words`."""
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("devicecloud: "), done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(("args", "env", "words"), [
    (["--http-port", "99999"], {}, ["--http-port", "DEVICECLOUD_HTTP_PORT", "99999", "65535"]),
    (["--mqtt-port", "70000"], {}, ["--mqtt-port", "DEVICECLOUD_MQTT_PORT", "70000"]),
    ([], {"DEVICECLOUD_HTTP_PORT": "abc"}, ["DEVICECLOUD_HTTP_PORT", "abc", "integer"]),
    (["--log-level", "loud"], {}, ["--log-level", "DEVICECLOUD_LOG_LEVEL", "loud", "warning"]),
    (["--limit", "ip.register=fast"], {}, ["--limit", "DEVICECLOUD_LIMIT", "ip.register=fast"]),
    (["--workers", "0"], {}, ["--workers", "DEVICECLOUD_WORKERS", "greater than or equal to 1"]),
    (["--upload-limit", "0"], {}, ["--upload-limit", "DEVICECLOUD_UPLOAD_LIMIT"]),
    ([], {"DEVICECLOUD_WORKERS": "many"}, ["DEVICECLOUD_WORKERS", "many"]),
    (["--mqtt-partition", "2/1"], {}, ["--mqtt-partition", "INDEX/COUNT"]),
])
def test_a_bad_setting_is_one_line_naming_its_flag_and_variable(
        tmp_path: Path, args: list[str], env: dict[str, str], words: list[str]) -> None:
    one_line(serve(tmp_path / "data", *args, env=env), "bad ", *words)
    assert not (tmp_path / "data").exists()  # refused before anything started


def test_a_bad_database_url_is_refused_without_its_password(tmp_path: Path) -> None:
    line = one_line(serve(tmp_path / "data", env={
        "DEVICECLOUD_DATABASE_URL": "mysql://ada:hunter2@db.example/devices"}),
        "DEVICECLOUD_DATABASE_URL", "--database-url", "sqlite:///PATH")
    assert "hunter2" not in line


def test_a_database_that_cannot_be_reached_is_one_line(tmp_path: Path) -> None:
    url = f"postgresql://ada:hunter2@127.0.0.1:{free_port()}/devices"
    line = one_line(serve(tmp_path / "data", "--database-url", url),
                    "cannot use the database postgresql://ada:***@127.0.0.1", "--database-url",
                    "DEVICECLOUD_DATABASE_URL")
    assert "hunter2" not in line


def test_a_taken_http_port_names_the_flag(tmp_path: Path, taken_port: int) -> None:
    one_line(serve(tmp_path / "data", "--http-port", str(taken_port)),
             f"cannot listen for HTTP on 127.0.0.1:{taken_port}: address already in use",
             "--http-port")


def test_an_address_that_cannot_be_listened_on_names_the_flag(tmp_path: Path) -> None:
    one_line(serve(tmp_path / "data", "--host", "nowhere.invalid"),
             "cannot listen for HTTP on nowhere.invalid", "--host", "DEVICECLOUD_HOST")


def test_a_taken_mqtt_port_names_the_flag(tmp_path: Path, taken_port: int) -> None:
    data_dir = tmp_path / "data"
    one_line(serve(data_dir, "--mqtt-port", str(taken_port),
                   env={"DEVICECLOUD_DATABASE_URL": database_url(data_dir)}),
             f"cannot listen for MQTT on 127.0.0.1:{taken_port}: address already in use",
             "--mqtt-port 0")


def test_a_data_dir_that_cannot_be_written_names_its_path(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    data_dir = tmp_path / "file" / "data"
    one_line(serve(data_dir), f"cannot write to the data directory {data_dir}", "--data-dir",
             "DEVICECLOUD_DATA_DIR")


def test_a_second_server_on_the_same_data_dir_names_the_first(own_server: Server) -> None:
    own_server.start()
    assert own_server.process is not None
    one_line(serve(own_server.data_dir, env=own_server.env),
             f"the data directory {own_server.data_dir} is in use",
             f"(pid {own_server.process.pid})", "--data-dir")
    assert own_server.stop() == 0, own_server.log()


def test_the_data_dir_is_free_again_once_its_server_stopped(own_server: Server) -> None:
    own_server.start()
    assert own_server.stop() == 0
    own_server.start()
    assert own_server.stop() == 0, own_server.log()


@pytest.mark.parametrize("command", [
    ["accounts", "create", "ada@example.com", "--password", "a long secret"],
    ["agents", "list", "--account", "ada@example.com"],
])
def test_commands_refuse_to_make_a_new_database(tmp_path: Path, command: list[str]) -> None:
    data_dir = tmp_path / "data"
    done = subprocess.run([sys.executable, "-m", "devicecloud", *command, "--data-dir",
                           str(data_dir), "--database-url", database_url(data_dir)],
                          capture_output=True, text=True, timeout=60, check=False)
    one_line(done, "no devicecloud database at", "--data-dir", "DEVICECLOUD_DATA_DIR",
             "--create-database")
    assert not (data_dir / "devicecloud.db").exists()


def test_the_service_says_where_the_console_and_devices_connect(own_server: Server) -> None:
    own_server.extra_args = ("--log-level", "info")
    own_server.start()
    assert own_server.stop() == 0
    log = own_server.log()
    base = f"http://127.0.0.1:{own_server.http_port}"
    assert f"console: {base}/console" in log, log
    assert f"devices: HTTP/WebSocket {base}, MQTT 127.0.0.1:{own_server.mqtt_port}" in log, log
    assert "loopback" not in log, log


def test_a_loopback_public_url_is_announced_with_a_warning(own_server: Server) -> None:
    own_server.extra_args = ("--public-url", "http://localhost:8000/")
    own_server.start()
    assert own_server.stop() == 0
    log = own_server.log()
    assert "--public-url http://localhost:8000 is a loopback address" in log, log
