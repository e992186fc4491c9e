"""Private instances of outside services for tests: a redis-server and a Mosquitto with the
shipped configuration, each on free ports, started and stopped by the test that uses them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from redis import Redis

from support.server import free_port

DEPLOY = Path(__file__).parents[2] / "deploy" / "mosquitto"
SERVICE_PASSWORD = "s3cret-service-password"


class PrivateRedis:
    """A redis-server of the test's own, on a free port, that can be stopped and restarted."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if Redis(port=self.port).ping():
                    return
            except Exception:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(10)


@dataclass
class Mosquitto:
    device_port: int
    service_port: int
    process: subprocess.Popen[bytes]

    @property
    def broker_url(self) -> str:
        return f"mqtt://devicecloud:{SERVICE_PASSWORD}@127.0.0.1:{self.service_port}"


def wait_for_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def start_mosquitto(folder: Path, device_port: int, service_port: int) -> Mosquitto:
    """Mosquitto with the shipped configuration, moved to free ports and a private folder."""
    folder.mkdir(exist_ok=True)
    for name in ("devices.acl", "service.acl"):
        shutil.copy(DEPLOY / name, folder / name)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(folder / "service.passwd"), "devicecloud",
                    SERVICE_PASSWORD], check=True, capture_output=True)
    (folder / "service.passwd").chmod(0o600)
    config = (DEPLOY / "mosquitto.conf").read_text()
    config = (config.replace("listener 1883", f"listener {device_port} 127.0.0.1")
              .replace("listener 1884", f"listener {service_port}")
              .replace("/etc/mosquitto/devicecloud", str(folder)))
    if os.getuid() == 0:  # keep root, or Mosquitto's own user cannot read pytest's private folder
        config += "\nuser root\n"
    (folder / "mosquitto.conf").write_text(config)
    process = subprocess.Popen(["mosquitto", "-c", str(folder / "mosquitto.conf")],
                               stdout=subprocess.DEVNULL, stderr=open(folder / "log", "ab"))  # noqa: SIM115
    wait_for_port(device_port)
    wait_for_port(service_port)
    return Mosquitto(device_port, service_port, process)




HAPROXY = Path(__file__).parents[2] / "deploy" / "haproxy" / "devicecloud.cfg"
BACKENDS = ("mqtt", "mqtts", "http", "https")


@dataclass
class Balancer:
    """HAProxy with the shipped configuration: each backend's machines replaced by local
    processes, each frontend on a free port (`ports[backend]`)."""

    ports: dict[str, int]
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def start_balancer(folder: Path, backends: dict[str, list[int]]) -> Balancer:
    """The shipped HAProxy configuration, its frontends on free ports, each backend in
    `backends` (by name) pointing at those local ports."""
    folder.mkdir(exist_ok=True)
    lines, ports, backend = [], {}, ""
    defaults = {"mqtt": ":1883", "mqtts": ":8883", "http": ":80", "https": ":443"}
    for line in HAPROXY.read_text().splitlines():
        words = line.split()
        if words[:1] == ["backend"]:
            backend = words[1]
            lines.append(line)
            lines += [f"    server dc{n} 127.0.0.1:{port}"
                      for n, port in enumerate(backends.get(backend, []))]
            continue
        if words[:1] == ["server"]:
            continue
        if words[:1] == ["maxconn"]:  # within this machine's open-files limit
            line = "    maxconn 4000"
        if words[:1] == ["bind"]:
            name = next(n for n, bind in defaults.items() if bind == words[1])
            ports[name] = free_port()
            line = f"    bind 127.0.0.1:{ports[name]}"
        lines.append(line)
    (folder / "haproxy.cfg").write_text("\n".join(lines) + "\n")
    process = subprocess.Popen(["haproxy", "-db", "-f", str(folder / "haproxy.cfg")],
                               stdout=subprocess.DEVNULL,
                               stderr=open(folder / "log", "ab"))  # noqa: SIM115
    for port in ports.values():
        wait_for_port(port)
    return Balancer(ports, process)
