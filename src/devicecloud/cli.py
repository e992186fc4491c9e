"""The `devicecloud` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
from collections.abc import Sequence
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette

from devicecloud.app import create_app, drain
from devicecloud.config import Settings


class GracefulServer(uvicorn.Server):
    """Stops on SIGINT or SIGTERM once in-flight work is answered, then exits with status 0."""

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self.app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:  # no new connections while the live ones finish
            server.close()
        try:
            await asyncio.wait_for(drain(self.app), self.config.timeout_graceful_shutdown)
        except TimeoutError:
            logging.getLogger("devicecloud").error("stopping with requests still unanswered")
        await super().shutdown(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


def _serve(args: argparse.Namespace) -> None:
    overrides: dict[str, Any] = {key: value for key, value in vars(args).items()
                                 if value is not None and key not in ("command", "func")}
    settings = Settings(**overrides)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("devicecloud").info(
        "devicecloud on http://%s:%d (MQTT port %s), data in %s", settings.host,
        settings.http_port, settings.mqtt_port or "off", settings.data_dir.resolve())
    app = create_app(settings)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.http_port,
        ws_max_size=settings.ws_frame_limit, log_level=settings.log_level.lower(),
        lifespan="on", timeout_graceful_shutdown=10, server_header=False, ws="websockets-sansio")
    GracefulServer(config, app).run()


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="devicecloud", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the service (HTTP, WebSocket)")
    serve.add_argument("--host", help="address to listen on (DEVICECLOUD_HOST, default 0.0.0.0)")
    serve.add_argument("--http-port", type=int, help="HTTP and WebSocket port (default 8000)")
    serve.add_argument("--mqtt-port", type=int, help="built-in MQTT listener (1883; 0: none)")
    serve.add_argument("--data-dir", help="database and files (default ./devicecloud-data)")
    serve.add_argument("--public-url", help="base of the links handed out, e.g. https://x.org")
    serve.add_argument("--database-url", help="default: sqlite:///<data-dir>/devicecloud.db")
    serve.add_argument("--upload-limit", type=int, help="largest upload in bytes (default 10 MB)")
    serve.add_argument("--ws-frame-limit", type=int, help="largest WebSocket frame (default 64 KB)")
    serve.add_argument("--log-level", help="debug, info, warning or error (default info)")
    serve.set_defaults(func=_serve)
    return top


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.func(args)
