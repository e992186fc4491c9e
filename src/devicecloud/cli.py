"""The `devicecloud` command."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import socket
from collections.abc import Sequence
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from devicecloud.app import create_app, drain, open_store
from devicecloud.config import Settings
from devicecloud.core.accounts import Accounts
from devicecloud.core.errors import DeviceCloudError
from devicecloud.core.models import Account


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
    settings = _settings(args, *Settings.model_fields)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("devicecloud").info(
        "devicecloud on http://%s:%d (MQTT %s), data in %s", settings.host, settings.http_port,
        "through a broker" if settings.mqtt_broker else f"port {settings.mqtt_port or 'off'}",
        settings.data_dir.resolve())
    app = create_app(settings)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.http_port,
        ws_max_size=settings.ws_frame_limit, log_level=settings.log_level.lower(),
        lifespan="on", timeout_graceful_shutdown=10, server_header=False, ws="websockets-sansio")
    GracefulServer(config, app).run()


def _settings(args: argparse.Namespace, *names: str) -> Settings:
    """Settings from the environment, overridden by the flags `names` given on the command line."""
    return Settings(**{name: getattr(args, name) for name in names
                       if getattr(args, name, None) is not None})


def _accounts_create(args: argparse.Namespace) -> None:
    settings = _settings(args, "data_dir", "database_url")

    async def create() -> Account:
        store = await open_store(settings)
        try:
            return await Accounts(store).create(args.email, args.password, args.name, args.phone)
        finally:
            await store.close()

    try:
        account = asyncio.run(create())
    except DeviceCloudError as problem:
        raise SystemExit(f"devicecloud: {problem}") from None
    print(json.dumps(dataclasses.asdict(account)))


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="devicecloud", description=__doc__)
    storage = argparse.ArgumentParser(add_help=False)
    storage.add_argument("--data-dir", help="database and files (default ./devicecloud-data)")
    storage.add_argument("--database-url", help="default: sqlite:///<data-dir>/devicecloud.db")
    commands = top.add_subparsers(dest="command", required=True)

    accounts = commands.add_parser("accounts", help="manage accounts").add_subparsers(
        dest="action", required=True)
    create = accounts.add_parser("create", parents=[storage],
                                 help="create an account; prints it as JSON")
    create.add_argument("email")
    create.add_argument("--password", required=True)
    create.add_argument("--name", default="", help="display name")
    create.add_argument("--phone", default="")
    create.set_defaults(func=_accounts_create)

    serve = commands.add_parser("serve", parents=[storage],
                                help="run the service (HTTP, WebSocket, MQTT)")
    serve.add_argument("--host", help="address to listen on (DEVICECLOUD_HOST, default 0.0.0.0)")
    serve.add_argument("--http-port", type=int, help="HTTP and WebSocket port (default 8000)")
    serve.add_argument("--mqtt-port", type=int, help="built-in MQTT listener (1883; 0: none)")
    serve.add_argument("--mqtt-broker", help="use this broker instead of the built-in listener: "
                                             "mqtt://user:password@host:port")
    serve.add_argument("--mqtt-partition", help="INDEX/COUNT: with a broker that cannot share "
                                                "$ezdata subscriptions, the devices this instance "
                                                "serves (default 0/1)")
    serve.add_argument("--bus-url", help="redis://host:port/0 to share events between processes")
    serve.add_argument("--public-url", help="base of the links handed out, e.g. https://x.org")
    serve.add_argument("--upload-limit", type=int, help="largest upload in bytes (default 10 MB)")
    serve.add_argument("--ws-frame-limit", type=int, help="largest WebSocket frame (default 64 KB)")
    serve.add_argument("--log-level", help="debug, info, warning or error (default info)")
    serve.set_defaults(func=_serve)
    return top


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.func(args)
