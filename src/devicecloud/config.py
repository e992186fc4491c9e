"""Settings: one object, filled from `DEVICECLOUD_*` variables and command-line flags."""

from __future__ import annotations

from pathlib import Path

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything a devicecloud process can be told; every field is also `DEVICECLOUD_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="DEVICECLOUD_", extra="ignore")

    host: str = "0.0.0.0"
    http_port: int = 8000
    mqtt_port: int = 1883
    mqtt_broker: str = ""
    mqtt_partition: str = "0/1"
    data_dir: Path = Path("./devicecloud-data")
    public_url: str = ""
    database_url: str = ""
    bus_url: str = ""
    upload_limit: int = 10 * 1024 * 1024
    ws_frame_limit: int = 64 * 1024
    log_level: str = "info"

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("mqtt_partition")
    @classmethod
    def _partition(cls, value: str) -> str:
        index, _, count = value.partition("/")
        if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
            raise ValueError("mqtt_partition must be INDEX/COUNT, e.g. 0/2")
        return value

    @property
    def partition(self) -> tuple[int, int]:
        index, _, count = self.mqtt_partition.partition("/")
        return int(index), int(count)

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file inside the data directory."""
        return self.database_url or f"sqlite:///{self.data_dir / 'devicecloud.db'}"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    def base_url(self, request_base: str) -> str:
        """The base for links handed out: `public_url` if set, else how the client reached us."""
        return self.public_url or request_base.rstrip("/")
