"""Settings: one object, filled from `DEVICECLOUD_*` variables and command-line flags."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from devicecloud.limits import parse_limits
from devicecloud.store.url import Database, parse_database_url, sqlite_file

Port = Annotated[int, Field(ge=0, le=65535)]
Size = Annotated[int, Field(ge=1)]  # bytes
LOG_LEVELS = ("debug", "info", "warning", "error")


class StartupError(Exception):
    """A problem that stops the start, said in one line with its fix (the process exits 2)."""


class Settings(BaseSettings):
    """Everything a devicecloud process can be told; every field is also `DEVICECLOUD_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="DEVICECLOUD_", extra="ignore")

    host: str = "0.0.0.0"
    http_port: Port = 8000
    mqtt_port: Port = 1883
    mqtt_broker: str = ""
    # With an external broker: the secret its HTTP auth/ACL hooks send (else loopback only).
    mqtt_hook_secret: str = ""
    mqtt_partition: str = "0/1"
    data_dir: Path = Path("./devicecloud-data")
    public_url: str = ""
    # Addresses of reverse proxies whose X-Forwarded-For / -Proto headers are believed
    # (comma-separated); none by default, so a client cannot choose the address it is counted by.
    trusted_proxies: str = ""
    database_url: str = ""
    bus_url: str = ""
    workers: Annotated[int, Field(ge=1)] = 1
    reuse_port: bool = False
    upload_limit: Size = 10 * 1024 * 1024
    ws_frame_limit: Size = 64 * 1024
    log_level: str = "info"
    log_format: Literal["text", "json"] = "text"
    # A Bearer token `/metrics` asks for (none: open to whoever reaches the HTTP port).
    metrics_token: str = ""
    # Limits (`NAME=RATE[:BURST]`, comma-separated in the variable; see limits.py).
    limit: Annotated[list[str], NoDecode] = []
    # Who may register: `open` (EzData's way: any MAC gets its token) or `allow-list` (only MACs
    # an admin or an account added; see docs/security.md).
    registration: Literal["open", "allow-list"] = "open"
    # TLS: one certificate (PEM, chain allowed) for HTTPS/WSS on `https_port` and MQTT over TLS
    # on `mqtts_port`, reloaded on SIGHUP and when the files change; or one obtained and renewed
    # by ACME (HTTP-01 on the plain HTTP port) for `acme_domain`, kept in the data directory.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    https_port: Port = 8443
    mqtts_port: Port = 8883
    # Plain-HTTP page requests (not device calls) are answered with a redirect to HTTPS.
    http_redirect: bool = False
    acme_domain: Annotated[list[str], NoDecode] = []
    acme_email: str = ""
    acme_directory: str = "https://acme-v02.api.letsencrypt.org/directory"
    acme_ca: Path | None = None  # a private ACME CA's HTTPS certificate bundle (PEM)
    # ESP-AI: the voice server handed to agents that have none of their own, and the largest
    # firmware image an account may upload.
    espai_voice_server: str = ""
    firmware_limit: Size = 16 * 1024 * 1024

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.lower() not in LOG_LEVELS:
            raise ValueError(f"say one of {', '.join(LOG_LEVELS)}")
        return value.lower()

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if value:
            try:
                parse_database_url(value)
            except SystemExit as refused:  # its reason names the scheme only, not a password
                raise ValueError(str(refused)) from None
        return value

    @field_validator("mqtt_partition")
    @classmethod
    def _partition(cls, value: str) -> str:
        index, _, count = value.partition("/")
        if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
            raise ValueError("mqtt_partition must be INDEX/COUNT, e.g. 0/2")
        return value

    @field_validator("limit", mode="before")
    @classmethod
    def _limits(cls, value: object) -> object:
        if isinstance(value, str):  # DEVICECLOUD_LIMIT="ip.register=5/s,..."
            value = [part for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            parse_limits(value)  # refuses a bad one with its reason
        return value

    @field_validator("acme_domain", mode="before")
    @classmethod
    def _domains(cls, value: object) -> object:
        if isinstance(value, str):  # DEVICECLOUD_ACME_DOMAIN="a.example.org,b.example.org"
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _tls_source(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key (DEVICECLOUD_TLS_CERT, DEVICECLOUD_TLS_KEY) "
                             "go together: give both, or neither")
        if self.tls_cert is not None and self.acme_domain:
            raise ValueError("--acme-domain (DEVICECLOUD_ACME_DOMAIN) obtains the certificate "
                             "itself: give it or --tls-cert/--tls-key, not both")
        if self.acme_domain and not self.acme_email:
            raise ValueError("--acme-domain needs --acme-email (DEVICECLOUD_ACME_EMAIL), the ACME "
                             "account's contact")
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: str) -> str:
        return ",".join(part.strip() for part in value.split(",") if part.strip())

    @property
    def partition(self) -> tuple[int, int]:
        index, _, count = self.mqtt_partition.partition("/")
        return int(index), int(count)

    @property
    def database(self) -> Database:
        """Where the store lives: `database_url`, else a SQLite file inside the data directory."""
        if self.database_url:
            return parse_database_url(self.database_url)
        return sqlite_file(self.data_dir / "devicecloud.db")

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def secret_path(self) -> Path:
        """The key that signs console session cookies."""
        return self.data_dir / "secret.key"

    @property
    def https(self) -> bool:
        """Whether the service is published over https (session cookies are then `Secure`)."""
        return self.public_url.lower().startswith("https://")

    @property
    def tls(self) -> bool:
        """Whether this process serves TLS itself (a certificate given, or obtained by ACME)."""
        return self.tls_cert is not None or bool(self.acme_domain)

    @property
    def tls_dir(self) -> Path:
        """Where a certificate obtained by ACME, and its ACME account key, are kept."""
        return self.data_dir / "tls"

    def base_url(self, request_base: str) -> str:
        """The base for links handed out: `public_url` if set, else how the client reached us."""
        return self.public_url or request_base.rstrip("/")


_UNSHOWN = frozenset({"mqtt_broker", "mqtt_hook_secret", "metrics_token", "database_url",
                      "bus_url"})  # they may hold a password


def load_settings(values: Mapping[str, Any], flags: Collection[str] = ()) -> Settings:
    """Settings from the environment, overridden by `values`. A bad value stops the start with
    one line naming its variable, and its flag if `flags` holds its name."""
    try:
        return Settings(**values)
    except ValidationError as invalid:
        error = invalid.errors()[0]
        reason = error["msg"].removeprefix("Value error, ")
        if not error["loc"]:  # a rule across settings names its own flags
            raise StartupError(reason) from None
        name = str(error["loc"][0])
        where = f"DEVICECLOUD_{name.upper()}"
        if name in flags:
            where = f"--{name.replace('_', '-')} (or {where})"
        value = error["input"]
        shown = ",".join(map(str, value)) if isinstance(value, list) else value
        given = "" if name in _UNSHOWN else f" {shown}"
        raise StartupError(f"bad {where}{given}: {reason}") from None


def unusable_database(settings: Settings, problem: Exception) -> StartupError:
    """The line saying the configured database cannot be used, with the driver's reason."""
    cause = str(getattr(problem, "orig", None) or problem).strip()
    reason = cause.splitlines()[0] if cause else type(problem).__name__
    return StartupError(f"cannot use the database {settings.database.url.render_as_string()}: "
                        f"{reason}; check --database-url (or DEVICECLOUD_DATABASE_URL)")


def load_secret(path: Path) -> bytes:
    """The secret kept in `path`; made with 32 random bytes and mode 0600 on first use. The file
    appears whole or not at all, so processes starting together agree on one secret."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as out:
                out.write(secrets.token_hex(32).encode() + b"\n")
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):  # another process was first: use its
                os.link(draft, path)
        finally:
            draft.unlink()
    secret = path.read_bytes().strip()
    if len(secret) < 32:
        raise StartupError(f"{path} holds no usable secret; delete it to have a new one made")
    return secret
