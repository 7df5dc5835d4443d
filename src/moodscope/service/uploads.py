"""Uploads: a multipart body streamed to a temporary file chunk by chunk, its size bounded
as it arrives and its pace watched (a client that stalls or trickles gets 408), nothing of it
held in memory."""

from __future__ import annotations

import asyncio
import errno
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect

from moodscope.atomic import describe_os_error
from moodscope.audio.decode import AUDIO_EXTENSIONS
from moodscope.service.admission import RequestRejected
from moodscope.service.config import ServiceConfig

FORM_FIELD = "file"
FORM_SLACK = 1 << 20
"""Bytes a multipart body may carry beyond the file itself (boundaries, part headers, small
fields)."""


@dataclass
class Upload:
    """An uploaded file, written to ``path``; ``name`` is the client's file name."""

    path: Path
    name: str
    size: int


def _client_name(raw: bytes | None) -> str:
    """The file name the client gave, without any folders it sent along."""
    if not raw:
        return ""
    name = raw.decode("utf-8", errors="replace")
    return re.split(r"[/\\]", name)[-1].strip()


def too_large(limit_mb: float) -> RequestRejected:
    return RequestRejected(
        413,
        f"upload is larger than the server's limit of {limit_mb:g} MB (--max-upload-mb)",
        {"Connection": "close"},
    )


STORAGE_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
"""Errors of a disk that cannot take the upload now: 507, and the client may retry later."""


def cannot_store(exc: OSError, what: str = "the upload") -> RequestRejected:
    """A temporary file that cannot be made or written: 507 when the disk (or a quota, or
    the server's file-size limit) is full, else 500; one line either way."""
    full = exc.errno in STORAGE_FULL
    why = describe_os_error(exc) if exc.errno != errno.EFBIG else "the file-size limit is reached"
    return RequestRejected(
        507 if full else 500,
        f"the server cannot store {what}: {why}" + ("; retry later" if full else ""),
        {"Connection": "close"},
    )


def _no_file() -> RequestRejected:
    return RequestRejected(
        400,
        f"no file: send the audio as a multipart/form-data field named '{FORM_FIELD}' "
        f"(curl -F {FORM_FIELD}=@song.mp3 ...)",
    )


class _FormWriter:
    """Feeds a multipart body to python-multipart's streaming parser and writes the part
    named ``file`` to a temporary file chunk by chunk; raises 413 as soon as it passes the
    limit. Other parts are dropped as they pass (the body's total size is bounded by the
    caller). Nothing of the body is held in memory beyond the chunk being parsed."""

    def __init__(self, boundary: bytes, upload_dir: str, limit: int, limit_mb: float):
        self.upload_dir, self.limit, self.limit_mb = upload_dir, limit, limit_mb
        self.path: Path | None = None
        self.name = ""
        self.size = 0
        self.file_done = False
        self._file = None
        self._writing = False
        self._headers: dict[bytes, bytes] = {}
        self._field = self._value = b""
        self.parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )

    def write(self, chunk: bytes) -> None:
        try:
            self.parser.write(chunk)
        except OSError as exc:  # the temporary file: made or written while parsing
            raise cannot_store(exc) from None

    def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            try:
                file.close()  # flushes what is buffered
            except OSError as exc:
                raise cannot_store(exc) from None

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.strip().lower()] = self._value.strip()
        self._field = self._value = b""

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._writing = params.get(b"name") == FORM_FIELD.encode() and self.path is None
        if self._writing:
            self.name = _client_name(params.get(b"filename"))
            suffix = Path(self.name).suffix.lower()
            # Content decides the format; a known audio suffix only helps the decoders guess.
            fd, path = tempfile.mkstemp(
                dir=self.upload_dir,
                prefix="upload-",
                suffix=suffix if suffix in AUDIO_EXTENSIONS else "",
            )
            self.path = Path(path)
            self._file = os.fdopen(fd, "wb")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        n = end - start
        if self._writing and self._file is not None:
            self.size += n
            if self.size > self.limit:
                raise too_large(self.limit_mb)
            self._file.write(data[start:end])

    def _part_end(self) -> None:
        if self._writing:
            self._writing = False
            self.file_done = True
            self.close()


