"""The `devicecloud` command."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy.exc import SQLAlchemyError

from devicecloud import backup as backups
from devicecloud import logs
from devicecloud.blobs.disk import DiskBlobs
from devicecloud.bus.memory import MemoryBus
from devicecloud.config import Settings, StartupError, load_settings, unusable_database
from devicecloud.core.accounts import Accounts, normalise_email
from devicecloud.core.errors import DeviceCloudError, NotFound
from devicecloud.core.espai.platform import EspAi
from devicecloud.core.models import Account
from devicecloud.core.service import DeviceCloud
from devicecloud.gateways.hub import Hub
from devicecloud.gateways.presence import LocalPresence
from devicecloud.protocols.ezdata_mqtt import push_size
from devicecloud.server import hold_data_dir, serve_one, serve_workers, workers_problem
from devicecloud.store.open import open_store
from devicecloud.store.sql.store import SqlStore
from devicecloud.store.url import Database


def _serve(args: argparse.Namespace) -> None:
    settings = _settings(args, *Settings.model_fields)
    logs.configure(settings.log_level, settings.log_format)
    problem = workers_problem(settings) if settings.workers > 1 else None
    if problem:
        raise StartupError(f"--workers {settings.workers}: {problem}")
    with hold_data_dir(settings):
        if settings.workers > 1:
            raise SystemExit(serve_workers(settings, sys.argv[1:]))
        logging.getLogger("devicecloud").info(
            "devicecloud on http://%s:%d (MQTT %s), data in %s", settings.host,
            settings.http_port,
            "through a broker" if settings.mqtt_broker else f"port {settings.mqtt_port or 'off'}",
            settings.data_dir.resolve())
        serve_one(settings)


def _settings(args: argparse.Namespace, *names: str) -> Settings:
    """Settings from the environment, overridden by the flags `names` given on the command line."""
    return load_settings({name: getattr(args, name) for name in names
                          if getattr(args, name, None) is not None},
                         [name for name in names if hasattr(args, name)])


def _has_database(database: Database) -> bool:
    """Whether `database` exists and holds devicecloud's tables."""
    if database.engine == "sqlite":
        return database.sqlite_path.is_file()
    engine = sqlalchemy.create_engine(database.migration_url)
    try:
        with engine.connect() as connection:
            return sqlalchemy.inspect(connection).has_table("alembic_version")
    finally:
        engine.dispose()


async def _open(settings: Settings, args: argparse.Namespace) -> SqlStore:
    """The store of a command run outside a server: the server's database, never a new one made
    by mistake (unless `--create-database`)."""
    database = settings.database
    try:
        if not (args.create_database or await asyncio.to_thread(_has_database, database)):
            where = (database.sqlite_path.resolve() if database.engine == "sqlite"
                     else database.url.render_as_string())
            raise StartupError(f"no devicecloud database at {where}; point the command at the "
                               "server's with --data-dir (or DEVICECLOUD_DATA_DIR) or "
                               "--database-url (or DEVICECLOUD_DATABASE_URL), or pass "
                               "--create-database to make a new one")
        return await open_store(settings)
    except (OSError, SQLAlchemyError) as problem:
        raise unusable_database(settings, problem) from None


def _accounts_create(args: argparse.Namespace) -> None:
    settings = _settings(args, "data_dir", "database_url")

    async def create() -> Account:
        store = await _open(settings, args)
        try:
            return await Accounts(store).create(args.email, args.password, args.name, args.phone)
        finally:
            await store.close()

    try:
        account = asyncio.run(create())
    except DeviceCloudError as problem:
        raise SystemExit(f"devicecloud: {problem}") from None
    print(json.dumps(dataclasses.asdict(account)))


