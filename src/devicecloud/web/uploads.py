"""Reading request bodies within a size limit, and multipart forms from them.

`read_body` and `read_form` keep the whole (bounded) body in memory: for small JSON bodies and
forms. `stream_upload` is for files: the file part goes straight to a spool of the blob store,
chunk by chunk, so memory stays flat whatever the size, and each text field is handed to a check
as soon as it is complete (an upload's token is refused before its file is read).
"""

from __future__ import annotations

import codecs
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.types import Message

from devicecloud.core.errors import TooLarge
from devicecloud.core.ports import Blobs, Spool

FIELD_LIMIT = 64 * 1024  # the largest text field of an upload form
MAX_PARTS = 32
FieldCheck = Callable[[str, str], Awaitable[None]]


def _too_large(limit: int) -> TooLarge:
    return TooLarge(f"request body larger than {limit} bytes")


def _declared_too_large(request: Request, limit: int) -> bool:
    declared = request.headers.get("content-length", "")
    return declared.isdigit() and int(declared) > limit


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or TooLarge as soon as it (or its declared length) exceeds `limit`."""
    if _declared_too_large(request, limit):
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(request: Request, limit: int) -> FormData:
    """A multipart or urlencoded form whose body is at most `limit` bytes."""
    body = await read_body(request, limit)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return await Request(request.scope, replay).form(max_files=4, max_fields=32)


@dataclass
class Upload:
    """A multipart form received by `stream_upload`: its text fields, and its file (the first
    file part) in a spool, or None. The caller keeps or discards the spool."""

    fields: dict[str, str] = field(default_factory=dict)
    file_field: str = ""
    file_name: str = ""
    spool: Spool | None = None

    def discard(self) -> None:
        if self.spool is not None:
            self.spool.discard()


@dataclass
class _Part:
    name: str = ""
    file_name: str | None = None
    disposition: bytes = b""
    data: bytearray = field(default_factory=bytearray)


class _Parser:
    """python-multipart's callbacks, queueing in order what the async side must do with each
    chunk: ("file", part) when a file part begins, ("data", part, bytes) for its contents,
    ("end", part) when a part is whole. Text fields collect in their part, up to FIELD_LIMIT."""

    def __init__(self) -> None:
        self.part = _Part()
        self.header_name = b""
        self.header_value = b""
        self.parts = 0
        self.events: list[tuple[str, _Part, bytes]] = []

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise MultiPartException(f"more than {MAX_PARTS} parts")
        self.part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        if self.header_name.lower() == b"content-disposition":
            self.part.disposition = self.header_value
        self.header_name = self.header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.part.disposition)
        if b"name" not in options:
            raise MultiPartException('a part has no "name" in its Content-Disposition')
        self.part.name = options[b"name"].decode("utf-8", "replace")
        if b"filename" in options:
            self.part.file_name = options[b"filename"].decode("utf-8", "replace")
            self.events.append(("file", self.part, b""))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part.file_name is not None:
            self.events.append(("data", self.part, data[start:end]))
            return
        if len(self.part.data) + end - start > FIELD_LIMIT:
            raise TooLarge(f"a form field is larger than {FIELD_LIMIT} bytes")
        self.part.data.extend(data[start:end])

    def on_part_end(self) -> None:
        self.events.append(("end", self.part, b""))


async def _fields_only(request: Request, check: FieldCheck | None) -> Upload:
    """An urlencoded form (no file can be in it), of at most `FIELD_LIMIT` bytes."""
    body = await read_body(request, FIELD_LIMIT)
    upload = Upload(dict(parse_qsl(body.decode("latin-1"), max_num_fields=MAX_PARTS)))
    for name, value in upload.fields.items():
        if check is not None:
            await check(name, value)
    return upload


def _text(part: _Part) -> str:
    try:
        return codecs.decode(part.data, "utf-8")
    except UnicodeDecodeError:
        return part.data.decode("latin-1")


async def stream_upload(request: Request, limit: int, blobs: Blobs,
                        check: FieldCheck | None = None) -> Upload:
    """Receive a multipart form of at most `limit` bytes, its first file into a spool of `blobs`
    and later files nowhere. `check(name, value)` sees each text field as soon as it is whole;
    whatever it raises ends the upload, with nothing left behind."""
    if _declared_too_large(request, limit):
        raise _too_large(limit)
    media_type, options = parse_options_header(request.headers.get("content-type", ""))
    if media_type == b"application/x-www-form-urlencoded":
        return await _fields_only(request, check)
    if media_type != b"multipart/form-data" or b"boundary" not in options:
        raise MultiPartException("the body must be multipart/form-data with a boundary")
    state = _Parser()
    parser = MultipartParser(options[b"boundary"], {
        "on_part_begin": state.on_part_begin, "on_part_data": state.on_part_data,
        "on_part_end": state.on_part_end, "on_header_field": state.on_header_field,
        "on_header_value": state.on_header_value, "on_header_end": state.on_header_end,
        "on_headers_finished": state.on_headers_finished})
    upload = Upload()
    receiving: _Part | None = None  # the file part going into the spool
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            try:
                parser.write(chunk)
            except FormParserError:
                raise MultiPartException("malformed multipart body") from None
            for kind, part, data in state.events:
                if kind == "file" and upload.spool is None:
                    upload.spool, receiving = blobs.spool(), part
                    upload.file_field, upload.file_name = part.name, part.file_name or ""
                elif kind == "data" and part is receiving and upload.spool is not None:
                    await upload.spool.write(data)
                elif kind == "end" and part is receiving:
                    receiving = None
                elif kind == "end" and part.file_name is None:
                    value = upload.fields[part.name] = _text(part)
                    if check is not None:
                        await check(part.name, value)
            state.events.clear()
        try:
            parser.finalize()
        except FormParserError:
            raise MultiPartException("malformed multipart body") from None
        if receiving is not None:
            raise MultiPartException("the body ends inside a part")
    except BaseException:
        upload.discard()
        raise
    return upload