async def receive_upload(request: Request, config: ServiceConfig, upload_dir: str) -> Upload:
    """Stream the request's multipart body; its ``file`` part goes to a temporary file in
    ``upload_dir``. Raises :class:`RequestRejected`: 400 (no ``file`` part, whatever else
    was sent), 408 when the client sends nothing for ``config.upload_timeout`` seconds or
    averages less than ``config.min_upload_rate`` bytes/s over a
    ``config.upload_rate_window``-second window (a client trickling bytes to hold a
    connection and a file), 413; on any failure the temporary file is already removed."""
    limit = config.max_upload_bytes
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit + FORM_SLACK:
        raise too_large(config.max_upload_mb)
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not params.get(b"boundary"):
        raise _no_file()
    form = _FormWriter(params[b"boundary"], upload_dir, limit, config.max_upload_mb)
    pace = _UploadPace(config)
    chunks = aiter(request.stream())
    next_chunk: asyncio.Future | None = None
    try:
        while True:
            if next_chunk is None:
                next_chunk = asyncio.ensure_future(anext(chunks))
            # Waiting without cancelling the read: a window may end while bytes are on
            # their way, and a cancelled read would end the stream.
            done, _ = await asyncio.wait({next_chunk}, timeout=pace.wait_seconds())
            chunk = None
            if done:
                try:
                    chunk = next_chunk.result()
                except StopAsyncIteration:
                    next_chunk = None
                    break
                next_chunk = None
            pace.check(form.name, chunk)
            if chunk is None:
                continue
            form.write(chunk)  # raises 413 once the file part passes the limit
            if pace.received > limit + FORM_SLACK:
                if form.path is None:  # the whole limit read and still no file part
                    raise _no_file()
                raise too_large(config.max_upload_mb)
        form.close()
        if form.path is None:
            raise _no_file()
        if not form.file_done:
            raise RequestRejected(400, f"{form.name or 'upload'}: the upload ended early")
        if form.size == 0 and not form.name:  # a form sent with no file chosen
            raise _no_file()
        return Upload(form.path, form.name or "upload", form.size)
    except MultipartParseError as exc:
        _drop(form, next_chunk)
        raise RequestRejected(400, f"malformed multipart body ({exc})") from None
    except ClientDisconnect:
        _drop(form, next_chunk)
        raise RequestRejected(400, "the client went away during the upload") from None
    except BaseException:
        _drop(form, next_chunk)
        raise


class _UploadPace:
    """The two rules an upload in progress must keep: some byte every ``upload_timeout``
    seconds, and at least ``min_upload_rate`` bytes/s on average over each
    ``upload_rate_window`` seconds (the last, unfinished window is not judged)."""

    def __init__(self, config: ServiceConfig):
        self.config = config
        now = time.monotonic()
        self.last_byte = self.window_start = now
        self.window_bytes = self.received = 0

    def wait_seconds(self) -> float:
        c, now = self.config, time.monotonic()
        ends = [self.last_byte + c.upload_timeout]
        if c.min_upload_rate > 0:
            ends.append(self.window_start + c.upload_rate_window)
        return max(0.0, min(ends) - now)

    def check(self, name: str, chunk: bytes | None) -> None:
        c, now = self.config, time.monotonic()
        if chunk:
            self.received += len(chunk)
            self.window_bytes += len(chunk)
            self.last_byte = now
        what = name or "upload"
        if now - self.last_byte >= c.upload_timeout:
            raise RequestRejected(
                408,
                f"{what}: nothing received for {c.upload_timeout:g} s after {self.received} "
                "bytes; the upload was dropped",
                {"Connection": "close"},
            )
        elapsed = now - self.window_start
        if c.min_upload_rate > 0 and elapsed >= c.upload_rate_window:
            rate = self.window_bytes / elapsed
            if rate < c.min_upload_rate:
                raise RequestRejected(
                    408,
                    f"{what}: the upload came at {rate:.0f} bytes/s over {elapsed:.0f} s, under "
                    f"the server's minimum of {c.min_upload_rate:g} bytes/s "
                    "(--min-upload-rate); the upload was dropped",
                    {"Connection": "close"},
                )
            self.window_start, self.window_bytes = now, 0


def _drop(form: _FormWriter, next_chunk: asyncio.Future | None) -> None:
    if next_chunk is not None:
        next_chunk.cancel()
    try:
        form.close()
    except RequestRejected:  # already failing: the first error is the one to tell
        pass
    remove_upload(form.path)


def remove_upload(path: Path | None) -> None:
    if path is not None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


__all__ = [
    "FORM_FIELD",
    "FORM_SLACK",
    "Upload",
    "cannot_store",
    "receive_upload",
    "remove_upload",
    "too_large",
]