def _run_cloud(args: argparse.Namespace,
               work: Callable[[DeviceCloud, SqlStore], Awaitable[Any]]) -> Any:
    """Run `work` on the core and store of the server's database, outside a server."""
    settings = _settings(args, "data_dir", "database_url")

    async def run() -> Any:
        store = await _open(settings, args)
        try:
            bus = MemoryBus()
            cloud = DeviceCloud(store, bus, DiskBlobs(settings.files_dir), downlink_size=push_size)
            return await work(cloud, store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except DeviceCloudError as problem:
        raise SystemExit(f"devicecloud: {problem}") from None


async def _account(store: SqlStore, email: str) -> Account:
    found = await store.account_login(normalise_email(email))
    if found is None:
        raise NotFound(f"no account with the email {email}")
    return found[0]


def _run_espai(args: argparse.Namespace, work: Callable[[EspAi, Account], Awaitable[Any]]) -> Any:
    """Run `work` on the ESP-AI service for the account `--account`, outside a server."""

    async def run(cloud: DeviceCloud, store: SqlStore) -> Any:
        account = await _account(store, args.account)
        presence = LocalPresence(Hub(cloud.bus))  # no connections outside a server
        return await work(EspAi(store, cloud.bus, cloud.blobs, presence), account)

    return _run_cloud(args, run)


def _devices_allow(args: argparse.Namespace) -> None:
    async def allow(cloud: DeviceCloud, store: SqlStore) -> list[dict[str, Any]]:
        account = await _account(store, args.account) if args.account else None
        allowed = []
        for mac in args.mac:
            device = await cloud.allow_mac(mac, None)
            if account is not None:
                await cloud.bind(device, account)
            allowed.append({"mac": device.mac, "token": device.token,
                            "owner": account.email if account else None})
        return allowed

    for line in _run_cloud(args, allow):
        print(json.dumps(line))


def _agents_create(args: argparse.Namespace) -> None:
    agent = _run_espai(args, lambda espai, account: espai.agents.create(account, args.name,
                                                                       args.server or ""))
    print(json.dumps(dataclasses.asdict(agent), ensure_ascii=False))


def _agents_list(args: argparse.Namespace) -> None:
    agents = _run_espai(args, lambda espai, account: espai.agents.of(account))
    print(json.dumps([dataclasses.asdict(agent) for agent in agents], ensure_ascii=False))


def _mask_wifi_pwd(args: argparse.Namespace) -> None:
    _run_espai(args, lambda espai, account:
               espai.devices.set_mask_wifi_pwd(account, args.state == "on"))


def _backup(args: argparse.Namespace) -> None:
    settings = _settings(args, "data_dir", "database_url")
    if not _has_database(settings.database):
        raise StartupError("no devicecloud database to back up; point the command at the "
                           "server's with --data-dir (or DEVICECLOUD_DATA_DIR) or "
                           "--database-url (or DEVICECLOUD_DATABASE_URL)")
    print(f"backup: {backups.backup(settings, Path(args.file))}")


def _restore(args: argparse.Namespace) -> None:
    settings = _settings(args, "data_dir", "database_url")
    with hold_data_dir(settings):  # never under a running server
        print(backups.restore(settings, Path(args.file), force=args.force))


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="devicecloud", description=__doc__)
    storage = argparse.ArgumentParser(add_help=False)
    storage.add_argument("--data-dir", help="database and files (default ./devicecloud-data)")
    storage.add_argument("--database-url", help="default: sqlite:///<data-dir>/devicecloud.db")
    existing = argparse.ArgumentParser(add_help=False, parents=[storage])
    existing.add_argument("--create-database", action="store_true",
                          help="make the database if there is none (else the command refuses)")
    commands = top.add_subparsers(dest="command", required=True)

    accounts = commands.add_parser("accounts", help="manage accounts").add_subparsers(
        dest="action", required=True)
    create = accounts.add_parser("create", parents=[existing],
                                 help="create an account; prints it as JSON")
    create.add_argument("email")
    create.add_argument("--password", required=True)
    create.add_argument("--name", default="", help="display name")
    create.add_argument("--phone", default="")
    create.set_defaults(func=_accounts_create)
    mask = accounts.add_parser("mask-wifi-pwd", parents=[existing],
                               help="show wifi_pwd as ****** in the account's ESP-AI API results")
    mask.add_argument("--account", required=True, metavar="EMAIL")
    mask.add_argument("state", choices=["on", "off"])
    mask.set_defaults(func=_mask_wifi_pwd)

    agents = commands.add_parser("agents", help="manage ESP-AI agents").add_subparsers(
        dest="action", required=True)
    agent = agents.add_parser("create", parents=[existing],
                              help="create an agent; prints it (with its api_key) as JSON")
    agent.add_argument("--account", required=True, metavar="EMAIL")
    agent.add_argument("--server", help="its voice server, e.g. http://host:8088/path")
    agent.add_argument("name")
    agent.set_defaults(func=_agents_create)
    listing = agents.add_parser("list", parents=[existing], help="the account's agents as JSON")
    listing.add_argument("--account", required=True, metavar="EMAIL")
    listing.set_defaults(func=_agents_list)

    backup = commands.add_parser("backup", parents=[storage],
                                 help="write a consistent backup while the server runs")
    backup.add_argument("file", metavar="FILE.tar.gz")
    backup.set_defaults(func=_backup)
    restore = commands.add_parser("restore", parents=[storage],
                                  help="restore a backup into an empty data directory")
    restore.add_argument("file", metavar="FILE.tar.gz")
    restore.add_argument("--force", action="store_true",
                         help="replace the data already there")
    restore.set_defaults(func=_restore)

    devices = commands.add_parser("devices", help="manage devices").add_subparsers(
        dest="action", required=True)
    allow = devices.add_parser("allow", parents=[existing],
                               help="put MACs on the allow-list (--registration allow-list): "
                                    "their device records are made now; prints each with its "
                                    "token as JSON")
    allow.add_argument("mac", nargs="+")
    allow.add_argument("--account", metavar="EMAIL", help="also bind them to this account")
    allow.set_defaults(func=_devices_allow)

    serve = commands.add_parser("serve", parents=[storage],
                                help="run the service (HTTP, WebSocket, MQTT)")
    serve.add_argument("--host", help="address to listen on (DEVICECLOUD_HOST, default 0.0.0.0)")
    serve.add_argument("--http-port", help="HTTP and WebSocket port (default 8000)")
    serve.add_argument("--mqtt-port", help="built-in MQTT listener (1883; 0: none)")
    serve.add_argument("--mqtt-broker", help="use this broker instead of the built-in listener: "
                                             "mqtt://user:password@host:port")
    serve.add_argument("--mqtt-partition", help="INDEX/COUNT: with a broker that cannot share "
                                                "$ezdata subscriptions, the devices this instance "
                                                "serves (default 0/1)")
    serve.add_argument("--workers", help="processes sharing the ports (default 1; "
                                                   "more need PostgreSQL and Redis)")
    serve.add_argument("--bus-url", help="redis://host:port/0 to share events between processes")
    serve.add_argument("--public-url", help="base of the links handed out, e.g. https://x.org")
    serve.add_argument("--trusted-proxies", help="comma-separated addresses of reverse proxies "
                                                 "whose X-Forwarded-For is believed (default none)")
    serve.add_argument("--upload-limit", help="largest upload in bytes (default 10 MB)")
    serve.add_argument("--ws-frame-limit", help="largest WebSocket frame (default 64 KB)")
    serve.add_argument("--log-level", help="debug, info, warning or error (default info)")
    serve.add_argument("--log-format", choices=["text", "json"],
                       help="text (default) or json: one JSON object a line")
    serve.add_argument("--metrics-token", help="a Bearer token GET /metrics asks for "
                                               "(default: none asked)")
    serve.add_argument("--limit", action="append", metavar="NAME=RATE[:BURST]",
                       help="a limit, e.g. ip.register=10/s:200 or ip.register=off (repeatable)")
    serve.add_argument("--registration", choices=["open", "allow-list"],
                       help="open (default: any MAC registers) or allow-list (only MACs "
                            "added with `devicecloud devices allow` or in the console)")
    serve.add_argument("--tls-cert", help="PEM certificate (a chain allowed) for HTTPS, WSS and "
                                          "MQTT over TLS; reloaded on SIGHUP and on change")
    serve.add_argument("--tls-key", help="its PEM private key")
    serve.add_argument("--https-port", help="HTTPS and WSS port with TLS (default 8443; 0: none)")
    serve.add_argument("--mqtts-port", help="MQTT over TLS port with TLS (default 8883; 0: none)")
    serve.add_argument("--http-redirect", action="store_const", const=True,
                       help="answer plain-HTTP page requests with a redirect to HTTPS")
    serve.add_argument("--acme-domain", action="append", metavar="NAME",
                       help="obtain and renew the certificate for NAME by ACME (repeatable)")
    serve.add_argument("--acme-email", help="the ACME account's contact address")
    serve.add_argument("--acme-directory", help="the ACME directory URL (default Let's Encrypt)")
    serve.add_argument("--acme-ca", help="PEM bundle to trust for a private ACME CA's HTTPS "
                                         "(default: the system's)")
    serve.set_defaults(func=_serve)
    return top


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command; a problem that stops it is one line on stderr and exit status 2."""
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except StartupError as problem:
        print(f"devicecloud: {problem}", file=sys.stderr)
        raise SystemExit(2) from None
