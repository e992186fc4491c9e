"""The server's log (stdlib `logging`): text lines or one JSON object a line, uvicorn's loggers
included, and never a secret.

Device tokens, open_api_keys, agents' api_keys and data tokens are all 32 lowercase hex digits:
any such run in a line is masked, and so is every value of a URL's query string (an `api_key`
in a request line), whichever logger wrote it. At debug level the WebSocket library logs each
frame and handshake header: frames are logged by their size only (a device's token, a pairing
code), and credential headers without their value.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Literal

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONTEXT = ("transport", "device", "command", "ms")
"""What a log call may give with `extra=`, kept as fields of a JSON line."""

_SECRET = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")
_QUERY_VALUE = re.compile(r"([?&][\w.-]+=)[^&\s\"']+")
_FRAME = re.compile(r"([<>] (?:TEXT|BINARY|CONT)) .*( \[\d+ bytes\])")
_CREDENTIAL_HEADER = re.compile(
    r"([<>] (?:cookie|set-cookie|authorization|x-devicecloud-hook-secret): )[^\"]*",
    re.IGNORECASE)


def redact(line: str) -> str:
    """`line` with every token-like run, query-string value, frame's content and credential
    header's value masked."""
    if "=" in line:
        line = _QUERY_VALUE.sub(r"\1…", line)
    if "< " in line or "> " in line:
        line = _CREDENTIAL_HEADER.sub(r"\1…", _FRAME.sub(r"\1 …\2", line))
    return _SECRET.sub("[secret]", line)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "msg"}`, the `CONTEXT` fields given, and `exc` (the traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        for name in CONTEXT:
            if name in record.__dict__:
                entry[name] = record.__dict__[name]
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return redact(json.dumps(entry, ensure_ascii=False, default=str))


def configure(level: str, log_format: Literal["text", "json"]) -> None:
    """Send every logger's records (uvicorn's too: run it with `log_config=None`) to standard
    error at `level`, formatted as asked."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
